"""``dhash``: a 64-bit difference hash per frame, and runs of near-duplicate frames.

The hash (Krawetz's dHash) compares neighbouring pixels of a 9x8 grey
thumbnail: bit ``8*r + c`` is set when pixel ``(r, c+1)`` is brighter than
``(r, c)``. Frames that look alike have hashes a few bits apart, whatever the
compression, small brightness changes or resolution.

Per sampled frame, under ``"dhash"``: ``hash`` (16 hex digits), ``distance``
(bits differing from the previous sampled frame, ``None`` on the first) and
``near_duplicate`` (``distance <= threshold``). The summary counts the
near-duplicate frames and lists the runs of consecutive sampled frames that are
each a near-duplicate of the one before (a still image, a paused video, a
slide), with their first and last frame and times.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.pipeline.analyzer import Analyzer
from shared.pipeline.frame import Frame

__all__ = ["DHashAnalyzer", "dhash", "hamming"]

# The thumbnail is taken from the same 160x90 grey downscale the scene
# analyzer uses (cached on the frame), which costs far less than shrinking the
# full frame to 9x8 in one step.
_SMALL = (160, 90)
_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def dhash(grey: NDArray[np.uint8]) -> int:
    """The 64-bit difference hash of a grey image (any size)."""
    thumb = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (thumb[:, 1:] > thumb[:, :-1]).ravel().astype(np.uint64)
    return int((bits * _WEIGHTS).sum())


def hamming(a: int, b: int) -> int:
    """Number of bits that differ between two hashes."""
    return (a ^ b).bit_count()


class DHashAnalyzer(Analyzer):
    """Per-frame dHash and near-duplicate runs; see the module docstring."""

    def __init__(self, *, threshold: int = 6) -> None:
        self._threshold = threshold
        self._prev: int | None = None
        self._near_duplicates = 0
        self._runs: list[dict[str, Any]] = []
        self._run: dict[str, Any] | None = None
        self._last: tuple[int, float] = (0, 0.0)

    def analyze(self, frame: Frame) -> dict[str, Any]:
        small = _SMALL[0] <= frame.width and _SMALL[1] <= frame.height
        value = dhash(frame.luma_small(*_SMALL) if small else frame.luma)
        distance = None if self._prev is None else hamming(self._prev, value)
        duplicate = distance is not None and distance <= self._threshold
        if duplicate:
            self._near_duplicates += 1
            if self._run is None:
                index, seconds = self._last
                self._run = {"start_frame": index, "start_s": seconds, "frames": 1}
            self._run["frames"] += 1
            self._run["end_frame"], self._run["end_s"] = frame.index, frame.timestamp_s
        elif self._run is not None:
            self._runs.append(self._run)
            self._run = None
        self._prev = value
        self._last = (frame.index, frame.timestamp_s)
        return {
            "dhash": {"hash": f"{value:016x}", "distance": distance, "near_duplicate": duplicate}
        }

    def summary(self) -> dict[str, Any]:
        runs = [*self._runs, *([self._run] if self._run is not None else [])]
        return {
            "threshold": self._threshold,
            "near_duplicate_frames": self._near_duplicates,
            "duplicate_runs": [
                {
                    "start_frame": r["start_frame"],
                    "end_frame": r["end_frame"],
                    "start_s": r["start_s"],
                    "end_s": r["end_s"],
                    "frames": r["frames"],
                }
                for r in runs
            ],
        }
