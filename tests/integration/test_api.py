"""The HTTP API in-process, on real PostgreSQL, RabbitMQ and S3."""

import uuid

import asyncpg
import boto3
import httpx
import pytest

from services.api.app import create_app
from shared.backends import Backends, open_backends
from shared.errors import DependencyUnavailable
from tests.support.services import multipart_uploads, queue_depth

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024


@pytest.fixture
async def api(settings):
    settings = settings.model_copy(update={"max_upload_bytes": LIMIT})
    app = create_app(settings)
    app.state.backends = await open_backends(settings, app_id="videoq-api")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://videoq") as client:
        yield client
    await app.state.backends.close()


async def leftovers(settings, services) -> tuple[int, list[str]]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    rows = await conn.fetchval("SELECT count(*) FROM jobs")
    await conn.close()
    s3 = boto3.client("s3", endpoint_url=services.s3_endpoint)
    bucket = settings.storage_url.removeprefix("s3://")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = multipart_uploads(s3, bucket)
    return rows, keys + [u["Key"] for u in uploads]


async def test_submit_stores_the_file_creates_the_row_and_publishes(
    api, settings, services_ready, sample_mp4
):
    response = await api.post(
        "/video/submit",
        files={"file": ("clip.mp4", sample_mp4.read_bytes(), "video/mp4")},
        data={"frame_stride": "2", "max_frames": "5"},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert response.headers["location"].endswith(f"/video/status/{job_id}")
    status = (await api.get(f"/video/status/{job_id}")).json()
    assert status["status"] == "pending" and status["progress"] == 0
    rows, keys = await leftovers(settings, services_ready)
    assert (rows, keys) == (1, [f"inputs/{job_id}.mp4"])
    assert await queue_depth(settings.amqp_url.get_secret_value(), "videoq.jobs.process") == 1
    # The outbox knows it went out (marked after the 202): no janitor republish.
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    published_at = await conn.fetchval("SELECT published_at FROM jobs")
    await conn.close()
    assert published_at is not None


@pytest.mark.parametrize(
    "content,status,detail",
    [
        (b"GIF89a" + b"\x00" * 100, 415, "Unsupported file type"),
        (b"", 400, "Uploaded file is empty"),
        (b"\x00\x00\x00\x20ftyp", 415, "Unsupported file type"),  # too short to be a video
    ],
)
async def test_bad_uploads_are_refused_and_leave_nothing(
    api, settings, services_ready, content, status, detail
):
    response = await api.post("/video/submit", files={"file": ("x.mp4", content, "video/mp4")})
    assert (response.status_code, response.json()["detail"]) == (status, detail)
    assert await leftovers(settings, services_ready) == (0, [])


async def test_an_upload_over_the_limit_is_413_and_one_at_the_limit_is_accepted(
    api, settings, services_ready
):
    head = b"\x00\x00\x00\x20ftypisom" + b"\x00" * 20
    at_limit = head + b"\x00" * (LIMIT - len(head))
    over = at_limit + b"\x00"
    response = await api.post("/video/submit", files={"file": ("big.mp4", over, "video/mp4")})
    assert response.status_code == 413
    assert await leftovers(settings, services_ready) == (0, [])
    response = await api.post("/video/submit", files={"file": ("ok.mp4", at_limit, "video/mp4")})
    assert response.status_code == 202


@pytest.mark.parametrize(
    "fields,detail",
    [
        ({"pipeline": "no-such-pipeline"}, "Pipeline not found"),
        ({"frame_stride": "0"}, "frame_stride must be between 1 and 1000000"),
        ({"frame_stride": "two"}, "frame_stride must be an integer"),
        ({"max_frames": "-3"}, "max_frames must be between 1 and 100000"),
        ({"sampling": "sparse"}, "sampling must be one of 'exact', 'fast' or 'keyframes'"),
    ],
)
async def test_bad_parameters_are_422_and_leave_nothing(
    api, settings, services_ready, sample_mp4, fields, detail
):
    response = await api.post(
        "/video/submit",
        files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")},
        data=fields,
    )
    assert (response.status_code, response.json()["detail"]) == (422, detail)
    assert await leftovers(settings, services_ready) == (0, [])


async def test_a_request_without_a_file_is_422(api):
    response = await api.post("/video/submit", data={"pipeline": "basic"})
    assert response.status_code == 422


async def test_unknown_jobs_are_404(api):
    missing = uuid.uuid4()
    assert (await api.get(f"/video/status/{missing}")).status_code == 404
    response = await api.get(f"/video/results/{missing}")
    assert (response.status_code, response.json()["detail"]) == (404, "Job not found")
    # A malformed id is a bad parameter, in the same {"detail": str} shape as every error.
    for path in ("/video/status/not-a-uuid", "/video/results/not-a-uuid"):
        response = await api.get(path)
        assert response.status_code == 422
        assert response.json()["detail"].startswith("job_id: Input should be a valid UUID")


async def test_results_are_404_until_completed(api, sample_mp4):
    response = await api.post(
        "/video/submit", files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")}
    )
    job_id = response.json()["job_id"]
    response = await api.get(f"/video/results/{job_id}")
    assert (response.status_code, response.json()["detail"]) == (
        404,
        "Results not available: job is pending",
    )


async def test_results_whose_object_is_gone_are_an_error_not_a_broken_200(
    api, sample_mp4, tmp_path
):
    response = await api.post(
        "/video/submit", files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")}
    )
    job_id = uuid.UUID(response.json()["job_id"])
    backends = api._transport.app.state.backends
    document = tmp_path / "results.json"
    document.write_bytes(b'{"job_id":"%s","results":[]}' % str(job_id).encode())
    key = f"results/{job_id}.json"
    size = await backends.store.upload_file(key, document, content_type="application/json")
    await backends.repo.claim(job_id, owner="w", lease_seconds=30)
    await backends.repo.complete(job_id, owner="w", output_path=key, output_bytes=size)
    assert (await api.get(f"/video/results/{job_id}")).json()["results"] == []

    await backends.store.delete(key)
    response = await api.get(f"/video/results/{job_id}")
    # Decided before the status line goes out: a JSON error, not a 200 cut short.
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}


async def test_readiness_names_each_dependency(api):
    response = await api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "store": "ok"}
    assert (await api.get("/healthz")).json() == {"status": "ok"}


class _CommitThenLoseConnection:
    """The real repository, but the connection drops just after the INSERT
    commits: the api cannot know whether the job exists."""

    def __init__(self, repo) -> None:
        self._repo = repo

    def __getattr__(self, name):
        return getattr(self._repo, name)

    async def create(self, **kwargs):
        await self._repo.create(**kwargs)
        raise DependencyUnavailable("database", "ConnectionDoesNotExistError")


async def test_a_submit_whose_commit_is_in_doubt_keeps_its_job_and_its_input(
    settings, services_ready, sample_mp4
):
    real = await open_backends(settings, app_id="videoq-api")
    app = create_app(settings)
    app.state.backends = Backends(
        repo=_CommitThenLoseConnection(real.repo), broker=real.broker, store=real.store
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://videoq") as api:
            response = await api.post(
                "/video/submit", files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")}
            )
        # The row was there: the client gets its job, and the worker its input.
        assert response.status_code == 202, response.text
        job_id = uuid.UUID(response.json()["job_id"])
        assert (await real.repo.get(job_id)) is not None
        assert await real.store.exists(f"inputs/{job_id}.mp4")
    finally:
        await real.close()
