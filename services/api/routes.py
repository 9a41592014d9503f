"""The video routes: submit, status, results, list, cancel (and erase).

Every route takes the authenticated ``Caller``; a job belongs to the client
that submitted it, and any other client gets 404 for it (not 403: whether a
job exists is itself not theirs to know).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from services.api.deps import Backend, Caller, Config, MetricsDep, Pages, SubmitFields
from services.api.models import (
    Delivery,
    DeliveryList,
    ErrorResponse,
    JobList,
    ResultsResponse,
    StatusResponse,
    SubmitForm,
    SubmitResponse,
)
from services.api.submission import SubmitRequest, submit_job
from shared import outbox, retention
from shared.errors import (
    InvalidParameter,
    JobConflict,
    JobNotFound,
    ResultsExpired,
    ResultsNotReady,
)
from shared.jobs import TERMINAL, Job, JobStatus

__all__ = ["video_router"]

log = logging.getLogger("videoq.api")
#: Status, results, list and cancel; :func:`video_router` adds submit before them.
_jobs = APIRouter(prefix="/video", tags=["video"])

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
    403: {
        "model": ErrorResponse,
        "description": "source is not under a prefix VIDEOQ_SOURCE_PREFIXES grants the client",
    },
    404: {"model": ErrorResponse, "description": "upload_id: no such upload (for this client)"},
    409: {
        "model": ErrorResponse,
        "description": "Idempotency-Key reused with another request;"
        " or upload_id not completed, or submitted already",
    },
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


def video_router(form: type[SubmitForm]) -> APIRouter:
    """The ``/video`` routes; submit's request body is documented from ``form``
    (the one the ``SubmitFields`` dependency gives the route)."""
    video = APIRouter()
    # Declared rather than decorated: the body's schema is the deployment's
    # form, and the body is streamed, so no FastAPI Form() parameter reads it.
    video.add_api_route(
        "/video/submit",
        submit,
        methods=["POST"],
        status_code=202,
        response_model=SubmitResponse,
        responses=_SUBMIT_ERRORS,
        openapi_extra={"requestBody": form.openapi_body()},
        summary="Upload an MP4 and start a job",
        tags=["video"],
    )
    # The routes themselves, not an included router: FastAPI labels a request
    # in a router included twice with the inner path ("/status/{job_id}"),
    # and the latency metrics are labelled by it.
    video.routes.extend(_jobs.routes)
    return video


async def submit(
    request: Request,
    backends: Backend,
    settings: Config,
    form: SubmitFields,
    metrics: MetricsDep,
    caller: Caller,
    content_type: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="Retry-safe submit: the same key and request give the same job",
            json_schema_extra={"pattern": _IDEMPOTENCY_KEY.pattern},
        ),
    ] = None,
) -> JSONResponse:
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise InvalidParameter("Idempotency-Key must be 1 to 64 printable ASCII characters")
    submitted = await submit_job(
        SubmitRequest(
            client_id=caller,
            idempotency_key=idempotency_key,
            content_type=content_type,
            body=request.stream(),
        ),
        backends=backends,
        settings=settings,
        form=form,
        metrics=metrics,
    )
    response = JSONResponse(
        {"job_id": str(submitted.job_id)},
        status_code=200 if submitted.replay else 202,
        headers={"Location": str(request.url_for("status", job_id=str(submitted.job_id)))},
    )
    if submitted.published:
        # Outbox bookkeeping the client does not wait for: after the 202.
        response.background = BackgroundTask(
            outbox.record_published, backends.repo, submitted.job_id
        )
    return response


async def _own_job(backends: Backend, job_id: UUID, caller: str) -> Job:
    job = await backends.repo.get(job_id)
    if job is None or job.client_id != caller:
        raise JobNotFound()
    return job


JobId = Annotated[UUID, Path(description="The job id returned by submit")]


@_jobs.get(
    "/status/{job_id}",
    name="status",
    response_model=StatusResponse,
    responses={401: _401, 404: _404, 422: _422_JOB_ID, 503: _503},
)
async def status(job_id: JobId, backends: Backend, caller: Caller) -> StatusResponse:
    return StatusResponse.of(await _own_job(backends, job_id, caller))


#: A job has one webhook per terminal event, each at most a few attempts.
_MAX_DELIVERIES = 1000


@_jobs.get(
    "/jobs/{job_id}/deliveries",
    name="deliveries",
    response_model=DeliveryList,
    responses={401: _401, 404: _404, 422: _422_JOB_ID, 503: _503},
    summary="The job's webhook delivery log",
)
async def deliveries(job_id: JobId, backends: Backend, caller: Caller) -> DeliveryList:
    """Every attempt to deliver the job's webhooks to its ``callback_url``,
    oldest first (empty when it has none, or none is due yet)."""
    await _own_job(backends, job_id, caller)
    attempts = await backends.repo.list_deliveries(job_id, limit=_MAX_DELIVERIES)
    return DeliveryList(deliveries=[Delivery.of(a) for a in attempts])


async def _with_job_fields(prefix: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stored document with the job's own fields spliced in after its ``{``."""
    first = True
    async for chunk in chunks:
        if first:
            first = False
            yield prefix + chunk[1:] if chunk.startswith(b"{") else chunk
        else:
            yield chunk


