"""Direct uploads: a client sends its video to the object store in parts,
bypassing the api, then submits the finished upload as a job's input.

An upload is ``open`` (parts may be PUT) until ``complete`` checks and
assembles it (``completed``); a submit then makes it a job's input
(``submitted``). An aborted or expired upload is deleted, row and parts.
Its ``upload_id`` is also the id of the job it becomes, so its object key is
that job's ``input_key``: the job owns it like any streamed input.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from shared.store import ObjectStore

__all__ = [
    "MAX_PARTS",
    "MIN_PART_BYTES",
    "PART_BYTES",
    "UploadRecord",
    "UploadState",
    "discard",
    "part_count",
    "part_size_for",
]

#: S3's floor for every part but the last.
MIN_PART_BYTES = 5 * 1024 * 1024
#: The usual part: few enough requests, small enough to resend cheaply.
PART_BYTES = 8 * 1024 * 1024
#: S3's ceiling on the parts of one upload.
MAX_PARTS = 10_000
_MIB = 1024 * 1024


class UploadState(enum.StrEnum):
    #: Parts may be PUT; ``complete`` is next.
    OPEN = "open"
    #: The object is assembled and checked; a submit is next.
    COMPLETED = "completed"
    #: A job was made from it (``job_id``).
    SUBMITTED = "submitted"


@dataclass(frozen=True, kw_only=True)
class UploadRecord:
    upload_id: UUID
    client_id: str
    #: The object key (``input_key(upload_id)``).
    key: str
    #: The store's own id of the multipart upload.
    store_upload_id: str
    #: Declared size in bytes; ``complete`` checks the object has it.
    size: int
    part_size: int
    state: UploadState
    created_at: datetime
    expires_at: datetime
    job_id: UUID | None = None


def part_size_for(size: int) -> int:
    """The part size for an object of ``size`` bytes: 8 MiB, or larger
    (whole MiB) when 8 MiB parts would be more than S3's 10,000."""
    needed = -(-size // MAX_PARTS)  # ceil
    return max(PART_BYTES, -(-needed // _MIB) * _MIB)


def part_count(size: int, part_size: int) -> int:
    """How many parts an object of ``size`` bytes has (at least one)."""
    return max(1, -(-size // part_size))


async def discard(store: ObjectStore, upload: UploadRecord) -> None:
    """Delete what the store holds of an upload no job took over: its parts
    (``open``) or its object (``completed``)."""
    if upload.state is UploadState.OPEN:
        await store.abort_multipart(upload.key, upload.store_upload_id)
    else:
        await store.delete(upload.key)
