"""A compose project driven from the tests (tests/compose): the command, the
env file scripts/compose_check.sh wrote, and what the stack publishes.

Every wait is bounded; every Docker command has a timeout.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.cli.client import Client

ROOT = Path(__file__).resolve().parents[2]
FILES = (
    ROOT / "compose.yaml",
    ROOT / "tests" / "compose" / "compose.standins.yaml",
    ROOT / "tests" / "compose" / "compose.test.yaml",
)
#: The longest bring-up seen here was about a minute (RabbitMQ's boot with
#: its definitions, then migrate, then the services' start-up checks).
UP_TIMEOUT = 420


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


@dataclass
class ComposeStack:
    """One compose project: the command that drives it and what it publishes."""

    compose: list[str]
    project: str
    env_file: Path
    env: dict[str, str] = field(default_factory=dict)

    def compose_argv(self) -> list[str]:
        """The compose command for this project, files and env file included."""
        argv = [*self.compose, "--project-name", self.project, "--env-file", str(self.env_file)]
        for file in FILES:
            argv += ["-f", str(file)]
        return argv

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        done = subprocess.run(
            [*self.compose_argv(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['API_HOST_PORT']}"

    @property
    def api_key(self) -> str:
        return self.env["VIDEOQ_TEST_COMPOSE_API_KEY"]

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.env['RABBITMQ_MANAGEMENT_HOST_PORT']}"

    def amqp_url(self, user: str, password: str) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.env['RABBITMQ_AMQP_HOST_PORT']}/videoq"

    def client(self) -> Client:
        return Client(self.api_url, api_key=self.api_key, timeout=30)

    def containers(self, service: str, *, all_states: bool = False) -> list[str]:
        """The ids of ``service``'s containers (running ones unless ``all_states``)."""
        args = ["ps", "--quiet", *(["--all"] if all_states else []), service]
        return self.run(*args).split()

    def inspect(self, container: str) -> dict[str, object]:
        done = subprocess.run(
            ["docker", "inspect", container],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout)[0]  # type: ignore[no-any-return]

    def logs(self, container: str) -> str:
        done = subprocess.run(
            ["docker", "logs", container], capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout + done.stderr

    def service_logs(self, service: str) -> str:
        return self.run("logs", "--no-color", "--no-log-prefix", service, timeout=60)

    def diagnostics(self) -> str:
        """What to read when the bring-up or a test failed."""
        return self.run("ps", "--all", check=False) + self.run(
            "logs", "--no-color", "--tail", "40", check=False, timeout=60
        )


def wait_ready(stack: ComposeStack) -> None:
    deadline = time.monotonic() + UP_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{stack.api_url}/readyz", timeout=5)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        time.sleep(2)
    raise AssertionError(f"the compose api was not ready within {UP_TIMEOUT} s: {last}")
