"""Benchmark: the video pipeline against the decoder's own speed, in one run.

    python bench/pipeline.py [--quick] [--clip PATH] [--seconds N] [--repeat N]

Generates (once, then cached) a 720p 30 fps H.264 clip of ``--seconds``
seconds (60 by default, 10 with ``--quick``) made of 5-second shots of
different looks, with film grain, camera motion and a burned-in caption, and
prints frames per second (video frames through the pipeline, sampled or not,
per wall-clock second) for:

- ``ffmpeg -threads 1 -f null`` decode (if an ``ffmpeg`` binary is installed),
- ``ffmpeg`` decode with its default threads,
- PyAV decode-only (``thread_type="AUTO"``, frames not converted),
- each built-in pipeline through ``VideoFilePipelineService.analyze``,
  at ``frame_stride`` 1 and 10 (``ocr`` and ``full`` at 30: about 0.5 s a frame),

as ratios to single-thread ffmpeg and to PyAV decode-only, with the CPU time
per frame (all threads), and checks the goals: ``scene`` at stride 1 >= 0.7x
single-thread ffmpeg; ``scene`` at stride 10 >= 0.9x PyAV decode-only. The
measurements run in rounds (5, 2 with ``--quick``), each goal's two sides back
to back, and a goal is judged on the median of its per-round ratios, so that
other load on the machine skews it less. Exit status 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.pipeline import AnalysisSummary, VideoFilePipelineService, load_registry
from tests.support.videos import write_mp4

WIDTH, HEIGHT, FPS = 1280, 720, 30
SHOT_SECONDS = 5
CLIP_VERSION = 2  # bump when the generator changes (the clip is cached)
# Film grain (standard deviation, 0-255 levels): it sets the bitrate, and so the
# decoder's cost. 5.0 gives about 3 Mbit/s, a typical 720p upload.
GRAIN = 5.0
ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23", "g": "60"}


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


def make_clip(path: Path, seconds: int) -> Path:
    if path.exists():
        return path
    print(f"generating {path} ({seconds} s, {WIDTH}x{HEIGHT} H.264) ...", flush=True)
    started = time.monotonic()
    part = path.with_suffix(".part.mp4")
    write_mp4(
        part,
        _shot_frames(seconds * FPS),
        fps=FPS,
        options=ENCODER_OPTIONS,
    )
    part.replace(path)
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    return path


def _measure(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one call (CPU: every thread, and child processes)."""
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    fn()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(
        (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
        for a, b in zip(after, before, strict=True)
    )
    return wall, cpu


def _ffmpeg(clip: Path, threads: int | None) -> Callable[[], object]:
    command = ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error"]
    if threads is not None:
        command += ["-threads", str(threads)]
    command += ["-i", str(clip), "-an", "-f", "null", "-"]
    return lambda: subprocess.run(command, check=True)


def _pyav_decode(clip: Path) -> Callable[[], object]:
    def run() -> int:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return sum(1 for _ in container.decode(stream))

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s clip, fewer runs")
    parser.add_argument("--clip", type=Path, help="use this MP4 instead of the generated clip")
    parser.add_argument("--seconds", type=int, help="length of the generated clip")
    parser.add_argument("--repeat", type=int, help="runs per measurement (best is kept)")
    parser.add_argument("--pipelines", help="comma-separated pipelines (default: all built-ins)")
    args = parser.parse_args()

    seconds = args.seconds or (10 if args.quick else 60)
    repeat = args.repeat or (2 if args.quick else 5)
    cache = Path(tempfile.gettempdir()) / "videoq-bench"
    cache.mkdir(exist_ok=True)
    clip = args.clip or make_clip(cache / f"clip-{seconds}s-720p30-v{CLIP_VERSION}.mp4", seconds)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        frames = stream.frames or sum(1 for _ in container.decode(stream))
        size = f"{stream.codec_context.width}x{stream.codec_context.height}"
        codec = stream.codec_context.name
    print(
        f"clip: {clip} ({codec} {size}, {frames} frames, {clip.stat().st_size / 1e6:.1f} MB)"
        f"\nmachine: {os.cpu_count()} CPUs, {platform.python_implementation()}"
        f" {platform.python_version()}, PyAV {av.__version__}, OpenCV {cv2.__version__}"
    )

    # Each measurement is a (name, function, runs) item. The items run in
    # rounds, round-robin, each goal's pair side by side, so that load from
    # something else on the machine hits both sides of a ratio alike. Reported:
    # the best wall-clock speed of each item, its CPU time per frame, and for
    # the goals the median over rounds of the paired ratio.
    items: list[tuple[str, Callable[[], object], int]] = []
    registry = load_registry(entry_point_group=None)
    service = VideoFilePipelineService(registry=registry)
    tmp = tempfile.TemporaryDirectory()
    out = Path(tmp.name) / "results.json"
    summaries: dict[tuple[str, int], AnalysisSummary] = {}

    def pipeline(name: str, stride: int) -> Callable[[], object]:
        def run() -> None:
            summaries[(name, stride)] = service.analyze(
                clip, out, job_id=uuid.uuid4(), pipeline=name, frame_stride=stride
            )

        return run

    wanted = args.pipelines.split(",") if args.pipelines else registry.names()
    has_ffmpeg = shutil.which("ffmpeg") is not None
    if has_ffmpeg:
        items.append(("ffmpeg -threads 1", _ffmpeg(clip, 1), repeat))
    if "scene" in wanted:
        items.append(("pipeline scene stride 1", pipeline("scene", 1), repeat))
    items.append(("PyAV decode-only", _pyav_decode(clip), repeat))
    if "scene" in wanted:
        items.append(("pipeline scene stride 10", pipeline("scene", 10), repeat))
    if has_ffmpeg:
        items.append(("ffmpeg (default threads)", _ffmpeg(clip, None), repeat))
    else:
        print("  (no ffmpeg binary: apt-get install ffmpeg for the ffmpeg baselines)")
    fast = ("noop", "basic", "dhash")
    # The other fast pipelines in every round; the slow ones once, at the end.
    for name in sorted((n for n in wanted if n != "scene"), key=lambda n: (n not in fast, n)):
        for stride in (30,) if name in ("ocr", "full") else (1, 10):
            runs = repeat if name in fast else 1
            items.append((f"pipeline {name} stride {stride}", pipeline(name, stride), runs))

    walls: dict[str, list[float]] = {name: [] for name, _, _ in items}
    cpus: dict[str, list[float]] = {name: [] for name, _, _ in items}
    for round_ in range(repeat):
        print(f"round {round_ + 1}/{repeat}", flush=True)
        for name, fn, runs in items:
            if round_ >= runs:
                continue
            wall, cpu = _measure(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
            print(f"  {name:<28} {frames / wall:8.1f} frames/s", flush=True)
    tmp.cleanup()

    fps = {name: frames / min(times) for name, times in walls.items()}
    ffmpeg_1 = fps.get("ffmpeg -threads 1")
    pyav = fps["PyAV decode-only"]
    print(f"\n{frames} frames; best of {repeat} runs (slow pipelines: 1 run)")
    print(f"  {'':<28} {'frames/s':>9} {'x ffmpeg-1':>11} {'x PyAV':>8} {'CPU ms/frame':>13}")
    for name, _, _ in items:
        rate = fps[name]
        vs_ffmpeg = f"{rate / ffmpeg_1:.2f}" if ffmpeg_1 else "-"
        cpu_ms = min(cpus[name]) / frames * 1000
        print(f"  {name:<28} {rate:9.1f} {vs_ffmpeg:>11} {rate / pyav:8.2f} {cpu_ms:13.2f}")

    if not args.clip:
        shots = [i * FPS * SHOT_SECONDS for i in range(-(-frames // (FPS * SHOT_SECONDS)))]
        for (name, stride), summary in sorted(summaries.items()):
            scene = summary.analyzers.get("scene")
            if scene is not None:
                starts = [shot["start_frame"] for shot in scene["shots"]]
                verdict = "as generated" if starts == shots else f"generated: {shots}"
                print(f"  {name} stride {stride}: shots start at {starts} ({verdict})")

    failed = False
    goals = [
        ("pipeline scene stride 1", "ffmpeg -threads 1", 0.7),
        ("pipeline scene stride 10", "PyAV decode-only", 0.9),
    ]
    print("\ngoals (median over rounds of the paired ratio; ratio of the bests):")
    for subject, baseline, goal in goals:
        if subject not in walls or baseline not in walls:
            continue
        paired = [b / a for a, b in zip(walls[subject], walls[baseline], strict=True)]
        ratio = statistics.median(paired)
        ok = ratio >= goal
        failed |= not ok
        print(
            f"  {subject} >= {goal}x {baseline}: {ratio:.2f}x"
            f" (best/best {fps[subject] / fps[baseline]:.2f}x)  {_mark(ok)}"
        )
    return 1 if failed else 0


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
