"""The RabbitMQ definitions file that compose and Kubernetes load.

It must declare exactly the topology the code declares (so what the broker
pre-declares cannot drift from ``shared.topology``), and its users must be able
to do what their service needs and no more.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared.settings import Settings
from shared.topology import Topology, build_topology

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ = ROOT / "deploy" / "rabbitmq"
DEFINITIONS = RABBITMQ / "definitions.json"
CONF = RABBITMQ / "rabbitmq.conf"
VHOST = "videoq"
REGENERATE = "run `python deploy/rabbitmq/render_definitions.py` and review the diff"


@pytest.fixture(autouse=True)
def _no_videoq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The file is checked against the *default* settings, whatever the shell has.
    for name in list(os.environ):
        if name.startswith("VIDEOQ_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return json.loads(DEFINITIONS.read_text(encoding="utf-8"))


@pytest.fixture()
def topology() -> Topology:
    return build_topology(Settings())


def _typed(value: Any) -> Any:
    """``value`` with its JSON types kept apart (10 != 10.0 != "10", True != 1)."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    return (type(value).__name__, value)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_deploy_{name}", RABBITMQ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the topology --------------------------------------------------------------


def test_definitions_declare_exactly_the_code_s_exchanges(definitions, topology):
    in_file = {(e["name"], e["type"]) for e in definitions["exchanges"]}
    in_code = {(e.name, e.type) for e in topology.exchanges}
    assert in_file == in_code, REGENERATE
    assert len(definitions["exchanges"]) == len(in_file), "an exchange is listed twice"


def test_definitions_declare_exactly_the_code_s_queues_with_their_arguments(definitions, topology):
    in_file = {q["name"]: _typed(q["arguments"]) for q in definitions["queues"]}
    in_code = {q.name: _typed(q.arguments) for q in topology.queues}
    assert set(in_file) == set(in_code), REGENERATE
    for name, arguments in in_code.items():
        assert in_file[name] == arguments, f"arguments of {name} differ: {REGENERATE}"
    assert len(definitions["queues"]) == len(in_file), "a queue is listed twice"


def test_definitions_declare_exactly_the_code_s_bindings(definitions, topology):
    in_file = [
        (b["source"], b["destination"], b["destination_type"], b["routing_key"], b["arguments"])
        for b in definitions["bindings"]
    ]
    in_code = [(b.exchange, b.queue, "queue", b.routing_key, {}) for b in topology.bindings]
    assert sorted(in_file, key=repr) == sorted(in_code, key=repr), REGENERATE


def test_everything_in_the_definitions_is_durable_and_in_videoq_s_vhost(definitions):
    assert [v["name"] for v in definitions["vhosts"]] == [VHOST]
    for exchange in definitions["exchanges"]:
        assert exchange["vhost"] == VHOST
        assert exchange["durable"] is True
        assert exchange["auto_delete"] is False
        assert exchange["internal"] is False
        assert exchange["arguments"] == {}
    for queue in definitions["queues"]:
        assert queue["vhost"] == VHOST
        assert queue["durable"] is True
        assert queue["auto_delete"] is False
    for binding in definitions["bindings"]:
        assert binding["vhost"] == VHOST


def test_the_render_script_reproduces_the_checked_in_topology(definitions):
    rendered = _load("render_definitions").topology_definitions()
    for section in ("exchanges", "queues", "bindings"):
        assert rendered[section] == definitions[section], REGENERATE


# ---- rabbitmq.conf ---------------------------------------------------------------


def _conf() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in CONF.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not a key = value line in rabbitmq.conf: {line!r}"
            assert key.strip() not in entries, f"{key.strip()} is set twice"
            entries[key.strip()] = value.strip()
    return entries


def test_consumer_timeout_is_set_explicitly_above_the_job_time_limit():
    conf = _conf()
    # "false" disables it on 3.12+, and stops a 3.10 node from booting.
    assert conf["consumer_timeout"].isdigit()
    assert int(conf["consumer_timeout"]) > Settings().job_timeout_seconds * 1000


def test_rabbitmq_loads_the_definitions_where_compose_mounts_them():
    compose = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    path = _conf()["load_definitions"]
    directory = str(Path(path).parent)
    assert f"rabbitmq-definitions:{directory}:ro" in compose
    assert Path(path).name == "definitions.json"
    assert "./deploy/rabbitmq/rabbitmq.conf:/etc/rabbitmq/conf.d/" in compose


# ---- users and permissions ---------------------------------------------------------

