"""The results document, written as a stream so memory stays flat.

Layout (compact UTF-8 JSON; ``summary`` comes last because it is only known at
the end)::

    {"job_id": "...", "video": {...}, "pipeline": "...",
     "results": [{"frame_index": 0, "timestamp_s": 0.0, "result": {...}}, ...],
     "summary": {...}}

The document is written to ``<output>.part`` and renamed into place when it is
complete, so a reader never sees half a document; a failed job leaves nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

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


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is; NaN and infinity are refused."""
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
    )


class ResultsWriter:
    """Writes one results document entry by entry."""

    def __init__(self, path: Path, *, header: dict[str, Any]) -> None:
        self._path = path
        self._part = path.with_name(path.name + ".part")
        self._file: IO[str] | None = self._part.open("w", encoding="utf-8", buffering=_BUFFER_BYTES)
        self._first = True
        prefix = dumps(header)
        self._file.write(prefix[:-1] + ("," if header else "") + '"results":[')

    def write(self, entry: dict[str, Any]) -> None:
        """Append one entry to ``results``."""
        assert self._file is not None, "writer is closed"
        if self._first:
            self._first = False
        else:
            self._file.write(",")
        self._file.write(dumps(entry))

    def finish(self, summary: dict[str, Any]) -> int:
        """Write ``summary``, close, move the document into place; returns its size in bytes."""
        assert self._file is not None, "writer is closed"
        self._file.write('],"summary":' + dumps(summary) + "}")
        self._file.close()
        self._file = None
        os.replace(self._part, self._path)
        return self._path.stat().st_size

    def abort(self) -> None:
        """Close and delete the partial document (safe to call more than once)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._part.unlink(missing_ok=True)
