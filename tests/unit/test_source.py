"""source= checks and the folder store's side of it (videoq dev), and the
folder store's prefix deletion that retention and erasure use."""

import uuid

import pytest
from pydantic import ValidationError

from services.api.source import check_source
from shared.errors import InvalidParameter, SourceForbidden, UnsupportedFileType
from shared.jobs import results_prefix
from shared.settings import Settings
from shared.store import FileStore

MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def _settings(tmp_path, *grants: str) -> Settings:
    return Settings(
        storage_url=f"file://{tmp_path / 'store'}", source_prefixes=",".join(grants) or ()
    )


def test_source_prefixes_are_parsed_as_folders_and_bad_entries_refused():
    settings = Settings(source_prefixes="acme:s3://media/incoming, beta:s3://b/x/")
    assert settings.source_prefixes == (("acme", "s3://media/incoming/"), ("beta", "s3://b/x/"))
    assert Settings().source_prefixes == ()
    for bad in ("s3://media/x/", "acme:http://media/x/", "acme:s3:///x/"):
        with pytest.raises(ValidationError):
            Settings(source_prefixes=bad)


async def test_a_granted_file_source_is_read_where_it_is_in_videoq_dev(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(MP4_HEAD + b"\x00" * 100)
    settings = _settings(tmp_path, f"anonymous:file://{videos}/")
    store = FileStore(tmp_path / "store")

    source = await check_source(
        f"file://{videos}/clip.mp4", client_id="anonymous", settings=settings, store=store
    )

    assert (source.uri, source.size) == (f"file://{videos}/clip.mp4", 124)
    reader, key = store.locate(source.uri)
    assert await reader.size(key) == 124
    with pytest.raises(SourceForbidden):
        await check_source(source.uri, client_id="someone-else", settings=settings, store=store)


async def test_a_source_cannot_step_out_of_its_prefix_or_be_something_else(tmp_path):
    videos, private = tmp_path / "videos", tmp_path / "private"
    videos.mkdir()
    private.mkdir()
    (private / "secret.mp4").write_bytes(MP4_HEAD)
    (videos / "link.mp4").symlink_to(private / "secret.mp4")
    (videos / "notes.mp4").write_bytes(b"plain text, not a video")
    settings = _settings(tmp_path, f"anonymous:file://{videos}/")
    store = FileStore(tmp_path / "store")

    async def check(uri: str):
        return await check_source(uri, client_id="anonymous", settings=settings, store=store)

    for escape in (f"file://{videos}/../private/secret.mp4", f"file://{videos}/link.mp4"):
        with pytest.raises(SourceForbidden):
            await check(escape)
    with pytest.raises(UnsupportedFileType):
        await check(f"file://{videos}/notes.mp4")
    with pytest.raises(InvalidParameter, match="no object"):
        await check(f"file://{videos}/missing.mp4")
    # A folder store reads file:// sources only: s3:// needs an S3 store.
    with pytest.raises(InvalidParameter, match="file:// URI"):
        await check("s3://bucket/videos/clip.mp4")


async def test_an_s3_source_with_dot_segments_is_refused_before_any_grant_check(tmp_path):
    settings = Settings(storage_url="s3://videoq", source_prefixes="anonymous:s3://media/in/")
    for uri in ("s3://media/in/../secret.mp4", "s3://media/in/./a.mp4", "s3://media", "s3:///k"):
        with pytest.raises(InvalidParameter):
            await check_source(
                uri, client_id="anonymous", settings=settings, store=FileStore(tmp_path)
            )


async def test_deleting_a_jobs_results_prefix_leaves_every_other_job_alone(tmp_path):
    store = FileStore(tmp_path)
    mine, other = uuid.uuid4(), uuid.uuid4()
    for key in (
        f"results/{mine}.json",
        f"results/{mine}/page-0001.json",
        f"results/{mine}/index.json",
        f"results/{other}.json",
        f"inputs/{mine}.mp4",
    ):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"{}")

    assert await store.delete_prefix(results_prefix(mine)) == 3

    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted([f"inputs/{mine}.mp4", f"results/{other}.json"])
    assert await store.delete_prefix(results_prefix(mine)) == 0


async def test_the_services_own_objects_are_never_a_source_whatever_the_grant(tmp_path):
    store_dir = tmp_path / "store"
    (store_dir / "inputs").mkdir(parents=True)
    (store_dir / "inputs" / "other-job.mp4").write_bytes(MP4_HEAD)
    settings = _settings(tmp_path, f"anonymous:file://{tmp_path}/")
    with pytest.raises(SourceForbidden):
        await check_source(
            f"file://{store_dir}/inputs/other-job.mp4",
            client_id="anonymous",
            settings=settings,
            store=FileStore(store_dir),
        )
