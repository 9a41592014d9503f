"""Folder-backed adapter of the object store (``file:///path``).

Direct uploads live in ``.multipart/<id>/`` below the folder, one file per
part. Their part URLs are relative: the api serves them (``PUT
/video/uploads/parts/...``) and hands each PUT to ``receive_part``. A URL is
authorised by an HMAC-SHA256 over the upload id, part number and expiry,
keyed by a random key kept in the folder (so URLs outlive a restart of
``videoq dev``). The standard library's ``hmac`` is the whole of it: one
digest and a constant-time compare; a token library (itsdangerous) would add
a dependency for the same few lines.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlencode, urlparse

from shared.errors import InputMissing, InvalidParameter, PartUrlRefused, UploadNotFound
from shared.store.base import StoredPart

__all__ = ["PART_ROUTE", "FileStore"]

_CHUNK = 1024 * 1024
#: Where the api serves the folder store's part URLs.
PART_ROUTE = "/video/uploads/parts/{store_upload_id}/{part_number}"
#: S3's own ceiling on one part.
_MAX_PART_BYTES = 5 * 1024**3
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


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

    # ---- direct uploads ------------------------------------------------------------

    def _upload_dir(self, upload_id: str) -> Path:
        if not _UPLOAD_ID.match(upload_id):
            raise UploadNotFound()
        return self._root / ".multipart" / upload_id

    def _signing_key(self) -> bytes:
        path = self._root / ".multipart" / ".key"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".key-{uuid.uuid4().hex}")
            tmp.write_bytes(secrets.token_bytes(32))
            tmp.chmod(0o600)
            os.replace(tmp, path)  # two racing creators: one key wins for both
        return path.read_bytes()

    def _signature(self, upload_id: str, part_number: int, expires: int) -> str:
        message = f"{upload_id}/{part_number}/{expires}".encode()
        return hmac.new(self._signing_key(), message, hashlib.sha256).hexdigest()

    async def create_multipart(self, key: str, *, content_type: str) -> str:
        self._path(key)  # refuse a key outside the folder now, not at complete
        upload_id = uuid.uuid4().hex
        folder = self._upload_dir(upload_id)
        folder.mkdir(parents=True)
        (folder / "key").write_text(key)
        return upload_id

    async def presign_part(
        self, key: str, upload_id: str, part_number: int, *, expires_in: int
    ) -> str:
        expires = int(time.time()) + expires_in
        path = PART_ROUTE.format(store_upload_id=upload_id, part_number=part_number)
        query = urlencode(
            {"expires": expires, "signature": self._signature(upload_id, part_number, expires)}
        )
        return f"{path}?{query}"

    async def receive_part(
        self,
        upload_id: str,
        part_number: int,
        *,
        expires: int,
        signature: str,
        body: AsyncIterator[bytes],
    ) -> str:
        """Store one PUT part from a URL ``presign_part`` made; return its ETag.

        Raises ``PartUrlRefused`` for a bad or expired signature,
        ``UploadNotFound`` when the upload is gone, ``InvalidParameter`` for
        a part above S3's 5 GiB.
        """
        expected = self._signature(upload_id, part_number, expires)
        if expires < time.time() or not hmac.compare_digest(expected, signature):
            raise PartUrlRefused()
        folder = self._upload_dir(upload_id)
        if not folder.is_dir():
            raise UploadNotFound()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in body:
                    size += len(chunk)
                    if size > _MAX_PART_BYTES:
                        raise InvalidParameter("A part may be at most 5 GiB")
                    digest.update(chunk)
                    await asyncio.to_thread(handle.write, chunk)
            etag = f'"{digest.hexdigest()}"'
            (folder / f"{part_number}.etag").write_text(etag)
            os.replace(tmp, folder / f"{part_number}.part")  # a re-PUT replaces it
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return etag

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        folder = self._upload_dir(upload_id)
        if not folder.is_dir():
            raise UploadNotFound()
        parts = []
        for part in folder.glob("*.part"):
            number = int(part.stem)
            etag = (folder / f"{number}.etag").read_text()
            parts.append(StoredPart(number, etag, part.stat().st_size))
        return sorted(parts, key=lambda p: p.part_number)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> int:
        held = {p.part_number: p.etag for p in await self.list_parts(key, upload_id)}
        numbers = [number for number, _ in parts]
        if not parts or numbers != sorted(set(numbers)):
            raise InvalidParameter("parts must be listed once each, in increasing order")
        for number, etag in parts:
            if held.get(number) != etag:
                raise InvalidParameter(f"parts: part {number} is missing or its etag differs")
        folder = self._upload_dir(upload_id)
        upload = _FileUpload(self._path(key))
        try:
            for number in numbers:
                with (folder / f"{number}.part").open("rb") as handle:
                    while chunk := await asyncio.to_thread(handle.read, _CHUNK):
                        await upload.write(chunk)
        except BaseException:
            await upload.abort()
            raise
        size = await upload.complete()
        await asyncio.to_thread(shutil.rmtree, folder, True)
        return size

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._upload_dir(upload_id), True)