@_jobs.get(
    "/results/{job_id}",
    response_model=ResultsResponse,
    responses={
        401: _401,
        404: {"model": ErrorResponse, "description": "Unknown job, or not completed"},
        410: {
            "model": ErrorResponse,
            "description": "Results past VIDEOQ_RESULTS_RETENTION_SECONDS, deleted"
            " (the status says when: results_expired_at)",
        },
        422: _422_JOB_ID,
        503: _503,
    },
)
async def results(
    job_id: JobId,
    backends: Backend,
    settings: Config,
    pages: Pages,
    caller: Caller,
    offset: Annotated[int, Query(ge=0, description="First result entry to return")] = 0,
    limit: Annotated[
        int | None, Query(ge=1, le=10_000, description="At most this many entries")
    ] = None,
) -> Response:
    job = await _own_job(backends, job_id, caller)
    if job.results_expired_at is not None:
        raise ResultsExpired(job.results_expired_at.isoformat())
    if job.status is not JobStatus.COMPLETED or job.output_path is None:
        raise ResultsNotReady(job.status.value)
    own = {"tag": job.tag, "metadata": job.metadata}
    if offset or limit is not None:
        size = job.output_bytes
        if size is not None and size >= settings.results_index_min_bytes:
            page = await pages.page(
                backends.store,
                job.output_path,
                size=size,
                offset=offset,
                limit=limit,
                own=own,
            )
            if page is not None:
                return Response(page, media_type="application/json")
        # A small document, or one without an index: parse it whole and slice.
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


@_jobs.get(
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


@_jobs.delete(
    "/jobs/{job_id}",
    response_model=StatusResponse,
    status_code=202,
    responses={
        204: {"description": "Erased (erase=true on a job that was not running)"},
        401: _401,
        404: _404,
        409: {"model": ErrorResponse, "description": "The job had finished already"},
        422: _422_JOB_ID,
        503: _503,
    },
    summary="Cancel a job, or erase it",
)
async def cancel(
    job_id: JobId,
    backends: Backend,
    caller: Caller,
    metrics: MetricsDep,
    erase: Annotated[
        bool,
        Query(
            description="Erase the job: its input (unless from source=), results and rows;"
            " a running job is cancelled first and erased when it stops"
        ),
    ] = False,
) -> Response | StatusResponse:
    """A pending job fails at once with "Cancelled"; a running one is stopped
    by its worker at its next heartbeat (best effort) and fails the same way;
    a finished job answers 409.

    With ``erase=true``: a pending or finished job is erased now (204); a
    running one is cancelled and answered 202 with ``erase_requested``, and
    the janitor erases it once it has stopped. Either way every read of it
    is then 404, and its Idempotency-Key is free."""
    job = await _own_job(backends, job_id, caller)
    if erase:
        return await _erase(backends, job, metrics)
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


async def _erase(backends: Backend, job: Job, metrics: MetricsDep) -> Response | StatusResponse:
    # Flagged first: from here the job publishes no more events, and
    # whoever sees it stop (janitor) erases it if this request does not.
    flagged = await backends.repo.request_erase(job.job_id)
    if flagged is None:
        raise JobNotFound()
    if flagged.status not in TERMINAL:
        # Pending: fails now; running: its worker stops at its next heartbeat.
        await backends.repo.cancel(job.job_id)
    current = await backends.repo.get(job.job_id)
    if current is None:
        raise JobNotFound()  # erased meanwhile (the janitor)
    if current.status in TERMINAL:
        await retention.erase_job(backends.repo, backends.store, current)
        metrics.retention_deleted.labels("job").inc()
        log.info("job.erased", extra={"job_id": str(job.job_id)})
        return Response(status_code=204)
    log.info("job.erase_requested", extra={"job_id": str(job.job_id)})
    return StatusResponse.of(current)
