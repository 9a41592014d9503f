"""``faces``: frontal face boxes from OpenCV's bundled Haar cascade.

Works offline with what ``opencv-python-headless`` 4.x ships
(``cv2.data.haarcascades``; OpenCV 5 removed both the cascades and
``CascadeClassifier``). Detection runs on a grey downscale no wider than
``max_width`` (a 720p frame costs about 10x more at full size) and the boxes
are scaled back to frame pixels.

Per sampled frame, under ``"faces"``: a list of ``{"x", "y", "w", "h"}`` boxes,
largest first. The summary counts the frames with a face and the most faces in
one frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2

from shared.pipeline.analyzer import Analyzer
from shared.pipeline.errors import AnalyzerUnavailable
from shared.pipeline.frame import Frame

__all__ = ["FaceAnalyzer", "cascade_path"]


def cascade_path(name: str = "haarcascade_frontalface_default.xml") -> Path:
    """Path of one of OpenCV's bundled Haar cascades."""
    # cv2's type stubs do not declare the ``cv2.data`` submodule.
    data: Any = getattr(cv2, "data", None)
    folder = getattr(data, "haarcascades", "")
    return Path(folder) / name


class FaceAnalyzer(Analyzer):
    """Face boxes per frame; see the module docstring."""

    parallel = True  # detectMultiScale spreads over OpenCV's threads

    def __init__(
        self,
        *,
        max_width: int = 640,
        scale_factor: float = 1.2,
        min_neighbors: int = 5,
        min_size: int = 40,
    ) -> None:
        path = cascade_path()
        classifier = cv2.CascadeClassifier(str(path)) if path.is_file() else None
        if classifier is None or classifier.empty():
            raise AnalyzerUnavailable(
                f"The faces analyzer needs OpenCV's Haar cascade {path.name}, which"
                " this OpenCV does not ship (opencv-python-headless 4.x does)"
            )
        self._classifier = classifier
        self._max_width = max_width
        self._scale_factor = scale_factor
        self._min_neighbors = min_neighbors
        self._min_size = min_size
        self._frames_with_faces = 0
        self._max_faces = 0

    def analyze(self, frame: Frame) -> dict[str, Any]:
        width, height = frame.scaled_size(self._max_width)
        grey = cv2.equalizeHist(frame.luma_small(width, height))
        found = self._classifier.detectMultiScale(
            grey,
            scaleFactor=self._scale_factor,
            minNeighbors=self._min_neighbors,
            minSize=(self._min_size, self._min_size),
        )
        sx, sy = frame.width / width, frame.height / height
        boxes = [
            {"x": round(x * sx), "y": round(y * sy), "w": round(w * sx), "h": round(h * sy)}
            for (x, y, w, h) in (tuple(int(v) for v in box) for box in found)
        ]
        boxes.sort(key=lambda b: (-b["w"] * b["h"], b["y"], b["x"]))
        if boxes:
            self._frames_with_faces += 1
            self._max_faces = max(self._max_faces, len(boxes))
        return {"faces": boxes}

    def summary(self) -> dict[str, Any]:
        return {"frames_with_faces": self._frames_with_faces, "max_faces": self._max_faces}
