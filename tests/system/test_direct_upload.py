"""Direct uploads end to end (docs/uploads.md): the CLI sends the video to
the store in parts, bypassing the api, and the job made from it completes.
On the real stack (rclone's S3, presigned part URLs) and in ``videoq dev``
(folder store, part URLs served by the api)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3
import httpx
import pytest

from services.cli.client import Client
from tests.system.test_embedded import VIDEOQ, _Dev

pytestmark = pytest.mark.system


def test_a_direct_upload_becomes_a_job_that_completes_on_the_real_stack(
    stack, settings, services_ready, sample_mp4: Path
) -> None:
    url = stack.start_all()
    with Client(url) as client:
        sent: list[int] = []
        job_id = client.submit(sample_mp4, max_frames=4, direct_above=1, on_upload=sent.append)
        status = client.wait(job_id, timeout=120)
        assert status["status"] == "completed", status
        assert len(client.results(job_id)["results"]) == 4
    assert sum(sent) == sample_mp4.stat().st_size  # the progress bar saw every byte
    # The api never streamed it: it logged the upload as created and completed.
    assert '"upload.completed"' in stack.log("api")
    s3 = boto3.client("s3", endpoint_url=services_ready.s3_endpoint)
    bucket = settings.storage_url.removeprefix("s3://")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert f"inputs/{job_id}.mp4" in keys


def test_videoq_submit_sends_a_large_file_as_a_direct_upload_in_videoq_dev(
    tmp_path: Path, sample_mp4: Path
) -> None:
    dev = _Dev(tmp_path / "dev", tmp_path / "dev.log")
    dev.start()
    try:
        done = subprocess.run(
            [
                *VIDEOQ,
                "--url",
                dev.url,
                "submit",
                str(sample_mp4),
                "--max-frames",
                "3",
                "--direct-upload-above",
                "1",
                "--wait",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(json.loads(done.stdout)["results"]) == 3
        assert "upload.completed upload_id=" in dev.logs.read_text()
        # Parts were files below the store and are gone; the input stays.
        store = tmp_path / "dev" / "store"
        assert [p.name for p in (store / ".multipart").iterdir() if p.name != ".key"] == []
        assert len(list((store / "inputs").iterdir())) == 1
    finally:
        if dev.proc is not None and dev.proc.poll() is None:
            dev.stop()


def test_the_cli_client_resumes_a_broken_upload_sending_only_the_missing_parts(
    stack, tmp_path: Path
) -> None:
    url = stack.start_api()
    video = tmp_path / "two-parts.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 12 + b"v" * (8 * 1024 * 1024))
    with Client(url) as client, httpx.Client() as plain:
        answer = plain.post(f"{url}/video/uploads", json={"size": video.stat().st_size})
        created = answer.json()
        first = created["parts"][0]
        plain.put(first["url"], content=video.read_bytes()[: created["part_size"]])
        # ... the connection broke here; a later run picks the upload up again.
        sent: list[int] = []
        client.resume(video, created["upload_id"], on_upload=sent.append)
        assert sent == [video.stat().st_size - created["part_size"]]  # part 2 only
        shown = plain.get(f"{url}/video/uploads/{created['upload_id']}").json()
        assert shown["state"] == "completed"
