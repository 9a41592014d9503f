"""Test videos, generated with PyAV (no files checked in, nothing downloaded).

Every generator writes H.264 in MP4 with a constant frame rate and a time base
of ``1/fps``, so frame ``i`` has ``pts == i`` and a timestamp of exactly ``i / fps``.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RGB",
    "Image",
    "face_image",
    "flip_bytes",
    "make_audio_only_mp4",
    "make_mkv",
    "make_mp4",
    "remove_box",
    "segment_frame",
    "text_image",
    "top_level_boxes",
    "truncate",
    "write_mp4",
]

#: An RGB frame, ``uint8`` (height, width, 3).
Image = NDArray[np.uint8]
RGB = tuple[int, int, int]

# Distinct looks for scene segments: base colour and a pattern kind each, so
# neighbouring segments differ in brightness, colour and texture.
_SEGMENT_LOOKS: Sequence[tuple[RGB, str]] = (
    ((200, 40, 40), "stripes"),
    ((30, 60, 200), "checker"),
    ((40, 190, 60), "circles"),
    ((230, 220, 60), "stripes"),
    ((120, 30, 150), "checker"),
)


def write_mp4(
    path: Path,
    frames: Iterable[Image],
    *,
    fps: int = 10,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB ``frames`` into an MP4 at ``path`` (size taken from the first frame)."""
    stream = None
    with av.open(str(path), mode="w", format="mp4", options=container_options or {}) as out:
        for i, image in enumerate(frames):
            if stream is None:
                stream = out.add_stream(codec, rate=fps, options=options or {})
                stream.width, stream.height = image.shape[1], image.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.time_base = Fraction(1, fps)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        if stream is None:
            raise ValueError("no frames")
        out.mux(stream.encode(None))
    return path


