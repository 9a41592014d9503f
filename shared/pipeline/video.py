"""Opening a video: container checks, metadata, and threaded decoding with PyAV.

Every way a file can be unreadable ends here as ``VideoUnreadable`` (message
"Unable to read video file", the reason in ``.detail``). PyAV alone is not
enough: a file truncated after a front-placed ``moov`` opens and fails only
mid-decode, an audio-only MP4 opens with no video stream, and a Matroska file
renamed ``.mp4`` opens fine. So the top-level ISO-BMFF boxes are walked first
(they must tile the file exactly and include ``moov``), the video stream is
checked for, and the stream must decode.

Damage inside the media data (bit rot, a flaky camera) is not fatal: FFmpeg
conceals what it can, a packet it refuses is counted as an undecodable frame,
and decoding goes on. :meth:`OpenVideo.damage` says how much was lost.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import av.error

from shared.errors import VideoUnreadable
from shared.pipeline.sampling import SkipFrame, SparsePlan

__all__ = [
    "SHORT_CLIP_FRAMES",
    "Damage",
    "OpenVideo",
    "PacketTable",
    "VideoInfo",
    "check_iso_bmff",
    "open_video",
]

#: A clip of at most this many frames is decoded without threads: the whole
#: decode takes a millisecond or two, and starting FFmpeg's frame threads
#: costs more than they win (a 5-frame 64x48 clip: 1.7 ms of CPU opened and
#: decoded with them, 0.64 ms without), as a hand-off to a decode thread of
#: its own would (see ``VideoFilePipelineService``).
SHORT_CLIP_FRAMES = 30

# A file with more top-level boxes than this is refused (a fragmented MP4 of
# several hours has a few tens of thousands).
_MAX_TOP_LEVEL_BOXES = 1_000_000


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """Video stream metadata, as written into the results document's ``video``."""

    codec: str
    width: int
    height: int
    #: Average frame rate (frames per second); 0.0 when the container has none.
    fps: float
    #: Duration of the video stream in seconds (of the container if the stream has none).
    duration_s: float | None
    #: Frame count from the container; estimated from duration x fps when absent.
    frame_count: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_iso_bmff(path: Path) -> None:
    """Walk the file's top-level boxes; raise ``VideoUnreadable`` unless they tile it.

    The boxes must cover the file exactly (no truncation, no trailing bytes),
    have printable four-character types, and include ``moov``.
    """
    size = path.stat().st_size
    if size == 0:
        raise VideoUnreadable("the file is empty")
    seen_moov = False
    offset = 0
    count = 0
    with path.open("rb") as f:
        while offset < size:
            count += 1
            if count > _MAX_TOP_LEVEL_BOXES:
                raise VideoUnreadable("too many top-level boxes")
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                raise VideoUnreadable(f"truncated box header at byte {offset}")
            box_size, box_type = struct.unpack(">I4s", header[:8])
            header_size = 8
            if box_size == 1:
                if len(header) < 16:
                    raise VideoUnreadable(f"truncated box header at byte {offset}")
                (box_size,) = struct.unpack(">Q", header[8:16])
                header_size = 16
            elif box_size == 0:  # "extends to the end of the file"
                box_size = size - offset
            if not all(0x20 <= b < 0x7F for b in box_type):
                raise VideoUnreadable(f"not an ISO-BMFF (MP4) file: bad box type at byte {offset}")
            name = box_type.decode("ascii")
            if box_size < header_size:
                raise VideoUnreadable(f"box {name!r} at byte {offset} has invalid size {box_size}")
            if offset + box_size > size:
                raise VideoUnreadable(
                    f"truncated file: box {name!r} at byte {offset} needs {box_size} bytes,"
                    f" only {size - offset} remain"
                )
            seen_moov = seen_moov or name == "moov"
            offset += box_size
    if not seen_moov:
        raise VideoUnreadable("no 'moov' box: the file's index is missing")


@dataclass(frozen=True, slots=True)
class PacketTable:
    """The video stream's packets in decoding order, one frame each."""

    pts: list[int]
    keyframe: list[bool]