#: Users the definitions must hold, and nothing else.
USERS = {"videoq-api", "videoq-worker", "videoq-janitor", "videoq-notifier", "videoq-keda"}


def _permissions(definitions: dict[str, Any]) -> dict[str, dict[str, str]]:
    perms: dict[str, dict[str, str]] = {}
    for entry in definitions["permissions"]:
        assert entry["vhost"] == VHOST
        assert entry["user"] not in perms, f"{entry['user']} has two permission entries"
        perms[entry["user"]] = {k: entry[k] for k in ("configure", "write", "read")}
    return perms


def _allows(regex: str, name: str) -> bool:
    # RabbitMQ matches permission regexes unanchored (Erlang re:run); an empty
    # regex matches nothing.
    return bool(regex) and re.search(regex, name) is not None


def _declare_needs(topology: Topology) -> set[tuple[str, str]]:
    """(permission, resource) pairs that declaring ``topology`` checks.

    From RabbitMQ's access-control table: exchange.declare and queue.declare
    need configure; a queue declared with a dead-letter exchange also needs
    write on that exchange and read on the queue; queue.bind needs write on
    the queue and read on the exchange.
    """
    needs = {("configure", e.name) for e in topology.exchanges}
    for queue in topology.queues:
        needs.add(("configure", queue.name))
        dlx = queue.arguments.get("x-dead-letter-exchange")
        if dlx:
            needs |= {("write", dlx), ("read", queue.name)}
    for binding in topology.bindings:
        needs |= {("write", binding.queue), ("read", binding.exchange)}
    return needs


#: What each service does beyond declaring the topology.
ROLE_NEEDS = {
    "videoq-api": {("write", "videoq.jobs")},
    "videoq-worker": {
        ("read", "videoq.jobs.process"),
        ("write", "videoq.retry"),
        ("write", "videoq.dead"),
    },
    # The janitor also publishes the job events (its outbox sweep).
    "videoq-janitor": {
        ("write", "videoq.jobs"),
        ("write", "videoq.dead"),
        ("read", "videoq.dead.jobs"),
        ("write", "videoq.events"),
        ("write", "videoq.webhooks"),  # the webhooks owed by terminal events
    },
    # The notifier consumes the deliveries, retries them and parks them.
    "videoq-notifier": {
        ("read", "videoq.webhooks.deliver"),
        ("write", "videoq.webhooks.retry"),
        ("write", "videoq.webhooks.dead"),
    },
    "videoq-keda": set(),
}

#: What each must not be able to do.
ROLE_DENIED = {
    "videoq-api": {
        ("read", "videoq.dead.jobs"),
        ("write", "videoq.retry"),
        ("write", "videoq.events"),
        ("write", "videoq.webhooks.retry"),
        ("read", "videoq.dead.webhooks"),
    },
    "videoq-worker": {
        ("read", "videoq.dead.jobs"),
        ("write", "videoq.events"),
        ("write", "videoq.webhooks.retry"),
        ("read", "videoq.dead.webhooks"),
    },
    "videoq-janitor": {("write", "videoq.retry"), ("write", "videoq.webhooks.retry")},
    "videoq-notifier": {
        ("write", "videoq.retry"),
        ("write", "videoq.events"),
        ("read", "videoq.dead.jobs"),
        ("read", "videoq.dead.webhooks"),
    },
    "videoq-keda": {
        ("configure", "videoq.jobs.process"),
        ("write", "videoq.jobs"),
        ("read", "videoq.dead.jobs"),
    },
}

#: Nobody may touch what is not videoq's.
FOREIGN = ["amq.default", "amq.direct", "amq.gen-Xa2", "other.jobs", "videoq.jobs.process2"]


def test_the_definitions_hold_one_user_per_service_and_no_password(definitions):
    users = {u["name"]: u for u in definitions["users"]}
    assert set(users) == USERS
    assert set(_permissions(definitions)) == USERS
    for name, user in users.items():
        # An empty hash means "no password login": compose and the docs set
        # real ones from secrets; the repository holds none.
        assert user["password_hash"] == "", f"{name} has a password hash in the repository"
        assert user["tags"] == [], f"{name} needs no management tag"


