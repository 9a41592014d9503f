"""The video pipeline service: sampling, the results document, validation, the registry."""

from __future__ import annotations

import json
import random
import sys
import types
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.errors import JobInterrupted, PipelineNotFound, VideoUnreadable
from shared.pipeline import (
    Analyzer,
    Frame,
    PipelineRegistry,
    PluginError,
    VideoFilePipelineService,
    VideoLimitExceeded,
    load_registry,
)
from shared.pipeline import registry as registry_module
from shared.pipeline.video import check_iso_bmff
from shared.settings import Settings
from tests.support.videos import (
    make_audio_only_mp4,
    make_mkv,
    make_mp4,
    remove_box,
    top_level_boxes,
    truncate,
)

pytestmark = pytest.mark.unit

FPS = 10
FRAMES = 25


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def clip(videos: Path) -> Path:
    """25 frames at 10 fps, with B-frames, moov at the end."""
    return make_mp4(videos / "clip.mp4", seconds=FRAMES / FPS, fps=FPS)


@pytest.fixture(scope="module")
def registry() -> PipelineRegistry:
    return load_registry(entry_point_group=None)


@pytest.fixture
def service(registry: PipelineRegistry) -> VideoFilePipelineService:
    return VideoFilePipelineService(registry=registry)


def run(
    service: VideoFilePipelineService, video: Path, out: Path, **options: Any
) -> tuple[Any, dict[str, Any]]:
    options.setdefault("pipeline", "basic")
    summary = service.analyze(video, out, job_id=uuid.UUID(int=7), **options)
    return summary, json.loads(out.read_text(encoding="utf-8"))


# --- sampling -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stride", "max_frames", "expected", "decoded"),
    [
        (1, None, list(range(25)), 25),
        (3, None, list(range(0, 25, 3)), 25),
        (10, None, [0, 10, 20], 25),
        (1, 4, [0, 1, 2, 3], 4),
        (3, 4, [0, 3, 6, 9], 10),
        (10, 100, [0, 10, 20], 25),
    ],
)
def test_sampling_yields_exact_frame_indices_and_timestamps(
    service: VideoFilePipelineService,
    clip: Path,
    tmp_path: Path,
    stride: int,
    max_frames: int | None,
    expected: list[int],
    decoded: int,
) -> None:
    summary, doc = run(
        service, clip, tmp_path / "out.json", frame_stride=stride, max_frames=max_frames
    )
    assert [r["frame_index"] for r in doc["results"]] == expected
    assert [r["timestamp_s"] for r in doc["results"]] == [round(i / FPS, 6) for i in expected]
    assert summary.frames_sampled == len(expected)
    assert summary.frames_decoded == decoded
    assert doc["summary"]["frames_sampled"] == len(expected)


