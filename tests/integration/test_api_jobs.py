"""Idempotent submit, listing, cancel and tags, on the real backends."""

import asyncio
import json
import uuid

import asyncpg
import httpx
import pytest

from services.api.app import create_app
from shared.backends import open_backends
from shared.repository import connect_repository
from tests.support.jobs import add_job

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(settings):
    app = create_app(settings)
    app.state.backends = await open_backends(settings, app_id="videoq-api")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://videoq"
    ) as client:
        yield client
    await app.state.backends.close()


def upload(content: bytes, **fields: str):
    return {"files": {"file": ("a.mp4", content, "video/mp4")}, "data": fields}


async def count_jobs(settings) -> int:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        return int(await conn.fetchval("SELECT count(*) FROM jobs"))
    finally:
        await conn.close()


async def test_two_concurrent_submits_with_one_key_give_one_job(api, settings, sample_mp4):
    body = sample_mp4.read_bytes()
    headers = {"Idempotency-Key": "order-42"}
    first, second = await asyncio.gather(
        api.post("/video/submit", headers=headers, **upload(body)),
        api.post("/video/submit", headers=headers, **upload(body)),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 202]
    assert first.json()["job_id"] == second.json()["job_id"]
    assert await count_jobs(settings) == 1
    again = await api.post("/video/submit", headers=headers, **upload(body))
    assert (again.status_code, again.json()) == (200, first.json())


async def test_the_same_key_with_another_file_or_parameters_is_409(api, settings, sample_mp4):
    body = sample_mp4.read_bytes()
    headers = {"Idempotency-Key": "k1"}
    assert (await api.post("/video/submit", headers=headers, **upload(body))).status_code == 202
    other_file = await api.post("/video/submit", headers=headers, **upload(body + b"\x00"))
    assert other_file.status_code == 409
    assert "different parameters or a different file" in other_file.json()["detail"]
    other_params = await api.post(
        "/video/submit", headers=headers, **upload(body, frame_stride="5")
    )
    assert other_params.status_code == 409
    assert await count_jobs(settings) == 1


async def test_a_bad_idempotency_key_is_422(api, sample_mp4):
    response = await api.post(
        "/video/submit", headers={"Idempotency-Key": "x" * 65}, **upload(sample_mp4.read_bytes())
    )
    assert response.status_code == 422


async def test_tags_and_metadata_are_echoed_and_validated(api, sample_mp4):
    body = sample_mp4.read_bytes()
    response = await api.post(
        "/video/submit", **upload(body, tag="cam-7", metadata='{"site": "north", "n": 3}')
    )
    status = (await api.get(f"/video/status/{response.json()['job_id']}")).json()
    assert (status["tag"], status["metadata"]) == ("cam-7", {"site": "north", "n": 3})
    for bad in ('{"nested": {"x": 1}}', "[1,2]", "not json", json.dumps({"k": "v" * 3000})):
        assert (await api.post("/video/submit", **upload(body, metadata=bad))).status_code == 422
    assert (await api.post("/video/submit", **upload(body, tag="t" * 129))).status_code == 422


async def test_listing_pages_through_120_jobs_without_duplicates_or_gaps_while_jobs_arrive(
    api, settings
):
    repo = await connect_repository(settings.database_url.get_secret_value(), migrate=False)

    async def add(n: int) -> list[uuid.UUID]:
        return [await add_job(repo) for _ in range(n)]

    existing = await add(120)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 25} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/video/jobs", params=params)).json()
        seen += [j["job_id"] for j in page["jobs"]]
        await add(3)  # new jobs arrive between pages
        cursor = page["next_cursor"]
        if cursor is None:
            break
    await repo.close()
    assert len(seen) == len(set(seen))
    assert set(map(str, existing)) <= set(seen)
    assert seen[: len(existing)] == [str(i) for i in reversed(existing)]  # newest first
    assert (await api.get("/video/jobs", params={"cursor": "garbage!"})).status_code == 422
    response = await api.get("/video/jobs", params={"limit": "many"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "limit: Input should be a valid integer, unable to parse string as an integer"
    }


async def test_listing_filters_by_status(api, sample_mp4):
    body = sample_mp4.read_bytes()
    job_id = (await api.post("/video/submit", **upload(body))).json()["job_id"]
    await api.delete(f"/video/jobs/{job_id}")
    failed = (await api.get("/video/jobs", params={"status": "failed"})).json()["jobs"]
    pending = (await api.get("/video/jobs", params={"status": "pending"})).json()["jobs"]
    assert [j["job_id"] for j in failed] == [job_id] and pending == []


async def test_cancel_fails_a_pending_job_and_a_finished_job_is_409(api, sample_mp4):
    job_id = (await api.post("/video/submit", **upload(sample_mp4.read_bytes()))).json()["job_id"]
    response = await api.delete(f"/video/jobs/{job_id}")
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["error_message"]) == ("failed", "Cancelled")
    again = await api.delete(f"/video/jobs/{job_id}")
    assert (again.status_code, again.json()["detail"]) == (409, "Job already finished (failed)")
