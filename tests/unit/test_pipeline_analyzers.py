"""The built-in analyzers (scene, faces, dhash, ocr) on real generated frames."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from shared.pipeline import (
    AnalyzerUnavailable,
    PipelineRegistry,
    VideoFilePipelineService,
    load_registry,
)
from shared.pipeline.analyzers import ocr as ocr_module
from shared.pipeline.analyzers.dhash import dhash, hamming
from shared.pipeline.analyzers.ocr import parse_tsv
from shared.pipeline.analyzers.scene import colour_histograms, histogram_distance
from tests.support.videos import face_image, make_mp4, segment_frame, text_image

pytestmark = pytest.mark.unit

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract-ocr is not installed"
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("analyzer-videos")


@pytest.fixture(scope="module")
def registry() -> PipelineRegistry:
    return load_registry(entry_point_group=None)


@pytest.fixture(scope="module")
def service(registry: PipelineRegistry) -> VideoFilePipelineService:
    return VideoFilePipelineService(registry=registry)


@pytest.fixture(scope="module")
def three_shots(videos: Path) -> Path:
    """Three distinct 1 s segments at 10 fps: shots start at frames 0, 10 and 20."""
    return make_mp4(videos / "three.mp4", seconds=3, fps=10, width=320, height=180, segments=3)


def run(
    service: VideoFilePipelineService, video: Path, tmp_path: Path, **options: Any
) -> dict[str, Any]:
    out = tmp_path / f"{uuid.uuid4()}.json"
    service.analyze(video, out, job_id=uuid.uuid4(), **options)
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return doc


def shots(doc: dict[str, Any]) -> list[tuple[int, int, float, float]]:
    return [
        (s["start_frame"], s["end_frame"], s["start_s"], s["end_s"])
        for s in doc["summary"]["scene"]["shots"]
    ]


# --- scene ----------------------------------------------------------------------


def test_scene_finds_exactly_the_three_shots(
    service: VideoFilePipelineService, three_shots: Path, tmp_path: Path
) -> None:
    doc = run(service, three_shots, tmp_path, pipeline="scene")
    boundaries = [r["frame_index"] for r in doc["results"] if r["result"]["scene"]["shot_boundary"]]
    assert boundaries == [10, 20]
    assert shots(doc) == [(0, 9, 0.0, 0.9), (10, 19, 1.0, 1.9), (20, 29, 2.0, 2.9)]
    assert doc["summary"]["scene"]["shot_count"] == 3
    assert [r["result"]["scene"]["shot"] for r in doc["results"]] == [0] * 10 + [1] * 10 + [2] * 10


def test_scene_at_a_stride_puts_each_cut_at_the_next_sampled_frame(
    service: VideoFilePipelineService, three_shots: Path, tmp_path: Path
) -> None:
    doc = run(service, three_shots, tmp_path, pipeline="scene", frame_stride=3)
    assert shots(doc) == [(0, 9, 0.0, 0.9), (12, 18, 1.2, 1.8), (21, 27, 2.1, 2.7)]


def test_scene_finds_five_shots_at_stride_one_and_ten(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    video = make_mp4(videos / "five.mp4", seconds=5, fps=10, width=160, height=90, segments=5)
    doc = run(service, video, tmp_path, pipeline="scene")
    assert [s[0] for s in shots(doc)] == [0, 10, 20, 30, 40]
    doc = run(service, video, tmp_path, pipeline="scene", frame_stride=10)
    assert [s[0] for s in shots(doc)] == [0, 10, 20, 30, 40]


def test_scene_sees_no_cut_in_one_moving_shot(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    video = make_mp4(videos / "one.mp4", seconds=3, fps=10, width=320, height=180)
    doc = run(service, video, tmp_path, pipeline="scene")
    assert shots(doc) == [(0, 29, 0.0, 2.9)]
    first, second = doc["results"][0]["result"]["scene"], doc["results"][1]["result"]["scene"]
    assert first["motion"] is None and first["hist_distance"] is None
    assert 0 < second["motion"] < 0.1
    assert second["hist_distance"] < 0.1


def test_scene_catches_a_cut_between_shots_of_the_same_colours(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    # Same two colours, same proportions: only the layout changes at frame 10.
    def frame(i: int) -> np.ndarray:
        image = np.zeros((90, 160, 3), np.uint8)
        image[:] = (230, 230, 60)
        cells = np.indices((90 // 15, 160 // 16)).sum(axis=0) % 2 == (1 if i >= 10 else 0)
        mask = np.kron(cells, np.ones((15, 16), bool))
        image[mask] = (30, 30, 160)
        image[:, (i % 10) * 2 : (i % 10) * 2 + 2] = (120, 120, 120)  # a little motion
        return image

    video = make_mp4(videos / "samecolours.mp4", seconds=2, fps=10, frame=frame)
    doc = run(service, video, tmp_path, pipeline="scene")
    cut = doc["results"][10]["result"]["scene"]
    assert cut["hist_distance"] < 0.05 and cut["motion"] > 0.2
    assert [s[0] for s in shots(doc)] == [0, 10]


def test_scene_measures_brightness_contrast_and_sharpness(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    flat = np.full((90, 160, 3), 128, np.uint8)
    sharp = np.zeros((90, 160, 3), np.uint8)
    sharp[:, ::4] = 255
    video = make_mp4(
        videos / "flat-sharp.mp4", seconds=0.2, fps=10, frame=lambda i: sharp if i else flat
    )
    doc = run(service, video, tmp_path, pipeline="scene")
    flat_r, sharp_r = (r["result"]["scene"] for r in doc["results"])
    assert flat_r["luma_mean"] == pytest.approx(126, abs=2)
    assert flat_r["luma_std"] < 1 and flat_r["sharpness"] < 5
    assert sharp_r["luma_std"] > 50 and sharp_r["sharpness"] > 1000


def test_histogram_distance_is_zero_for_the_same_image_and_one_for_opposites() -> None:
    black = np.zeros((90, 160, 3), np.uint8)
    white = np.full((90, 160, 3), 255, np.uint8)
    image = segment_frame(0, 0, width=160, height=90)
    assert histogram_distance(colour_histograms(image), colour_histograms(image)) == 0
    assert histogram_distance(colour_histograms(black), colour_histograms(white)) > 0.95


# --- faces ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [60, 100, 250])
def test_the_synthetic_face_is_a_face_to_the_haar_cascade(size: int) -> None:
    classifier = cv2.CascadeClassifier(
        str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
    )
    grey = cv2.cvtColor(face_image(size=size), cv2.COLOR_RGB2GRAY)
    assert len(classifier.detectMultiScale(grey, 1.2, 5, minSize=(40, 40))) == 1


def test_faces_finds_the_face_box_in_video_frames(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    face = face_image(width=640, height=360, size=160)
    video = make_mp4(videos / "face.mp4", seconds=0.3, fps=10, frame=lambda i: face)
    doc = run(service, video, tmp_path, pipeline="faces")
    for entry in doc["results"]:
        (box,) = entry["result"]["faces"]
        # the face is centred and ~160 px wide; the cascade's box is square
        assert abs(box["x"] + box["w"] / 2 - 320) < 15
        assert abs(box["y"] + box["h"] / 2 - 180) < 25
        assert 120 < box["w"] < 230 and box["w"] == box["h"]
    assert doc["summary"]["faces"] == {"frames_with_faces": 3, "max_faces": 1}


def test_faces_on_a_downscale_reports_boxes_in_full_frame_pixels(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    face = face_image(width=1280, height=720, size=320)
    video = make_mp4(videos / "face720.mp4", seconds=0.1, fps=10, frame=lambda i: face)
    doc = run(service, video, tmp_path, pipeline="faces")
    (box,) = doc["results"][0]["result"]["faces"]
    assert abs(box["x"] + box["w"] / 2 - 640) < 30
    assert 250 < box["w"] < 460


def test_faces_finds_none_where_there_is_no_face(
    service: VideoFilePipelineService, three_shots: Path, tmp_path: Path
) -> None:
    doc = run(service, three_shots, tmp_path, pipeline="faces", frame_stride=5)
    assert all(r["result"]["faces"] == [] for r in doc["results"])
    assert doc["summary"]["faces"] == {"frames_with_faces": 0, "max_faces": 0}


# --- dhash ----------------------------------------------------------------------


def test_dhash_is_stable_under_brightness_and_size_and_differs_across_scenes() -> None:
    a = cv2.cvtColor(segment_frame(0, 0, width=320, height=180), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(segment_frame(1, 0, width=320, height=180), cv2.COLOR_RGB2GRAY)
    brighter = cv2.add(a, 20)
    smaller = cv2.resize(a, (160, 90), interpolation=cv2.INTER_AREA)
    assert hamming(dhash(a), dhash(brighter)) <= 2
    assert hamming(dhash(a), dhash(smaller)) <= 4
    assert hamming(dhash(a), dhash(b)) > 12


def test_dhash_marks_near_duplicates_and_lists_the_runs(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    still = segment_frame(1, 0, width=160, height=90)

    def frame(i: int) -> np.ndarray:
        if i < 10:  # a still: every frame a near-duplicate of the one before
            return still
        return segment_frame(2 + i % 3, 0, width=160, height=90)  # a new picture each frame

    video = make_mp4(videos / "dupes.mp4", seconds=1.6, fps=10, frame=frame)
    doc = run(service, video, tmp_path, pipeline="dhash")
    entries = [r["result"]["dhash"] for r in doc["results"]]
    assert all(len(e["hash"]) == 16 and int(e["hash"], 16) >= 0 for e in entries)
    assert entries[0]["distance"] is None and entries[0]["near_duplicate"] is False
    assert [e["near_duplicate"] for e in entries] == [False] + [True] * 9 + [False] * 6
    summary = doc["summary"]["dhash"]
    assert summary["near_duplicate_frames"] == 9
    assert summary["duplicate_runs"] == [
        {"start_frame": 0, "end_frame": 9, "start_s": 0.0, "end_s": 0.9, "frames": 10}
    ]


# --- ocr ------------------------------------------------------------------------


def test_parse_tsv_groups_words_into_lines() -> None:
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "1\t1\t0\t0\t0\t0\t0\t0\t640\t360\t-1\t\n"
        "4\t1\t1\t1\t1\t0\t95\t163\t445\t40\t-1\t\n"
        "5\t1\t1\t1\t1\t1\t95\t163\t165\t40\t90.0\tVIDEOQ\n"
        "5\t1\t1\t1\t1\t2\t288\t160\t117\t37\t96.0\t2024\n"
        "5\t1\t2\t1\t1\t1\t10\t10\t20\t10\t20.0\tnoise\n"
    )
    assert parse_tsv(tsv, min_confidence=50) == [
        {"text": "VIDEOQ 2024", "x": 95, "y": 160, "w": 310, "h": 43, "confidence": 93.0}
    ]


@needs_tesseract
def test_ocr_reads_rendered_text_with_its_box(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    image = text_image("VIDEOQ 2024", width=640, height=360, scale=2.0, thickness=4)
    video = make_mp4(videos / "text.mp4", seconds=0.2, fps=10, frame=lambda i: image)
    doc = run(service, video, tmp_path, pipeline="ocr", max_frames=1)
    (line,) = doc["results"][0]["result"]["ocr"]
    assert line["text"] == "VIDEOQ 2024"
    assert line["confidence"] > 80
    ys, xs = np.nonzero(image[:, :, 0] < 128)  # where the ink is
    assert abs(line["x"] - xs.min()) < 12 and abs(line["x"] + line["w"] - xs.max()) < 12
    assert abs(line["y"] - ys.min()) < 12 and abs(line["y"] + line["h"] - ys.max()) < 12
    assert doc["summary"]["ocr"] == {"frames_with_text": 1}


@needs_tesseract
def test_ocr_reads_light_text_on_a_dark_busy_ground_and_nothing_in_texture(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    def frame(i: int) -> np.ndarray:
        image = segment_frame(1, i, width=640, height=360)  # dark checker, a moving disc
        if i == 0:
            cv2.putText(
                image, "Subtitle line", (140, 320), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255,) * 3, 3
            )
        return image

    video = make_mp4(videos / "subtitle.mp4", seconds=0.2, fps=10, frame=frame)
    doc = run(service, video, tmp_path, pipeline="ocr")
    with_text, without = (r["result"]["ocr"] for r in doc["results"])
    assert [line["text"] for line in with_text] == ["Subtitle line"]
    assert 280 < with_text[0]["y"] < 320
    assert without == []


def test_ocr_without_tesseract_fails_the_job_at_once(
    service: VideoFilePipelineService,
    three_shots: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ocr_module.shutil, "which", lambda name: None)
    out = tmp_path / "out.json"
    with pytest.raises(AnalyzerUnavailable, match="tesseract-ocr"):
        service.analyze(three_shots, out, job_id=uuid.uuid4(), pipeline="ocr")
    assert not out.exists()


# --- the full pipeline ----------------------------------------------------------


@needs_tesseract
def test_full_pipeline_merges_every_analyzer(
    service: VideoFilePipelineService, videos: Path, tmp_path: Path
) -> None:
    face = face_image(width=640, height=360, size=150)
    cv2.putText(face, "HELLO", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.8, (255, 255, 255), 4)
    video = make_mp4(videos / "full.mp4", seconds=0.2, fps=10, frame=lambda i: face)
    doc = run(service, video, tmp_path, pipeline="full")
    result = doc["results"][1]["result"]
    assert set(result) == {"width", "height", "mean_brightness", "scene", "faces", "dhash", "ocr"}
    assert len(result["faces"]) == 1
    assert [line["text"] for line in result["ocr"]] == ["HELLO"]
    assert result["dhash"]["near_duplicate"] is True
    assert set(doc["summary"]) >= {"scene", "faces", "dhash", "ocr", "frames_sampled"}


def test_builtin_pipelines_are_registered(registry: PipelineRegistry) -> None:
    assert registry.names() == ["basic", "dhash", "faces", "full", "noop", "ocr", "scene"]
    assert registry.get("full").analyzer_names == ("basic", "scene", "faces", "dhash", "ocr")
