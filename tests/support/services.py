"""Reach the real services the tests need, once per session.

Each service's URL comes from the environment (``.ci/run`` and the README's
test command start what is missing and set these); where a variable is unset
and a Docker engine answers, a testcontainers container is started instead.
Neither: the test fails loudly, it never skips.

- ``VIDEOQ_TEST_AMQP_URL``: RabbitMQ, with ``VIDEOQ_TEST_RABBITMQ_API`` its
  management API (each test gets a vhost of its own)
- ``VIDEOQ_TEST_DATABASE_URL``: PostgreSQL admin URL (each test gets a database)
- ``VIDEOQ_TEST_S3_ENDPOINT``: an S3 endpoint (each test gets a bucket)
- ``VIDEOQ_TEST_RABBITMQCTL``: how fault tests reach that broker's node
  (default ``rabbitmqctl``, the machine's; ``docker exec NAME rabbitmqctl``
  for a container's)
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

__all__ = [
    "Services",
    "discover_services",
    "drop_vhost",
    "new_vhost",
    "rabbitmqctl",
    "settings_env",
]


@dataclass
class Services:
    amqp_url: str
    rabbitmq_api: str
    database_url: str
    s3_endpoint: str


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def _need(name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    if not _docker_available():
        pytest.fail(
            f"{name} is not set and no Docker engine answers: run the tests with the"
            " README's test command (it starts and points at every service), or set it.",
            pytrace=False,
        )
    return None


def discover_services(stack: list[object]) -> Services:
    """Find or start each service; containers started are appended to ``stack``."""
    amqp = _need("VIDEOQ_TEST_AMQP_URL")
    api = os.environ.get("VIDEOQ_TEST_RABBITMQ_API", "http://guest:guest@127.0.0.1:15672")
    if amqp is None:
        from testcontainers.rabbitmq import RabbitMqContainer

        rabbit = RabbitMqContainer("rabbitmq:3.13-management").start()
        stack.append(rabbit)
        host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
        amqp = f"amqp://guest:guest@{host}:{port}/"
        api = f"http://guest:guest@{host}:{rabbit.get_exposed_port(15672)}"
    database = _need("VIDEOQ_TEST_DATABASE_URL")
    if database is None:
        from testcontainers.postgres import PostgresContainer

        pg = PostgresContainer("postgres:16", driver=None).start()
        stack.append(pg)
        database = pg.get_connection_url()
    s3 = _need("VIDEOQ_TEST_S3_ENDPOINT")
    if s3 is None:
        from testcontainers.minio import MinioContainer

        minio = MinioContainer().start()
        stack.append(minio)
        cfg = minio.get_config()
        s3 = f"http://{cfg['endpoint']}"
        os.environ["AWS_ACCESS_KEY_ID"] = cfg["access_key"]
        os.environ["AWS_SECRET_ACCESS_KEY"] = cfg["secret_key"]
    return Services(amqp_url=amqp, rabbitmq_api=api, database_url=database, s3_endpoint=s3)


def _api(services: Services) -> httpx.Client:
    parts = urlsplit(services.rabbitmq_api)
    base = urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port}", parts.path, "", ""))
    return httpx.Client(
        base_url=base, auth=(parts.username or "guest", parts.password or "guest"), timeout=30
    )


def new_vhost(services: Services) -> tuple[str, str]:
    """Create a fresh vhost; return (its name, an AMQP URL into it)."""
    name = f"videoq-test-{uuid.uuid4().hex[:10]}"
    user = urlsplit(services.amqp_url).username or "guest"
    with _api(services) as api:
        try:
            api.put(f"/api/vhosts/{quote(name, safe='')}").raise_for_status()
        except httpx.ConnectError as exc:
            # The usual cause on a fresh machine: the broker runs, its plugin does not.
            raise RuntimeError(
                f"RabbitMQ's management API at {api.base_url} does not answer ({exc}):"
                " enable it (rabbitmq-plugins enable rabbitmq_management) or point"
                " VIDEOQ_TEST_RABBITMQ_API at one"
            ) from exc
        api.put(
            f"/api/permissions/{quote(name, safe='')}/{user}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    parts = urlsplit(services.amqp_url)
    return name, urlunsplit((parts.scheme, parts.netloc, "/" + quote(name, safe=""), "", ""))


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl`` on the node of the broker under test (for a fault
    test's ``stop_app``/``start_app``): ``VIDEOQ_TEST_RABBITMQCTL``, else the
    machine's own. Returns what it printed."""
    command = shlex.split(os.environ.get("VIDEOQ_TEST_RABBITMQCTL", "rabbitmqctl"))
    if not shutil.which(command[0]):
        pytest.fail(
            f"this test restarts the broker under test with {command[0]!r}, which is not on PATH"
            " (VIDEOQ_TEST_RABBITMQCTL names the command)",
            pytrace=False,
        )
    done = subprocess.run([*command, "-q", *args], check=True, capture_output=True, timeout=120)
    return done.stdout.decode().strip()


@contextmanager
def broker_setting(name: str, value: int) -> Iterator[None]:
    """Set one of the ``rabbit`` application's settings on the node under test
    for the block, then put back what was there. A setting that a queue or a
    channel reads when it starts (``consumer_timeout``, the dead-letter worker's
    timeouts) holds for those started inside the block."""
    before = rabbitmqctl("eval", f"application:get_env(rabbit, {name}).")
    rabbitmqctl("eval", f"application:set_env(rabbit, {name}, {value}).")
    try:
        yield
    finally:
        if before == "undefined":
            rabbitmqctl("eval", f"application:unset_env(rabbit, {name}).")
        else:  # "{ok,1800000}"
            old = before.removeprefix("{ok,").removesuffix("}")
            rabbitmqctl("eval", f"application:set_env(rabbit, {name}, {old}).")


def drop_vhost(services: Services, name: str) -> None:
    with _api(services) as api:
        api.delete(f"/api/vhosts/{quote(name, safe='')}")


def rabbit_get(services: Services, path: str) -> object:
    with _api(services) as api:
        response = api.get(path)
        response.raise_for_status()
        return response.json()


def settings_env(**fields: object) -> dict[str, str]:
    """Settings fields as the ``VIDEOQ_*`` environment a service process reads."""
    env = {}
    for key, value in fields.items():
        if isinstance(value, tuple | list):
            value = ",".join(str(v) for v in value)
        env[f"VIDEOQ_{key.upper()}"] = str(value)
    return env


async def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages ready in ``queue``, from a passive declare (exact, no stats lag)."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


def multipart_uploads(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """The multipart uploads open in ``bucket`` (rclone's S3 server answers
    NoSuchUpload for a bucket that never had one, where AWS answers [])."""
    try:
        return list(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    except s3.exceptions.NoSuchUpload:
        return []
