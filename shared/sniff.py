"""Is an upload an ISO-BMFF (MP4) file? Judged from its first bytes only."""

from __future__ import annotations

__all__ = ["SNIFF_BYTES", "looks_like_mp4"]

#: How many leading bytes ``looks_like_mp4`` needs to decide.
SNIFF_BYTES = 12


def looks_like_mp4(head: bytes) -> bool:
    """True when ``head`` starts with an ISO-BMFF ``ftyp`` box.

    The first box must be ``ftyp`` with a plausible size: 1 (a 64-bit size
    follows), or at least 16 (header + major brand + minor version). Its
    major brand must be four printable ASCII characters.
    """
    if len(head) < SNIFF_BYTES or head[4:8] != b"ftyp":
        return False
    size = int.from_bytes(head[0:4], "big")
    if size != 1 and size < 16:
        return False
    brand = head[8:12]
    return all(0x20 <= b < 0x7F for b in brand)
