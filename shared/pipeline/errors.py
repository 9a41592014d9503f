"""Errors the video pipeline adds to the domain's tree (``shared.errors``).

``VideoUnreadable`` and ``PipelineNotFound`` come from ``shared.errors``; the
ones here are the pipeline's own permanent failures and its start-up error.
"""

from __future__ import annotations

from shared.errors import PermanentError, VideoqError

__all__ = ["AnalyzerUnavailable", "PluginError", "VideoLimitExceeded"]


class VideoLimitExceeded(PermanentError):
    """The video is readable but larger or longer than the service accepts.

    The message says which limit and by how much, for the job's ``error_message``.
    """


class AnalyzerUnavailable(PermanentError):
    """An analyzer cannot run on this machine (for example ``tesseract`` is missing)."""


class PluginError(VideoqError):
    """A plugin or entry point could not be loaded or registered (a start-up error)."""
