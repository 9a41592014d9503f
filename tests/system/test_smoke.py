"""The smoke test command (services/cli/smoke.py) against the real stack, and
failing, with its reason, where it should."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.cli.smoke import EXIT_FAILED, EXIT_UNREACHABLE, SmokeFailure, run_smoke
from shared.settings import Settings
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "smoke-test-key-0123456789"


def _smoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture
def authed_url(settings, tmp_path, monkeypatch, request) -> Iterator[str]:
    """The three services as processes, with API keys enforced (one key: API_KEY)."""
    update = {}
    if "auth_disabled" in Settings.model_fields:
        update["auth_disabled"] = False
        digest = hashlib.sha256(API_KEY.encode()).hexdigest()
        monkeypatch.setenv("VIDEOQ_API_KEYS", f"smoke-test:{digest}")
    stack = Stack(settings.model_copy(update=update), tmp_path / "logs")
    try:
        yield stack.start_all()
    finally:
        stack.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for name in stack.procs:
                print(f"--- {name} log ---\n{stack.log(name)[-4000:]}")


@pytest.mark.system
def test_the_smoke_test_passes_against_the_real_stack(authed_url):
    result = _smoke(authed_url, "--api-key", API_KEY, "--timeout", "120")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[2].rstrip(":") for line in lines[:-1]] == [
        "ready",
        "sample",
        "submitted",
        "status",
        "results",
    ], lines
    assert "database ok" in lines[0] and "broker ok" in lines[0]
    assert lines[3].endswith("completed, progress 1.0")
    assert "4 entries {frame_index, timestamp_s, result}" in lines[4]
    assert "one per sampled frame (0, 5, 10, 15)" in lines[4]
    assert lines[-1].startswith(f"smoke: passed against {authed_url} in ")
    assert result.stderr == ""


@pytest.mark.system
def test_the_smoke_test_reads_its_key_from_the_environment_and_says_when_it_is_wrong(
    authed_url,
):
    if "api_keys" not in Settings.model_fields:
        pytest.fail("the service has no API keys to check")
    env = {**os.environ, "VIDEOQ_API_KEY": "not-the-key"}
    result = _smoke(authed_url, "--timeout", "60", env=env)
    assert result.returncode == EXIT_FAILED, result.stdout + result.stderr
    assert "smoke: ok  ready:" in result.stdout
    assert result.stderr.startswith("smoke: FAILED: submit refused: HTTP 401")
    assert "--api-key or VIDEOQ_API_KEY" in result.stderr


@pytest.mark.system
def test_the_smoke_test_fails_with_the_reason_where_nothing_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}"
    result = _smoke(url, "--timeout", "2")
    assert result.returncode == EXIT_UNREACHABLE, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"smoke: FAILED: not ready after 2 s: cannot reach {url}/readyz"
    )
    assert "ConnectError" in result.stderr


# ---- the checks themselves, against a fake API ------------------------------------------

JOB_ID = "0b5cd2a4-8f4e-4f4a-9a8e-0d2f3c4b5a69"
GOOD_RESULTS = [
    {"frame_index": i, "timestamp_s": i / 10, "result": {"brightness": 0.5}} for i in (0, 5, 10, 15)
]


def _fake_api(*, status: dict[str, object], results: object) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/readyz":
            return httpx.Response(200, json={"status": "ok", "checks": {"database": "ok"}})
        if path == "/video/submit":
            return httpx.Response(
                202, json={"job_id": JOB_ID}, headers={"Location": f"/video/status/{JOB_ID}"}
            )
        if path == f"/video/status/{JOB_ID}":
            return httpx.Response(200, json={"job_id": JOB_ID, **status})
        if path == f"/video/results/{JOB_ID}":
            return httpx.Response(200, content=json.dumps(results).encode())
        return httpx.Response(404, json={"detail": "Not found"})

    return httpx.MockTransport(handle)


def _run(transport: httpx.MockTransport) -> list[str]:
    said: list[str] = []
    run_smoke("http://videoq.test", timeout=10, say=said.append, transport=transport)
    return said


COMPLETED = {"status": "completed", "progress": 1.0}


@pytest.mark.unit
def test_the_checks_pass_on_a_well_formed_job():
    said = _run(_fake_api(status=COMPLETED, results={"job_id": JOB_ID, "results": GOOD_RESULTS}))
    assert [line.split(":")[0] for line in said] == [
        "ready",
        "sample",
        "submitted",
        "status",
        "results",
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("results", "reason"),
    [
        ({"job_id": JOB_ID, "results": GOOD_RESULTS[:3]}, "3 results, expected 4"),
        ({"job_id": JOB_ID, "results": {}}, "`results` is dict, not a list"),
        ({"job_id": "other", "results": GOOD_RESULTS}, "results name job 'other'"),
        (
            {
                "job_id": JOB_ID,
                "results": [
                    *GOOD_RESULTS[:1],
                    {**GOOD_RESULTS[1], "frame_index": 4},
                    *GOOD_RESULTS[2:],
                ],
            },
            "results[1].frame_index is 4, expected 5",
        ),
        (
            {"job_id": JOB_ID, "results": [*GOOD_RESULTS[:3], {"frame_index": 15, "result": {}}]},
            "results[3] lacks ['timestamp_s']",
        ),
        (
            {
                "job_id": JOB_ID,
                "results": [
                    *GOOD_RESULTS[:2],
                    {**GOOD_RESULTS[2], "timestamp_s": 2.0},
                    GOOD_RESULTS[3],
                ],
            },
            "results[2].timestamp_s is 2.0, expected 1",
        ),
    ],
)
def test_a_wrong_results_shape_fails_with_what_is_wrong(results, reason):
    with pytest.raises(SmokeFailure) as failure:
        _run(_fake_api(status=COMPLETED, results=results))
    assert failure.value.code == EXIT_FAILED
    assert reason in failure.value.reason


@pytest.mark.unit
def test_a_failed_job_fails_the_smoke_test_with_its_message():
    status = {"status": "failed", "progress": 0.0, "error_message": "Unable to read video file"}
    with pytest.raises(SmokeFailure) as failure:
        _run(_fake_api(status=status, results={}))
    assert failure.value.reason == "the job failed: 'Unable to read video file'"
