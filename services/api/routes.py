"""The video routes: submit, status, results, list, cancel.

Every route takes the authenticated ``Caller``; a job belongs to the client
that submitted it, and any other client gets 404 for it (not 403: whether a
job exists is itself not theirs to know).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from services.api.deps import Backend, Caller, Config, MetricsDep, Pipelines
from services.api.models import (
    ErrorResponse,
    JobList,
    ResultsResponse,
    StatusResponse,
    SubmitResponse,
)
from services.api.upload import ReceivedUpload, receive_upload
from shared.backends import Backends
from shared.errors import (
    DependencyUnavailable,
    InvalidParameter,
    JobConflict,
    JobNotFound,
    PipelineNotFound,
    ResultsNotReady,
    TooManyJobs,
)
from shared.jobs import TERMINAL, Job, JobStatus, input_key
from shared.settings import Settings

__all__ = ["router"]

log = logging.getLogger("videoq.api")
router = APIRouter(prefix="/video", tags=["video"])

_MAX_TAG = 128
_MAX_METADATA_BYTES = 2048
_IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,64}$")

_401 = {"model": ErrorResponse, "description": "Missing or invalid API key"}
_404 = {"model": ErrorResponse, "description": "No such job (for this client)"}
_503 = {"model": ErrorResponse, "description": "A dependency is down; see Retry-After"}
_422_JOB_ID = {"model": ErrorResponse, "description": "The job id is not a UUID"}
_SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": SubmitResponse,
        "description": "Same Idempotency-Key and request: the earlier job",
    },
    400: {"model": ErrorResponse, "description": "Uploaded file is empty"},
    401: _401,
    409: {"model": ErrorResponse, "description": "Idempotency-Key reused with another request"},
    413: {"model": ErrorResponse, "description": "Upload larger than the limit"},
    415: {"model": ErrorResponse, "description": "Unsupported file type (not MP4)"},
    422: {"model": ErrorResponse, "description": "Bad parameters, or pipeline not found"},
    429: {
        "model": ErrorResponse,
        "description": "The client has VIDEOQ_MAX_JOBS_IN_FLIGHT jobs pending or running;"
        " retry after Retry-After seconds",
    },
    503: _503,
}
_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "pipeline": {"type": "string"},
                        "frame_stride": {"type": "integer", "minimum": 1},
                        "max_frames": {"type": "integer", "minimum": 1},
                        "tag": {"type": "string", "maxLength": _MAX_TAG},
                        "metadata": {
                            "type": "string",
                            "description": "A JSON object of strings, numbers or booleans (at most 2 KiB)",
                        },
                    },
                }
            }
        },
    }
}


def _int_field(fields: dict[str, str], name: str, *, default: int | None, upper: int) -> int | None:
    raw = fields.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f"{name} must be an integer") from None
    if not 1 <= value <= upper:
        raise InvalidParameter(f"{name} must be between 1 and {upper}")
    return value


def _metadata(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    if len(raw.encode()) > _MAX_METADATA_BYTES:
        raise InvalidParameter(f"metadata must be at most {_MAX_METADATA_BYTES} bytes")
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidParameter("metadata must be a JSON object") from None
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int | float | bool) and not isinstance(v, dict) for v in value.values()
    ):
        raise InvalidParameter("metadata must be a JSON object of strings, numbers or booleans")
    return value


def _tag(raw: str) -> str | None:
    tag = raw.strip()
    if not tag:
        return None
    if len(tag) > _MAX_TAG or not tag.isprintable():
        raise InvalidParameter(f"tag must be at most {_MAX_TAG} printable characters")
    return tag


def _request(fields: dict[str, str], settings: Settings, pipelines: list[str]) -> dict[str, Any]:
    """The submit's parameters, validated."""
    pipeline = fields.get("pipeline", "").strip() or settings.default_pipeline
    if pipeline not in pipelines:
        raise PipelineNotFound(pipeline)
    options = {
        "frame_stride": _int_field(
            fields, "frame_stride", default=settings.default_frame_stride, upper=1_000_000
        ),
        "max_frames": _int_field(
            fields, "max_frames", default=None, upper=settings.max_frames_limit
        ),
    }
    return {
        "pipeline": pipeline,
        "options": options,
        "tag": _tag(fields.get("tag", "")),
        "metadata": _metadata(fields.get("metadata", "")),
    }


