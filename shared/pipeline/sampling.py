"""Which frames a job analyses, and which packets the decoder must see for them.

Pure logic on the container's packet table (no video stack), so the api can
name the modes and the planner can be checked on made-up tables.

Every mode starts from the same sample *targets*: frames ``0, s, 2s, ...`` of
the video in presentation order (``s`` = ``frame_stride``), at most
``max_frames`` of them analysed.

- ``exact``: each target itself; every frame is decoded (the default).
- ``keyframes``: for each target, the keyframe nearest to it (the earlier on
  a tie); each keyframe is analysed once, and only keyframes are decoded. At
  ``frame_stride`` 1 that is every keyframe of the video.
- ``fast``: for each target, the keyframe nearest to it when one lies within
  half a sample interval (``s // 2`` frames) and was not taken already;
  otherwise the first frame at or after the target in decoding order (a
  reference frame in an IBP stream), decoded from the last keyframe before
  the target with the non-reference frames in between skipped. A frame is
  analysed once, so at ``frame_stride`` 1 ``fast`` analyses the keyframes and
  the reference frames.

Frames nobody needs are not sent to the decoder at all: after the last frame
a sample needs in a group of pictures, the packets up to the next keyframe
used are read from the file and dropped.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = ["SAMPLING_MODES", "Sampling", "SkipFrame", "SparsePlan", "plan_sparse"]

#: FFmpeg's AVDiscard levels, as PyAV's ``CodecContext.skip_frame`` spells them.
SkipFrame = Literal["NONE", "DEFAULT", "NONREF", "BIDIR", "NONINTRA", "NONKEY", "ALL"]


class Sampling(StrEnum):
    """How a job picks the frames it analyses (the submit form's ``sampling``)."""

    #: Every ``frame_stride``-th frame exactly; every frame is decoded.
    EXACT = "exact"
    #: Frames near each sample time that decode cheaply (see the module's doc).
    FAST = "fast"
    #: Keyframes only: the one nearest each sample time.
    KEYFRAMES = "keyframes"


#: The mode names, in the order the form documents them.
SAMPLING_MODES: tuple[str, ...] = tuple(mode.value for mode in Sampling)


@dataclass(frozen=True, slots=True)
class SparsePlan:
    """What to send to the decoder, and which of its frames to analyse."""

    #: Decode-order positions of the packets to decode, ascending.
    feed: tuple[int, ...]
    #: Of those, the packets whose frames are analysed: always decoded in full
    #: (the others may be skipped by the decoder when no frame refers to them).
    sampled: frozenset[int]
    #: Presentation index (0-based, every frame of the file counted) by pts,
    #: of each frame to analyse.
    index_of_pts: dict[int, int]
    #: The decoder's ``skip_frame`` for the sampled packets, and for the
    #: others fed (FFmpeg's AVDiscard names, as PyAV spells them).
    skip_sampled: SkipFrame = "DEFAULT"
    skip_between: SkipFrame = "NONREF"

    @property
    def frame_count(self) -> int:
        """How many frames will be analysed (if they all decode)."""
        return len(self.index_of_pts)


def plan_sparse(
    pts: Sequence[int],
    keyframe: Sequence[bool],
    *,
    sampling: Sampling,
    frame_stride: int,
    max_frames: int | None = None,
) -> SparsePlan:
    """Plan a ``fast`` or ``keyframes`` pass over a stream's packets.

    ``pts`` and ``keyframe`` describe the stream's packets in decoding order
    (one frame each; the pts are distinct). The targets are every
    ``frame_stride``-th frame in presentation order; planning stops once
    ``max_frames`` frames are chosen.
    """
    if sampling is Sampling.EXACT:
        raise ValueError("exact sampling decodes every frame: there is nothing to plan")
    if frame_stride < 1:
        raise ValueError("frame_stride must be at least 1")
    if len(pts) != len(keyframe):
        raise ValueError("pts and keyframe must describe the same packets")
    count = len(pts)
    # Presentation order: position of each packet among the frames sorted by pts.
    by_pts = sorted(range(count), key=pts.__getitem__)
    rank = [0] * count
    for position, packet in enumerate(by_pts):
        rank[packet] = position
    keys = [packet for packet in range(count) if keyframe[packet]]
    if not keys and count:
        keys = [0]  # no keyframe flag at all: the first packet starts the stream
    # Keyframes by presentation index (for "nearest"), and in decoding order
    # (for "the last keyframe before"; their ranks rise in any sane stream).
    key_ranks = sorted(rank[packet] for packet in keys)
    key_packets = sorted(keys)

    chosen: dict[int, None] = {}  # packets to analyse, in the order chosen
    feed: set[int] = set()
    limit = max_frames if max_frames is not None else count
    key = 0  # index into key_packets of the last keyframe at or before the target
    walk_start, walk_end = -1, -1  # the packets of the current walk
    for target in range(0, count, frame_stride):
        if len(chosen) >= limit:
            break
        while key + 1 < len(key_packets) and rank[key_packets[key + 1]] <= target:
            key += 1
        nearest = _nearest(key_ranks, target)
        nearest_packet = by_pts[nearest]
        if sampling is Sampling.KEYFRAMES or (
            abs(nearest - target) <= frame_stride // 2 and nearest_packet not in chosen
        ):
            if nearest_packet not in chosen:
                chosen[nearest_packet] = None
                feed.add(nearest_packet)
            continue
        # Walk from the last keyframe (in decoding order) at or before the
        # target to the first packet at or after it; targets only grow, so a
        # walk from the same keyframe goes on from where the last one stopped.
        start = key_packets[key]
        first = walk_end if start == walk_start else start
        packet = first
        while rank[packet] < target and packet + 1 < count:
            packet += 1
        feed.update(range(first, packet + 1))
        walk_start, walk_end = start, packet
        chosen.setdefault(packet, None)
    # Keyframes: the decoder is told as well, so a packet flagged wrongly in
    # the container still costs nothing. Fast: the packets between a keyframe
    # and a sample are needed only if a later frame refers to them.
    skip: SkipFrame = "NONKEY" if sampling is Sampling.KEYFRAMES else "NONREF"
    return SparsePlan(
        feed=tuple(sorted(feed)),
        sampled=frozenset(chosen),
        index_of_pts={pts[packet]: rank[packet] for packet in chosen},
        skip_sampled=skip if sampling is Sampling.KEYFRAMES else "DEFAULT",
        skip_between=skip,
    )


def _nearest(sorted_ranks: list[int], target: int) -> int:
    """The value of ``sorted_ranks`` closest to ``target`` (the smaller on a tie)."""
    at = bisect.bisect_left(sorted_ranks, target)
    if at == len(sorted_ranks):
        return sorted_ranks[-1]
    if at == 0 or sorted_ranks[at] == target:
        return sorted_ranks[at]
    before, after = sorted_ranks[at - 1], sorted_ranks[at]
    return before if target - before <= after - target else after
