"""Hostile uploads: each refused at the door or failed with a clear message,
and a refused one leaves nothing behind."""

import pytest

from services.cli.client import ApiError, Client
from tests.support.videos import make_audio_only_mp4, make_mp4, remove_box, truncate

pytestmark = pytest.mark.system


@pytest.fixture
def limited(settings):
    return settings.model_copy(
        update={
            "max_upload_bytes": 200_000,
            "max_video_width": 320,
            "max_video_height": 240,
            "max_video_duration_seconds": 30,
        }
    )


@pytest.mark.single_broker  # the decoder's answer
def test_hostile_files_are_refused_or_failed_with_their_reason(limited, tmp_path, sample_mp4):
    from tests.support.stack import Stack

    stack = Stack(limited, tmp_path / "logs")
    files = tmp_path / "files"
    files.mkdir()
    header_then_garbage = files / "garbage.mp4"
    header_then_garbage.write_bytes(sample_mp4.read_bytes()[:32] + bytes(range(256)) * 100)
    cases_failed = {
        "header followed by garbage": header_then_garbage,
        "truncated": truncate(sample_mp4, keep=0.5, out=files / "truncated.mp4"),
        "moov missing": remove_box(sample_mp4, "moov", out=files / "nomoov.mp4"),
        "no video stream": make_audio_only_mp4(files / "audio.mp4"),
    }
    too_big = make_mp4(files / "big.mp4", seconds=0.5, fps=10, width=640, height=480)
    too_long = make_mp4(files / "long.mp4", seconds=40, fps=1, width=32, height=32)
    not_mp4 = files / "clip.mp4"
    not_mp4.write_bytes(b"\x1aE\xdf\xa3" + b"\x00" * 1000)  # Matroska, renamed
    over_limit = files / "over.mp4"
    over_limit.write_bytes(sample_mp4.read_bytes()[:32] + b"\x00" * (200_000 - 32 + 1))
    at_limit = files / "at.mp4"
    at_limit.write_bytes(sample_mp4.read_bytes()[:32] + b"\x00" * (200_000 - 32))
    empty = files / "empty.mp4"
    empty.write_bytes(b"")
    try:
        with Client(stack.start_all()) as client:
            for name, path, status in [
                ("not an MP4", not_mp4, 415),
                ("zero bytes", empty, 400),
                ("one byte over the limit", over_limit, 413),
            ]:
                with pytest.raises(ApiError) as refused:
                    client.submit(path)
                assert refused.value.status == status, name
            assert client._http.get("/video/jobs").json()["jobs"] == []  # nothing left behind

            ids = {name: client.submit(path) for name, path in cases_failed.items()}
            ids["exactly at the limit"] = client.submit(at_limit)  # accepted, then unreadable
            big = client.submit(too_big)
            long = client.submit(too_long)
            for name, job_id in ids.items():
                final = client.wait(job_id, timeout=60)
                assert (final["status"], final["error_message"], final["attempts"]) == (
                    "failed",
                    "Unable to read video file",
                    1,
                ), name
            final = client.wait(big, timeout=60)
            assert final["status"] == "failed" and "640x480" in final["error_message"], final
            final = client.wait(long, timeout=60)
            assert final["status"] == "failed" and "30" in final["error_message"], final
    finally:
        stack.stop()
