"""The frame analyzer: the unit a pipeline is made of.

An analyzer is created fresh for every job (by its factory), sees each sampled
frame once, in order, and reports a summary at the end. It may keep state
between frames (the previous frame for motion, the shots found so far), but it
must not keep references to a :class:`~shared.pipeline.frame.Frame` or to the
arrays it hands out after ``analyze`` returns: the decoder reuses that memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    # Only for annotations: a plugin's module subclasses Analyzer in the api's
    # image too (for its pipelines' names), which has no video stack.
    from shared.pipeline.frame import Frame

__all__ = ["Analyzer", "AnalyzerFactory"]


class Analyzer(ABC):
    """Base class of frame analyzers (built-in and third-party)."""

    #: True if OpenCV's thread pool speeds this analyzer up: its work per frame
    #: outweighs decoding the frame and OpenCV splits it over the cores (face
    #: detection: 36 frames/s with the pool against 20 without). The service
    #: leaves OpenCV its threads only for pipelines with such an analyzer: for
    #: cheap per-frame work the decoder's threads keep the cores busy and the
    #: pool's hand-offs cost more than they save (``scene``: 6 % more CPU a
    #: frame, ``basic`` 10 %).
    parallel: ClassVar[bool] = False

    @abstractmethod
    def analyze(self, frame: Frame) -> dict[str, Any]:
        """Return this frame's result: a JSON-able dict of plain Python values.

        The pipeline merges the dicts of its analyzers into the frame's
        ``result``, so an analyzer owns its keys: two analyzers of one pipeline
        must not return the same key.
        """

    def summary(self) -> dict[str, Any]:
        """Return the job-level summary (JSON-able), called once after the last frame.

        An empty dict leaves no entry in the results document's ``summary``.
        """
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most analyzers hold nothing
        """Release resources (always called, also when the job fails)."""


#: Makes a new analyzer for one job: a class or any zero-argument callable.
AnalyzerFactory = Callable[[], Analyzer]