def test_results_document_has_metadata_and_is_compact_json(
    service: VideoFilePipelineService, clip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    summary, doc = run(service, clip, out, frame_stride=5)
    text = out.read_text(encoding="utf-8")
    assert ": " not in text and ", " not in text
    assert list(doc) == ["job_id", "video", "pipeline", "results", "summary"]
    assert doc["job_id"] == str(uuid.UUID(int=7))
    assert doc["pipeline"] == "basic"
    assert doc["video"] == {
        "codec": "h264",
        "width": 64,
        "height": 48,
        "fps": 10.0,
        "duration_s": 2.5,
        "frame_count": 25,
    }
    assert doc["results"][0]["result"].keys() == {"width", "height", "mean_brightness"}
    assert summary.as_dict()["video"] == doc["video"]
    assert summary.output_bytes == out.stat().st_size
    assert json.loads(json.dumps(summary.as_dict())) == summary.as_dict()
    assert not list(tmp_path.glob("*.part"))


def test_basic_reports_the_mean_luma_of_the_frame(
    service: VideoFilePipelineService, tmp_path: Path
) -> None:
    grey = np.full((48, 64, 3), 128, np.uint8)
    video = make_mp4(tmp_path / "grey.mp4", seconds=0.3, fps=10, frame=lambda i: grey)
    _, doc = run(service, video, tmp_path / "out.json")
    # BT.601 limited range: Y = 16 + 219 * 128 / 255
    for entry in doc["results"]:
        assert entry["result"]["mean_brightness"] == pytest.approx(125.9, abs=1.0)
        assert (entry["result"]["width"], entry["result"]["height"]) == (64, 48)


def test_memory_stays_flat_whatever_the_number_of_frames(
    service: VideoFilePipelineService, tmp_path: Path
) -> None:
    import tracemalloc

    video = make_mp4(tmp_path / "long.mp4", seconds=40, fps=10, width=32, height=32)
    peaks = []
    for max_frames in (40, 400):
        tracemalloc.start()
        summary = service.analyze(
            video, tmp_path / "o.json", job_id=uuid.uuid4(), pipeline="basic", max_frames=max_frames
        )
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert summary.frames_sampled == max_frames
    # Ten times the frames, the same peak (the 1 MiB write buffer, mostly):
    # holding the 360 extra results would add about 200 KB.
    assert peaks[1] - peaks[0] < 96 * 1024


def test_noop_pipeline_gives_empty_results(
    service: VideoFilePipelineService, clip: Path, tmp_path: Path
) -> None:
    _, doc = run(service, clip, tmp_path / "out.json", pipeline="noop", frame_stride=10)
    assert [r["result"] for r in doc["results"]] == [{}, {}, {}]


def test_opencv_keeps_its_threads_only_for_pipelines_that_gain_from_them(
    registry: PipelineRegistry, clip: Path, tmp_path: Path
) -> None:
    import cv2

    cv2.setNumThreads(-1)  # OpenCV's default pool, whatever an earlier job left
    default = cv2.getNumThreads()
    if default < 2:
        pytest.skip("one CPU: OpenCV's pool is one thread either way")
    service = VideoFilePipelineService(registry=registry)
    try:
        run(service, clip, tmp_path / "scene.json", pipeline="scene", max_frames=2)
        assert cv2.getNumThreads() == 1
        run(service, clip, tmp_path / "faces.json", pipeline="faces", max_frames=2)
        assert cv2.getNumThreads() == default
        # Several jobs at once per worker process: one thread whatever the pipeline.
        busy = VideoFilePipelineService.from_settings(
            Settings(worker_concurrency=2), registry=registry
        )
        run(busy, clip, tmp_path / "busy.json", pipeline="faces", max_frames=2)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(default)


def test_frame_luma_is_a_zero_copy_view_of_the_y_plane(clip: Path) -> None:
    import av

    with av.open(str(clip)) as container:
        av_frame = next(container.decode(video=0))
        frame = Frame(av_frame, index=0, timestamp_s=0.0)
        luma = frame.luma
        plane = np.frombuffer(memoryview(av_frame.planes[0]), np.uint8)
        assert luma.shape == (48, 64)
        assert np.shares_memory(luma, plane)
        assert not luma.flags.writeable
        rows = plane.reshape(48, av_frame.planes[0].line_size)
        np.testing.assert_array_equal(luma, rows[:, :64])
        assert frame.bgr_small(32, 24).shape == (24, 32, 3)
        assert frame.luma_small(32, 24).shape == (24, 32)
        assert frame.luma_halved(64) is luma
        assert frame.luma_halved(40).shape == (24, 32)
        assert frame.luma_halved(20).shape == (12, 16)
        # the mean survives area halving
        assert float(frame.luma_halved(20).mean()) == pytest.approx(float(luma.mean()), abs=1)


# --- unreadable videos ----------------------------------------------------------


def _not_mp4(path: Path) -> Path:
    path.write_text("this is not a video\n")
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(random.Random(3).randbytes(5000))
    return path


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (_not_mp4, "box"),
        (_garbage, "box"),
        (lambda p: truncate(make_mp4(p), keep=0.6), "truncated"),
        (lambda p: truncate(make_mp4(p, faststart=True), keep=0.6), "truncated"),
        (lambda p: remove_box(make_mp4(p), "moov"), "moov"),
        (lambda p: remove_box(make_mp4(p, faststart=True), "moov"), "moov"),
        (make_audio_only_mp4, "no video stream"),
        (make_mkv, "ISO-BMFF"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
    ],
    ids=[
        "text",
        "random-bytes",
        "truncated",
        "truncated-faststart",
        "moov-missing",
        "moov-missing-faststart",
        "audio-only",
        "mkv-renamed",
        "empty",
    ],
)
def test_unreadable_videos_fail_with_unable_to_read_video_file(
    service: VideoFilePipelineService, tmp_path: Path, make: Any, detail: str
) -> None:
    video = make(tmp_path / "in.mp4")
    out = tmp_path / "out.json"
    with pytest.raises(VideoUnreadable) as caught:
        service.analyze(video, out, job_id=uuid.uuid4(), pipeline="basic")
    assert str(caught.value) == "Unable to read video file"
    assert detail in caught.value.detail
    assert not out.exists()
    assert not list(tmp_path.glob("*.part"))


def test_a_decode_error_mid_stream_is_unable_to_read_video_file(
    service: VideoFilePipelineService, tmp_path: Path
) -> None:
    video = make_mp4(tmp_path / "in.mp4", seconds=2, faststart=True)
    data = bytearray(video.read_bytes())
    (_, offset, size) = next(b for b in top_level_boxes(video) if b[0] == "mdat")
    noise = random.Random(1).randbytes(size - 8)
    data[offset + 8 : offset + size] = noise  # boxes still tile the file
    video.write_bytes(bytes(data))
    check_iso_bmff(video)
    with pytest.raises(VideoUnreadable, match="Unable to read video file") as caught:
        service.analyze(video, tmp_path / "out.json", job_id=uuid.uuid4(), pipeline="basic")
    assert "decod" in caught.value.detail
    assert not (tmp_path / "out.json").exists()


