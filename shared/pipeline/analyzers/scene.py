"""``scene``: exposure, sharpness, motion, colour change and shot boundaries.

Per sampled frame, from cheap views of the frame (see ``Frame``), under ``"scene"``:

- ``luma_mean``, ``luma_std``: ``cv2.meanStdDev`` of the full-size Y plane (0-255);
- ``sharpness``: variance of the Laplacian (``CV_16S``) of the Y plane at a
  working resolution: halved until no wider than 960 pixels (640x360 for
  720p, 960x540 for 1080p and 4K), which bounds the cost and keeps values
  comparable across resolutions;
- ``motion``: mean absolute difference of a 160x90 grey downscale against the
  previous sampled frame, 0..1 (``None`` on the first frame);
- ``hist_distance``: colour-histogram distance to the previous sampled frame,
  0..1 (``None`` on the first frame): the largest of the earth mover's
  distances between the hue (circular; saturated pixels only), saturation and
  value histograms of a 160x90 HSV downscale. Unlike bin-by-bin distances it
  does not jump when a flat colour sits on a bin edge and compression noise
  moves it across;
- ``shot_boundary``: this frame starts a new shot; ``shot``: its shot number (0-based).

A frame starts a new shot when the colours changed (``hist_distance >=
hist_threshold``), or when the picture suddenly changed almost everywhere
while the colours did not (``motion >= motion_threshold`` and at least
``motion_ratio`` times the mean motion of the previous few sampled frames; this
catches cuts between shots of the same palette without firing on steady
camera motion). The first frame starts shot 0 and is not a boundary. At
``frame_stride > 1`` a cut is reported at the first sampled frame after it.

The summary lists the shots: first and last sampled frame of each and their times.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.pipeline.analyzer import Analyzer
from shared.pipeline.frame import Frame

__all__ = ["SceneAnalyzer", "colour_histograms", "histogram_distance"]

_SMALL = (160, 90)
# Sharpness is measured on the luma halved until no wider than this: 640x360
# for 720p, 960x540 for 1080p and 4K. The cost stays bounded (0.2 ms rather
# than 0.8 ms at 720p and 7 ms at 4K), and values compare across resolutions.
_WORKING_WIDTH = 960
_BINS = 32
# Hue of pixels less saturated than this is noise, so they stay out of the hue histogram.
_MIN_SATURATION = 40
_MOTION_WINDOW = 8

#: Hue, saturation and value histograms, one row each (fractions of the pixels).
Histograms = NDArray[np.float64]


def colour_histograms(bgr: NDArray[np.uint8]) -> Histograms:
    """Hue, saturation and value histograms of a BGR image, as a ``(3, bins)`` array."""
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    saturated = cv2.inRange(hsv, (0, _MIN_SATURATION, 0), (180, 255, 255))
    hists = np.empty((3, _BINS), np.float64)
    hists[0] = cv2.calcHist([hsv], [0], saturated, [_BINS], [0, 180]).ravel()
    hists[1] = cv2.calcHist([hsv], [1], None, [_BINS], [0, 256]).ravel()
    hists[2] = cv2.calcHist([hsv], [2], None, [_BINS], [0, 256]).ravel()
    hists /= hsv.shape[0] * hsv.shape[1]
    return hists


def histogram_distance(a: Histograms, b: Histograms) -> float:
    """The largest per-channel earth mover's distance between two sets of histograms, 0..1."""
    # 1-D EMD is the L1 distance of the cumulative histograms; on the hue circle
    # the best rotation of the cumulative difference is its median. Both are
    # scaled so that moving everything across the whole range counts 1 (half
    # the circle, for hue).
    cumulative = np.cumsum(a - b, axis=1)
    hue = cumulative[0]
    hue_d = float(np.abs(hue - _median(hue)).sum()) * 2.0
    sat_val_d = float(np.abs(cumulative[1:]).sum(axis=1).max())
    return min(1.0, max(hue_d, sat_val_d) / _BINS)


def _median(values: NDArray[np.float64]) -> float:
    # np.median's own checks cost ~30 µs a call, more than the sort of 32 values.
    ordered = np.sort(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


class SceneAnalyzer(Analyzer):
    """Per-frame scene measures and the shot list; see the module docstring."""

    def __init__(
        self,
        *,
        hist_threshold: float = 0.2,
        motion_threshold: float = 0.1,
        motion_ratio: float = 3.0,
    ) -> None:
        self._hist_threshold = hist_threshold
        self._motion_threshold = motion_threshold
        self._motion_ratio = motion_ratio
        self._prev_grey: NDArray[np.uint8] | None = None
        self._prev_hists: Histograms | None = None
        self._recent_motion: deque[float] = deque(maxlen=_MOTION_WINDOW)
        self._shots: list[dict[str, Any]] = []
        self._last: tuple[int, float] = (0, 0.0)

    def analyze(self, frame: Frame) -> dict[str, Any]:
        mean, std = cv2.meanStdDev(frame.luma)
        working = frame.luma_halved(_WORKING_WIDTH)
        _, lap_std = cv2.meanStdDev(cv2.Laplacian(working, cv2.CV_16S))
        grey = frame.luma_small(*_SMALL)
        hists = colour_histograms(frame.bgr_small(*_SMALL, sampled=True))

        motion: float | None = None
        distance: float | None = None
        boundary = False
        if self._prev_grey is not None and self._prev_hists is not None:
            motion = float(cv2.mean(cv2.absdiff(grey, self._prev_grey))[0]) / 255.0
            distance = histogram_distance(self._prev_hists, hists)
            boundary = distance >= self._hist_threshold or self._sudden(motion)
            self._recent_motion.append(motion)
        self._prev_grey = grey.copy()
        self._prev_hists = hists

        if boundary or not self._shots:
            self._end_shot()
            self._shots.append({"start_frame": frame.index, "start_s": frame.timestamp_s})
        self._last = (frame.index, frame.timestamp_s)
        return {
            "scene": {
                "luma_mean": round(float(mean[0, 0]), 3),
                "luma_std": round(float(std[0, 0]), 3),
                "sharpness": round(float(lap_std[0, 0]) ** 2, 3),
                "motion": None if motion is None else round(motion, 5),
                "hist_distance": None if distance is None else round(distance, 5),
                "shot_boundary": boundary,
                "shot": len(self._shots) - 1,
            }
        }

    def _sudden(self, motion: float) -> bool:
        if motion < self._motion_threshold or len(self._recent_motion) < 2:
            return False
        baseline = sum(self._recent_motion) / len(self._recent_motion)
        return motion >= self._motion_ratio * baseline

    def _end_shot(self) -> None:
        if self._shots:
            self._shots[-1]["end_frame"], self._shots[-1]["end_s"] = self._last

    def summary(self) -> dict[str, Any]:
        self._end_shot()
        shots = [
            {
                "shot": i,
                "start_frame": s["start_frame"],
                "end_frame": s["end_frame"],
                "start_s": s["start_s"],
                "end_s": s["end_s"],
            }
            for i, s in enumerate(self._shots)
        ]
        return {"shot_count": len(shots), "shots": shots}
