"""The index of a results document: where each entry starts, so a page of
``results`` is a few ranged reads, whatever the document's size.

``<document key>.index`` (``INDEX_SUFFIX``: under the document's own key
prefix, so whatever deletes a job's results by prefix deletes both), written
by ``shared.pipeline.document.ResultsWriter``. Little-endian, fixed width::

    header  magic "VQRIDX1" + LF, entries N, results_start, results_end   (4 x 8 bytes)
    table   N + 1 offsets (8 bytes each): where entry i starts; the last one
            is results_end + 1, as if a comma followed the last entry

``results_start`` is the document's byte after ``"results":[``,
``results_end`` that of the closing ``]``; entries ``a`` to ``b - 1`` are the
bytes from ``table[a]`` to ``table[b] - 1`` (the comma before entry ``b`` left
out). Entry ``i``'s offset is at ``INDEX_HEADER_BYTES + OFFSET_BYTES * i``.

Plain ``struct``, no NumPy: the api (whose image has no video stack) reads it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "INDEX_HEADER_BYTES",
    "INDEX_SUFFIX",
    "OFFSET_BYTES",
    "IndexHeader",
    "offset_at",
    "pack_header",
    "pack_offset",
]

INDEX_SUFFIX = ".index"
_MAGIC = b"VQRIDX1\n"
_HEADER = struct.Struct("<8sQQQ")
_OFFSET = struct.Struct("<Q")
INDEX_HEADER_BYTES = _HEADER.size
OFFSET_BYTES = _OFFSET.size


def pack_header(entries: int, results_start: int, results_end: int) -> bytes:
    return _HEADER.pack(_MAGIC, entries, results_start, results_end)


def pack_offset(offset: int) -> bytes:
    return _OFFSET.pack(offset)


def offset_at(table: bytes, position: int) -> int:
    """The ``position``-th offset of ``table`` (a slice of the table)."""
    return int(_OFFSET.unpack_from(table, position * OFFSET_BYTES)[0])


@dataclass(frozen=True, slots=True)
class IndexHeader:
    """The first ``INDEX_HEADER_BYTES`` of an index, decoded."""

    entries: int
    #: Byte offset in the document just after ``"results":[``.
    results_start: int
    #: Byte offset in the document of the ``]`` closing ``results``.
    results_end: int

    @classmethod
    def parse(cls, data: bytes) -> IndexHeader | None:
        """The header, or None if ``data`` is not one (another format)."""
        if len(data) != _HEADER.size:
            return None
        magic, entries, start, end = _HEADER.unpack(data)
        if magic != _MAGIC or start > end:
            return None
        return cls(entries, start, end)
