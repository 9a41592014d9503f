"""The video pipeline: decode an MP4 with PyAV and run a named list of frame analyzers.

Typical use (the worker)::

    registry = load_registry(plugins=settings_plugins)
    service = VideoFilePipelineService(registry=registry)
    summary = service.analyze(input_path, output_path, job_id=job_id, pipeline="basic")

See ``docs/pipeline.md`` for the results document, the analyzers and the
benchmark figures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shared.pipeline.errors import AnalyzerUnavailable, PluginError, VideoLimitExceeded
from shared.pipeline.registry import ENTRY_POINT_GROUP, Pipeline, PipelineRegistry, load_registry

if TYPE_CHECKING:
    from shared.pipeline.analyzer import Analyzer, AnalyzerFactory
    from shared.pipeline.frame import Frame
    from shared.pipeline.service import AnalysisSummary, VideoFilePipelineService
    from shared.pipeline.video import VideoInfo

# These need the video stack (PyAV, OpenCV, NumPy), which the api and janitor
# images do not carry: they are imported on first access (PEP 562), so that
# ``from shared.pipeline import load_registry`` works without it.
_NEEDS_VIDEO = {
    "Analyzer": "shared.pipeline.analyzer",
    "AnalyzerFactory": "shared.pipeline.analyzer",
    "Frame": "shared.pipeline.frame",
    "AnalysisSummary": "shared.pipeline.service",
    "VideoFilePipelineService": "shared.pipeline.service",
    "VideoInfo": "shared.pipeline.video",
}


def __getattr__(name: str) -> Any:
    module = _NEEDS_VIDEO.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ENTRY_POINT_GROUP",
    "AnalysisSummary",
    "Analyzer",
    "AnalyzerFactory",
    "AnalyzerUnavailable",
    "Frame",
    "Pipeline",
    "PipelineRegistry",
    "PluginError",
    "VideoFilePipelineService",
    "VideoInfo",
    "VideoLimitExceeded",
    "load_registry",
]
