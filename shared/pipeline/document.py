"""The results document, written as a stream so memory stays flat.

Layout (compact UTF-8 JSON; ``summary`` comes last because it is only known at
the end)::

    {"job_id": "...", "video": {...}, "pipeline": "...",
     "results": [{"frame_index": 0, "timestamp_s": 0.0, "result": {...}}, ...],
     "summary": {...}}

The document is written to ``<output>.part`` and renamed into place when it is
complete, so a reader never sees half a document; a failed job leaves nothing.

Beside it the writer leaves ``<output>.index``, the byte offsets of the
entries (format: ``shared.pipeline.index``), so that a page of ``results`` is
a few ranged reads whatever the document's size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from shared.pipeline.index import INDEX_SUFFIX, pack_header, pack_offset

__all__ = ["ResultsWriter", "dumps"]

_BUFFER_BYTES = 1 << 20


def _default(value: Any) -> Any:
    # Analyzers should return plain Python values; numpy scalars and arrays slip
    # through easily, so they are converted rather than refused.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# One encoder for every call: json.dumps builds a new one per call whenever
# an option differs from its defaults, which is per frame here.
_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
)


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is; NaN and infinity are refused."""
    return _ENCODER.encode(value)


class ResultsWriter:
    """Writes one results document entry by entry, and its index beside it."""

    def __init__(self, path: Path, *, header: dict[str, Any]) -> None:
        self._path = path
        self._part = path.with_name(path.name + ".part")
        self._index_path = path.with_name(path.name + INDEX_SUFFIX)
        self._index_part = path.with_name(path.name + INDEX_SUFFIX + ".part")
        # Bytes, not text: the index counts bytes, and non-ASCII is kept as is.
        self._file: IO[bytes] | None = self._part.open("wb", buffering=_BUFFER_BYTES)
        self._index: IO[bytes] | None = self._index_part.open("wb", buffering=_BUFFER_BYTES)
        self._index.write(pack_header(0, 0, 0))  # filled in by finish()
        self._entries = 0
        self._position = 0
        prefix = dumps(header)
        self._put(prefix[:-1] + ("," if header else "") + '"results":[')
        self._results_start = self._position

    def _put(self, text: str) -> None:
        assert self._file is not None, "writer is closed"
        data = text.encode()
        self._file.write(data)
        self._position += len(data)

    def write(self, entry: dict[str, Any]) -> None:
        """Append one entry to ``results``."""
        assert self._index is not None, "writer is closed"
        if self._entries:
            self._put(",")
        self._index.write(pack_offset(self._position))
        self._put(dumps(entry))
        self._entries += 1

    def finish(self, summary: dict[str, Any]) -> int:
        """Write ``summary``, close, move the document and its index into
        place; returns the document's size in bytes."""
        assert self._file is not None and self._index is not None, "writer is closed"
        results_end = self._position
        self._put('],"summary":' + dumps(summary) + "}")
        self._index.write(pack_offset(results_end + 1))
        self._index.seek(0)
        self._index.write(pack_header(self._entries, self._results_start, results_end))
        self._file.close()
        self._index.close()
        self._file = self._index = None
        os.replace(self._index_part, self._index_path)
        os.replace(self._part, self._path)
        return self._path.stat().st_size

    def abort(self) -> None:
        """Close and delete the partial document (safe to call more than once)."""
        for handle in (self._file, self._index):
            if handle is not None:
                handle.close()
        self._file = self._index = None
        self._part.unlink(missing_ok=True)
        self._index_part.unlink(missing_ok=True)
