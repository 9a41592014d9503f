"""S3 (aiobotocore) adapter of the object store (``s3://bucket[/prefix]``).

Uploads go up as multipart uploads in fixed-size parts, so memory stays at
about one part whatever the object's size; downloads stream to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiobotocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import DependencyUnavailable, InputMissing, InvalidParameter, UploadNotFound
from shared.store.base import StoredPart

__all__ = ["S3Store"]

#: S3's minimum part size is 5 MiB; 8 MiB keeps the part count low.
PART_SIZE = 8 * 1024 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound"}
#: A range that starts at or past the object's end.
_PAST_THE_END = {"InvalidRange", "416"}
#: What S3 answers a complete whose part list is not what it holds.
_BAD_PARTS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall"}
#: Files up to this size are uploaded with one read and one PUT.
_INLINE_READ = 1024 * 1024


def _unavailable(exc: Exception) -> DependencyUnavailable:
    # S3's own error code (NoSuchBucket, AccessDenied, SlowDown...) is what
    # an operator acts on; botocore's class name alone says nothing.
    detail = type(exc).__name__
    if isinstance(exc, ClientError):
        detail = str(exc.response.get("Error", {}).get("Code") or detail)
    return DependencyUnavailable("object store", detail)


def _no_object_checksum_on_ranges(
    params: dict[str, Any], context: dict[str, Any], **_: Any
) -> None:
    """botocore checks a GET's body against the object's checksum header; a
    ranged GET's body is only part of the object, so a whole-object checksum
    sent with it (rclone's ``serve s3`` sends one) can never match and would
    fail every ranged read. Whole-object GETs keep the check."""
    if "Range" in params.get("headers", {}):
        context.get("checksum", {}).pop("response_algorithms", None)


@contextlib.contextmanager
def _domain_errors(key: str | None = None) -> Iterator[None]:
    """Turn botocore's errors into the domain's: a missing ``key`` is
    ``InputMissing``, anything else ``DependencyUnavailable``."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if key is not None and code in _MISSING:
            raise InputMissing(f"object {key} not found") from None
        if code == "NoSuchUpload":
            raise UploadNotFound() from None
        if code in _BAD_PARTS:
            raise InvalidParameter(f"parts: the store refused them ({code})") from None
        raise _unavailable(exc) from None
    except (BotoCoreError, OSError, TimeoutError) as exc:
        raise _unavailable(exc) from None


class _S3Upload:
    def __init__(self, store: S3Store, key: str, content_type: str) -> None:
        self._store = store
        self._key = key
        self._content_type = content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self._size += len(chunk)
        while len(self._buffer) >= PART_SIZE:
            part = bytes(self._buffer[:PART_SIZE])
            del self._buffer[:PART_SIZE]
            await self._upload_part(part)

    async def _upload_part(self, data: bytes) -> None:
        client = self._store.client
        with _domain_errors():
            if self._upload_id is None:
                created = await client.create_multipart_upload(
                    Bucket=self._store.bucket,
                    Key=self._store.key(self._key),
                    ContentType=self._content_type,
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            answer = await client.upload_part(
                Bucket=self._store.bucket,
                Key=self._store.key(self._key),
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
            )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> int:
        client = self._store.client
        try:
            with _domain_errors():
                await self._finish(client)
        except BaseException:
            await self.abort()  # the object never appears half-written
            raise
        self._buffer = bytearray()
        return self._size

    async def _finish(self, client: Any) -> None:
        if self._upload_id is None:
            # Small object: one PUT, no multipart bookkeeping.
            await client.put_object(
                Bucket=self._store.bucket,
                Key=self._store.key(self._key),
                Body=bytes(self._buffer),
                ContentType=self._content_type,
            )
            return
        if self._buffer:
            await self._upload_part(bytes(self._buffer))
        await client.complete_multipart_upload(
            Bucket=self._store.bucket,
            Key=self._store.key(self._key),
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    async def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            with contextlib.suppress(BotoCoreError, ClientError, OSError):
                await self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._store.key(self._key), UploadId=upload_id
                )


class S3Store:
    """``ObjectStore`` on S3 or an S3-compatible endpoint. Build with ``open``."""

    def __init__(
        self,
        *,
        client: Any,
        exit_stack: contextlib.AsyncExitStack,
        bucket: str,
        prefix: str,
        presigner: Any = None,
    ) -> None:
        self.client = client
        #: Signs part URLs for the endpoint clients reach (may differ from ours).
        self._presigner = presigner or client
        self.bucket = bucket
        self._prefix = prefix
        self._exit_stack = exit_stack

    @classmethod
    async def open(
        cls,
        storage_url: str,
        *,
        endpoint_url: str | None,
        region: str,
        create_bucket: bool = False,
        public_endpoint_url: str | None = None,
    ) -> S3Store:
        """Open a client for ``s3://bucket[/prefix]``; with ``create_bucket``,
        create the bucket if it is missing (dev and tests). Part URLs are
        signed for ``public_endpoint_url`` (default: ``endpoint_url``)."""
        rest = storage_url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        stack = contextlib.AsyncExitStack()
        session = aiobotocore.session.get_session()
        config = Config(
            # SigV4 for presigned URLs too (botocore presigns SigV2 by default,
            # which S3 has deprecated and rclone refuses).
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=50,
            # botocore >= 1.36 computes a CRC32 of every PUT body and checks
            # one on every GET by default: about a fifth of the worker's S3
            # CPU for a small clip. "when_required" keeps checksums for the
            # operations S3 demands them for; what remains for integrity is
            # TCP's checksum (plus TLS's MAC on https), botocore's
            # Content-Length check on GETs, and the pipeline's decoder, which
            # refuses a truncated or garbled container (docs/benchmarks.md).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client = await stack.enter_async_context(
            session.create_client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        )
        client.meta.events.register("before-call.s3.GetObject", _no_object_checksum_on_ranges)
        presigner = None
        if public_endpoint_url and public_endpoint_url != endpoint_url:
            # Signing is local (no request): this client only computes URLs.
            presigner = await stack.enter_async_context(
                session.create_client(
                    "s3", endpoint_url=public_endpoint_url, region_name=region, config=config
                )
            )
        store = cls(
            client=client,
            exit_stack=stack,
            bucket=bucket,
            prefix=prefix.strip("/"),
            presigner=presigner,
        )
        if create_bucket:
            try:
                await client.head_bucket(Bucket=bucket)
            except ClientError:
                await client.create_bucket(Bucket=bucket)
            except (BotoCoreError, OSError) as exc:
                await stack.aclose()
                raise _unavailable(exc) from None
        return store

    def key(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    async def ping(self) -> None:
        with _domain_errors():
            await self.client.head_bucket(Bucket=self.bucket)

    async def close(self) -> None:
        await self._exit_stack.aclose()

    async def open_upload(self, key: str, *, content_type: str) -> _S3Upload:
        return _S3Upload(self, key, content_type)

    async def upload_file(self, key: str, path: Path, *, content_type: str) -> int:
        size = path.stat().st_size
        if size <= _INLINE_READ:
            # A results document, typically: one read on the loop (a local
            # file of at most 1 MiB takes well under a millisecond) and one
            # PUT, instead of thread hand-offs and a part buffer.
            with _domain_errors():
                await self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key(key),
                    Body=path.read_bytes(),
                    ContentType=content_type,
                )
            return size
        upload = await self.open_upload(key, content_type=content_type)
        try:
            with path.open("rb") as handle:
                while chunk := await asyncio.to_thread(handle.read, PART_SIZE):
                    await upload.write(chunk)
        except BaseException:
            await upload.abort()
            raise
        return await upload.complete()

    async def download_file(self, key: str, path: Path) -> int:
        size = 0
        with _domain_errors(key):
            answer = await self.client.get_object(Bucket=self.bucket, Key=self.key(key))
            async with answer["Body"] as body:
                with path.open("wb") as handle:
                    async for chunk in body.iter_chunks(1024 * 1024):
                        if size + len(chunk) <= _INLINE_READ:
                            # A write of a small chunk to the page cache takes
                            # microseconds; a thread hand-off costs more.
                            handle.write(chunk)
                        else:
                            await asyncio.to_thread(handle.write, chunk)
                        size += len(chunk)
        return size

    async def iter_bytes(self, key: str) -> AsyncGenerator[bytes, None]:
        with _domain_errors(key):
            answer = await self.client.get_object(Bucket=self.bucket, Key=self.key(key))
            async with answer["Body"] as body:
                async for chunk in body.iter_chunks(256 * 1024):
                    yield chunk

    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            return b""
        wanted = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        with _domain_errors(key):
            try:
                answer = await self.client.get_object(
                    Bucket=self.bucket, Key=self.key(key), Range=wanted
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _PAST_THE_END:
                    return b""
                raise
            async with answer["Body"] as body:
                data: bytes = await body.read()
        return data

    async def size(self, key: str) -> int:
        with _domain_errors(key):
            head = await self.client.head_object(Bucket=self.bucket, Key=self.key(key))
        return int(head["ContentLength"])

    async def delete(self, key: str) -> None:
        with _domain_errors():
            await self.client.delete_object(Bucket=self.bucket, Key=self.key(key))

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except InputMissing:
            return False
        return True

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        with _domain_errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key(prefix)
            )
            async for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:  # a page holds at most 1000 keys, as DeleteObjects takes
                    await self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                    )
                    deleted += len(keys)
        return deleted

    def locate(self, uri: str) -> tuple[S3Store, str]:
        if not uri.startswith("s3://"):
            raise InputMissing(f"an S3 store cannot read {uri.partition('://')[0]}:// objects")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        # Same client and credentials, another bucket; closing the view
        # closes nothing (its exit stack is empty).
        view = S3Store(
            client=self.client, exit_stack=contextlib.AsyncExitStack(), bucket=bucket, prefix=""
        )
        return view, key

    async def create_multipart(self, key: str, *, content_type: str) -> str:
        with _domain_errors():
            created = await self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key(key), ContentType=content_type
            )
        return str(created["UploadId"])

    async def presign_part(
        self, key: str, upload_id: str, part_number: int, *, expires_in: int
    ) -> str:
        with _domain_errors():
            url = await self._presigner.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.key(key),
                    "UploadId": upload_id,
                    "PartNumber": part_number,
                },
                ExpiresIn=expires_in,
            )
        return str(url)

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        parts: list[StoredPart] = []
        with _domain_errors():
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=self.key(key), UploadId=upload_id
            )
            async for page in pages:
                parts.extend(
                    StoredPart(int(p["PartNumber"]), str(p["ETag"]), int(p["Size"]))
                    for p in page.get("Parts", [])
                )
        return sorted(parts, key=lambda p: p.part_number)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> int:
        with _domain_errors():
            await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key(key),
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]
                },
            )
        return await self.size(key)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            with _domain_errors():
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key(key), UploadId=upload_id
                )
        except UploadNotFound:
            return  # gone already: what was asked for
