"""Run an iterator on a thread of its own, a few items ahead of its consumer.

The service decodes on one thread and analyses on another: PyAV releases the
GIL while FFmpeg demuxes and decodes, and OpenCV and NumPy release it while
they compute, so the two overlap on two CPUs instead of taking turns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")

# How long a blocked hand-off waits before it looks at the stop flag again.
_POLL_SECONDS = 0.1


class _End:
    """The producer is done; ``error`` is what stopped it, if anything did."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def prefetched(
    source: Iterator[T], *, depth: int, name: str = "prefetch"
) -> Generator[T, None, None]:
    """``source``'s items, in order, produced by a thread at most ``depth`` ahead.

    An exception raised by ``source`` is raised here, at its place in the
    sequence. Closing this generator early (``break``, an error in the
    consumer) stops the thread and waits for it, so ``source``'s resources
    can be released right after.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    handoff: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_End(exc))
        else:
            put(_End(None))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        thread.join()
