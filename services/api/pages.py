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

__all__ = ["indexed_page"]

log = logging.getLogger("videoq.api")


def _dumps(value: Any) -> bytes:
    # As Starlette's JSONResponse renders, so both paths answer the same bytes.
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


async def indexed_page(
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
    no usable index (written before there were indexes, or not matching it):
    the caller then reads the whole document."""
    index = key + INDEX_SUFFIX
    table_start = INDEX_HEADER_BYTES + OFFSET_BYTES * offset
    # One offset more than entries: where the entry after the page starts.
    table_end = None if limit is None else table_start + OFFSET_BYTES * (limit + 1)
    try:
        raw_header, table = await asyncio.gather(
            store.get_range(index, 0, INDEX_HEADER_BYTES),
            store.get_range(index, table_start, table_end),
        )
    except InputMissing:
        return None
    header = IndexHeader.parse(raw_header)
    if header is None or header.results_end >= size or len(table) % OFFSET_BYTES:
        log.warning("results.index_unusable", extra={"key": index})
        return None
    count = len(table) // OFFSET_BYTES - 1  # entries on this page
    reads = [
        store.get_range(key, 0, header.results_start),
        store.get_range(key, header.results_end, size),
    ]
    if count > 0:
        first = offset_at(table, 0)
        after = offset_at(table, count)
        reads.append(store.get_range(key, first, after - 1))
    head, tail, *entries = await asyncio.gather(*reads)
    body = entries[0] if entries else b""
    if not (
        head.endswith(b"[")
        and tail.startswith(b"]")
        and tail.endswith(b"}")
        and (not entries or (body.startswith(b"{") and body.endswith(b"}")))
    ):
        log.warning("results.index_unusable", extra={"key": index})
        return None
    extra = _dumps({**own, "page": {"offset": offset, "limit": limit, "total": header.entries}})
    return b"".join((head, body, tail[:-1], b",", extra[1:]))
