"""Progress bars on stderr for ``videoq submit``: the upload, then the job.

Drawn by tqdm, which redraws one line in place with ``\\r`` (no cursor
control codes) and ends it with one newline. The CLI draws them only when
stderr is a terminal or ``--progress`` asks: stdout, where the job id or the
results go, is never written to here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NoReturn, TextIO

from tqdm import tqdm

__all__ = ["JobProgress", "job_state", "upload_progress"]


def upload_progress(total: int, *, stream: TextIO, show: bool) -> tqdm[NoReturn]:
    """A bar of the bytes uploaded (size, rate, time left); feed it ``update(n)``.

    With ``show`` false it draws nothing; use it as a context manager to end its line.
    """
    ncols, nrows = _screen(stream)
    return tqdm(
        total=total,
        desc="upload",
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=stream,
        disable=not show,
        ncols=ncols,
        nrows=nrows,
    )


def job_state(status: Mapping[str, Any]) -> tuple[float, str]:
    """A job's status object as the bar's fraction (0..1) and its text.

    ``progress`` is the API's coarse fraction; a completed job is at 1 whatever
    it says, and a value that is not a number counts as 0.
    """
    state = str(status.get("status", "?"))
    try:
        fraction = float(status.get("progress") or 0.0)
    except (TypeError, ValueError):
        fraction = 0.0
    fraction = 1.0 if state == "completed" else min(1.0, max(0.0, fraction))
    attempts = status.get("attempts")
    if isinstance(attempts, int) and attempts > 1:
        state += f" attempt {attempts}"
    return fraction, state


class JobProgress:
    """A job's progress, redrawn for each polled status object."""

    #: Bar, percentage, state (and attempt), time since the first status.
    FORMAT = "{bar:30} {percentage:3.0f}% {desc} {elapsed}"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: tqdm[NoReturn] | None = None

    def update(self, status: Mapping[str, Any]) -> None:
        fraction, text = job_state(status)
        if self._bar is None:
            # Made on the first status, so a wait that never got one draws nothing.
            ncols, nrows = _screen(self._stream)
            self._bar = tqdm(
                total=1.0,
                initial=fraction,
                desc=text,
                bar_format=self.FORMAT,
                file=self._stream,
                mininterval=0,  # the statuses come at the poll rate: draw each one
                ncols=ncols,
                nrows=nrows,
            )
            return
        self._bar.n = fraction
        self._bar.set_description_str(text, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """End the line (if anything was drawn)."""
        if self._bar is not None:
            self._bar.close()


def _screen(stream: TextIO) -> tuple[int | None, int | None]:
    """The ``(ncols, nrows)`` to give tqdm: None lets it ask the terminal itself.

    A fresh pseudo-terminal says 0x0; tqdm takes that as -1 rows and draws
    nothing. Such a terminal gets 80x24, as ``shutil.get_terminal_size`` does.
    """
    try:
        columns, lines = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return None, None  # not a terminal (or a test's StringIO)
    if columns and lines:
        return None, None
    # tqdm keeps the last column free, so that a full line does not wrap.
    return (columns or 80) - 1, lines or 24
