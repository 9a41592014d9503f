"""Results pages read through the document's index, on S3 and in a folder:
each page is the same slice of the whole document, and a document without
an index (written before there were indexes) still pages."""

import json
import uuid

import httpx
import pytest

from services.api.app import create_app
from services.api.pages import IndexedPages
from shared.backends import open_backends
from shared.jobs import results_key
from shared.pipeline.document import ResultsWriter
from shared.pipeline.index import INDEX_SUFFIX

pytestmark = pytest.mark.integration

ENTRIES = 1234
OWN = {"tag": "cam-7", "metadata": {"site": "Zürich", "n": 3}}
# (offset, limit): first, inner, last partial, the last entry, at the end,
# past the end, the largest limit, offset alone.
PAGES = [
    (0, 1),
    (0, 100),
    (17, 250),
    (1200, 100),
    (ENTRIES - 1, 5),
    (ENTRIES, 10),
    (ENTRIES + 500, 10),
    (0, 10_000),
    (1000, None),
]


@pytest.fixture(params=["s3", "folder"])
async def api(request, settings, tmp_path):
    # Threshold 0: every document in these tests is large enough for an index.
    update = {"results_index_min_bytes": 0}
    if request.param == "folder":
        update["storage_url"] = f"file://{tmp_path / 'store'}"
    settings = settings.model_copy(update=update)
    app = create_app(settings)
    app.state.backends = await open_backends(settings, app_id="videoq-api")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://videoq") as client:
        yield client
    await app.state.backends.close()


def _entry(i: int) -> dict:
    # Non-ASCII and floats: the page's bytes must match what json writes.
    return {
        "frame_index": i * 2,
        "timestamp_s": round(i / 29.97, 6),
        "result": {"label": "ß→" * (i % 3), "score": i / 7},
    }


async def _completed_job(api, tmp_path, *, entries: int, indexed: bool) -> tuple[str, str]:
    """A completed job whose results document has ``entries`` entries; its
    index uploaded beside it only if ``indexed``. Returns (job id, key)."""
    backends = api._transport.app.state.backends
    job_id = uuid.uuid4()
    await backends.repo.create(
        job_id=job_id,
        input_path=f"inputs/{job_id}.mp4",
        pipeline="basic",
        options={},
        input_bytes=1,
        tag=OWN["tag"],
        metadata=OWN["metadata"],
    )
    folder = tmp_path / str(job_id)
    folder.mkdir()
    path = folder / "results.json"
    writer = ResultsWriter(
        path, header={"job_id": str(job_id), "video": {"fps": 29.97}, "pipeline": "basic"}
    )
    for i in range(entries):
        writer.write(_entry(i))
    writer.finish({"frames_sampled": entries, "note": "fin"})
    key = results_key(job_id)
    size = await backends.store.upload_file(key, path, content_type="application/json")
    if indexed:
        index = folder / ("results.json" + INDEX_SUFFIX)
        await backends.store.upload_file(
            key + INDEX_SUFFIX, index, content_type="application/octet-stream"
        )
    await backends.repo.claim(job_id, owner="w", lease_seconds=30)
    await backends.repo.complete(job_id, owner="w", output_path=key, output_bytes=size)
    return str(job_id), key


def _expected_page(whole: dict, offset: int, limit: int | None) -> dict:
    entries = whole["results"]
    end = len(entries) if limit is None else offset + limit
    return {
        **whole,
        "results": entries[offset:end],
        "page": {"offset": offset, "limit": limit, "total": len(entries)},
    }


def _query(offset: int, limit: int | None) -> dict:
    return {"offset": offset} if limit is None else {"offset": offset, "limit": limit}


async def test_pages_are_the_slices_of_the_whole_document(api, tmp_path):
    indexed, key = await _completed_job(api, tmp_path, entries=ENTRIES, indexed=True)
    legacy, _ = await _completed_job(api, tmp_path, entries=ENTRIES, indexed=False)
    whole = await api.get(f"/video/results/{indexed}")
    assert whole.status_code == 200
    document = whole.json()
    assert len(document["results"]) == ENTRIES
    assert (document["tag"], document["metadata"]) == (OWN["tag"], OWN["metadata"])
    # The index is what serves these pages (not the whole-document fallback).
    store = api._transport.app.state.backends.store
    size = await store.size(key)
    assert await IndexedPages().page(store, key, size=size, offset=3, limit=2, own=OWN) is not None
    for offset, limit in PAGES:
        page = await api.get(f"/video/results/{indexed}", params=_query(offset, limit))
        assert page.status_code == 200
        assert page.headers["content-type"] == "application/json"
        assert page.json() == _expected_page(document, offset, limit), (offset, limit)
        # Byte for byte what the old path (a document without index) answers,
        # but for the job id.
        old = await api.get(f"/video/results/{legacy}", params=_query(offset, limit))
        assert old.content.replace(legacy.encode(), indexed.encode()) == page.content


async def test_a_document_without_an_index_still_pages(api, tmp_path):
    legacy, key = await _completed_job(api, tmp_path, entries=40, indexed=False)
    store = api._transport.app.state.backends.store
    size = await store.size(key)
    assert await IndexedPages().page(store, key, size=size, offset=0, limit=5, own=OWN) is None
    whole = (await api.get(f"/video/results/{legacy}")).json()
    for offset, limit in [(0, 5), (35, 10), (40, 1), (99, 3)]:
        page = await api.get(f"/video/results/{legacy}", params=_query(offset, limit))
        assert page.json() == _expected_page(whole, offset, limit)


async def test_an_empty_document_pages_to_nothing(api, tmp_path):
    job_id, _ = await _completed_job(api, tmp_path, entries=0, indexed=True)
    page = (await api.get(f"/video/results/{job_id}", params={"limit": 10})).json()
    assert page["results"] == []
    assert page["page"] == {"offset": 0, "limit": 10, "total": 0}
    assert page["summary"] == {"frames_sampled": 0, "note": "fin"}


async def test_the_whole_document_keeps_its_bytes(api, tmp_path):
    job_id, key = await _completed_job(api, tmp_path, entries=30, indexed=True)
    store = api._transport.app.state.backends.store
    stored = b"".join([chunk async for chunk in store.iter_bytes(key)])
    job = await api._transport.app.state.backends.repo.get(uuid.UUID(job_id))
    own = json.dumps({"tag": job.tag, "metadata": job.metadata}, separators=(",", ":")).encode()
    response = await api.get(f"/video/results/{job_id}")
    assert response.content == own[:-1] + b"," + stored[1:]