def segment_frame(segment: int, index: int, *, width: int, height: int) -> Image:
    """Frame ``index`` of scene ``segment``: a textured look per segment, moving slowly."""
    colour, kind = _SEGMENT_LOOKS[segment % len(_SEGMENT_LOOKS)]
    image = np.empty((height, width, 3), np.uint8)
    image[:] = colour
    shift = index * 2  # gentle motion inside a shot
    dark = tuple(c // 3 for c in colour)
    if kind == "stripes":
        for x in range(-width, width, 16):
            cv2.rectangle(image, (x + shift, 0), (x + shift + 7, height), dark, -1)
    elif kind == "checker":
        cell = max(8, width // 8)
        for y in range(0, height, cell):
            for x in range(0, width, cell):
                if (x // cell + y // cell) % 2:
                    cv2.rectangle(image, (x, y), (x + cell - 1, y + cell - 1), dark, -1)
        cv2.circle(image, ((shift * 2) % width, height // 2), max(3, height // 8), (255,) * 3, -1)
    else:
        for k in range(4):
            centre = ((k * width // 4 + shift) % width, height // 2)
            cv2.circle(image, centre, max(3, height // 6), dark, -1)
    return image


def make_mp4(
    path: Path,
    *,
    seconds: float = 1.0,
    fps: int = 10,
    width: int = 64,
    height: int = 48,
    segments: int = 1,
    frame: Callable[[int], Image] | None = None,
    faststart: bool = False,
    bframes: bool = True,
) -> Path:
    """A ``seconds`` x ``fps`` frame H.264 MP4.

    Without ``frame``, the video is ``segments`` equal-length shots of distinct
    looks (shot ``k`` starts at frame ``k * n // segments``); ``frame(i)`` gives
    frame ``i`` instead. ``faststart`` puts ``moov`` before ``mdat``.
    """
    count = round(seconds * fps)

    def render(i: int) -> Image:
        if frame is not None:
            return frame(i)
        seg = i * segments // count
        return segment_frame(seg, i, width=width, height=height)

    options = {"preset": "ultrafast", "tune": "zerolatency"} if not bframes else {"bf": "2"}
    options.setdefault("preset", "ultrafast")
    return write_mp4(
        path,
        (render(i) for i in range(count)),
        fps=fps,
        options=options,
        container_options={"movflags": "faststart"} if faststart else None,
    )


def make_audio_only_mp4(path: Path, *, seconds: float = 0.5) -> Path:
    """An MP4 with one AAC audio stream and no video."""
    rate = 16000
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        samples = int(rate * seconds)
        tone = (np.sin(np.arange(samples) * 2 * np.pi * 440 / rate) * 0.3).astype(np.float32)
        chunk = 1024
        for start in range(0, samples, chunk):
            part = tone[start : start + chunk].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def make_mkv(path: Path, *, frames: int = 5) -> Path:
    """A Matroska video (whatever ``path``'s suffix says)."""
    with av.open(str(path), mode="w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = segment_frame(0, i, width=64, height=48)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def top_level_boxes(path: Path) -> list[tuple[str, int, int]]:
    """``(type, offset, size)`` of each top-level ISO-BMFF box."""
    data = path.read_bytes()
    boxes = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        elif size == 0:
            size = len(data) - offset
        boxes.append((kind.decode("latin-1"), offset, size))
        offset += size
    return boxes


def remove_box(path: Path, kind: str, *, out: Path | None = None) -> Path:
    """Copy of the MP4 without its top-level ``kind`` box (e.g. ``"moov"``)."""
    data = path.read_bytes()
    for name, offset, size in top_level_boxes(path):
        if name == kind:
            data = data[:offset] + data[offset + size :]
            break
    else:
        raise ValueError(f"no {kind!r} box in {path}")
    target = out or path
    target.write_bytes(data)
    return target


def truncate(path: Path, *, keep: float | int, out: Path | None = None) -> Path:
    """Copy of the file cut after ``keep`` bytes (an int) or that fraction (a float)."""
    data = path.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    target = out or path
    target.write_bytes(data[:n])
    return target


def flip_bytes(path: Path, count: int, *, seed: int = 0, out: Path | None = None) -> Path:
    """Copy of the MP4 with one bit flipped in each of ``count`` bytes of its ``mdat``.

    Bit rot in the media data: the boxes still tile the file and ``moov`` is
    intact. The same ``seed`` picks the same bytes and bits.
    """
    data = bytearray(path.read_bytes())
    (_, offset, size) = next(box for box in top_level_boxes(path) if box[0] == "mdat")
    rng = random.Random(seed)
    for position in rng.sample(range(offset + 8, offset + size), count):
        data[position] ^= 1 << rng.randrange(8)
    target = out or path
    target.write_bytes(bytes(data))
    return target


def text_image(
    text: str, *, width: int = 640, height: int = 360, scale: float = 2.0, thickness: int = 3
) -> Image:
    """Black text on a white frame, centred, drawn with ``cv2.putText``."""
    image = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    origin = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(image, text, origin, font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return image


def face_image(*, width: int = 640, height: int = 360, size: int = 160) -> Image:
    """A synthetic frontal face, centred, about ``size`` pixels wide, in skin tones.

    OpenCV's Haar cascade looks for light-dark patterns (eye sockets darker than
    the cheeks and the nose bridge, a face brighter in the middle, a dark
    outline), so the drawing has exactly those: a shaded face in dark hair,
    dark brows and eye sockets, nostrils and a mouth, blurred like a photo. The
    tests prove it is detected from 60 to 250 pixels.
    """
    grey = np.full((height, width), 150.0, np.float32)
    cx, cy = width // 2, height // 2
    s = size / 100.0

    def p(x: float, y: float) -> tuple[int, int]:
        return int(cx + x * s), int(cy + y * s)

    def r(v: float) -> int:
        return max(1, int(v * s))

    cv2.ellipse(grey, p(0, -5), (r(52), r(68)), 0, 0, 360, 40, -1)  # hair
    mask = np.zeros_like(grey)
    cv2.ellipse(mask, p(0, 8), (r(44), r(58)), 0, 0, 360, 1, -1)
    yy, xx = np.mgrid[0:height, 0:width]
    d2 = ((xx - cx) / (44 * s)) ** 2 + ((yy - cy - 8 * s) / (58 * s)) ** 2
    grey = np.where(mask > 0, 200 - 60 * d2, grey).astype(np.float32)  # shaded face
    for side in (-1, 1):
        cv2.ellipse(grey, p(side * 18, -12), (r(15), r(8)), 0, 0, 360, 90, -1)  # socket
        cv2.ellipse(grey, p(side * 18, -22), (r(15), r(3)), 0, 0, 360, 50, -1)  # brow
        cv2.ellipse(grey, p(side * 18, -12), (r(8), r(4)), 0, 0, 360, 150, -1)  # eye
        cv2.circle(grey, p(side * 18, -12), r(3.5), 30, -1)  # pupil
        cv2.ellipse(grey, p(side * 6, 16), (r(4), r(2.5)), 0, 0, 360, 90, -1)  # nostril
    cv2.ellipse(grey, p(0, 33), (r(17), r(5)), 0, 0, 360, 80, -1)  # mouth
    grey = cv2.GaussianBlur(grey, (0, 0), max(0.8, s * 1.2))
    tint = np.array([1.0, 0.82, 0.7], np.float32)  # R, G, B
    return np.clip(grey[:, :, None] * tint, 0, 255).astype(np.uint8)
