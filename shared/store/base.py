"""The object-store port: bytes in and out by key, streamed."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

__all__ = ["ObjectStore", "Upload"]


class Upload(Protocol):
    """An object being written in parts; memory stays flat whatever its size."""

    async def write(self, chunk: bytes) -> None: ...

    async def complete(self) -> int:
        """Make the object visible; return its size in bytes."""

    async def abort(self) -> None:
        """Drop whatever was written; the object never appears."""


class ObjectStore(Protocol):
    """Raises ``DependencyUnavailable`` when the store cannot be reached and
    ``InputMissing`` when a key that must exist does not."""

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
