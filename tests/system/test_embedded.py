"""The embedded default (``videoq demo``, ``videoq dev``): the README's first
command, and a dev stack that stops and starts again without losing jobs.
Embedded PostgreSQL, the folder store and the in-process broker, as
processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.cli.client import Client
from tests.support.stack import free_port
from tests.support.waiting import wait_until

# `videoq dev` runs its broker in-process: no RabbitMQ to vary.
pytestmark = [pytest.mark.system, pytest.mark.single_broker]

VIDEOQ = [sys.executable, "-m", "services.cli.main"]


def test_videoq_demo_prints_the_results_of_a_generated_clip(tmp_path: Path) -> None:
    done = subprocess.run(
        [*VIDEOQ, "demo", "--data", str(tmp_path / "dev")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pipeline: basic, 10 frames analysed" in done.stdout, done.stdout
    assert '"mean_brightness"' in done.stdout


class _Dev:
    """``videoq dev`` as a process, on a data folder that outlives it."""

    def __init__(self, data: Path, logs: Path, env: dict[str, str] | None = None) -> None:
        self.data, self.logs, self.env = data, logs, env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "VIDEOQ_PLUGINS": "tests.support.plugins:register",
            "VIDEOQ_TEST_SLOW_SECONDS": "0.2",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with self.logs.open("ab") as out:
            self.proc = subprocess.Popen(
                [*VIDEOQ, "dev", "--port", str(self.port), "--data", str(self.data)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.logs.read_text()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=90, what="videoq dev to serve")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def test_a_stopped_dev_stack_finishes_the_job_in_hand_and_runs_the_queued_one_when_back(
    tmp_path: Path, sample_mp4: Path
) -> None:
    dev = _Dev(tmp_path / "dev", tmp_path / "dev.log")
    dev.start()
    try:
        with Client(dev.url) as client:
            # 10 frames x 0.2 s each: long enough to stop the stack mid-job.
            running = client.submit(sample_mp4, pipeline="slow", max_frames=10)
            queued = client.submit(sample_mp4, pipeline="slow", max_frames=2)
            wait_until(
                lambda: client.status(running)["status"] == "running",
                timeout=30,
                what="the first job running",
            )
        started = time.monotonic()
        assert dev.stop() == 0, dev.logs.read_text()[-3000:]
        # The worker drained the job in hand (it was not cancelled half-way).
        assert time.monotonic() - started < 20
        dev.start()
        with Client(dev.url) as client:
            assert client.status(running)["status"] == "completed"
            assert client.status(running)["attempts"] == 1
            # The queued job's message died with the old process; the new one
            # publishes it at start instead of after republish_after_seconds.
            wait_until(
                lambda: client.status(queued)["status"] == "completed",
                timeout=30,
                what="the queued job done after the restart",
            )
    finally:
        if dev.proc is not None and dev.proc.poll() is None:
            dev.stop()


def test_dev_reads_a_granted_file_source_in_place_expires_its_results_and_erases_the_job(
    tmp_path: Path, sample_mp4: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = videos / "clip.mp4"
    clip.write_bytes(sample_mp4.read_bytes())
    dev = _Dev(
        tmp_path / "dev",
        tmp_path / "dev.log",
        env={
            "VIDEOQ_SOURCE_PREFIXES": f"anonymous:file://{videos}/",
            "VIDEOQ_RESULTS_RETENTION_SECONDS": "1",
            "VIDEOQ_INPUT_RETENTION_SECONDS": "1",
        },
    )
    dev.start()
    try:
        with httpx.Client(base_url=dev.url, timeout=10) as http:
            form = {"source": (None, f"file://{clip}"), "pipeline": (None, "basic")}
            submitted = http.post("/video/submit", files=form)
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["job_id"]
            outside = http.post("/video/submit", files={"source": (None, f"file://{tmp_path}/x")})
            assert outside.status_code == 403
            wait_until(
                lambda: http.get(f"/video/results/{job_id}").status_code == 410,
                timeout=60,
                what="the results expired by the dev janitor",
            )
            status = http.get(f"/video/status/{job_id}").json()
            assert (status["status"], status["results_expired_at"] is not None) == (
                "completed",
                True,
            )
        with Client(dev.url) as client:  # what `videoq cancel --erase` calls
            assert client.cancel(job_id, erase=True) == {"job_id": job_id, "erased": True}
        with httpx.Client(base_url=dev.url, timeout=10) as http:
            assert http.get(f"/video/status/{job_id}").status_code == 404
        # The client's own file stays; the store keeps nothing of the job.
        assert clip.read_bytes() == sample_mp4.read_bytes()
        store = tmp_path / "dev" / "store"
        assert [p for p in store.rglob("*") if job_id in p.name] == []
    finally:
        if dev.proc is not None and dev.proc.poll() is None:
            dev.stop()


def test_videoq_dev_delivers_signed_webhooks_with_retries(tmp_path: Path, sample_mp4: Path) -> None:
    import standardwebhooks

    from tests.support.receiver import receiver

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    dev = _Dev(
        tmp_path / "dev",
        tmp_path / "dev.log",
        env={
            # dev has no API keys: every job is the client "anonymous"'s.
            "VIDEOQ_WEBHOOK_SECRETS": f"anonymous:{secret}",
            "VIDEOQ_WEBHOOK_RETRY_DELAYS": "0.5,1",
            "VIDEOQ_WEBHOOK_ALLOW_HTTP": "true",
            "VIDEOQ_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
        },
    )
    dev.start()
    try:
        with receiver([503, 200]) as hook:
            submitted = httpx.post(
                f"{dev.url}/video/submit",
                files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")},
                data={"callback_url": hook.url},
                timeout=30,
            )
            job_id = submitted.json()["job_id"]

            def delivered() -> list[dict[str, object]] | None:
                answer = httpx.get(f"{dev.url}/video/jobs/{job_id}/deliveries", timeout=5)
                log: list[dict[str, object]] = answer.json()["deliveries"]
                return log if len(log) == 2 else None

            log = wait_until(delivered, timeout=60, what="two attempts in videoq dev")
        assert [(a["attempt"], a["status_code"]) for a in log] == [(1, 503), (2, 200)]
        body = standardwebhooks.Webhook(secret).verify(
            hook.received[-1].body, hook.received[-1].headers
        )
        assert (body["type"], body["data"]["job_id"]) == ("job.completed", job_id)
    finally:
        dev.stop()
