"""Damaged files: bit rot in the media data is analysed, a missing index is refused."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.errors import VideoUnreadable
from shared.pipeline import VideoFilePipelineService, load_registry
from shared.pipeline.video import check_iso_bmff
from shared.settings import Settings
from tests.support.videos import flip_bytes, make_mp4, top_level_boxes, truncate

pytestmark = pytest.mark.unit

FRAMES = 250  # 10 s at 25 fps


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("damaged")
    return make_mp4(folder / "clip.mp4", seconds=10, fps=25, width=320, height=240, segments=3)


@pytest.fixture(scope="module")
def damaged(clip: Path) -> Path:
    """The clip with 400 bytes of its mdat bit-flipped (seeded: the same each run)."""
    return flip_bytes(clip, 400, seed=0, out=clip.with_name("damaged.mp4"))


def service(**options: Any) -> VideoFilePipelineService:
    return VideoFilePipelineService(registry=load_registry(entry_point_group=None), **options)


def analyze(
    svc: VideoFilePipelineService, video: Path, out: Path, **options: Any
) -> tuple[Any, dict[str, Any]]:
    summary = svc.analyze(video, out, job_id=uuid.uuid4(), pipeline="basic", **options)
    return summary, json.loads(out.read_text(encoding="utf-8"))


def test_flip_bytes_is_deterministic_and_keeps_the_boxes(clip: Path, tmp_path: Path) -> None:
    a = flip_bytes(clip, 50, seed=3, out=tmp_path / "a.mp4")
    b = flip_bytes(clip, 50, seed=3, out=tmp_path / "b.mp4")
    assert a.read_bytes() == b.read_bytes() != clip.read_bytes()
    changed = sum(x != y for x, y in zip(a.read_bytes(), clip.read_bytes(), strict=True))
    assert changed == 50
    check_iso_bmff(a)  # still a well-formed MP4: only the media data rotted


def test_a_clean_clip_has_no_undecodable_and_no_concealed_frames(
    clip: Path, tmp_path: Path
) -> None:
    summary, doc = analyze(service(), clip, tmp_path / "out.json")
    assert summary.frames_undecodable == 0
    assert doc["summary"]["frames_undecodable"] == 0
    assert len(doc["results"]) == FRAMES
    assert all(set(entry) == {"frame_index", "timestamp_s", "result"} for entry in doc["results"])


def test_a_damaged_clip_is_analysed_and_its_losses_counted(damaged: Path, tmp_path: Path) -> None:
    summary, doc = analyze(service(), damaged, tmp_path / "out.json")
    undecodable = doc["summary"]["frames_undecodable"]
    assert 0 < undecodable <= FRAMES // 10  # a few frames lost ...
    assert summary.frames_undecodable == undecodable
    assert summary.frames_decoded == FRAMES - undecodable  # ... the rest decoded
    assert len(doc["results"]) == summary.frames_sampled == FRAMES - undecodable
    concealed = [e for e in doc["results"] if e.get("concealed")]
    assert concealed and all(e["concealed"] is True for e in concealed)
    assert len(concealed) < len(doc["results"])  # the flag marks some frames, not all
    # Timestamps stay the frames' own (pts), so a lost frame leaves a gap in them.
    stamps = {round(e["timestamp_s"] * 25) for e in doc["results"]}
    assert stamps <= set(range(FRAMES)) and len(stamps) > FRAMES - 2 * undecodable


def test_stopping_early_does_not_count_frames_in_flight_as_lost(clip: Path, tmp_path: Path) -> None:
    summary, _ = analyze(service(), clip, tmp_path / "out.json", max_frames=5)
    assert (summary.frames_sampled, summary.frames_undecodable) == (5, 0)


def test_more_undecodable_frames_than_the_setting_allows_fail(
    damaged: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    with pytest.raises(VideoUnreadable, match=r"^Unable to read video file$") as caught:
        service(max_undecodable_fraction=0.01).analyze(
            damaged, out, job_id=uuid.uuid4(), pipeline="basic"
        )
    assert "could not be decoded, more than the limit of 0.01" in caught.value.detail
    assert not out.exists()
    assert not list(tmp_path.glob("*.part"))
    # At 0 any loss fails; a clean clip still passes.
    strict = service(max_undecodable_fraction=0)
    with pytest.raises(VideoUnreadable):
        strict.analyze(damaged, out, job_id=uuid.uuid4(), pipeline="basic")
    summary, _ = analyze(strict, damaged.with_name("clip.mp4"), out)
    assert summary.frames_undecodable == 0


def test_the_setting_reaches_the_service(damaged: Path, tmp_path: Path) -> None:
    assert Settings().max_undecodable_fraction == 0.5
    strict = Settings(max_undecodable_fraction=0.01)
    svc = VideoFilePipelineService.from_settings(
        strict, registry=load_registry(entry_point_group=None)
    )
    with pytest.raises(VideoUnreadable):
        svc.analyze(damaged, tmp_path / "out.json", job_id=uuid.uuid4(), pipeline="basic")
    with pytest.raises(ValueError, match="max_undecodable_fraction"):
        service(max_undecodable_fraction=1.5)


def test_a_clip_with_every_frame_damaged_fails(clip: Path, tmp_path: Path) -> None:
    ruined = flip_bytes(clip, 20_000, seed=1, out=tmp_path / "ruined.mp4")
    with pytest.raises(VideoUnreadable, match=r"^Unable to read video file$") as caught:
        service().analyze(ruined, tmp_path / "out.json", job_id=uuid.uuid4(), pipeline="basic")
    assert "decod" in caught.value.detail


@pytest.mark.parametrize("faststart", [False, True], ids=["moov-last", "moov-first"])
def test_a_file_cut_before_its_moov_still_fails_at_once(tmp_path: Path, faststart: bool) -> None:
    video = make_mp4(tmp_path / "in.mp4", seconds=2, faststart=faststart)
    (moov_at,) = [offset for name, offset, _ in top_level_boxes(video) if name == "moov"]
    cut = truncate(video, keep=moov_at, out=tmp_path / "cut.mp4")
    out = tmp_path / "out.json"
    with pytest.raises(VideoUnreadable, match=r"^Unable to read video file$") as caught:
        service().analyze(cut, out, job_id=uuid.uuid4(), pipeline="basic")
    assert "moov" in caught.value.detail
    assert not out.exists()
