"""``source=``: a submit whose input is an object already in the store.

The object is the client's: the job reads it where it is and the service
never deletes it (``input_owned`` is false). A client may name only objects
under the prefixes ``VIDEOQ_SOURCE_PREFIXES`` grants it; the object must
exist and start like an MP4, checked with a HEAD and a read of its first
bytes, so a bad source is refused at submit rather than failing in a worker.

On S3 a source is ``s3://bucket/key`` (the bucket may be another one than
the service's, read with the service's credentials). ``videoq dev`` keeps
objects in a folder, so there a source is ``file:///path/to/video.mp4``
under a granted ``file:///folder/`` prefix; the other scheme is 422.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from shared.errors import InputMissing, InvalidParameter, SourceForbidden, UnsupportedFileType
from shared.settings import Settings
from shared.sniff import SNIFF_BYTES, looks_like_mp4
from shared.store import ObjectStore

__all__ = ["Source", "check_source"]

_MAX_URI = 1024


@dataclass(frozen=True)
class Source:
    #: The URI as the job row keeps it (``input_path``).
    uri: str
    size: int


def _scheme(storage_url: str) -> str:
    return "file://" if storage_url.startswith("file://") else "s3://"


def _normalised(uri: str, scheme: str) -> str:
    """``uri`` in the form prefixes are compared in; ``InvalidParameter`` when
    it is not a well-formed object URI of ``scheme``."""
    if len(uri) > _MAX_URI or not uri.isprintable():
        raise InvalidParameter(f"source must be at most {_MAX_URI} printable characters")
    if not uri.startswith(scheme):
        other = "file://" if scheme == "s3://" else "s3://"
        where = "an S3" if scheme == "s3://" else "a folder (videoq dev)"
        hint = f"; {other} sources need the other kind of store" if uri.startswith(other) else ""
        raise InvalidParameter(f"source must be a {scheme} URI with {where} object store{hint}")
    if scheme == "file://":
        # The real path: a symlink or ``..`` cannot step out of a granted folder.
        path = Path(unquote(urlparse(uri).path)).resolve()
        return f"file://{path}"
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    # "." and ".." segments could be collapsed on their way to the store
    # (an HTTP path), reading outside the prefix they were checked under.
    if not bucket or not key or key.endswith("/") or {".", ".."} & set(key.split("/")):
        raise InvalidParameter("source must be s3://bucket/key, with no '.' or '..' segments")
    return uri


def _granted(settings: Settings, client_id: str, uri: str) -> bool:
    return any(
        client == client_id and uri.startswith(_folder(prefix))
        for client, prefix in settings.source_prefixes
    )


#: Where the service keeps the objects it owns (jobs' inputs and results,
#: uploads): never a source, whatever a grant says, or one client could name
#: another's job input.
_OWN_AREAS = ("inputs/", "results/", "uploads/")


def _in_own_area(settings: Settings, uri: str) -> bool:
    own = _folder(settings.storage_url.rstrip("/") + "/")
    return uri.startswith(own) and uri.removeprefix(own).startswith(_OWN_AREAS)


def _folder(prefix: str) -> str:
    """A granted prefix as sources are compared with it (a file:// one by its real path)."""
    if not prefix.startswith("file://"):
        return prefix
    return f"file://{Path(unquote(urlparse(prefix).path)).resolve()}/"


async def check_source(
    uri: str, *, client_id: str, settings: Settings, store: ObjectStore
) -> Source:
    """Check a ``source=`` for ``client_id``: granted (else ``SourceForbidden``,
    403), present (else ``InvalidParameter``, 422), an MP4 (else
    ``UnsupportedFileType``, 415). Reads the first bytes only."""
    normalised = _normalised(uri, _scheme(settings.storage_url))
    if _in_own_area(settings, normalised) or not _granted(settings, client_id, normalised):
        raise SourceForbidden()
    reader, key = store.locate(normalised)
    try:
        size = await reader.size(key)
        head = b""
        # Closed at once: only the first bytes are read, not the whole object.
        async with contextlib.aclosing(reader.iter_bytes(key)) as chunks:
            async for chunk in chunks:
                head += chunk
                if len(head) >= SNIFF_BYTES:
                    break
    except InputMissing:
        raise InvalidParameter(f"source: no object at {normalised}") from None
    if size == 0 or not looks_like_mp4(head[:SNIFF_BYTES]):
        raise UnsupportedFileType()
    return Source(uri=normalised, size=size)
