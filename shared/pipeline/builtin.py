"""The analyzers and pipelines every registry starts with.

Plain data: :func:`shared.pipeline.registry.load_registry` registers it. The
analyzers are named by import path (``"module:attribute"``), not imported:
their modules need the video stack (OpenCV, NumPy), which only the worker
image carries, while the api needs the names alone (for its submit form).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["BUILTIN_ANALYZERS", "BUILTIN_PIPELINES"]

_ANALYZERS = "shared.pipeline.analyzers"

#: The built-in analyzer factories, by name, as ``"module:attribute"`` paths.
BUILTIN_ANALYZERS: Mapping[str, str] = {
    "basic": f"{_ANALYZERS}.basic:BasicAnalyzer",
    "scene": f"{_ANALYZERS}.scene:SceneAnalyzer",
    "faces": f"{_ANALYZERS}.faces:FaceAnalyzer",
    "dhash": f"{_ANALYZERS}.dhash:DHashAnalyzer",
    "ocr": f"{_ANALYZERS}.ocr:OcrAnalyzer",
}

#: The built-in pipelines and their analyzers, in order.
BUILTIN_PIPELINES: Mapping[str, tuple[str, ...]] = {
    "basic": ("basic",),  # size and mean brightness (the default)
    "noop": (),  # decode and sample only: for queue and decoder benchmarks
    "scene": ("scene",),
    "faces": ("faces",),
    "dhash": ("dhash",),
    "ocr": ("ocr",),
    "full": ("basic", "scene", "faces", "dhash", "ocr"),
}
