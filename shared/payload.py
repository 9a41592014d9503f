"""The queue payload: exactly ``{"job_id":"<uuid>"}``, compact UTF-8.

Every publish site builds its body here, so the same job always gives the
same bytes, and every consumer parses it here, strictly.
"""

from __future__ import annotations

import json
from uuid import UUID

from shared.errors import InvalidPayload

__all__ = ["CONTENT_TYPE", "MESSAGE_TYPE", "build_payload", "parse_payload"]

MESSAGE_TYPE = "video.process"
CONTENT_TYPE = "application/json"


def build_payload(job_id: UUID) -> bytes:
    """The message body for ``job_id``."""
    return b'{"job_id":"' + str(job_id).encode("ascii") + b'"}'


def parse_payload(body: bytes) -> UUID:
    """The job id in ``body``.

    Raises:
        InvalidPayload: not UTF-8 JSON, not an object with exactly one
            ``job_id`` key, or not a canonical UUID string.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayload("message body is not UTF-8 JSON") from exc
    if not isinstance(data, dict) or set(data) != {"job_id"}:
        raise InvalidPayload('message body must be exactly {"job_id": "<uuid>"}')
    raw = data["job_id"]
    if not isinstance(raw, str):
        raise InvalidPayload("job_id must be a string")
    try:
        job_id = UUID(raw)
    except ValueError as exc:
        raise InvalidPayload("job_id is not a UUID") from exc
    if str(job_id) != raw:
        raise InvalidPayload("job_id is not a canonical lower-case UUID")
    return job_id
