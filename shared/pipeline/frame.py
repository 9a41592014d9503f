"""One sampled frame, as analyzers see it: cheap views first, conversions on demand.

Decoded H.264 is almost always planar YUV, whose first plane *is* the grey
image. :attr:`Frame.luma` hands that plane out as a numpy view (no copy, no
colour conversion); what needs colour asks for a small BGR image, which
FFmpeg's swscale scales and converts in one pass. Every derived image is cached
on the frame, so two analyzers asking for the same downscale pay once.

Conversions go through one ``VideoReformatter`` per job (the service passes
it in), so swscale's context, filters included, is set up once per job rather
than once per frame: a fresh context costs about 1 ms, more than the
conversion itself (0.1-0.3 ms for 720p to 160x90).
"""

from __future__ import annotations

from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from numpy.typing import NDArray

__all__ = ["BgrImage", "Frame", "GrayImage"]

#: A 2-D ``uint8`` image (rows, columns); rows may be padded (non-contiguous view).
GrayImage = NDArray[np.uint8]
#: A 3-D ``uint8`` image (rows, columns, 3) in OpenCV's BGR channel order.
BgrImage = NDArray[np.uint8]

# Pixel formats whose plane 0 is 8-bit luma, one byte per pixel.
_LUMA_PLANE_FORMATS = frozenset(
    {
        "gray",
        "nv12",
        "nv21",
        "yuv410p",
        "yuv411p",
        "yuv420p",
        "yuv422p",
        "yuv440p",
        "yuv444p",
        "yuvj411p",
        "yuvj420p",
        "yuvj422p",
        "yuvj440p",
        "yuvj444p",
    }
)

# Whether this PyAV's ``VideoReformatter.reformat`` takes ``threads`` (17 and later).
_REFORMAT_THREADS = True


class Frame:
    """A decoded video frame with its position in the stream.

    Valid only during the ``analyze`` call it is passed to.
    """

    __slots__ = ("_cache", "_frame", "_luma", "_reformatter", "index", "timestamp_s")

    def __init__(
        self,
        frame: av.VideoFrame,
        *,
        index: int,
        timestamp_s: float,
        reformatter: VideoReformatter | None = None,
    ) -> None:
        self._frame = frame
        self._reformatter = reformatter if reformatter is not None else VideoReformatter()
        self._luma: GrayImage | None = None
        self._cache: dict[tuple[str, int, int], Any] = {}
        #: Index of the frame in the decoded stream (0-based, every frame counted).
        self.index = index
        #: Presentation time in seconds (pts x time base, 6 decimals).
        self.timestamp_s = timestamp_s

    @property
    def width(self) -> int:
        return int(self._frame.width)

    @property
    def height(self) -> int:
        return int(self._frame.height)

    @property
    def av_frame(self) -> av.VideoFrame:
        """The underlying PyAV frame, for analyzers that need something else."""
        return self._frame

    @property
    def luma(self) -> GrayImage:
        """The full-size grey image (``height x width``), read-only.

        For planar YUV this is a zero-copy view of the Y plane (rows keep the
        decoder's padding as their stride); other formats are converted once.
        """
        if self._luma is None:
            self._luma = self._read_luma()
        return self._luma

    def _read_luma(self) -> GrayImage:
        frame = self._frame
        width, height = frame.width, frame.height
        if frame.format.name in _LUMA_PLANE_FORMATS:
            plane = frame.planes[0]
            rows = np.frombuffer(memoryview(plane), dtype=np.uint8, count=plane.line_size * height)
            luma: GrayImage = rows.reshape(height, plane.line_size)[:, :width]
        else:
            grey = self._reformat(width=width, height=height, format="gray")
            luma = np.asarray(grey.to_ndarray(), dtype=np.uint8)
        luma.flags.writeable = False
        return luma

    def luma_small(self, width: int, height: int) -> GrayImage:
        """The grey image resized to ``width x height`` (area interpolation), cached.

        Same value range as :attr:`luma` (the Y plane as stored).
        """
        key = ("gray", width, height)
        image: GrayImage | None = self._cache.get(key)
        if image is None:
            current: Any = self.luma
            # Halving with area interpolation is OpenCV's fast path (a 720p
            # frame to 160x90 costs 0.06 ms in three halvings, 0.4 ms in one
            # go); each halving is cached for the next request.
            while current.shape[1] >= 2 * width and current.shape[0] >= 2 * height:
                half_key = ("gray", current.shape[1] // 2, current.shape[0] // 2)
                half = self._cache.get(half_key)
                if half is None:
                    half = cv2.resize(current, half_key[1:], interpolation=cv2.INTER_AREA)
                    self._cache[half_key] = half
                current = half
            if (current.shape[1], current.shape[0]) != (width, height):
                current = cv2.resize(current, (width, height), interpolation=cv2.INTER_AREA)
            image = np.ascontiguousarray(current, dtype=np.uint8)
            self._cache[key] = image
        return image

    def luma_halved(self, max_width: int) -> GrayImage:
        """The grey image halved (area interpolation) until no wider than ``max_width``.

        A bounded working resolution: analyses on it cost the same whatever
        the video's size, and give values comparable across sizes.
        """
        width, height = self.width, self.height
        while width > max_width and width >= 2 and height >= 2:
            width, height = width // 2, height // 2
        if (width, height) == (self.width, self.height):
            return self.luma
        return self.luma_small(width, height)

    def bgr_small(self, width: int, height: int, *, sampled: bool = False) -> BgrImage:
        """The colour image resized to ``width x height`` in BGR order, cached.

        Scaling and colour conversion happen in one swscale pass, so a small
        image costs a fraction of a full-size conversion (720p to 160x90: 0.3 ms
        with area averaging). ``sampled=True`` uses swscale's fast bilinear
        filter instead (about half the cost; it aliases fine detail, which is
        fine for colour statistics such as histograms).
        """
        key = ("bgr-sampled" if sampled else "bgr", width, height)
        image: BgrImage | None = self._cache.get(key)
        if image is None:
            small = self._reformat(
                width=width,
                height=height,
                format="bgr24",
                interpolation="FAST_BILINEAR" if sampled else "AREA",
            )
            image = np.asarray(small.to_ndarray(), dtype=np.uint8)
            self._cache[key] = image
        return image

    def _reformat(self, **options: Any) -> av.VideoFrame:
        global _REFORMAT_THREADS
        if _REFORMAT_THREADS:
            # One swscale thread: at these sizes, more cost more than they save.
            try:
                return self._reformatter.reformat(self._frame, threads=1, **options)
            except TypeError:  # PyAV < 17 has no ``threads`` (and reformats on one thread)
                _REFORMAT_THREADS = False
        return self._reformatter.reformat(self._frame, **options)

    def scaled_size(self, max_width: int) -> tuple[int, int]:
        """``(width, height)`` no wider than ``max_width``, keeping the aspect ratio."""
        if self.width <= max_width:
            return self.width, self.height
        return max_width, max(1, round(self.height * max_width / self.width))
