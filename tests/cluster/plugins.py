"""A test pipeline that notices two analyses at once in one worker process.

``traced`` sleeps per frame, as the ``slow`` test pipeline does, and counts
the analyses running in its process. When one starts while another is still
running, it prints ``videoq-test: analyses at once: N`` to stderr (the
worker's log): with ``worker_concurrency`` 1 that line must never appear.
Loaded through ``VIDEOQ_PLUGINS`` like any plugin.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from shared.pipeline import Analyzer, Frame, PipelineRegistry

#: Printed when an analysis starts beside another; the tests search for it.
OVERLAP_MARK = "videoq-test: analyses at once:"

_lock = threading.Lock()
_running = 0


class _Traced(Analyzer):
    """One per analysis: made when it starts, closed when it ends (either way)."""

    def __init__(self) -> None:
        global _running
        with _lock:
            _running += 1
            now = _running
        if now > 1:
            print(f"{OVERLAP_MARK} {now}", file=sys.stderr, flush=True)

    def analyze(self, frame: Frame) -> dict[str, Any]:
        time.sleep(float(os.environ.get("VIDEOQ_TEST_SLOW_SECONDS", "0.2")))
        return {"slept": True}

    def close(self) -> None:
        global _running
        with _lock:
            _running -= 1


def register(registry: PipelineRegistry) -> None:
    registry.register_analyzer("traced", _Traced)
    registry.register_pipeline("traced", ["traced"])
