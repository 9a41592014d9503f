"""The files the benchmarks submit, made once and cached under
``$TMPDIR/videoq-bench/``."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from tests.support.videos import write_mp4

__all__ = [
    "FPS",
    "SHOT_SECONDS",
    "cache_dir",
    "mp4_like_file",
    "shots_clip",
    "small_clip",
    "tiny_mp4",
]

MiB = 1024 * 1024

# The shots clip: 720p30 H.264, like a typical upload.
WIDTH, HEIGHT, FPS = 1280, 720, 30
SHOT_SECONDS = 5
CLIP_VERSION = 2  # bump when the generator changes (the clip is cached)
# Film grain (standard deviation, 0-255 levels): it sets the bitrate, and so the
# decoder's cost. 5.0 gives about 3 Mbit/s, a typical 720p upload.
GRAIN = 5.0
ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23", "g": "60"}
# An ISO-BMFF ``ftyp`` box: what makes a file of random bytes pass for an MP4 on upload.
FTYP = (24).to_bytes(4, "big") + b"ftypisom" + (0x200).to_bytes(4, "big") + b"isommp41"


def cache_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "videoq-bench"
    path.mkdir(exist_ok=True)
    return path


def tiny_mp4() -> Path:
    """A tiny H.264 MP4 (64x48, 5 frames): the queue benchmark's input."""
    from services.cli.sample import make_sample_mp4

    path = cache_dir() / "tiny-64x48.mp4"
    if not path.exists():
        make_sample_mp4(path, seconds=0.5, fps=10, size=(64, 48))
    return path


def small_clip() -> Path:
    """A 160x90 clip of 20 frames: a results document of a few KB with ``basic``."""
    from services.cli.sample import make_sample_mp4

    path = cache_dir() / "clip-160x90-20f.mp4"
    if not path.exists():
        make_sample_mp4(path, seconds=2, fps=10, size=(160, 90))
    return path


def _shot_frames(count: int, *, grain_sigma: float = GRAIN) -> Iterator[np.ndarray]:
    """A clip of 5 s shots: each a different palette and layout, panning, with grain."""
    rng = np.random.default_rng(16)
    grain = [
        np.rint(rng.normal(0, grain_sigma, (HEIGHT, WIDTH, 1))).astype(np.int16) for _ in range(6)
    ]
    looks = []
    for shot in range(count // (FPS * SHOT_SECONDS) + 1):
        palette = rng.integers(0, 256, (2, 3))
        coarse = rng.random((9, 16)).astype(np.float32)
        field = cv2.resize(coarse, (WIDTH * 2, HEIGHT * 2), interpolation=cv2.INTER_CUBIC)
        detail = cv2.resize(rng.random((90, 160)).astype(np.float32), (WIDTH * 2, HEIGHT * 2))
        mix = np.clip(0.8 * field + 0.2 * detail, 0, 1)[:, :, None]
        image = palette[0] * (1 - mix) + palette[1] * mix
        looks.append((image.astype(np.uint8), 1 + shot % 3))
    for i in range(count):
        base, speed = looks[i // (FPS * SHOT_SECONDS)]
        t = i % (FPS * SHOT_SECONDS)
        x, y = t * speed * 2, t * speed // 2  # a steady pan, never wrapping within a shot
        frame = base[y : y + HEIGHT, x : x + WIDTH].astype(np.int16) + grain[i % len(grain)]
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        caption = f"Shot {i // (FPS * SHOT_SECONDS) + 1}  {i / FPS:06.2f}s"
        cv2.putText(frame, caption, (60, 660), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 9)
        cv2.putText(frame, caption, (60, 660), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 3)
        yield frame


def shots_clip(seconds: int) -> Path:
    """The pipeline benchmark's clip, ``seconds`` long: 720p30 H.264 in 5 s
    shots of different looks, with film grain, camera motion and a burned-in
    caption (about 3 Mbit/s)."""
    path = cache_dir() / f"clip-{seconds}s-720p30-v{CLIP_VERSION}.mp4"
    if path.exists():
        return path
    print(f"generating {path} ({seconds} s, {WIDTH}x{HEIGHT} H.264) ...", flush=True)
    started = time.monotonic()
    part = path.with_suffix(".part.mp4")
    write_mp4(part, _shot_frames(seconds * FPS), fps=FPS, options=ENCODER_OPTIONS)
    part.replace(path)
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    return path


def mp4_like_file(size: int) -> Path:
    """A file of ``size`` bytes that the api takes for an MP4: an ``ftyp`` box, then random bytes."""
    path = cache_dir() / f"upload-{size // MiB}MiB.mp4"
    if path.exists() and path.stat().st_size == size:
        return path
    print(f"writing {path} ({size // MiB} MiB) ...", flush=True)
    part = path.with_suffix(".part")
    with part.open("wb") as out:
        out.write(FTYP)
        left = size - len(FTYP)
        while left:
            chunk = os.urandom(min(left, 8 * MiB))
            out.write(chunk)
            left -= len(chunk)
    part.replace(path)
    return path
