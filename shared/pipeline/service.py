"""``VideoFilePipelineService``: decode an MP4, run a named pipeline, stream the results.

Synchronous and CPU-bound: the worker runs :meth:`VideoFilePipelineService.analyze`
in a thread. Memory stays flat whatever the video length: one decoded frame at
a time (plus the decoder's own threads), results written to disk as they come.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import UUID

import cv2
from av.video.reformatter import VideoReformatter

from shared.errors import JobInterrupted, VideoUnreadable
from shared.pipeline.analyzer import Analyzer
from shared.pipeline.document import ResultsWriter
from shared.pipeline.errors import VideoLimitExceeded
from shared.pipeline.frame import Frame
from shared.pipeline.prefetch import prefetched
from shared.pipeline.registry import PipelineRegistry
from shared.pipeline.sampling import Sampling, SparsePlan, plan_sparse
from shared.pipeline.video import SHORT_CLIP_FRAMES, OpenVideo, VideoInfo, open_video
from shared.settings import Settings

__all__ = ["AnalysisSummary", "VideoFilePipelineService", "decoder_threads_for"]

# OpenCV's own thread count (one per CPU it may use), as it starts.
_OPENCV_DEFAULT_THREADS = cv2.getNumThreads()

# How often ``should_stop`` is asked between sampled frames (in decoded frames).
_STOP_CHECK_FRAMES = 64


@dataclass(frozen=True, slots=True)
class AnalysisSummary:
    """What one :meth:`VideoFilePipelineService.analyze` call did."""

    job_id: UUID
    pipeline: str
    video: VideoInfo
    frame_stride: int
    max_frames: int | None
    #: Frames decoded, sampled or not (decoding stops after the last sampled
    #: frame; in ``fast`` and ``keyframes``, only the frames a sample needs).
    frames_decoded: int
    #: Frames the pipeline analysed (entries in ``results``).
    frames_sampled: int
    #: Frames the container holds (up to where decoding stopped) that did not
    #: decode: packets the decoder refused or dropped as damaged.
    frames_undecodable: int = 0
    #: Per-analyzer summaries, by analyzer name (as in the document's ``summary``).
    analyzers: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    #: Wall-clock seconds spent in ``analyze``.
    elapsed_s: float = 0.0
    #: Size of the results document in bytes.
    output_bytes: int = 0
    #: How the frames were chosen (``exact`` also when a sparse mode could
    #: not be planned: a stream without pts).
    sampling: Sampling = Sampling.EXACT

    def document_summary(self) -> dict[str, Any]:
        """The results document's ``summary`` object."""
        return {
            "frames_decoded": self.frames_decoded,
            "frames_sampled": self.frames_sampled,
            "frames_undecodable": self.frames_undecodable,
            "frame_stride": self.frame_stride,
            "max_frames": self.max_frames,
            "sampling": self.sampling.value,
            **self.analyzers,
        }

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-able (for logs and the worker's job record)."""
        return {
            "job_id": str(self.job_id),
            "pipeline": self.pipeline,
            "video": self.video.as_dict(),
            "elapsed_s": round(self.elapsed_s, 3),
            "output_bytes": self.output_bytes,
            **self.document_summary(),
        }


class VideoFilePipelineService:
    """Runs named pipelines over MP4 files; one instance serves many jobs (thread-safe)."""

    def __init__(
        self,
        *,
        registry: PipelineRegistry,
        max_width: int = 7680,
        max_height: int = 4320,
        max_frames_limit: int = 100_000,
        max_duration_seconds: float | None = None,
        progress_interval: float = 2.0,
        max_undecodable_fraction: float = 0.5,
        decoder_threads: int = 0,
        prefetch: int = 4,
        opencv_threads: int | None = None,
    ) -> None:
        if max_width < 1 or max_height < 1 or max_frames_limit < 1:
            raise ValueError("limits must be positive")
        if not 0 <= max_undecodable_fraction <= 1:
            raise ValueError("max_undecodable_fraction must be between 0 and 1")
        if progress_interval <= 0:
            raise ValueError("progress_interval must be positive")
        if decoder_threads < 0:
            raise ValueError("decoder_threads must be 0 (FFmpeg picks) or more")
        if opencv_threads is not None and opencv_threads < 1:
            raise ValueError("opencv_threads must be None (per pipeline) or at least 1")
        self._registry = registry
        self._max_width = max_width
        self._max_height = max_height
        self._max_frames_limit = max_frames_limit
        self._max_duration = max_duration_seconds
        self._progress_interval = progress_interval
        self._max_undecodable = max_undecodable_fraction
        self._decoder_threads = decoder_threads
        self._prefetch = prefetch
        self._opencv_threads = opencv_threads

    @classmethod
    def from_settings(
        cls, settings: Settings, *, registry: PipelineRegistry, **limits: Any
    ) -> VideoFilePipelineService:
        """A service with the frame limit, progress interval, damage tolerance and
        decoder threads from ``settings``."""
        return cls(
            registry=registry,
            max_frames_limit=settings.max_frames_limit,
            progress_interval=settings.progress_interval_seconds,
            max_undecodable_fraction=settings.max_undecodable_fraction,
            decoder_threads=decoder_threads_for(settings),
            # Several jobs at once fill the cores themselves.
            opencv_threads=1 if settings.worker_concurrency > 1 else None,
            **limits,
        )

    @property
    def registry(self) -> PipelineRegistry:
        return self._registry

    def analyze(
        self,
        input_path: Path,
        output_path: Path,
        *,
        job_id: UUID,
        pipeline: str,
        frame_stride: int = 1,
        max_frames: int | None = None,
        sampling: Sampling | str = Sampling.EXACT,
        on_progress: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> AnalysisSummary:
        """Analyse every ``frame_stride``-th frame (0, s, 2s, ...) of ``input_path``.

        Stops after ``max_frames`` sampled frames. ``sampling`` ``fast`` and
        ``keyframes`` analyse frames near those instead that decode cheaply,
        and decode nothing else (see :mod:`shared.pipeline.sampling`); each
        entry carries its frame's own index in the file and pts. Writes the results document
        to ``output_path`` (complete, or not at all) and returns its summary.

        ``on_progress(fraction)`` gets the fraction of the expected sampled
        frames done, at most once per ``progress_interval`` seconds (never per
        frame, and not at the end). ``should_stop()`` is asked before each
        sampled frame (and every 64th decoded frame, for large strides); when it
        returns true the job stops with ``JobInterrupted`` and writes nothing.

        A damaged file is analysed as far as it decodes: frames FFmpeg
        concealed carry ``"concealed": true`` in their entry, and frames it
        could not decode are counted in ``frames_undecodable``.

        Raises ``PipelineNotFound`` (unknown pipeline), ``VideoUnreadable`` (not
        an MP4 with a video stream, no frame decoded, or a larger share of
        undecodable frames than ``max_undecodable_fraction``),
        ``VideoLimitExceeded`` (over a size, frame or duration limit),
        ``JobInterrupted``, ``ValueError`` (bad ``frame_stride``/``max_frames``),
        and whatever an analyzer raises (``AnalyzerUnavailable`` for a missing tool).
        """
        if frame_stride < 1:
            raise ValueError("frame_stride must be at least 1")
        if max_frames is not None and max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        sampling = Sampling(sampling)
        pipe = self._registry.get(pipeline)
        started = time.monotonic()
        with open_video(input_path, threads=self._decoder_threads) as video:
            info = video.info
            self._check_size(info)
            plan = self._plan(video, sampling, frame_stride, max_frames)
            if plan is None:
                sampling = Sampling.EXACT
                planned = self._check_frames(info, frame_stride, max_frames)
            else:
                planned = plan.frame_count
                self._check_planned(planned, frame_stride)
            cap = max_frames if max_frames is not None else math.inf
            analyzers = pipe.create()
            self._set_opencv_threads(analyzers)
            writer: ResultsWriter | None = None
            try:
                writer = ResultsWriter(
                    output_path,
                    header={"job_id": str(job_id), "video": info.as_dict(), "pipeline": pipe.name},
                )
                sampled = 0
                decoded = [0]  # exact: frames decoded so far (set by _every_nth)
                # Where max_frames stopped the loop: the decode thread may have
                # run ahead, but the count stops here, as decoding would have.
                stopped_after: int | None = None
                fps = info.fps
                report_at = started + self._progress_interval
                reformatter = VideoReformatter()  # one swscale context per job
                samples: Generator[tuple[int, Any], None, None] = (
                    _every_nth(video, frame_stride, decoded, should_stop)
                    if plan is None
                    else video.sparse_frames(plan)
                )
                if self._prefetch and (
                    info.frame_count is None or info.frame_count > SHORT_CLIP_FRAMES
                ):
                    # Decode on a thread of its own, a few frames ahead. Not
                    # for a short clip: a thread hand-off per frame costs more
                    # than the overlap wins when the whole decode takes a
                    # millisecond or two.
                    samples = prefetched(samples, depth=self._prefetch, name="videoq-decode")
                with contextlib.closing(samples):  # stops the decode thread first
                    for index, av_frame in samples:
                        if should_stop is not None and should_stop():
                            raise JobInterrupted(f"stopped after {sampled} sampled frames")
                        if sampled >= self._max_frames_limit:
                            raise VideoLimitExceeded(
                                f"Video has more than {self._max_frames_limit} frames to analyse"
                                f" at frame_stride {frame_stride}; use a larger frame_stride"
                                " or max_frames"
                            )
                        seconds = av_frame.time
                        if seconds is None:
                            seconds = index / fps if fps else 0.0
                        timestamp = round(seconds, 6)
                        frame = Frame(
                            av_frame, index=index, timestamp_s=timestamp, reformatter=reformatter
                        )
                        result = _run(analyzers, frame)
                        entry: dict[str, Any] = {
                            "frame_index": index,
                            "timestamp_s": timestamp,
                            "result": result,
                        }
                        if av_frame.is_corrupt:
                            entry["concealed"] = True
                        writer.write(entry)
                        sampled += 1
                        if sampled >= cap:
                            stopped_after = index
                            break
                        if on_progress is not None and planned:
                            now = time.monotonic()
                            if now >= report_at:
                                report_at = now + self._progress_interval
                                on_progress(min(1.0, sampled / planned))
                damage = video.damage()
                if damage.fraction > self._max_undecodable:
                    raise VideoUnreadable(
                        f"{damage.frames_undecodable} of {damage.frames_read} frames could not"
                        f" be decoded, more than the limit of {self._max_undecodable:g}"
                    )
                if plan is not None:
                    frames_decoded = video.frames_decoded
                elif stopped_after is not None:
                    frames_decoded = stopped_after + 1
                else:
                    frames_decoded = decoded[0]
                summaries = {}
                for name, analyzer in analyzers:
                    part = analyzer.summary()
                    if part:
                        summaries[name] = part
                summary = AnalysisSummary(
                    job_id=job_id,
                    pipeline=pipe.name,
                    video=info,
                    frame_stride=frame_stride,
                    max_frames=max_frames,
                    frames_decoded=frames_decoded,
                    frames_sampled=sampled,
                    frames_undecodable=damage.frames_undecodable,
                    analyzers=summaries,
                    sampling=sampling,
                )
                output_bytes = writer.finish(summary.document_summary())
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
            finally:
                for _, analyzer in analyzers:
                    analyzer.close()
        return replace(summary, elapsed_s=time.monotonic() - started, output_bytes=output_bytes)

    def _plan(
        self, video: OpenVideo, sampling: Sampling, frame_stride: int, max_frames: int | None
    ) -> SparsePlan | None:
        """The sparse pass's plan; ``None`` for exact decoding (asked, or forced by
        a stream whose packets carry no pts)."""
        if sampling is Sampling.EXACT:
            return None
        table = video.scan()
        if table is None or not table.pts:
            return None
        return plan_sparse(
            table.pts,
            table.keyframe,
            sampling=sampling,
            frame_stride=frame_stride,
            max_frames=max_frames,
        )

    def _set_opencv_threads(self, analyzers: list[tuple[str, Analyzer]]) -> None:
        """OpenCV's threads for this job: ``opencv_threads`` if set, else its
        default pool for a pipeline with a ``parallel`` analyzer and one
        thread for the rest (see ``Analyzer.parallel``).

        OpenCV's thread count is the process's, so jobs of different
        pipelines at once in one process set it in turn; only their speed
        depends on it, never their results.
        """
        wanted = self._opencv_threads
        if wanted is None:
            parallel = any(analyzer.parallel for _, analyzer in analyzers)
            wanted = _OPENCV_DEFAULT_THREADS if parallel else 1
        if cv2.getNumThreads() != wanted:  # resizing the pool is not free
            cv2.setNumThreads(wanted)

    def _check_size(self, info: VideoInfo) -> None:
        """Raise ``VideoLimitExceeded`` if over the size or duration limit."""
        if info.width > self._max_width or info.height > self._max_height:
            raise VideoLimitExceeded(
                f"Video is {info.width}x{info.height}, larger than the limit of"
                f" {self._max_width}x{self._max_height}"
            )
        if (
            self._max_duration is not None
            and info.duration_s is not None
            and info.duration_s > self._max_duration
        ):
            raise VideoLimitExceeded(
                f"Video lasts {info.duration_s:g} s, longer than the limit of"
                f" {self._max_duration:g} s"
            )

    def _check_frames(self, info: VideoInfo, frame_stride: int, max_frames: int | None) -> int:
        """Raise ``VideoLimitExceeded`` if exact sampling would analyse too many frames.

        Returns the planned number of sampled frames (0 if unknown).
        """
        if info.frame_count is None:
            # Unknown length: the limit is enforced while decoding instead.
            return max_frames or 0
        planned = -(-info.frame_count // frame_stride)
        if max_frames is not None:
            planned = min(planned, max_frames)
        self._check_planned(planned, frame_stride)
        return planned

    def _check_planned(self, planned: int, frame_stride: int) -> None:
        if planned > self._max_frames_limit:
            raise VideoLimitExceeded(
                f"Video has {planned} frames to analyse at frame_stride {frame_stride},"
                f" more than the limit of {self._max_frames_limit}; use a larger"
                " frame_stride or max_frames"
            )


def decoder_threads_for(settings: Settings) -> int:
    """Decoder threads per job: ``decoder_threads``, or 0 (FFmpeg picks) for one job
    at a time, or the CPUs this process may use divided among its concurrent jobs."""
    if settings.decoder_threads or settings.worker_concurrency == 1:
        return settings.decoder_threads
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // settings.worker_concurrency)


def _every_nth(
    video: OpenVideo, frame_stride: int, decoded: list[int], should_stop: Callable[[], bool] | None
) -> Generator[tuple[int, Any], None, None]:
    """Exact sampling: every ``frame_stride``-th decoded frame, indexed by count."""
    for index, av_frame in enumerate(video.frames()):
        decoded[0] = index + 1
        if index % frame_stride:
            # Not sampled: its decode is all it costs. At a large stride,
            # still look for a stop request now and then.
            if index % _STOP_CHECK_FRAMES == 0 and should_stop and should_stop():
                raise JobInterrupted("stopped between sampled frames")
            continue
        yield index, av_frame


def _run(analyzers: list[tuple[str, Analyzer]], frame: Frame) -> dict[str, Any]:
    if not analyzers:
        return {}
    if len(analyzers) == 1:
        return analyzers[0][1].analyze(frame)
    result: dict[str, Any] = {}
    for name, analyzer in analyzers:
        part = analyzer.analyze(frame)
        if not result.keys().isdisjoint(part):
            clash = sorted(result.keys() & part.keys())
            raise RuntimeError(f"analyzer {name!r} returned keys already in the result: {clash}")
        result.update(part)
    return result
