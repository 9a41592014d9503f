"""The whole stack as processes: api, worker and janitor on RabbitMQ, PostgreSQL and S3."""

import uuid

import pytest

from services.cli.client import ApiError
from tests.support.videos import make_mp4, truncate

pytestmark = pytest.mark.system


def test_a_job_goes_pending_running_completed_and_has_one_result_per_sampled_frame(
    client, sample_mp4
):
    job_id = client.submit(sample_mp4, frame_stride=3)
    seen = []
    final = client.wait(
        job_id, timeout=60, on_status=lambda s: seen.append(s["status"]), interval=0.02
    )
    assert final["status"] == "completed", final
    assert final["progress"] == 1.0 and final["attempts"] == 1
    assert seen[0] in ("pending", "running")
    assert [s for s in dict.fromkeys(seen)] == [
        s for s in ("pending", "running", "completed") if s in seen
    ]
    results = client.results(job_id)
    assert results["job_id"] == job_id
    assert [r["frame_index"] for r in results["results"]] == list(range(0, 20, 3))
    assert [r["timestamp_s"] for r in results["results"]] == [i / 10 for i in range(0, 20, 3)]
    assert all(r["result"]["width"] == 64 for r in results["results"])
    page = client._check(
        client._http.get(f"/video/results/{job_id}", params={"offset": 2, "limit": 3})
    )
    assert [r["frame_index"] for r in page["results"]] == [6, 9, 12]
    assert page["page"] == {"offset": 2, "limit": 3, "total": 7}


def test_a_corrupt_mp4_fails_with_its_message_and_is_not_retried(client, sample_mp4, tmp_path):
    broken = truncate(sample_mp4, keep=0.4, out=tmp_path / "broken.mp4")
    job_id = client.submit(broken)
    final = client.wait(job_id, timeout=60)
    assert final["status"] == "failed"
    assert final["error_message"] == "Unable to read video file"
    assert final["attempts"] == 1
    with pytest.raises(ApiError) as err:
        client.results(job_id)
    assert err.value.status == 404


def test_status_of_an_unknown_job_is_404(client):
    with pytest.raises(ApiError) as err:
        client.status(str(uuid.uuid4()))
    assert (err.value.status, err.value.detail) == (404, "Job not found")


@pytest.mark.single_broker  # the decoder's work
def test_a_60_second_720p_video_completes_with_every_sampled_frame(client, tmp_path):
    clip = make_mp4(tmp_path / "long.mp4", seconds=60, fps=30, width=1280, height=720, segments=3)
    job_id = client.submit(clip, frame_stride=10)
    final = client.wait(job_id, timeout=240)
    assert final["status"] == "completed", final
    results = client.results(job_id)
    assert len(results["results"]) == 180
    assert results["video"]["width"] == 1280 and results["video"]["frame_count"] == 1800
