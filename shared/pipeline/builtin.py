"""The analyzers and pipelines every registry starts with.

Plain data: :func:`shared.pipeline.registry.load_registry` registers it, so
this module imports the analyzers and nothing of the registry.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.pipeline.analyzer import AnalyzerFactory
from shared.pipeline.analyzers.basic import BasicAnalyzer
from shared.pipeline.analyzers.dhash import DHashAnalyzer
from shared.pipeline.analyzers.faces import FaceAnalyzer
from shared.pipeline.analyzers.ocr import OcrAnalyzer
from shared.pipeline.analyzers.scene import SceneAnalyzer

__all__ = ["BUILTIN_ANALYZERS", "BUILTIN_PIPELINES"]

#: The built-in analyzer factories, by name.
BUILTIN_ANALYZERS: Mapping[str, AnalyzerFactory] = {
    "basic": BasicAnalyzer,
    "scene": SceneAnalyzer,
    "faces": FaceAnalyzer,
    "dhash": DHashAnalyzer,
    "ocr": OcrAnalyzer,
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
