"""Direct uploads (docs/uploads.md) through the api in-process, on real
PostgreSQL and RabbitMQ, and both stores: rclone's S3 (part URLs presigned,
PUT with a plain HTTP client) and the folder store (part URLs served by the
api itself)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

import asyncpg
import boto3
import httpx
import pytest
from pydantic import SecretStr

from services.api.app import create_app
from services.api.auth import hash_key
from services.janitor.janitor import Janitor
from shared.backends import open_backends
from shared.metrics import Metrics
from shared.store import FileStore
from shared.uploads import PART_BYTES
from tests.support.services import multipart_uploads

pytestmark = pytest.mark.integration

KEYS = {"alice": "alice-key-0123456789", "bob": "bob-key-9876543210"}
#: Starts like an MP4 (the sniff reads the ftyp box); one byte over one part.
TWO_PARTS = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 12 + b"v" * (PART_BYTES - 23)


@pytest.fixture(params=["s3", "folder"])
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def upload_settings(settings, store_kind, tmp_path):
    update = {
        "auth_disabled": False,
        "api_keys": SecretStr(",".join(f"{c}:{hash_key(k)}" for c, k in KEYS.items())),
        "max_upload_bytes": 64 * 1024 * 1024,
    }
    if store_kind == "folder":
        update["storage_url"] = f"file://{tmp_path / 'store'}"
    return settings.model_copy(update=update)


@pytest.fixture
async def app(upload_settings):
    application = create_app(upload_settings)
    application.state.backends = await open_backends(upload_settings, app_id="videoq-api")
    yield application
    await application.state.backends.close()


def client_of(app, who: str = "alice") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://videoq",
        headers={"Authorization": f"Bearer {KEYS[who]}"},
    )


@pytest.fixture
async def alice(app):
    async with client_of(app) as client:
        yield client


@pytest.fixture
async def put(app, store_kind):
    """PUT to a part URL the way a client does: a plain HTTP client without
    the API key (the folder store's URLs lead to the api, in-process here)."""
    if store_kind == "s3":
        plain = httpx.AsyncClient()
    else:
        plain = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))

    async def send(url: str, data: bytes) -> httpx.Response:
        return await plain.put(url, content=data)

    yield send
    await plain.aclose()


def stored_keys(settings, services) -> list[str]:
    """Every object and unfinished multipart upload (or part folder) in the store."""
    if settings.storage_url.startswith("file://"):
        root = Path(settings.storage_url.removeprefix("file://"))
        return sorted(
            str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".key"
        )
    s3 = boto3.client("s3", endpoint_url=services.s3_endpoint)
    bucket = settings.storage_url.removeprefix("s3://")
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return sorted(objects + [f"(upload) {u['Key']}" for u in multipart_uploads(s3, bucket)])


async def send_all(alice, put, content: bytes) -> dict:
    created = await alice.post("/video/uploads", json={"size": len(content)})
    assert created.status_code == 201, created.text
    body = created.json()
    size = body["part_size"]
    parts = []
    for part in body["parts"]:
        start = (part["part_number"] - 1) * size
        answer = await put(part["url"], content[start : start + size])
        assert answer.status_code == 200, answer.text
        parts.append({"part_number": part["part_number"], "etag": answer.headers["etag"]})
    body["etags"] = parts
    return body


