"""A page of a results document read through its index (see
``shared.pipeline.index``): a few ranged reads, no parsing.

The page is spliced from the stored bytes: the document's head (up to
``"results":[``), the entries' bytes, its tail (``],"summary":...``) and the
job's own fields, which gives the very bytes the whole-document path's
``JSONResponse`` would (the document is compact JSON as ``json.dumps`` writes
it, and the keys keep their order).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from shared.errors import InputMissing
from shared.pipeline.index import (
    INDEX_HEADER_BYTES,
    INDEX_SUFFIX,
    OFFSET_BYTES,
    IndexHeader,
    offset_at,
)
from shared.store import ObjectStore

__all__ = ["IndexedPages"]

log = logging.getLogger("videoq.api")


def _dumps(value: Any) -> bytes:
    # As Starlette's JSONResponse renders, so both paths answer the same bytes.
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


@dataclass(frozen=True, slots=True)
class _Frame:
    """What every page of a document shares: its index's header, the
    document's head and its tail."""

    header: IndexHeader
    head: bytes
    tail: bytes


class IndexedPages:
    """Reads pages through indexes, keeping the frames of the documents read
    last (a client pages through one job: two ranged reads a page after the
    first instead of five). A completed job's document never changes, so a
    kept frame cannot go stale; at most ``documents`` frames of at most
    ``frame_bytes`` each are kept, so memory stays bounded."""

    def __init__(self, *, documents: int = 256, frame_bytes: int = 64 * 1024) -> None:
        self._frames: OrderedDict[tuple[str, int], _Frame] = OrderedDict()
        self._documents = documents
        self._frame_bytes = frame_bytes

    async def page(
        self,
        store: ObjectStore,
        key: str,
        *,
        size: int,
        offset: int,
        limit: int | None,
        own: dict[str, Any],
    ) -> bytes | None:
        """The page's JSON body (the document with ``results[offset:offset+limit]``,
        ``own`` and ``page``), or None when the document of ``size`` bytes has
        no usable index (written before there were indexes, or not matching
        it): the caller then reads the whole document."""
        index = key + INDEX_SUFFIX
        table_start = INDEX_HEADER_BYTES + OFFSET_BYTES * offset
        # One offset more than entries: where the entry after the page starts.
        table_end = None if limit is None else table_start + OFFSET_BYTES * (limit + 1)
        frame = self._frames.get((key, size))
        try:
            if frame is not None:
                self._frames.move_to_end((key, size))
                table = await store.get_range(index, table_start, table_end)
                raw_header = None
            else:
                raw_header, table = await asyncio.gather(
                    store.get_range(index, 0, INDEX_HEADER_BYTES),
                    store.get_range(index, table_start, table_end),
                )
        except InputMissing:
            return None
        if len(table) % OFFSET_BYTES:
            return _unusable(index)
        count = len(table) // OFFSET_BYTES - 1  # entries on this page
        entries = b""
        if frame is None:
            assert raw_header is not None
            frame, entries = await self._frame_and_entries(store, key, raw_header, table, size)
            if frame is None:
                return _unusable(index)
        elif count > 0:
            entries = await store.get_range(key, *_span(table, count))
        if count > 0 and not (entries.startswith(b"{") and entries.endswith(b"}")):
            return _unusable(index)
        total = frame.header.entries
        extra = _dumps({**own, "page": {"offset": offset, "limit": limit, "total": total}})
        return b"".join((frame.head, entries, frame.tail[:-1], b",", extra[1:]))

    async def _frame_and_entries(
        self, store: ObjectStore, key: str, raw_header: bytes, table: bytes, size: int
    ) -> tuple[_Frame | None, bytes]:
        header = IndexHeader.parse(raw_header)
        if header is None or header.results_end >= size:
            return None, b""
        count = len(table) // OFFSET_BYTES - 1
        reads = [
            store.get_range(key, 0, header.results_start),
            store.get_range(key, header.results_end, size),
        ]
        if count > 0:
            reads.append(store.get_range(key, *_span(table, count)))
        head, tail, *entries = await asyncio.gather(*reads)
        if not (head.endswith(b"[") and tail.startswith(b"]") and tail.endswith(b"}")):
            return None, b""
        frame = _Frame(header, head, tail)
        if len(head) + len(tail) <= self._frame_bytes:
            self._frames[(key, size)] = frame
            while len(self._frames) > self._documents:
                self._frames.popitem(last=False)
        return frame, entries[0] if entries else b""


def _span(table: bytes, count: int) -> tuple[int, int]:
    """The document's bytes of the ``count`` entries whose offsets start ``table``."""
    return offset_at(table, 0), offset_at(table, count) - 1


def _unusable(index: str) -> bytes | None:
    """None, and a warning: the index does not match its document."""
    log.warning("results.index_unusable", extra={"key": index})
    return None