@dataclass(frozen=True, slots=True)
class Damage:
    """What decoding lost: frames the container holds that did not decode."""

    #: Video packets (one per frame) read from the container; in a sparse
    #: pass, the frames chosen for analysis.
    frames_read: int
    #: Of those, frames the decoder refused or dropped.
    frames_undecodable: int

    @property
    def fraction(self) -> float:
        return self.frames_undecodable / self.frames_read if self.frames_read else 0.0


@dataclass(frozen=True, slots=True)
class _Keyframe:
    """A keyframe fed to the decoder: where a restart can begin."""

    position: int
    dts: int | None
    pts: int | None


class OpenVideo:
    """An open container and its first video stream; use as a context manager.

    Decoding is threaded (FFmpeg's frame threads) while the stream is healthy.
    Around a damaged packet, which frames FFmpeg's frame threads conceal, flag
    or drop depends on the threads' timing, so at the first sign of damage (a
    packet refused or a frame flagged corrupt) the threaded decoder is dropped
    and decoding starts again single-threaded from the last keyframe before
    the oldest frame not yet out; frames already put out are not put out again.
    Frames put out before that sign were decoded without error, so they are
    what a single-threaded decoder gives too: the frames, their flags and the
    counts are a single-threaded decode's, whatever the machine's load.
    """

    def __init__(
        self,
        container: Any,
        stream: av.VideoStream,
        info: VideoInfo,
        *,
        path: Path,
        threads: int = 1,
    ) -> None:
        self._container = container
        self._path = path
        self.stream = stream
        self.info = info
        self._single_threaded = threads == 1
        self._packets = 0
        self._decoded = 0
        self._drained = False
        # In a sparse pass, the frames chosen for analysis, and how many came out.
        self._sparse: SparsePlan | None = None
        self._produced = 0
        # For a restart: the keyframes fed since the oldest frame not out yet,
        # those frames (pts -> position; awaited ones only), and the last pts
        # put out (a healthy decoder puts frames out in pts order). A few
        # entries each, whatever the video's length.
        self._keyframes: deque[_Keyframe] = deque()
        self._pending: dict[int, int] = {}
        self._last_pts: int | None = None
        # After a restart, frames with a pts up to this came out before it.
        self._floor: int | None = None
        #: Times decoding went single-threaded from a keyframe (0 or 1).
        self.restarts = 0

    def __enter__(self) -> OpenVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames in output order, concealed ones included (``frame.is_corrupt``).

        A packet the decoder refuses is skipped and counted (see :meth:`damage`);
        an error reading the container raises ``VideoUnreadable``.
        """
        yield from self._run(None)

    @property
    def frames_decoded(self) -> int:
        """Frames the decoder has put out so far."""
        return self._decoded

    def scan(self) -> PacketTable | None:
        """Every video packet's pts and keyframe flag, read without decoding.

        A pass over the file of its own (tens of milliseconds a minute of
        720p). ``None`` when a packet has no pts (then only exact decoding
        knows the frames' order).
        """
        pts: list[int] = []
        keyframe: list[bool] = []
        try:
            with av.open(str(self._path), mode="r") as container:
                stream = container.streams.video[0]  # the stream open_video took
                for packet in container.demux(stream):
                    if not packet.size:
                        continue
                    if packet.pts is None:
                        return None
                    pts.append(packet.pts)
                    keyframe.append(packet.is_keyframe)
        except av.error.FFmpegError as exc:
            raise VideoUnreadable(
                f"reading the container failed after {len(pts)} packets: {exc}"
            ) from None
        if len(set(pts)) != len(pts):
            return None
        return PacketTable(pts=pts, keyframe=keyframe)

    def sparse_frames(self, plan: SparsePlan) -> Generator[tuple[int, av.VideoFrame], None, None]:
        """The frames ``plan`` chose, with their index in the file, in presentation
        order; no other packet is decoded.

        Packets not in ``plan.feed`` are read and dropped; those fed but not
        sampled are decoded at the plan's ``skip_between`` level (a frame no
        other refers to costs nothing). Reading stops after the last packet
        fed. A chosen frame that does not decode is counted (see :meth:`damage`).
        """
        self._sparse = plan
        wanted = plan.index_of_pts
        for frame in self._run(plan):
            index = wanted.get(frame.pts) if frame.pts is not None else None
            if index is not None:
                self._produced += 1
                yield index, frame

    def damage(self) -> Damage:
        """Frames lost so far; raises ``VideoUnreadable`` if not one frame decoded.

        If decoding stopped early, the decoder is drained first, so the frames
        still in flight (its threads, B-frame reordering) are not counted lost.
        """
        if not self._drained:
            self._drained = True
            self._decoded += len(self._decode(None) or [])
        if self._sparse is not None:
            chosen = self._sparse.frame_count
            if self._produced == 0:
                raise VideoUnreadable(f"none of the {chosen} frames chosen could be decoded")
            return Damage(frames_read=chosen, frames_undecodable=chosen - self._produced)
        if self._decoded == 0:
            raise VideoUnreadable(f"no frame could be decoded ({self._packets} packets read)")
        return Damage(
            frames_read=self._packets,
            frames_undecodable=max(0, self._packets - self._decoded),
        )

    def _run(self, plan: SparsePlan | None) -> Iterator[av.VideoFrame]:
        """Feed the packets (all, or those ``plan`` feeds) and put out their frames,
        going single-threaded from a keyframe at the first sign of damage."""
        feed = None if plan is None else set(plan.feed)
        last_fed = None if plan is None else (plan.feed[-1] if plan.feed else -1)
        start: _Keyframe | None = None  # where the packets are read from: the file's start
        read = -1  # the last position read so far
        while True:
            restart = False
            level: SkipFrame | None = None
            for position, packet in self._packets_from(start):
                if last_fed is not None and position > last_fed:
                    break
                if position > read:
                    read = position
                    self._packets += 1
                if feed is not None and position not in feed:
                    continue
                if plan is not None:
                    wanted_level = (
                        plan.skip_sampled if position in plan.sampled else plan.skip_between
                    )
                    if wanted_level != level:
                        # Read per packet, also by FFmpeg's frame threads (copied at submit).
                        self.stream.codec_context.skip_frame = level = wanted_level
                if not self._single_threaded:
                    self._note_fed(
                        position, packet, awaited=plan is None or position in plan.sampled
                    )
                frames = self._decode(packet)
                if frames is None or (
                    not self._single_threaded and any(f.is_corrupt for f in frames)
                ):
                    if not self._single_threaded:
                        restart = True
                        break
                    continue  # single-threaded, a refused packet is simply lost
                yield from self._emit(frames)
            if not restart:
                frames = self._decode(None)  # drain the decoder
                damaged = frames is None or any(f.is_corrupt for f in frames)
                if not (damaged and not self._single_threaded):
                    self._drained = True
                    yield from self._emit(frames or [])
                    return
            start = self._go_single_threaded()

    def _packets_from(
        self, start: _Keyframe | None
    ) -> Iterator[tuple[int, av.Packet[av.VideoStream]]]:
        """The video packets with data and their decoding-order position, from
        ``start`` (a keyframe fed before) or from the file's start."""
        demuxer: Iterator[av.Packet[av.VideoStream]] = self._container.demux(self.stream)
        position = -1
        if start is not None and start.dts is not None:
            # Seek to the keyframe's own dts; if the demuxer lands elsewhere,
            # read from the start instead and count positions up to it.
            self._container.seek(start.dts, backward=True, any_frame=False, stream=self.stream)
            for packet in self._demux(demuxer, position):
                if packet.size and packet.dts == start.dts:
                    position = start.position
                    yield position, packet
                    break
                if packet.size and packet.dts is not None and packet.dts > start.dts:
                    self._container.seek(0, stream=self.stream)
                    demuxer = self._container.demux(self.stream)
                    break
            else:
                return
        for packet in self._demux(demuxer, position):
            if not packet.size:
                continue
            position += 1
            if start is not None and position < start.position:
                continue
            yield position, packet

    @staticmethod
    def _demux(
        demuxer: Iterator[av.Packet[av.VideoStream]], position: int
    ) -> Iterator[av.Packet[av.VideoStream]]:
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                raise VideoUnreadable(
                    f"reading the container failed after {position + 1} packets: {exc}"
                ) from None
            yield packet

    def _note_fed(self, position: int, packet: av.Packet[av.VideoStream], *, awaited: bool) -> None:
        if packet.is_keyframe:
            self._keyframes.append(_Keyframe(position, packet.dts, packet.pts))
        if awaited:
            if packet.pts is None:
                # No way to see its frame out: restarts begin before it.
                self._pending[-1 - position] = position
            else:
                self._pending[packet.pts] = position
        # Keyframes before the restart point can go.
        oldest = min(self._pending.values(), default=position)
        while len(self._keyframes) > 1 and self._keyframes[1].position <= oldest:
            self._keyframes.popleft()

    def _go_single_threaded(self) -> _Keyframe | None:
        """Reopen the file with a single-threaded decoder; returns where to read
        from: the last keyframe at or before the oldest frame not out yet."""
        oldest = min(self._pending.values(), default=None)
        start = next(
            (k for k in reversed(self._keyframes) if oldest is None or k.position <= oldest), None
        )
        # What came out already is not put out again (frames decode the same
        # up to the damage). No restart after this one.
        self._floor = self._last_pts
        self._keyframes.clear()
        self._pending.clear()
        self._container.close()
        self._container = av.open(str(self._path), mode="r")
        self.stream = self._container.streams.video[0]
        self.stream.codec_context.thread_count = 1
        self._single_threaded = True
        self.restarts += 1
        return start

    def _emit(self, frames: list[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        out: list[av.VideoFrame] = []
        for frame in frames:
            pts = frame.pts
            if pts is not None:
                if self._floor is not None and pts <= self._floor:
                    continue  # put out before the restart
                self._pending.pop(pts, None)
                if self._last_pts is None or pts > self._last_pts:
                    self._last_pts = pts
            if frame.time_base is None:
                # Frames drained with decode(None) come out without one.
                frame.time_base = self.stream.time_base
            out.append(frame)
        # Counted as they come out of the decoder, whether or not the caller
        # goes on to take them all.
        self._decoded += len(out)
        yield from out

    def _decode(self, packet: av.Packet[av.VideoStream] | None) -> list[av.VideoFrame] | None:
        """The frames ``packet`` lets out, or ``None`` if the decoder refused it
        (or, threaded, one in flight on another thread)."""
        try:
            return self.stream.codec_context.decode(packet)
        except av.error.FFmpegError:
            return None


def open_video(path: Path, *, threads: int = 0) -> OpenVideo:
    """Check and open ``path``, with threaded decoding of its first video stream.

    ``threads``: FFmpeg's decoder threads (frame and slice threads); 0 lets
    FFmpeg pick (one per CPU, plus one). A clip whose header says it has at
    most ``SHORT_CLIP_FRAMES`` frames decodes on one thread whatever ``threads`` says.

    Raises ``VideoUnreadable`` when the file is not a readable MP4 with a video
    stream, and ``FileNotFoundError`` when there is no file at all.
    """
    check_iso_bmff(path)
    try:
        container: Any = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise VideoUnreadable(f"cannot open: {exc}") from None
    try:
        if not container.streams.video:
            raise VideoUnreadable("the file has no video stream")
        stream: av.VideoStream = container.streams.video[0]
        info = _read_info(container, stream)
        if info.frame_count is not None and info.frame_count <= SHORT_CLIP_FRAMES:
            threads = 1
        # Before the first decode opens the codec, which fixes its threads.
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
    except BaseException:
        container.close()
        raise
    return OpenVideo(container, stream, info, path=path, threads=threads)


def _read_info(container: Any, stream: av.VideoStream) -> VideoInfo:
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise VideoUnreadable("the video stream has no frame size")
    rate = stream.average_rate or stream.guessed_rate
    fps = round(float(rate), 6) if rate else 0.0
    duration_s: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        duration_s = round(float(stream.duration * stream.time_base), 6)
    elif container.duration is not None:
        duration_s = round(container.duration / av.time_base, 6)
    frame_count: int | None = int(stream.frames) if stream.frames else None
    if frame_count is None and duration_s is not None and fps > 0:
        frame_count = round(duration_s * fps)
    return VideoInfo(
        codec=str(ctx.name),
        width=width,
        height=height,
        fps=fps,
        duration_s=duration_s,
        frame_count=frame_count,
    )
