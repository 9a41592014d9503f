"""The analyzers and pipelines every registry starts with."""

from __future__ import annotations

from shared.pipeline.analyzers.basic import BasicAnalyzer
from shared.pipeline.registry import PipelineRegistry

__all__ = ["DEFAULT_PIPELINE", "register_builtins"]

#: The pipeline a job runs when it names none.
DEFAULT_PIPELINE = "basic"


def register_builtins(registry: PipelineRegistry) -> None:
    """Register the built-in analyzers and the named pipelines made of them.

    Pipelines: ``basic`` (the default: size and mean brightness) and ``noop``
    (no analysis: decode and sample only, for queue benchmarks).
    """
    registry.register_analyzer("basic", BasicAnalyzer)
    registry.register_pipeline("basic", ["basic"])
    registry.register_pipeline("noop", [])
