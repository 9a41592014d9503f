"""The analyzers and pipelines every registry starts with."""

from __future__ import annotations

from shared.pipeline.analyzers.basic import BasicAnalyzer
from shared.pipeline.analyzers.dhash import DHashAnalyzer
from shared.pipeline.analyzers.faces import FaceAnalyzer
from shared.pipeline.analyzers.ocr import OcrAnalyzer
from shared.pipeline.analyzers.scene import SceneAnalyzer
from shared.pipeline.registry import PipelineRegistry

__all__ = ["BUILTIN_PIPELINES", "DEFAULT_PIPELINE", "register_builtins"]

#: The pipeline a job runs when it names none.
DEFAULT_PIPELINE = "basic"

#: The built-in pipelines and their analyzers, in order.
BUILTIN_PIPELINES: dict[str, tuple[str, ...]] = {
    "basic": ("basic",),  # size and mean brightness (the default)
    "noop": (),  # decode and sample only: for queue and decoder benchmarks
    "scene": ("scene",),
    "faces": ("faces",),
    "dhash": ("dhash",),
    "ocr": ("ocr",),
    "full": ("basic", "scene", "faces", "dhash", "ocr"),
}


def register_builtins(registry: PipelineRegistry) -> None:
    """Register the built-in analyzers and :data:`BUILTIN_PIPELINES`."""
    registry.register_analyzer("basic", BasicAnalyzer)
    registry.register_analyzer("scene", SceneAnalyzer)
    registry.register_analyzer("faces", FaceAnalyzer)
    registry.register_analyzer("dhash", DHashAnalyzer)
    registry.register_analyzer("ocr", OcrAnalyzer)
    for name, analyzers in BUILTIN_PIPELINES.items():
        registry.register_pipeline(name, analyzers)
