"""``ocr``: burned-in text, with boxes and confidence, from Tesseract.

Runs the ``tesseract`` binary (Debian package ``tesseract-ocr``) once per
sampled frame, in sparse-text mode (``--psm 11``: text anywhere, no page
layout) and with ``OMP_THREAD_LIMIT=1`` (its OpenMP threads only add overhead
on video frames: it runs twice as fast with one). The image is the grey frame
(no wider than ``max_width``) stacked over its own negative, passed as PGM on
stdin: Tesseract reads dark text on a light ground and misses light text on a
dark or busy ground (white subtitles), and one call on the stacked image costs
far less than two calls (the model loads once). About 0.3-0.8 s per 720p
frame: use ``frame_stride`` on long videos.

Per sampled frame, under ``"ocr"``: a list of text lines ``{"text", "x", "y",
"w", "h", "confidence"}`` in frame pixels, confidence 0-100 (the mean of the
line's words). Words below ``min_confidence`` are dropped, and so are lines
with fewer than two letters or digits (texture read as stray characters); a
line found in both the image and its negative is kept once. The summary
counts the frames with text.

A machine without ``tesseract`` or without the language's data fails the job
at once with ``AnalyzerUnavailable`` (a permanent error).
"""

from __future__ import annotations

import csv
import functools
import io
import os
import shutil
import subprocess
from typing import Any

import cv2
import numpy as np

from shared.pipeline.analyzer import Analyzer
from shared.pipeline.errors import AnalyzerUnavailable
from shared.pipeline.frame import Frame

__all__ = ["OcrAnalyzer", "parse_tsv"]

# White rows between the image and its negative, so no text line spans both.
_GAP = 32


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Intersection over union of two boxes."""
    w = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter) / float(a["w"] * a["h"] + b["w"] * b["h"] - inter)


@functools.cache
def _languages(binary: str) -> frozenset[str]:
    try:
        done = subprocess.run(
            [binary, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AnalyzerUnavailable(f"tesseract does not run: {exc}") from None
    lines = (done.stdout + done.stderr).splitlines()
    return frozenset(line.strip() for line in lines if line and not line.startswith("List of"))


def parse_tsv(tsv: str, *, min_confidence: float = 0.0) -> list[dict[str, Any]]:
    """Tesseract's TSV output, as text lines with boxes and mean word confidence."""
    lines: dict[tuple[str, str, str, str], list[tuple[str, int, int, int, int, float]]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5":
            continue
        text = (row.get("text") or "").strip()
        conf = float(row.get("conf") or -1)
        if not text or conf < min_confidence:
            continue
        key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
        box = (int(row["left"]), int(row["top"]), int(row["width"]), int(row["height"]))
        lines.setdefault(key, []).append((text, *box, conf))
    result = []
    for words in lines.values():
        x0 = min(w[1] for w in words)
        y0 = min(w[2] for w in words)
        x1 = max(w[1] + w[3] for w in words)
        y1 = max(w[2] + w[4] for w in words)
        result.append(
            {
                "text": " ".join(w[0] for w in words),
                "x": x0,
                "y": y0,
                "w": x1 - x0,
                "h": y1 - y0,
                "confidence": round(sum(w[5] for w in words) / len(words), 1),
            }
        )
    return result


class OcrAnalyzer(Analyzer):
    """Text lines per frame via the ``tesseract`` binary; see the module docstring."""

    def __init__(
        self,
        *,
        language: str = "eng",
        max_width: int = 1280,
        min_confidence: float = 60.0,
        invert: bool = True,
        timeout: float = 60.0,
        binary: str = "tesseract",
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise AnalyzerUnavailable(
                "The ocr analyzer needs the tesseract binary (Debian package"
                " tesseract-ocr), which is not installed"
            )
        if language not in _languages(path):
            raise AnalyzerUnavailable(
                f"Tesseract has no data for language {language!r}"
                f" (Debian package tesseract-ocr-{language})"
            )
        self._command = [path, "stdin", "stdout", "-l", language, "--psm", "11", "tsv"]
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        self._max_width = max_width
        self._min_confidence = min_confidence
        self._invert = invert
        self._timeout = timeout
        self._frames_with_text = 0

    def analyze(self, frame: Frame) -> dict[str, Any]:
        width, height = frame.scaled_size(self._max_width)
        grey = frame.luma_small(width, height)
        offset = height + _GAP
        image = np.full((height + offset if self._invert else height, width), 255, np.uint8)
        image[:height] = grey
        if self._invert:
            cv2.bitwise_not(grey, dst=image[offset:])
        ok, encoded = cv2.imencode(".pgm", image)
        if not ok:
            raise RuntimeError("cannot encode the frame for tesseract")
        try:
            done = subprocess.run(
                self._command,
                input=encoded.tobytes(),
                capture_output=True,
                env=self._env,
                timeout=self._timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise AnalyzerUnavailable(
                f"tesseract took longer than {self._timeout:g} s on frame {frame.index}"
            ) from None
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()[-500:]
            raise AnalyzerUnavailable(f"tesseract failed on frame {frame.index}: {message}")
        found = parse_tsv(
            done.stdout.decode("utf-8", "replace"), min_confidence=self._min_confidence
        )
        lines: list[dict[str, Any]] = []
        for line in sorted(found, key=lambda item: -float(item["confidence"])):
            if sum(ch.isalnum() for ch in line["text"]) < 2:
                continue
            if line["y"] >= offset:
                line["y"] -= offset
            if any(_overlap(line, kept) > 0.5 for kept in lines):
                continue
            lines.append(line)
        sx, sy = frame.width / width, frame.height / height
        for line in lines:
            line["x"], line["w"] = round(line["x"] * sx), round(line["w"] * sx)
            line["y"], line["h"] = round(line["y"] * sy), round(line["h"] * sy)
        lines.sort(key=lambda item: (item["y"], item["x"]))
        if lines:
            self._frames_with_text += 1
        return {"ocr": lines}

    def summary(self) -> dict[str, Any]:
        return {"frames_with_text": self._frames_with_text}
