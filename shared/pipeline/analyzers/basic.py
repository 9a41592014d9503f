"""``basic``: frame size and mean brightness, from the luma plane alone."""

from __future__ import annotations

from typing import Any

import cv2

from shared.pipeline.analyzer import Analyzer
from shared.pipeline.frame import Frame

__all__ = ["BasicAnalyzer"]


class BasicAnalyzer(Analyzer):
    """Per frame: ``{"width", "height", "mean_brightness"}``.

    ``mean_brightness`` is the mean of the Y (luma) plane, 0-255 as stored (for
    limited-range video black is about 16 and white about 235); no colour
    conversion is done.
    """

    def analyze(self, frame: Frame) -> dict[str, Any]:
        mean = cv2.mean(frame.luma)[0]
        return {
            "width": frame.width,
            "height": frame.height,
            "mean_brightness": round(float(mean), 3),
        }