def _request_hash(params: dict[str, Any], received: ReceivedUpload) -> str:
    text = json.dumps({**params, "file_sha256": received.sha256}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


async def _own_job(backends: Backend, job_id: UUID, caller: str) -> Job:
    job = await backends.repo.get(job_id)
    if job is None or job.client_id != caller:
        raise JobNotFound()
    return job


def _accepted(request: Request, job_id: UUID, *, status_code: int) -> JSONResponse:
    return JSONResponse(
        {"job_id": str(job_id)},
        status_code=status_code,
        headers={"Location": str(request.url_for("status", job_id=str(job_id)))},
    )


@router.post(
    "/submit",
    status_code=202,
    response_model=SubmitResponse,
    responses=_SUBMIT_ERRORS,
    openapi_extra=_SUBMIT_BODY,
    summary="Upload an MP4 and start a job",
)
async def submit(
    request: Request,
    backends: Backend,
    settings: Config,
    pipelines: Pipelines,
    metrics: MetricsDep,
    caller: Caller,
    content_type: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[
        str | None,
        Header(description="Retry-safe submit: the same key and request give the same job"),
    ] = None,
) -> JSONResponse:
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise InvalidParameter("Idempotency-Key must be 1 to 64 printable ASCII characters")
    await _check_in_flight(backends, settings, caller, idempotency_key)
    job_id = uuid.uuid4()
    key = input_key(job_id)
    received = await receive_upload(
        stream=request.stream(),
        content_type=content_type,
        store=backends.store,
        key=key,
        max_bytes=settings.max_upload_bytes,
        digest=idempotency_key is not None,
    )
    assert received.upload is not None
    try:
        params = _request(received.fields, settings, pipelines)
    except BaseException:
        await received.upload.abort()
        raise
    await received.upload.complete()
    request_hash = _request_hash(params, received) if idempotency_key else None
    try:
        job = await backends.repo.create(
            job_id=job_id,
            input_path=key,
            input_bytes=received.size,
            client_id=caller,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            **params,
        )
    except DependencyUnavailable:
        found = await _created_anyway(backends, job_id, key)
        if found is None:
            raise
        job = found
    except BaseException:
        await backends.store.delete(key)  # nothing left behind
        raise
    if job is None:  # the key was used before (or concurrently)
        await backends.store.delete(key)
        assert idempotency_key is not None
        earlier = await backends.repo.by_idempotency_key(client_id=caller, key=idempotency_key)
        if earlier is None or earlier.request_hash != request_hash:
            raise JobConflict(
                "Idempotency-Key was already used with different parameters or a different file"
            )
        return _accepted(request, earlier.job_id, status_code=200)
    metrics.jobs_submitted.labels(job.pipeline).inc()
    metrics.upload_bytes.inc(received.size)
    log.info(
        "job.submitted",
        extra={
            "job_id": str(job_id),
            "pipeline": job.pipeline,
            "bytes": received.size,
            "client": caller,
        },
    )
    try:
        await backends.broker.publish_job(job_id)
    except DependencyUnavailable as exc:
        # The row is pending and unpublished: the janitor's outbox publishes it.
        log.warning("job.publish_deferred", extra={"job_id": str(job_id), "error": str(exc)})
        return _accepted(request, job_id, status_code=202)
    response = _accepted(request, job_id, status_code=202)
    # Outbox bookkeeping the client does not wait for: after the 202.
    response.background = BackgroundTask(_mark_published, backends, job_id)
    return response


async def _created_anyway(backends: Backends, job_id: UUID, key: str) -> Job | None:
    """The job, if its INSERT committed although ``create`` failed.

    A timeout or a connection lost while the commit was under way leaves the
    row in doubt. Found: go on with it (the client gets its 202). Not found:
    remove the upload. Cannot tell: keep the upload, since deleting it would
    doom a job that may exist (the outbox would publish it and the worker
    fail it for a missing input); an orphan object is the smaller harm.
    """
    try:
        job = await backends.repo.get(job_id)
    except DependencyUnavailable:
        log.warning("job.create_uncertain", extra={"job_id": str(job_id), "input": key})
        return None
    if job is None:
        await backends.store.delete(key)
    return job


async def _check_in_flight(
    backends: Backends, settings: Settings, caller: str, idempotency_key: str | None
) -> None:
    """Refuse the submit before reading the upload when the client is at its
    limit; a retry of an earlier submit (its key is known) passes, so it can
    get its job back."""
    limit = settings.max_jobs_in_flight
    if not limit or await backends.repo.count_in_flight(caller) < limit:
        return
    if idempotency_key is not None and await backends.repo.by_idempotency_key(
        client_id=caller, key=idempotency_key
    ):
        return
    raise TooManyJobs(limit)


async def _mark_published(backends: Backends, job_id: UUID) -> None:
    """Tell the outbox the job's message is confirmed. If the database is
    away, the janitor publishes the job once more later (a harmless duplicate)."""
    try:
        await backends.repo.mark_published(job_id)
    except DependencyUnavailable as exc:
        log.warning("job.mark_published_failed", extra={"job_id": str(job_id), "error": str(exc)})


JobId = Annotated[UUID, Path(description="The job id returned by submit")]


@router.get(
    "/status/{job_id}",
    name="status",
    response_model=StatusResponse,
    responses={401: _401, 404: _404, 422: _422_JOB_ID, 503: _503},
)
async def status(job_id: JobId, backends: Backend, caller: Caller) -> StatusResponse:
    return StatusResponse.of(await _own_job(backends, job_id, caller))


async def _with_job_fields(prefix: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stored document with the job's own fields spliced in after its ``{``."""
    first = True
    async for chunk in chunks:
        if first:
            first = False
            yield prefix + chunk[1:] if chunk.startswith(b"{") else chunk
        else:
            yield chunk


@router.get(
    "/results/{job_id}",
    response_model=ResultsResponse,
    responses={
        401: _401,
        404: {"model": ErrorResponse, "description": "Unknown job, or not completed"},
        422: _422_JOB_ID,
        503: _503,
    },
)
async def results(
    job_id: JobId,
    backends: Backend,
    caller: Caller,
    offset: Annotated[int, Query(ge=0, description="First result entry to return")] = 0,
    limit: Annotated[
        int | None, Query(ge=1, le=10_000, description="At most this many entries")
    ] = None,
) -> Response:
    job = await _own_job(backends, job_id, caller)
    if job.status is not JobStatus.COMPLETED or job.output_path is None:
        raise ResultsNotReady(job.status.value)
    own = {"tag": job.tag, "metadata": job.metadata}
    if offset or limit is not None:
        # A page: parse the document and slice its results.
        raw = b"".join([chunk async for chunk in backends.store.iter_bytes(job.output_path)])
        document = json.loads(raw)
        entries = document.get("results", [])
        end = len(entries) if limit is None else offset + limit
        document.update(own)
        document["results"] = entries[offset:end]
        document["page"] = {"offset": offset, "limit": limit, "total": len(entries)}
        return JSONResponse(document)
    # The whole document streams from the store: memory stays flat.
    prefix = json.dumps(own, separators=(",", ":")).encode()[:-1] + b","
    size = job.output_bytes
    if size is None:  # completed before the size was kept in the row
        size = await backends.store.size(job.output_path)
    # The first chunk is read before the 200 goes out, so a store that is
    # away (or an object that is gone) is answered with a proper error
    # instead of a 200 whose body breaks off.
    chunks = backends.store.iter_bytes(job.output_path)
    first = await anext(chunks, b"")
    return StreamingResponse(
        _with_job_fields(prefix, _chain(first, chunks)),
        media_type="application/json",
        headers={"Content-Length": str(size + len(prefix) - 1)},
    )


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, job_id = raw.partition("|")
        return datetime.fromisoformat(stamp), UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter("cursor is not one this API returned") from None


@router.get(
    "/jobs",
    response_model=JobList,
    responses={
        401: _401,
        422: {"model": ErrorResponse, "description": "Bad parameters"},
        503: _503,
    },
)
async def list_jobs(
    backends: Backend,
    caller: Caller,
    status: Annotated[JobStatus | None, Query(description="Only jobs with this status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
) -> JobList:
    """The caller's jobs, newest first, a page at a time (keyset pagination:
    stable while new jobs arrive)."""
    after = _decode_cursor(cursor) if cursor else None
    jobs = await backends.repo.list_jobs(
        client_id=caller, status=status, limit=limit + 1, after=after
    )
    page = jobs[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(jobs) > limit else None
    return JobList(jobs=[StatusResponse.of(j) for j in page], next_cursor=next_cursor)


@router.delete(
    "/jobs/{job_id}",
    response_model=StatusResponse,
    status_code=202,
    responses={
        401: _401,
        404: _404,
        409: {"model": ErrorResponse, "description": "The job had finished already"},
        422: _422_JOB_ID,
        503: _503,
    },
    summary="Cancel a job",
)
async def cancel(
    job_id: JobId, backends: Backend, caller: Caller, metrics: MetricsDep
) -> StatusResponse:
    """A pending job fails at once with "Cancelled"; a running one is stopped
    by its worker at its next heartbeat (best effort) and fails the same way;
    a finished job answers 409."""
    job = await _own_job(backends, job_id, caller)
    if job.status in TERMINAL:
        raise JobConflict(f"Job already finished ({job.status.value})")
    cancelled = await backends.repo.cancel(job_id)
    if cancelled is None:
        finished = await backends.repo.get(job_id)
        raise JobConflict(f"Job already finished ({finished.status.value if finished else 'gone'})")
    log.info("job.cancel", extra={"job_id": str(job_id), "status": cancelled.status.value})
    if cancelled.status is JobStatus.FAILED:  # a running one is counted by its worker
        metrics.jobs_cancelled.labels(cancelled.pipeline).inc()
    return StatusResponse.of(cancelled)