@pytest.mark.parametrize("user", sorted(USERS - {"videoq-keda"}))
def test_each_service_user_may_declare_the_topology(definitions, user):
    perms = _permissions(definitions)[user]
    delays = [Settings().retry_delays, (0.5, 30.0, 7200.0)]  # other tiers match too
    for retry_delays in delays:
        topology = build_topology(
            Settings(retry_delays=retry_delays, webhook_retry_delays=retry_delays)
        )
        missing = {(p, r) for p, r in _declare_needs(topology) if not _allows(perms[p], r)}
        assert not missing, f"{user} cannot declare the topology: {sorted(missing)}"


@pytest.mark.parametrize("user", sorted(USERS))
def test_each_user_may_do_its_service_s_work(definitions, user):
    perms = _permissions(definitions)[user]
    missing = {(p, r) for p, r in ROLE_NEEDS[user] if not _allows(perms[p], r)}
    assert not missing, f"{user} lacks {sorted(missing)}"


@pytest.mark.parametrize("user", sorted(USERS))
def test_each_user_may_do_nothing_beyond_its_work(definitions, user):
    perms = _permissions(definitions)[user]
    granted = {(p, r) for p, r in ROLE_DENIED[user] if _allows(perms[p], r)}
    granted |= {(p, r) for p in perms for r in FOREIGN if _allows(perms[p], r)}
    assert not granted, f"{user} may also {sorted(granted)}"


def test_keda_may_only_read_the_work_queue(definitions, topology):
    perms = _permissions(definitions)["videoq-keda"]
    names = {e.name for e in topology.exchanges} | {q.name for q in topology.queues}
    assert {n for n in names if _allows(perms["read"], n)} == {"videoq.jobs.process"}
    assert not any(_allows(perms[p], n) for p in ("configure", "write") for n in names)


# ---- seeding passwords (compose) ---------------------------------------------------


def _verifies(stored: str, password: str) -> bool:
    raw = base64.b64decode(stored)
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


def test_password_hashes_are_rabbitmq_s_salted_sha256():
    seed = _load("seed_definitions")
    stored = seed.password_hash("s3cret-ü")
    assert len(base64.b64decode(stored)) == 4 + 32
    assert _verifies(stored, "s3cret-ü")
    assert not _verifies(stored, "s3cret-u")
    assert seed.password_hash("x") != seed.password_hash("x"), "the salt must be random"
    expected = base64.b64encode(b"salt" + hashlib.sha256(b"saltx").digest()).decode()
    assert seed.password_hash("x", salt=b"salt") == expected


def test_seeding_sets_passwords_from_the_environment_and_adds_the_admin(tmp_path, definitions):
    seed = _load("seed_definitions")
    environ = {
        "RABBITMQ_PASSWORD_VIDEOQ_API": "api-pw",
        "RABBITMQ_PASSWORD_VIDEOQ_WORKER": "worker-pw",
        "RABBITMQ_ADMIN_USER": "admin",
        "RABBITMQ_ADMIN_PASSWORD": "admin-pw",
    }
    seeded = seed.seed(definitions, environ)
    users = {u["name"]: u for u in seeded["users"]}
    assert _verifies(users["videoq-api"]["password_hash"], "api-pw")
    assert _verifies(users["videoq-worker"]["password_hash"], "worker-pw")
    assert users["videoq-janitor"]["password_hash"] == "", "no variable: stays locked"
    assert users["admin"]["tags"] == ["administrator"]
    assert _verifies(users["admin"]["password_hash"], "admin-pw")
    assert {"user": "admin", "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"} in (
        seeded["permissions"]
    )
    assert seeded["queues"] == definitions["queues"]
    assert all(u["password_hash"] == "" for u in definitions["users"]), "source untouched"

    dropped = seed.seed(definitions, environ, drop_locked=True)
    assert {u["name"] for u in dropped["users"]} == {"videoq-api", "videoq-worker", "admin"}
    assert {p["user"] for p in dropped["permissions"]} == {"videoq-api", "videoq-worker", "admin"}


def test_the_seed_script_writes_a_copy_rabbitmq_can_read(tmp_path, monkeypatch):
    seed = _load("seed_definitions")
    monkeypatch.setenv("RABBITMQ_PASSWORD_VIDEOQ_JANITOR", "janitor-pw")
    dest = tmp_path / "definitions.json"
    assert seed.main(["seed", str(DEFINITIONS), str(dest)]) == 0
    users = {u["name"]: u for u in json.loads(dest.read_text())["users"]}
    assert _verifies(users["videoq-janitor"]["password_hash"], "janitor-pw")
    assert dest.stat().st_mode & 0o777 == 0o644
    assert seed.main(["seed", str(DEFINITIONS)]) == 2
