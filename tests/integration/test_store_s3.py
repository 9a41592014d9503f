"""The S3 adapter on a real S3 endpoint, and the folder adapter beside it."""

import os
from pathlib import Path

import boto3
import pytest

from shared.errors import DependencyUnavailable, InputMissing
from shared.store import FileStore, S3Store
from shared.store.s3 import PART_SIZE
from tests.support.services import multipart_uploads

# PostgreSQL or S3 only: no RabbitMQ to vary, so not again in the RabbitMQ 4 lane.
pytestmark = [pytest.mark.integration, pytest.mark.single_broker]


@pytest.fixture(params=["s3", "folder"])
async def store(request, services_ready, bucket, tmp_path):
    if request.param == "folder":
        yield FileStore(tmp_path / "store")
        return
    s3 = await S3Store.open(
        f"s3://{bucket}/pre", endpoint_url=services_ready.s3_endpoint, region="us-east-1"
    )
    yield s3
    await s3.close()


async def test_a_multipart_upload_round_trips(store, tmp_path):
    data = os.urandom(PART_SIZE * 2 + 12345)
    upload = await store.open_upload("inputs/x.mp4", content_type="video/mp4")
    for i in range(0, len(data), 1_000_000):
        await upload.write(data[i : i + 1_000_000])
    assert await upload.complete() == len(data)
    assert await store.size("inputs/x.mp4") == len(data)
    target = tmp_path / "back.bin"
    assert await store.download_file("inputs/x.mp4", target) == len(data)
    assert target.read_bytes() == data
    streamed = b"".join([chunk async for chunk in store.iter_bytes("inputs/x.mp4")])
    assert streamed == data


async def test_an_aborted_upload_leaves_nothing(store, services_ready, bucket):
    upload = await store.open_upload("inputs/gone.mp4", content_type="video/mp4")
    await upload.write(os.urandom(PART_SIZE + 10))
    await upload.abort()
    assert not await store.exists("inputs/gone.mp4")
    if isinstance(store, S3Store):
        s3 = boto3.client("s3", endpoint_url=services_ready.s3_endpoint)
        assert multipart_uploads(s3, bucket) == []


async def test_a_missing_object_is_input_missing(store, tmp_path):
    with pytest.raises(InputMissing):
        await store.download_file("inputs/none.mp4", tmp_path / "x")
    assert not await store.exists("inputs/none.mp4")


async def test_the_s3_prefix_is_applied(services_ready, bucket, tmp_path):
    s3 = await S3Store.open(
        f"s3://{bucket}/tenant-a", endpoint_url=services_ready.s3_endpoint, region="us-east-1"
    )
    path = tmp_path / "f.json"
    path.write_bytes(b"{}")
    await s3.upload_file("results/r.json", path, content_type="application/json")
    await s3.close()
    keys = [
        o["Key"]
        for o in boto3.client("s3", endpoint_url=services_ready.s3_endpoint).list_objects_v2(
            Bucket=bucket
        )["Contents"]
    ]
    assert keys == ["tenant-a/results/r.json"]


async def test_an_unreachable_endpoint_is_a_dependency_error():
    s3 = await S3Store.open("s3://nowhere", endpoint_url="http://127.0.0.1:1", region="us-east-1")
    try:
        with pytest.raises(DependencyUnavailable):
            await s3.ping()
    finally:
        await s3.close()


async def test_a_missing_bucket_says_so_in_the_dependency_error(services_ready, tmp_path):
    s3 = await S3Store.open(
        "s3://videoq-no-such-bucket", endpoint_url=services_ready.s3_endpoint, region="us-east-1"
    )
    source = tmp_path / "r.json"
    source.write_bytes(b"{}")
    try:
        # What an operator reads in the api's http.dependency_unavailable line.
        with pytest.raises(DependencyUnavailable, match=r"object store unavailable: NoSuchBucket$"):
            await s3.upload_file("results/x.json", source, content_type="application/json")
    finally:
        await s3.close()


def test_folder_keys_cannot_escape_the_folder(tmp_path: Path):
    with pytest.raises(ValueError):
        FileStore(tmp_path)._path("../etc/passwd")


@pytest.mark.parametrize("size", [0, 1024 * 1024, 1024 * 1024 + 1, 9 * 1024 * 1024])
async def test_upload_file_round_trips_small_and_multipart_files(store, tmp_path, size):
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(size))
    assert await store.upload_file("results/x.bin", source, content_type="application/json") == size
    back = tmp_path / "out.bin"
    assert await store.download_file("results/x.bin", back) == size
    assert back.read_bytes() == source.read_bytes()


async def test_a_range_is_the_bytes_asked_for_and_clipped_at_the_end(store, tmp_path):
    data = bytes(range(256)) * 40
    path = tmp_path / "doc.json"
    path.write_bytes(data)
    await store.upload_file("results/doc.json", path, content_type="application/json")
    assert await store.get_range("results/doc.json", 0, 10) == data[:10]
    assert await store.get_range("results/doc.json", 1000, 1234) == data[1000:1234]
    assert await store.get_range("results/doc.json", 10_000) == data[10_000:]
    assert await store.get_range("results/doc.json", len(data) - 5, len(data) + 100) == data[-5:]
    assert await store.get_range("results/doc.json", len(data)) == b""
    assert await store.get_range("results/doc.json", len(data) + 7, len(data) + 9) == b""
    assert await store.get_range("results/doc.json", 50, 50) == b""
    with pytest.raises(InputMissing):
        await store.get_range("results/none.json", 0, 10)