def test_trailing_bytes_after_the_last_box_are_refused(clip: Path, tmp_path: Path) -> None:
    video = tmp_path / "in.mp4"
    video.write_bytes(clip.read_bytes() + b"\0\0\0")
    with pytest.raises(VideoUnreadable):
        check_iso_bmff(video)


# --- limits, stop, progress -----------------------------------------------------


def test_a_video_larger_than_the_limit_is_refused(
    registry: PipelineRegistry, clip: Path, tmp_path: Path
) -> None:
    service = VideoFilePipelineService(registry=registry, max_width=32, max_height=32)
    with pytest.raises(
        VideoLimitExceeded, match=r"^Video is 64x48, larger than the limit of 32x32$"
    ):
        service.analyze(clip, tmp_path / "o.json", job_id=uuid.uuid4(), pipeline="basic")


def test_too_many_frames_to_analyse_is_refused_unless_stride_or_max_frames_bring_it_down(
    registry: PipelineRegistry, clip: Path, tmp_path: Path
) -> None:
    service = VideoFilePipelineService(registry=registry, max_frames_limit=10)
    with pytest.raises(VideoLimitExceeded, match="25 frames to analyse"):
        service.analyze(clip, tmp_path / "o.json", job_id=uuid.uuid4(), pipeline="noop")
    summary, _ = run(service, clip, tmp_path / "a.json", frame_stride=3)
    assert summary.frames_sampled == 9
    summary, _ = run(service, clip, tmp_path / "b.json", max_frames=10)
    assert summary.frames_sampled == 10


def test_a_video_longer_than_the_duration_limit_is_refused(
    registry: PipelineRegistry, clip: Path, tmp_path: Path
) -> None:
    service = VideoFilePipelineService(registry=registry, max_duration_seconds=2.0)
    with pytest.raises(VideoLimitExceeded, match="longer than the limit of 2 s"):
        service.analyze(clip, tmp_path / "o.json", job_id=uuid.uuid4(), pipeline="basic")


def test_should_stop_interrupts_the_job_and_leaves_no_output(
    service: VideoFilePipelineService, clip: Path, tmp_path: Path
) -> None:
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    out = tmp_path / "out.json"
    with pytest.raises(JobInterrupted):
        service.analyze(
            clip,
            out,
            job_id=uuid.uuid4(),
            pipeline="basic",
            frame_stride=2,
            should_stop=should_stop,
        )
    assert calls == 4
    assert not out.exists()
    assert not list(tmp_path.glob("*.part"))


def test_should_stop_is_also_asked_between_samples_at_a_large_stride(
    service: VideoFilePipelineService, tmp_path: Path
) -> None:
    video = make_mp4(tmp_path / "long.mp4", seconds=13, fps=10, width=32, height=32)
    calls: list[int] = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(JobInterrupted):
        service.analyze(
            video,
            tmp_path / "out.json",
            job_id=uuid.uuid4(),
            pipeline="noop",
            frame_stride=1000,
            should_stop=should_stop,
        )
    assert len(calls) == 2  # at frame 0 (sampled) and frame 64 (not sampled)


def test_progress_is_a_growing_fraction_reported_at_most_once_per_interval(
    registry: PipelineRegistry, clip: Path, tmp_path: Path
) -> None:
    fractions: list[float] = []
    fast = VideoFilePipelineService(registry=registry, progress_interval=1e-9)
    fast.analyze(
        clip,
        tmp_path / "a.json",
        job_id=uuid.uuid4(),
        pipeline="noop",
        on_progress=fractions.append,
    )
    assert fractions == sorted(fractions)
    assert fractions[0] == pytest.approx(1 / 25)
    assert fractions[-1] == 1.0

    slow_fractions: list[float] = []
    slow = VideoFilePipelineService(registry=registry, progress_interval=3600)
    slow.analyze(
        clip,
        tmp_path / "b.json",
        job_id=uuid.uuid4(),
        pipeline="noop",
        on_progress=slow_fractions.append,
    )
    assert slow_fractions == []


def test_bad_sampling_options_are_value_errors(
    service: VideoFilePipelineService, clip: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError):
        service.analyze(
            clip, tmp_path / "o.json", job_id=uuid.uuid4(), pipeline="basic", frame_stride=0
        )
    with pytest.raises(ValueError):
        service.analyze(
            clip, tmp_path / "o.json", job_id=uuid.uuid4(), pipeline="basic", max_frames=0
        )


# --- registry and plugins -------------------------------------------------------


