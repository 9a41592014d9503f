"""The object-store port: bytes in and out by key, streamed."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ObjectStore", "StoredPart", "Upload"]


@dataclass(frozen=True)
class StoredPart:
    """A part of a multipart upload that the store holds."""

    part_number: int
    etag: str
    size: int


class Upload(Protocol):
    """An object being written in parts; memory stays flat whatever its size."""

    async def write(self, chunk: bytes) -> None: ...

    async def complete(self) -> int:
        """Make the object visible; return its size in bytes."""

    async def abort(self) -> None:
        """Drop whatever was written; the object never appears."""


class ObjectStore(Protocol):
    """Raises ``DependencyUnavailable`` when the store cannot be reached and
    ``InputMissing`` when a key that must exist does not.

    The ``*_multipart`` methods are direct uploads (``shared.uploads``): the
    client PUTs the parts itself, to the URLs ``presign_part`` gives. They
    raise ``UploadNotFound`` for a multipart upload the store does not hold
    and ``InvalidParameter`` for parts it refuses to assemble.
    """

    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    async def open_upload(self, key: str, *, content_type: str) -> Upload: ...

    async def upload_file(self, key: str, path: Path, *, content_type: str) -> int: ...

    async def download_file(self, key: str, path: Path) -> int: ...

    def iter_bytes(self, key: str) -> AsyncGenerator[bytes, None]: ...

    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive; the object's end if None):
        fewer where the object is shorter, ``b""`` from at or past its end
        (and, without a request, when ``end <= start``)."""

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; return how many."""

    def locate(self, uri: str) -> tuple[ObjectStore, str]:
        """The store and key that read an object outside this store's own
        keys: ``s3://bucket/key`` on S3, ``file:///path`` on a folder store
        (``source=`` inputs). Read it only; the service never deletes it.
        Raises ``InputMissing`` for a scheme this store cannot read."""

    async def create_multipart(self, key: str, *, content_type: str) -> str:
        """Start a multipart upload of ``key``; return the store's id for it."""

    async def presign_part(
        self, key: str, upload_id: str, part_number: int, *, expires_in: int
    ) -> str:
        """A URL a client PUTs part ``part_number`` to, valid ``expires_in``
        seconds. A relative URL is served by the api itself (folder store)."""

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        """The parts received so far, by part number."""

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> int:
        """Assemble ``(part_number, etag)`` in order into ``key``; return its size."""

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop the upload and its parts (nothing if it is gone already)."""
