"""Benchmark: the video pipeline against the decoder's own speed, in one run.

    python -m bench.pipeline [--quick] [--clip PATH] [--seconds N] [--repeat N]
        [--pipelines NAMES]

Generates (once, then cached) a 720p 30 fps H.264 clip of ``--seconds``
seconds (60 by default, 10 with ``--quick``) made of 5-second shots of
different looks, with film grain, camera motion and a burned-in caption, and
prints frames per second (video frames through the pipeline, sampled or not,
per wall-clock second) for:

- ``ffmpeg -threads 1 -f null`` decode (if an ``ffmpeg`` binary is installed),
- ``ffmpeg`` decode with its default threads (``-threads 0``),
- PyAV decode-only (``thread_type="AUTO"``, frames not converted),
- each built-in pipeline through ``VideoFilePipelineService.analyze``,
  at ``frame_stride`` 1 and 10 (``ocr`` and ``full`` at 30: about 0.5 s a frame),
- ``scene`` at one sample a second (``frame_stride`` = the clip's fps) in each
  sampling mode: ``exact`` decodes every frame, ``fast`` and ``keyframes``
  only what their samples need,

as ratios to single-thread ffmpeg and to PyAV decode-only, with the CPU time
per frame (all threads), and checks the goals: ``scene`` at stride 1 >= 0.9x
ffmpeg with its default threads; ``scene`` at stride 10 >= 0.9x PyAV
decode-only; ``fast`` and ``keyframes`` at one sample a second >= 5x
``exact`` (decoding every frame). The measurements run in rounds (5, 2 with
``--quick``), each goal's two sides back to back, and a goal is judged on the
median of its per-round ratios, so that other load on the machine skews it
less. Exit status 1 if a goal is missed.
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2

from bench.figures import Row, Target, show
from bench.inputs import FPS, SHOT_SECONDS, shots_clip
from shared.pipeline import AnalysisSummary, VideoFilePipelineService, load_registry
from shared.pipeline.service import decoder_threads_for
from shared.settings import Settings


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="10 s clip, fewer runs")
    parser.add_argument("--clip", type=Path, help="use this MP4 instead of the generated clip")
    parser.add_argument("--seconds", type=int, help="length of the generated clip")
    parser.add_argument("--repeat", type=int, help="runs per measurement (best is kept)")
    parser.add_argument("--pipelines", help="comma-separated pipelines (default: all built-ins)")
    args = parser.parse_args(argv)

    seconds = args.seconds or (10 if args.quick else 60)
    repeat = args.repeat or (2 if args.quick else 5)
    clip = args.clip or shots_clip(seconds)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        frames = stream.frames or sum(1 for _ in container.decode(stream))
        clip_fps = float(stream.average_rate or 30)
        size = f"{stream.codec_context.width}x{stream.codec_context.height}"
        codec = stream.codec_context.name
    print(
        f"clip: {clip} ({codec} {size}, {frames} frames, {clip.stat().st_size / 1e6:.1f} MB)"
        f"\nmachine: {os.cpu_count()} CPUs, {platform.python_implementation()}"
        f" {platform.python_version()}, PyAV {av.__version__} (FFmpeg"
        f" {getattr(av, 'ffmpeg_version_info', '?')}), OpenCV {cv2.__version__},"
        f" load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
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

    def pipeline(name: str, stride: int, sampling: str = "exact") -> Callable[[], object]:
        def run() -> None:
            summary = service.analyze(
                clip,
                out,
                job_id=uuid.uuid4(),
                pipeline=name,
                frame_stride=stride,
                sampling=sampling,
            )
            if sampling == "exact":
                summaries[(name, stride)] = summary
            else:
                sparse[sampling] = summary

        return run

    sparse: dict[str, AnalysisSummary] = {}

    def side_by_side(jobs: int, threads: int) -> Callable[[], object]:
        """``jobs`` scene jobs at stride 1 at once, as a worker with that concurrency runs them."""
        shared_cpus = VideoFilePipelineService(registry=registry, decoder_threads=threads)

        def one(k: int) -> None:
            shared_cpus.analyze(
                clip, Path(tmp.name) / f"side-{k}.json", job_id=uuid.uuid4(), pipeline="scene"
            )

        def run() -> None:
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(one, range(jobs)))

        return run

    split = decoder_threads_for(Settings(worker_concurrency=2))
    # Rows that put several clips through at once: frames/s counts them all.
    clips_per_run = {"2 scene jobs at once, threads split": 2, "2 scene jobs at once, auto": 2}

    wanted = args.pipelines.split(",") if args.pipelines else registry.names()
    has_ffmpeg = shutil.which("ffmpeg") is not None
    if has_ffmpeg:
        version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True)
        print(f"ffmpeg binary: {version.stdout.splitlines()[0] if version.stdout else '?'}")
    per_second = max(1, round(clip_fps))
    if has_ffmpeg:
        items.append(("ffmpeg -threads 1", _ffmpeg(clip, 1), repeat))
        items.append(("ffmpeg (default threads)", _ffmpeg(clip, None), repeat))
    else:
        print("  (no ffmpeg binary: apt-get install ffmpeg for the ffmpeg baselines)")
    if "scene" in wanted:
        items.append(("pipeline scene stride 1", pipeline("scene", 1), repeat))
    items.append(("PyAV decode-only", _pyav_decode(clip), repeat))
    if "scene" in wanted:
        items.append(("pipeline scene stride 10", pipeline("scene", 10), repeat))
        items.append(
            ("2 scene jobs at once, threads split", side_by_side(2, split), max(1, repeat // 2))
        )
        items.append(("2 scene jobs at once, auto", side_by_side(2, 0), max(1, repeat // 2)))
        for mode in ("exact", "fast", "keyframes"):
            items.append(
                (
                    f"scene 1/s sampling={mode}",
                    pipeline("scene", per_second, mode),
                    repeat,
                )
            )
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
            show([Row(name, clips_per_run.get(name, 1) * frames / wall, "frames/s")])
    tmp.cleanup()

    fps = {name: clips_per_run.get(name, 1) * frames / min(times) for name, times in walls.items()}
    ffmpeg_1 = fps.get("ffmpeg -threads 1")
    ffmpeg_0 = fps.get("ffmpeg (default threads)")
    pyav = fps["PyAV decode-only"]
    rows = []
    for name, _, _ in items:
        rate = fps[name]
        vs_ffmpeg = (
            f"{rate / ffmpeg_1:.2f}x ffmpeg -threads 1, {rate / ffmpeg_0:.2f}x threads 0, "
            if ffmpeg_1 and ffmpeg_0
            else ""
        )
        cpu_ms = min(cpus[name]) / (clips_per_run.get(name, 1) * frames) * 1000
        note = f"{vs_ffmpeg}{rate / pyav:.2f}x PyAV, CPU {cpu_ms:.2f} ms/frame"
        rows.append(Row(name, rate, "frames/s", note=note))
    show(rows, f"{frames} frames; best of {repeat} runs (slow pipelines: 1 run)")

    if not args.clip:
        shots = [i * FPS * SHOT_SECONDS for i in range(-(-frames // (FPS * SHOT_SECONDS)))]
        found = []
        for (name, stride), summary in sorted(summaries.items()):
            scene = summary.analyzers.get("scene")
            if scene is not None:
                starts = [shot["start_frame"] for shot in scene["shots"]]
                verdict = "as generated" if starts == shots else f"generated: {shots}"
                found.append(
                    Row(f"{name} stride {stride}: shots start at", note=f"{starts} ({verdict})")
                )
        show(found)

    if sparse:
        show(
            [
                Row(
                    f"sampling={mode} at 1/s analysed",
                    note=f"{s.frames_sampled} frames, decoded {s.frames_decoded}"
                    f" of {frames}, {s.frames_undecodable} undecodable",
                )
                for mode, s in sparse.items()
            ]
        )

    goals = [
        ("pipeline scene stride 1", "ffmpeg (default threads)", 0.9),
        ("pipeline scene stride 10", "PyAV decode-only", 0.9),
        ("scene 1/s sampling=fast", "scene 1/s sampling=exact", 5.0),
        ("scene 1/s sampling=keyframes", "scene 1/s sampling=exact", 5.0),
        ("2 scene jobs at once, threads split", "pipeline scene stride 1", 0.9),
    ]
    targets = []
    for subject, baseline, goal in goals:
        if subject not in walls or baseline not in walls:
            continue
        # Paired ratio of frames/s (a row may put several clips through a run),
        # over the rounds both sides ran in.
        weight = clips_per_run.get(subject, 1) / clips_per_run.get(baseline, 1)
        paired = [weight * b / a for a, b in zip(walls[subject], walls[baseline], strict=False)]
        ratio = statistics.median(paired)
        best = fps[subject] / fps[baseline]
        value = f"{ratio:.2f}x (best/best {best:.2f}x)"
        targets.append(Target(f"{subject} >= {goal}x {baseline}", value, ratio >= goal))
    show(targets, "goals (median over rounds of the paired ratio; ratio of the bests):")
    return 0 if all(t.met for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