class _Counter(Analyzer):
    def __init__(self) -> None:
        self.n = 0

    def analyze(self, frame: Frame) -> dict[str, Any]:
        self.n += 1
        return {"count": np.int64(self.n), "mean": np.float32(0.5)}

    def summary(self) -> dict[str, Any]:
        return {"frames": self.n}


class _Clash(Analyzer):
    def analyze(self, frame: Frame) -> dict[str, Any]:
        return {"count": 0}


def test_unknown_pipeline_is_pipeline_not_found(
    service: VideoFilePipelineService, clip: Path, tmp_path: Path
) -> None:
    with pytest.raises(PipelineNotFound, match=r"^Pipeline not found$"):
        service.analyze(clip, tmp_path / "o.json", job_id=uuid.uuid4(), pipeline="nope")
    assert not (tmp_path / "o.json").exists()


def test_registry_lists_sorted_pipelines_and_refuses_duplicates(registry: PipelineRegistry) -> None:
    assert {"basic", "noop"} <= set(registry.names())
    assert registry.names() == sorted(registry.names())
    assert registry.get("basic").analyzer_names == ("basic",)
    fresh = PipelineRegistry()
    fresh.register_analyzer("counter", _Counter)
    with pytest.raises(ValueError):
        fresh.register_analyzer("counter", _Counter)
    with pytest.raises(ValueError):
        fresh.register_pipeline("x", ["missing"])
    with pytest.raises(ValueError):
        fresh.register_analyzer("Bad Name", _Counter)
    with pytest.raises(ValueError):
        fresh.register_analyzer("frames_sampled", _Counter)


def test_a_plugin_registers_analyzers_and_pipelines(
    monkeypatch: pytest.MonkeyPatch, clip: Path, tmp_path: Path
) -> None:
    plugin = types.ModuleType("videoq_test_plugin")

    def register(registry: PipelineRegistry) -> None:
        registry.register_analyzer("counter", _Counter)
        registry.register_pipeline("counting", ["basic", "counter"])

    plugin.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "videoq_test_plugin", plugin)
    registry = load_registry(plugins=["videoq_test_plugin:register"], entry_point_group=None)
    assert "counting" in registry.names()
    service = VideoFilePipelineService(registry=registry)
    _, doc = run(service, clip, tmp_path / "o.json", pipeline="counting", frame_stride=10)
    assert doc["results"][2]["result"] == {
        "width": 64,
        "height": 48,
        "mean_brightness": doc["results"][2]["result"]["mean_brightness"],
        "count": 3,
        "mean": 0.5,
    }
    assert doc["summary"]["counter"] == {"frames": 3}

    with pytest.raises(PluginError):
        load_registry(plugins=["videoq_test_plugin:missing"], entry_point_group=None)
    with pytest.raises(PluginError):
        load_registry(plugins=["no_colon"], entry_point_group=None)


def test_entry_points_add_an_analyzer_and_its_own_pipeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("videoq_test_ep")
    module.Counter = _Counter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "videoq_test_ep", module)
    eps = [EntryPoint(name="counter", value="videoq_test_ep:Counter", group="videoq.analyzers")]

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return eps if group == "videoq.analyzers" else []

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    registry = load_registry()
    assert "counter" in registry.analyzer_names()
    assert registry.get("counter").analyzer_names == ("counter",)

    eps[0] = EntryPoint(name="broken", value="videoq_test_ep:Nothing", group="videoq.analyzers")
    with pytest.raises(PluginError, match="broken"):
        load_registry()


def test_analyzers_returning_the_same_key_are_an_error(clip: Path, tmp_path: Path) -> None:
    registry = PipelineRegistry()
    registry.register_analyzer("counter", _Counter)
    registry.register_analyzer("clash", _Clash)
    registry.register_pipeline("both", ["counter", "clash"])
    service = VideoFilePipelineService(registry=registry)
    with pytest.raises(RuntimeError, match="clash"):
        service.analyze(clip, tmp_path / "o.json", job_id=uuid.uuid4(), pipeline="both")
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("seconds", [FRAMES / FPS, 6.0], ids=["short-no-decode-thread", "long"])
def test_results_are_the_same_with_and_without_the_decode_thread(
    registry: PipelineRegistry, videos: Path, tmp_path: Path, seconds: float
) -> None:
    # A short clip decodes on the analysing thread, a long one on a decode
    # thread of its own: the document is the same either way.
    video = make_mp4(videos / f"clip-{seconds}.mp4", seconds=seconds, fps=FPS)
    results = []
    for prefetch in (4, 0):
        service = VideoFilePipelineService(registry=registry, prefetch=prefetch)
        _, document = run(service, video, tmp_path / f"out-{prefetch}.json")
        results.append(document)
    assert results[0] == results[1]
    assert results[0]["summary"]["frames_sampled"] == round(seconds * FPS)
