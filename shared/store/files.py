"""Folder-backed adapter of the object store (``file:///path``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from shared.errors import InputMissing

__all__ = ["FileStore"]

_CHUNK = 1024 * 1024


def _read_range(path: Path, start: int, end: int | None) -> bytes:
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(-1 if end is None else end - start)


class _FileUpload:
    """Writes to a temporary file beside the target and renames it at the end,
    so a reader never sees a partial object."""

    def __init__(self, target: Path) -> None:
        self._target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        self._tmp = Path(tmp)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._size = 0

    async def write(self, chunk: bytes) -> None:
        await asyncio.to_thread(self._file.write, chunk)
        self._size += len(chunk)

    async def complete(self) -> int:
        self._file.close()
        await asyncio.to_thread(os.replace, self._tmp, self._target)
        return self._size

    async def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class FileStore:
    """``ObjectStore`` in a folder; keys are relative paths below it."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self._root = root
        if create:
            root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if self._root.resolve() not in path.parents:
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    async def ping(self) -> None:
        if not self._root.is_dir():
            raise InputMissing(f"store folder {self._root} is gone")

    async def close(self) -> None:
        return None

    async def open_upload(self, key: str, *, content_type: str) -> _FileUpload:
        return _FileUpload(self._path(key))

    async def upload_file(self, key: str, path: Path, *, content_type: str) -> int:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, path, target)
        return path.stat().st_size

    async def download_file(self, key: str, path: Path) -> int:
        source = self._path(key)
        if not source.is_file():
            raise InputMissing(f"object {key} not found")
        await asyncio.to_thread(shutil.copyfile, source, path)
        return path.stat().st_size

    async def iter_bytes(self, key: str) -> AsyncGenerator[bytes, None]:
        source = self._path(key)
        if not source.is_file():
            raise InputMissing(f"object {key} not found")
        with source.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, _CHUNK):
                yield chunk

    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            return b""
        source = self._path(key)
        if not source.is_file():
            raise InputMissing(f"object {key} not found")
        return await asyncio.to_thread(_read_range, source, start, end)

    async def size(self, key: str) -> int:
        source = self._path(key)
        if not source.is_file():
            raise InputMissing(f"object {key} not found")
        return source.stat().st_size

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def delete_prefix(self, prefix: str) -> int:
        folder, _, start = prefix.rpartition("/")
        parent = self._path(folder) if folder else self._root.resolve()
        if not parent.is_dir():
            return 0
        deleted = 0
        for entry in sorted(parent.iterdir()):
            if not entry.name.startswith(start) or entry.name.startswith(".upload-"):
                continue
            if entry.is_dir():
                deleted += sum(1 for p in entry.rglob("*") if p.is_file())
                await asyncio.to_thread(shutil.rmtree, entry)
            else:
                entry.unlink(missing_ok=True)
                deleted += 1
        return deleted

    def locate(self, uri: str) -> tuple[FileStore, str]:
        if not uri.startswith("file://"):
            raise InputMissing(f"a folder store cannot read {uri.partition('://')[0]}:// objects")
        path = Path(unquote(urlparse(uri).path))
        return FileStore(path.parent, create=False), path.name