async def test_parts_put_with_a_plain_http_client_complete_into_the_jobs_input(
    alice, put, upload_settings, services_ready, sample_mp4
):
    content = sample_mp4.read_bytes()
    created = await send_all(alice, put, content)
    assert len(created["parts"]) == 1 and created["part_size"] == PART_BYTES
    upload_id = created["upload_id"]
    done = await alice.post(
        f"/video/uploads/{upload_id}/complete", json={"parts": created["etags"]}
    )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "completed"
    assert stored_keys(upload_settings, services_ready) == [f"inputs/{upload_id}.mp4"]

    submitted = await alice.post(
        "/video/submit", files={"upload_id": (None, upload_id)}, data={"max_frames": "3"}
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    assert job_id == upload_id  # the upload's object is the job's input key
    status = (await alice.get(f"/video/status/{job_id}")).json()
    assert status["status"] == "pending"
    shown = (await alice.get(f"/video/uploads/{upload_id}")).json()
    assert (shown["state"], shown["job_id"]) == ("submitted", job_id)

    # One job per upload: a second submit is refused, and so is an abort.
    again = await alice.post("/video/submit", files={"upload_id": (None, upload_id)})
    assert again.status_code == 409, again.text
    assert (await alice.delete(f"/video/uploads/{upload_id}")).status_code == 409


async def test_a_broken_upload_resumes_from_the_parts_listed(
    alice, put, upload_settings, services_ready
):
    created = await alice.post("/video/uploads", json={"size": len(TWO_PARTS)})
    body = created.json()
    upload_id, size = body["upload_id"], body["part_size"]
    assert [p["part_number"] for p in body["parts"]] == [1, 2]
    first = await put(body["parts"][0]["url"], TWO_PARTS[:size])
    assert first.status_code == 200
    # ... and the connection broke before part 2.

    shown = (await alice.get(f"/video/uploads/{upload_id}")).json()
    assert shown["state"] == "open"
    assert [(p["part_number"], p["etag"], p["size"]) for p in shown["received"]] == [
        (1, first.headers["etag"], size)
    ]
    assert [p["part_number"] for p in shown["parts"]] == [2]
    second = await put(shown["parts"][0]["url"], TWO_PARTS[size:])
    assert second.status_code == 200

    shown = (await alice.get(f"/video/uploads/{upload_id}")).json()
    assert shown["parts"] == []
    parts = [{"part_number": p["part_number"], "etag": p["etag"]} for p in shown["received"]]
    done = await alice.post(f"/video/uploads/{upload_id}/complete", json={"parts": parts})
    assert done.status_code == 200, done.text
    assert stored_keys(upload_settings, services_ready) == [f"inputs/{upload_id}.mp4"]
    # Completing again is safe (a retry after a lost answer).
    again = await alice.post(f"/video/uploads/{upload_id}/complete", json={"parts": parts})
    assert again.status_code == 200 and again.json()["state"] == "completed"


async def test_a_completed_upload_that_is_not_an_mp4_is_415_and_deleted(
    alice, put, upload_settings, services_ready
):
    created = await send_all(alice, put, b"GIF89a" + b"\x00" * 5000)
    upload_id = created["upload_id"]
    done = await alice.post(
        f"/video/uploads/{upload_id}/complete", json={"parts": created["etags"]}
    )
    assert (done.status_code, done.json()["detail"]) == (415, "Unsupported file type")
    assert stored_keys(upload_settings, services_ready) == []
    assert (await alice.get(f"/video/uploads/{upload_id}")).status_code == 404


async def test_an_object_of_another_size_than_declared_is_422_and_deleted(
    alice, put, upload_settings, services_ready, sample_mp4
):
    content = sample_mp4.read_bytes()
    created = await alice.post("/video/uploads", json={"size": len(content) + 10})
    body = created.json()
    answer = await put(body["parts"][0]["url"], content)
    done = await alice.post(
        f"/video/uploads/{body['upload_id']}/complete",
        json={"parts": [{"part_number": 1, "etag": answer.headers["etag"]}]},
    )
    assert done.status_code == 422, done.text
    assert "declared" in done.json()["detail"]
    assert stored_keys(upload_settings, services_ready) == []


async def test_a_wrong_etag_is_422(alice, put, sample_mp4, store_kind):
    created = await send_all(alice, put, sample_mp4.read_bytes())
    upload_id = created["upload_id"]
    done = await alice.post(
        f"/video/uploads/{upload_id}/complete",
        json={"parts": [{"part_number": 1, "etag": '"0123456789abcdef0123456789abcdef"'}]},
    )
    assert done.status_code == 422, done.text
    if store_kind == "folder":
        # The upload stays open for a corrected complete, as on AWS; rclone's
        # S3 drops the upload after a refused complete (then GET is a 404).
        assert (await alice.get(f"/video/uploads/{upload_id}")).json()["state"] == "open"


@pytest.mark.parametrize(("size", "status"), [(0, 422), (-1, 422), (64 * 1024 * 1024 + 1, 413)])
async def test_a_size_out_of_bounds_is_refused_and_starts_nothing(
    alice, upload_settings, services_ready, size, status
):
    answer = await alice.post("/video/uploads", json={"size": size})
    assert answer.status_code == status, answer.text
    assert stored_keys(upload_settings, services_ready) == []


async def test_an_upload_is_not_found_for_another_client(app, alice, put, sample_mp4):
    created = await send_all(alice, put, sample_mp4.read_bytes())
    upload_id = created["upload_id"]
    async with client_of(app, "bob") as bob:
        assert (await bob.get(f"/video/uploads/{upload_id}")).status_code == 404
        complete = await bob.post(
            f"/video/uploads/{upload_id}/complete", json={"parts": created["etags"]}
        )
        assert complete.status_code == 404
        assert (await bob.delete(f"/video/uploads/{upload_id}")).status_code == 404
    done = await alice.post(
        f"/video/uploads/{upload_id}/complete", json={"parts": created["etags"]}
    )
    assert done.status_code == 200
    async with client_of(app, "bob") as bob:
        stolen = await bob.post("/video/submit", files={"upload_id": (None, upload_id)})
        assert stolen.status_code == 404, stolen.text


async def test_an_abort_deletes_the_parts(alice, put, upload_settings, services_ready):
    created = await alice.post("/video/uploads", json={"size": len(TWO_PARTS)})
    body = created.json()
    await put(body["parts"][0]["url"], TWO_PARTS[: body["part_size"]])
    assert stored_keys(upload_settings, services_ready) != []
    assert (await alice.delete(f"/video/uploads/{body['upload_id']}")).status_code == 204
    assert stored_keys(upload_settings, services_ready) == []
    assert (await alice.get(f"/video/uploads/{body['upload_id']}")).status_code == 404


async def test_an_idempotency_key_replays_the_job_of_an_upload(alice, put, sample_mp4):
    created = await send_all(alice, put, sample_mp4.read_bytes())
    upload_id = created["upload_id"]
    await alice.post(f"/video/uploads/{upload_id}/complete", json={"parts": created["etags"]})
    headers = {"Idempotency-Key": "upload-retry-1"}
    form = {"upload_id": (None, upload_id)}
    first = await alice.post("/video/submit", files=form, headers=headers)
    second = await alice.post("/video/submit", files=form, headers=headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json() == second.json()
    other = await alice.post("/video/submit", files=form, data={"max_frames": "2"}, headers=headers)
    assert other.status_code == 409, other.text


async def test_submit_with_an_open_upload_or_both_inputs_is_refused(alice, put, sample_mp4):
    created = await alice.post("/video/uploads", json={"size": 100})
    upload_id = created.json()["upload_id"]
    still_open = await alice.post("/video/submit", files={"upload_id": (None, upload_id)})
    assert still_open.status_code == 409, still_open.text
    both = await alice.post(
        "/video/submit",
        files={
            "file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4"),
            "upload_id": (None, upload_id),
        },
    )
    assert both.status_code == 422, both.text
    unknown = await alice.post("/video/submit", files={"upload_id": (None, str(uuid.uuid4()))})
    assert unknown.status_code == 404


# Only the folder store's part URLs are the api's own (S3 signs its own).
@pytest.mark.parametrize("store_kind", ["folder"], indirect=True)
async def test_a_forged_or_expired_folder_part_url_is_403(app, alice, store_kind):
    created = (await alice.post("/video/uploads", json={"size": 100})).json()
    url = created["parts"][0]["url"]
    forged = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as plain:
        assert (await plain.put(forged, content=b"x")).status_code == 403
        expired = url.replace("expires=", "expires=1")  # a longer, other expiry
        assert (await plain.put(expired, content=b"x")).status_code == 403


async def test_the_janitor_aborts_expired_uploads_and_deletes_their_parts(
    upload_settings, services_ready, store_kind
):
    settings = upload_settings
    application = create_app(settings)
    backends = await open_backends(settings, app_id="videoq-api")
    application.state.backends = backends
    try:
        async with client_of(application) as alice:
            created = (await alice.post("/video/uploads", json={"size": len(TWO_PARTS)})).json()
            transport = httpx.ASGITransport(app=application) if store_kind == "folder" else None
            async with httpx.AsyncClient(transport=transport) as plain:
                # A short part: S3 refuses one below 5 MiB at complete only.
                answer = await plain.put(created["parts"][0]["url"], content=TWO_PARTS[:1000])
                assert answer.status_code == 200, answer.text
            assert stored_keys(settings, services_ready) != []
            metrics = Metrics()
            janitor = Janitor(
                settings=settings,
                repo=backends.repo,
                broker=backends.broker,
                metrics=metrics,
                store=backends.store,
            )

            # Its expiry comes (set in the row, so that a loaded machine's
            # slow PUT never meets an expired URL first).
            conn = await asyncpg.connect(settings.database_url.get_secret_value())
            await conn.execute("UPDATE uploads SET expires_at = now() - interval '1 second'")
            await conn.close()
            assert (await janitor.sweep()).uploads_expired == 1
            assert stored_keys(settings, services_ready) == []
            assert (await alice.get(f"/video/uploads/{created['upload_id']}")).status_code == 404
            assert b"videoq_janitor_uploads_expired_total 1.0" in metrics.render()
    finally:
        await backends.close()


async def test_the_folder_store_keeps_its_signing_key_across_instances(tmp_path):
    first = FileStore(tmp_path)
    upload_id = await first.create_multipart("inputs/x.mp4", content_type="video/mp4")
    url = await first.presign_part("inputs/x.mp4", upload_id, 1, expires_in=60)
    signature = url.rpartition("signature=")[2]
    expires = int(url.partition("expires=")[2].partition("&")[0])

    async def body():
        yield b"part"

    etag = await FileStore(tmp_path).receive_part(
        upload_id, 1, expires=expires, signature=signature, body=body()
    )
    assert etag == f'"{hashlib.md5(b"part").hexdigest()}"'
    await asyncio.sleep(0)
