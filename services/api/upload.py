"""Stream a ``multipart/form-data`` submit straight into the object store.

The body is parsed as it arrives (python-multipart's push parser), the file
part's first bytes are sniffed before anything is stored, and its data goes
to the store in parts, so memory stays flat whatever the upload's size.
Reading stops at the size limit. On any error the partial object is aborted:
a rejected upload leaves nothing behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from shared.errors import EmptyUpload, InvalidParameter, UnsupportedFileType, UploadTooLarge
from shared.sniff import SNIFF_BYTES, looks_like_mp4
from shared.store import ObjectStore, Upload

__all__ = ["ReceivedUpload", "receive_upload"]

#: Form fields other than the file are small; anything larger is refused.
_MAX_FIELD_BYTES = 4096
_MAX_FIELDS = 16


@dataclass
class ReceivedUpload:
    """What a submit carried: the stored file's size and the other fields."""

    size: int
    fields: dict[str, str] = field(default_factory=dict)
    upload: Upload | None = None
    #: Hex SHA-256 of the file (when asked for).
    sha256: str | None = None
    #: The body had a ``file`` part.
    has_file: bool = False


def _boundary(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidParameter("Request must be multipart/form-data with a 'file' part")
    return params[b"boundary"]


def _disposition_name(value: bytes) -> str:
    """The field name in a Content-Disposition header value."""
    _, params = parse_options_header(value)
    return params.get(b"name", b"").decode("utf-8", "replace")


async def receive_upload(
    *,
    stream: AsyncIterator[bytes],
    content_type: str | None,
    store: ObjectStore,
    key: str,
    max_bytes: int,
    digest: bool = False,
) -> ReceivedUpload:
    """Parse the request body and store its ``file`` part, if any, at ``key``.

    The caller completes ``result.upload`` (or aborts it) once it has checked
    the fields. Raises a ``RequestError`` for bad input, after aborting.
    """
    events: list[tuple[str, bytes]] = []
    header_field = bytearray()
    header_value = bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        if bytes(header_field).lower() == b"content-disposition":
            events.append(("disposition", bytes(header_value)))
        header_field.clear()
        header_value.clear()

    parser = MultipartParser(
        _boundary(content_type),
        callbacks={
            "on_part_begin": lambda: events.append(("begin", b"")),
            "on_part_data": lambda d, s, e: events.append(("data", bytes(d[s:e]))),
            "on_part_end": lambda: events.append(("end", b"")),
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    result = ReceivedUpload(size=0)
    hasher = hashlib.sha256() if digest else None
    head = bytearray()  # the file's first bytes, until sniffed
    part_name = ""
    field_value = bytearray()
    saw_file = False

    async def store_data(data: bytes) -> None:
        if result.size + len(data) > max_bytes:
            raise UploadTooLarge(max_bytes)
        result.size += len(data)
        if hasher is not None:
            hasher.update(data)
        if result.upload is None:
            head.extend(data)
            if len(head) < SNIFF_BYTES:
                return
            if not looks_like_mp4(bytes(head)):
                raise UnsupportedFileType()
            result.upload = await store.open_upload(key, content_type="video/mp4")
            data = bytes(head)
            head.clear()
        await result.upload.write(data)

    try:
        async for chunk in stream:
            try:
                parser.write(chunk)
            except MultipartParseError:
                raise InvalidParameter("Malformed multipart body") from None
            for kind, data in events:
                if kind == "begin":
                    part_name = ""
                    field_value.clear()
                elif kind == "disposition":
                    part_name = _disposition_name(data)
                elif kind == "data":
                    if part_name == "file":
                        await store_data(data)
                    else:
                        field_value.extend(data)
                        if len(field_value) > _MAX_FIELD_BYTES:
                            raise InvalidParameter(f"Form field '{part_name}' is too large")
                elif kind == "end":
                    if part_name == "file":
                        if saw_file:
                            raise InvalidParameter("Only one 'file' part is allowed")
                        saw_file = True
                    elif part_name:
                        if len(result.fields) >= _MAX_FIELDS:
                            raise InvalidParameter("Too many form fields")
                        result.fields[part_name] = field_value.decode("utf-8", "replace")
            events.clear()
        try:
            parser.finalize()
        except MultipartParseError:
            raise InvalidParameter("Malformed multipart body") from None
        result.has_file = saw_file
        if not saw_file:
            return result  # another input (source=): the caller checks there is one
        if result.size == 0:
            raise EmptyUpload()
        if result.upload is None:  # shorter than the sniff window
            raise UnsupportedFileType()
        if hasher is not None:
            result.sha256 = hasher.hexdigest()
    except BaseException:
        if result.upload is not None:
            await result.upload.abort()
        raise
    return result
