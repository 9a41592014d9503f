"""The video pipeline: decode an MP4 with PyAV and run a named list of frame analyzers.

Typical use (the worker)::

    registry = load_registry(plugins=settings_plugins)
    service = VideoFilePipelineService(registry=registry)
    summary = service.analyze(input_path, output_path, job_id=job_id, pipeline="basic")

See ``docs/pipeline.md`` for the results document, the analyzers and the
benchmark figures.
"""

from __future__ import annotations

from shared.pipeline.analyzer import Analyzer, AnalyzerFactory
from shared.pipeline.errors import AnalyzerUnavailable, PluginError, VideoLimitExceeded
from shared.pipeline.frame import Frame
from shared.pipeline.registry import ENTRY_POINT_GROUP, Pipeline, PipelineRegistry, load_registry
from shared.pipeline.service import AnalysisSummary, VideoFilePipelineService
from shared.pipeline.video import VideoInfo

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
