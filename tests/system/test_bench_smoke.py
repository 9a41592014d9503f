"""Each benchmark runs with ``--quick`` and prints its figures (no timing is judged).

The benchmarks are commands (``python -m bench.<name>`` from the repository,
see docs/benchmarks.md); this keeps them from rotting. Each runs as a
subprocess against the test session's RabbitMQ, PostgreSQL and S3 endpoint,
on a fresh vhost, database and bucket of its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import Services

# Benchmarks, not the broker, are what these run: the machine's RabbitMQ only.
pytestmark = [pytest.mark.system, pytest.mark.single_broker]

REPO = Path(__file__).resolve().parents[2]

# (module, lines its output must contain, a key of its --json summary)
BENCHMARKS = [
    (
        "bench.queue_overhead",
        (
            "videoq throughput: submit->completed",
            "peer throughput: submit->completed",
            "videoq / peer: throughput",
            "celery quorum +confirms",
            "aio-pika quorum",
            "targets:",
        ),
        "videoq_jobs_per_s",
    ),
    ("bench.api_load", ("closed loop status", "fixed rate  status", "targets:"), "fixed"),
    ("bench.upload", ("raw multipart", "videoq submit", "targets:"), "videoq_mb_s"),
    ("bench.direct_upload", ("direct upload", "streamed submit", "targets:"), "ratio4"),
    ("bench.scaling", ("worker process(es):", "queue depth", "median of 1 round"), "throughput"),
    ("bench.pages", ("page via the index", "page via the whole document", "targets:"), "indexed"),
    ("bench.webhooks", ("direct", "through the retry queue", "deliveries/s"), "direct"),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("module", "expected", "key"), BENCHMARKS, ids=[b[0] for b in BENCHMARKS])
def test_benchmark_runs_quick_and_prints_its_figures(
    services_ready: Services, tmp_path: Path, module: str, expected: tuple[str, ...], key: str
) -> None:
    env = dict(os.environ)
    env.update(
        VIDEOQ_TEST_AMQP_URL=services_ready.amqp_url,
        VIDEOQ_TEST_RABBITMQ_API=services_ready.rabbitmq_api,
        VIDEOQ_TEST_DATABASE_URL=services_ready.database_url,
        VIDEOQ_TEST_S3_ENDPOINT=services_ready.s3_endpoint,
    )
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--json", str(figures)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    if importlib.util.find_spec("celery") is None:  # the bench extra is not installed
        expected = tuple(line for line in expected if not line.startswith(("celery", "peer")))
        expected = tuple(line for line in expected if "/ peer" not in line)
    for line in expected:
        assert line in done.stdout, f"{line!r} missing from:\n{done.stdout[-4000:]}"
    summary = json.loads(figures.read_text())["summary"]
    assert key in summary, summary


@pytest.mark.timeout(240)
def test_the_peer_fault_run_reports_what_each_fault_did(
    services_ready: Services, tmp_path: Path
) -> None:
    """Two of ``bench.peer_faults``' faults, quick ones: an undecodable upload
    fails its job and no other; a broker away at submit refuses every submit."""
    pytest.importorskip("celery")
    env = dict(os.environ)
    env.update(
        VIDEOQ_TEST_AMQP_URL=services_ready.amqp_url,
        VIDEOQ_TEST_RABBITMQ_API=services_ready.rabbitmq_api,
        VIDEOQ_TEST_DATABASE_URL=services_ready.database_url,
    )
    figures = tmp_path / "faults.json"
    only = "poison-undecodable,broker-away"
    done = subprocess.run(
        [sys.executable, "-m", "bench.peer_faults", "--only", only, "--json", str(figures)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    outcomes = {o["fault"]: o for o in json.loads(figures.read_text())["outcomes"]}
    undecodable = outcomes["poison: not a video"]
    assert (undecodable["completed"], undecodable["failed"], undecodable["stuck"]) == (1, 1, 0)
    away = outcomes["broker away at submit"]
    assert (away["accepted"], away["refused"]) == (0, 5), away


@pytest.mark.timeout(240)
def test_the_pipeline_benchmark_runs_quick_and_prints_its_figures() -> None:
    """``bench.pipeline`` needs no service; it exits 1 when a speed goal is
    missed, which this smoke run does not judge (the machine is shared)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.pipeline",
            "--quick",
            "--seconds",
            "2",
            "--repeat",
            "1",
            "--pipelines",
            "scene",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1), output[-4000:]
    for line in ("PyAV decode-only", "pipeline scene stride 1", "goals (median over rounds"):
        assert line in done.stdout, f"{line!r} missing from:\n{done.stdout[-4000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
