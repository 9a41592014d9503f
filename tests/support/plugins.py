"""Test-only pipelines, loaded through the ``VIDEOQ_PLUGINS`` setting the same
way a platform team adds its own (see docs/pipeline.md)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from shared.errors import DependencyUnavailable
from shared.pipeline import Analyzer, PipelineRegistry

if TYPE_CHECKING:
    # As a plugin must: tests/compose loads this module in the api's image,
    # which has no video stack (Frame needs PyAV).
    from shared.pipeline import Frame


class _Slow(Analyzer):
    """Sleeps per frame: a job that takes a while (shutdown, crash tests)."""

    def analyze(self, frame: Frame) -> dict[str, Any]:
        time.sleep(float(os.environ.get("VIDEOQ_TEST_SLOW_SECONDS", "0.2")))
        return {"slept": True}


class _Flaky(Analyzer):
    """Always raises a transient error: a job that walks every retry tier."""

    def analyze(self, frame: Frame) -> dict[str, Any]:
        raise DependencyUnavailable("model server", "test pipeline always fails")


def register(registry: PipelineRegistry) -> None:
    registry.register_analyzer("slow", _Slow)
    registry.register_analyzer("flaky", _Flaky)
    registry.register_pipeline("slow", ["slow"])
    registry.register_pipeline("flaky", ["flaky"])
    register_crash(registry)


class _Crash(Analyzer):
    """Kills its own worker process: a poison job (segfault, OOM)."""

    def analyze(self, frame: Frame) -> dict[str, Any]:
        os.kill(os.getpid(), 9)
        return {}


def register_crash(registry: PipelineRegistry) -> None:
    registry.register_analyzer("crash", _Crash)
    registry.register_pipeline("crash", ["crash"])
