"""Sparse sampling: which frames ``fast`` and ``keyframes`` analyse, decoded for real.

The clip has a known structure: keyframes every 16 frames (scene cuts off),
two B-frames, 10 fps, so frame ``i`` is at ``i / 10`` s.
"""

from __future__ import annotations

import json
import os
import threading
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.api.models import SubmitForm, submit_form
from shared.errors import InvalidParameter, VideoUnreadable
from shared.pipeline import VideoFilePipelineService, load_registry
from shared.pipeline.prefetch import prefetched
from shared.pipeline.sampling import SAMPLING_MODES, Sampling, plan_sparse
from shared.pipeline.service import decoder_threads_for
from shared.pipeline.video import open_video
from shared.settings import Settings
from tests.support.videos import flip_bytes, segment_frame, top_level_boxes, write_mp4

pytestmark = pytest.mark.unit

FPS = 10
FRAMES = 80
GOP = 16
KEYFRAMES = list(range(0, FRAMES, GOP))  # 0, 16, 32, 48, 64


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sampling") / "gop16.mp4"
    frames = (segment_frame(i // 40, i, width=160, height=96) for i in range(FRAMES))
    options = {
        "preset": "veryfast",
        "bf": "2",
        "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0",
    }
    return write_mp4(path, frames, fps=FPS, options=options)


def analyze(video: Path, out: Path, **options: Any) -> tuple[Any, list[dict[str, Any]]]:
    service = VideoFilePipelineService(
        registry=load_registry(entry_point_group=None),
        **{k: options.pop(k) for k in ("max_undecodable_fraction",) if k in options},
    )
    summary = service.analyze(video, out, job_id=uuid.uuid4(), pipeline="basic", **options)
    return summary, json.loads(out.read_text(encoding="utf-8"))["results"]


def test_the_clip_has_the_structure_the_tests_rely_on(clip: Path) -> None:
    with open_video(clip) as video:
        table = video.scan()
    assert table is not None
    ranks = sorted(table.pts)
    keys = sorted(ranks.index(p) for p, key in zip(table.pts, table.keyframe, strict=True) if key)
    assert keys == KEYFRAMES
    assert table.pts != ranks  # B-frames: decoding order is not presentation order


def test_keyframes_returns_exactly_the_keyframes_with_their_own_index_and_time(
    clip: Path, tmp_path: Path
) -> None:
    summary, results = analyze(clip, tmp_path / "k.json", sampling="keyframes")
    assert [e["frame_index"] for e in results] == KEYFRAMES
    assert [e["timestamp_s"] for e in results] == [i / FPS for i in KEYFRAMES]
    # Nothing but the keyframes went through the decoder.
    assert summary.frames_decoded == len(KEYFRAMES)
    assert summary.document_summary()["sampling"] == "keyframes"
    # The same frames as exact decoding gives them.
    _, every = analyze(clip, tmp_path / "e.json")
    assert results == [every[i] for i in KEYFRAMES]


def test_keyframes_at_a_stride_takes_the_keyframe_nearest_each_target(
    clip: Path, tmp_path: Path
) -> None:
    # Targets 0, 40: nearest keyframes 0 and 32 (40 - 32 = 8 < 48 - 40 = 8 is a
    # tie: the earlier one).
    _, results = analyze(clip, tmp_path / "k.json", sampling="keyframes", frame_stride=40)
    assert [e["frame_index"] for e in results] == [0, 32]


def test_fast_returns_frames_near_each_sample_time_as_exact_decoding_gives_them(
    clip: Path, tmp_path: Path
) -> None:
    stride = FPS  # one sample a second
    summary, results = analyze(clip, tmp_path / "f.json", sampling="fast", frame_stride=stride)
    _, every = analyze(clip, tmp_path / "e.json")
    indexes = [e["frame_index"] for e in results]
    targets = list(range(0, FRAMES, stride))
    assert len(indexes) == len(targets) and indexes == sorted(set(indexes))
    for target, index in zip(targets, indexes, strict=True):
        # A keyframe within half a sample interval, or the first frame at or
        # after the target in decoding order (the next P-frame: at most 3 on).
        assert (index in KEYFRAMES and abs(index - target) <= stride // 2) or (
            target <= index <= target + 3
        ), (target, index)
    # Real indexes and times: each entry is exact decoding's entry for that frame.
    assert results == [every[i] for i in indexes]
    assert summary.frames_decoded < FRAMES // 2  # the rest was never decoded


def test_fast_at_stride_1_analyses_each_frame_it_decodes_once(clip: Path, tmp_path: Path) -> None:
    summary, results = analyze(clip, tmp_path / "f.json", sampling="fast")
    indexes = [e["frame_index"] for e in results]
    assert indexes == sorted(set(indexes)) and set(KEYFRAMES) <= set(indexes)
    assert len(indexes) < FRAMES  # the non-reference B-frames are skipped
    assert summary.frames_sampled == len(indexes)


def test_max_frames_caps_the_frames_chosen(clip: Path, tmp_path: Path) -> None:
    _, results = analyze(clip, tmp_path / "f.json", sampling="fast", frame_stride=5, max_frames=3)
    assert len(results) == 3 and results[0]["frame_index"] == 0


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_a_damaged_clip_is_analysed_in_every_mode(clip: Path, tmp_path: Path, mode: str) -> None:
    damaged = flip_bytes(clip, 150, seed=0, out=tmp_path / "damaged.mp4")
    summary, results = analyze(damaged, tmp_path / "out.json", sampling=mode, frame_stride=4)
    assert results and summary.frames_undecodable < len(results)
    assert summary.frames_sampled == len(results)
    # The damage shows: frames lost, or concealed ones flagged.
    assert summary.frames_undecodable or any(e.get("concealed") for e in results)
    if mode != "exact":
        # Indexes come from the packets' order in the file, so a lost frame
        # leaves them right (exact mode counts decoded frames instead).
        assert all(e["frame_index"] == round(e["timestamp_s"] * FPS) for e in results)
    if summary.frames_undecodable:
        with pytest.raises(VideoUnreadable):
            analyze(damaged, tmp_path / "strict.json", sampling=mode, max_undecodable_fraction=0)


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_a_clip_with_every_frame_damaged_fails_in_every_mode(
    clip: Path, tmp_path: Path, mode: str
) -> None:
    (mdat_size,) = [size for name, _, size in top_level_boxes(clip) if name == "mdat"]
    ruined = flip_bytes(clip, mdat_size // 2, seed=1, out=tmp_path / "ruined.mp4")
    with pytest.raises(VideoUnreadable, match=r"^Unable to read video file$"):
        analyze(ruined, tmp_path / "out.json", sampling=mode)


def test_fast_walks_from_the_keyframe_through_the_reference_frames() -> None:
    # Decoding order of an IBBP stream: I0 P3 B1 B2 P6 B4 B5 P9 B7 B8 I12 B10 B11.
    pts = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8, 12, 10, 11]
    keyframe = [p in (0, 12) for p in pts]
    plan = plan_sparse(pts, keyframe, sampling=Sampling.FAST, frame_stride=4)
    # Target 0: the keyframe; 4: no keyframe within 2 frames, so the first
    # frame at or after it in decoding order, P6; 8: likewise P9; 12: I12.
    assert sorted(plan.index_of_pts) == [0, 6, 9, 12]
    assert plan.feed == (0, 1, 2, 3, 4, 5, 6, 7, 10)  # I0 .. P9, then I12; B10 B11 never
    assert {pts[p] for p in plan.sampled} == {0, 6, 9, 12}
    assert (plan.skip_sampled, plan.skip_between) == ("DEFAULT", "NONREF")
    keys = plan_sparse(pts, keyframe, sampling=Sampling.KEYFRAMES, frame_stride=1)
    assert keys.feed == (0, 10) and keys.skip_between == "NONKEY"
    with pytest.raises(ValueError):
        plan_sparse(pts, keyframe, sampling=Sampling.EXACT, frame_stride=1)


def test_an_unknown_sampling_is_refused_naming_the_field() -> None:
    form = submit_form(Settings(auth_disabled=True), ["basic"])
    with pytest.raises(InvalidParameter, match=r"^sampling must be one of 'exact', 'fast' or"):
        form.parse({"sampling": "sparse"})
    assert form.parse({}).job_fields()["options"] == {"frame_stride": 1, "max_frames": None}
    fast = form.parse({"sampling": " fast "}).job_fields()["options"]
    assert fast == {"frame_stride": 1, "max_frames": None, "sampling": "fast"}


def test_the_form_offers_the_pipelines_modes() -> None:
    annotation = SubmitForm.model_fields["sampling"].annotation
    assert typing.get_args(annotation) == SAMPLING_MODES


def test_prefetched_keeps_order_raises_in_place_and_stops_its_thread() -> None:
    def numbers() -> Iterator[int]:
        yield from range(5)
        raise RuntimeError("source broke")

    got = []
    with pytest.raises(RuntimeError, match="source broke"):
        for n in prefetched(numbers(), depth=2):
            got.append(n)
    assert got == [0, 1, 2, 3, 4]

    endless = prefetched(iter(int, 1), depth=2, name="test-prefetch")
    assert next(endless) == 0
    endless.close()  # the producer is blocked on a full queue: it must still end
    assert not [t for t in threading.enumerate() if t.name == "test-prefetch"]


def test_concurrent_jobs_share_the_cpus_among_their_decoder_threads() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert decoder_threads_for(Settings()) == 0  # one job: FFmpeg picks
    assert decoder_threads_for(Settings(worker_concurrency=2)) == max(1, cpus // 2)
    assert decoder_threads_for(Settings(worker_concurrency=1000)) == 1
    assert decoder_threads_for(Settings(worker_concurrency=4, decoder_threads=3)) == 3


def test_a_short_clip_decodes_without_frame_threads(clip: Path, tmp_path: Path) -> None:
    short = write_mp4(
        tmp_path / "short.mp4",
        (segment_frame(0, i, width=64, height=48) for i in range(5)),
        fps=FPS,
    )
    with open_video(short, threads=4) as video:
        assert video.info.frame_count == 5
        assert video.stream.codec_context.thread_count == 1
        assert len(list(video.frames())) == 5
    with open_video(clip, threads=4) as video:  # 80 frames: threads as asked
        assert video.stream.codec_context.thread_count == 4
        assert len(list(video.frames())) == FRAMES


def _decoded(video_path: Path, mode: str, *, threads: int) -> tuple[list[Any], Any, int]:
    """The frames one decode puts out (index, pts, concealed), its damage and restarts."""
    with open_video(video_path, threads=threads) as video:
        table = video.scan()
        if mode == "exact":
            frames = [(i, f.pts, f.is_corrupt) for i, f in enumerate(video.frames())]
        else:
            assert table is not None
            plan = plan_sparse(table.pts, table.keyframe, sampling=Sampling(mode), frame_stride=4)
            frames = [(i, f.pts, f.is_corrupt) for i, f in video.sparse_frames(plan)]
        return frames, video.damage(), video.restarts


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_a_damaged_clip_decodes_the_same_with_frame_threads_under_load(
    clip: Path, tmp_path: Path, mode: str
) -> None:
    damaged = flip_bytes(clip, 150, seed=0, out=tmp_path / "damaged.mp4")
    single, single_damage, _ = _decoded(damaged, mode, threads=1)
    assert single_damage.frames_undecodable or any(c for _, _, c in single)
    stop = threading.Event()

    def busy() -> None:  # contends for the CPUs the decoder's threads run on
        while not stop.is_set():
            sum(range(10_000))

    spinner = threading.Thread(target=busy, name="test-busy", daemon=True)
    spinner.start()
    try:
        runs = [_decoded(damaged, mode, threads=4) for _ in range(8)]
    finally:
        stop.set()
        spinner.join(timeout=10)
    for frames, damage, restarts in runs:
        assert (frames, damage) == (single, single_damage)
        assert restarts == 1  # threaded until the damage, single-threaded after


def test_a_healthy_clip_keeps_its_frame_threads(clip: Path) -> None:
    frames, damage, restarts = _decoded(clip, "exact", threads=4)
    assert restarts == 0 and damage.frames_undecodable == 0
    assert frames == _decoded(clip, "exact", threads=1)[0]
