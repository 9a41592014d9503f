"""A small sample MP4 made on the spot (for the demo; nothing to download)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["make_sample_mp4"]


def make_sample_mp4(
    path: Path, *, seconds: float = 3.0, fps: int = 10, size: tuple[int, int] = (320, 180)
) -> Path:
    """Write an H.264 MP4 of a moving gradient that brightens over time."""
    width, height = size
    frames = int(seconds * fps)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        for i in range(frames):
            level = i / max(frames - 1, 1)
            row = np.roll(ramp, i * 4) * (0.3 + 0.7 * level)
            image = np.repeat(np.tile(row, (height, 1))[:, :, None], 3, axis=2).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
