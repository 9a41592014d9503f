"""The video routes: submit, status, results."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from services.api.deps import Backend, Config, MetricsDep, Pipelines
from services.api.models import ErrorResponse, ResultsResponse, StatusResponse, SubmitResponse
from services.api.upload import receive_upload
from shared.errors import (
    DependencyUnavailable,
    InvalidParameter,
    JobNotFound,
    PipelineNotFound,
    ResultsNotReady,
)
from shared.jobs import Job, JobStatus, input_key
from shared.settings import Settings

__all__ = ["router"]

log = logging.getLogger("videoq.api")
router = APIRouter(prefix="/video", tags=["video"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Uploaded file is empty"},
    413: {"model": ErrorResponse, "description": "Upload larger than the limit"},
    415: {"model": ErrorResponse, "description": "Unsupported file type (not MP4)"},
    422: {"model": ErrorResponse, "description": "Bad parameters, or pipeline not found"},
    503: {"model": ErrorResponse, "description": "A dependency is down; see Retry-After"},
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


def _options(
    fields: dict[str, str], settings: Settings, pipelines: list[str]
) -> tuple[str, dict[str, int | None]]:
    pipeline = fields.get("pipeline", "").strip() or settings.default_pipeline
    if pipeline not in pipelines:
        raise PipelineNotFound(pipeline)
    stride = _int_field(
        fields, "frame_stride", default=settings.default_frame_stride, upper=1_000_000
    )
    max_frames = _int_field(fields, "max_frames", default=None, upper=settings.max_frames_limit)
    return pipeline, {"frame_stride": stride, "max_frames": max_frames}


async def _job(backends: Backend, job_id: UUID) -> Job:
    job = await backends.repo.get(job_id)
    if job is None:
        raise JobNotFound()
    return job


@router.post(
    "/submit",
    status_code=202,
    response_model=SubmitResponse,
    responses=_ERRORS,
    openapi_extra=_SUBMIT_BODY,
    summary="Upload an MP4 and start a job",
)
async def submit(
    request: Request,
    backends: Backend,
    settings: Config,
    pipelines: Pipelines,
    metrics: MetricsDep,
    content_type: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    job_id = uuid.uuid4()
    key = input_key(job_id)
    received = await receive_upload(
        stream=request.stream(),
        content_type=content_type,
        store=backends.store,
        key=key,
        max_bytes=settings.max_upload_bytes,
    )
    assert received.upload is not None
    try:
        pipeline, options = _options(received.fields, settings, pipelines)
    except BaseException:
        await received.upload.abort()
        raise
    await received.upload.complete()
    try:
        await backends.repo.create(
            job_id=job_id,
            input_path=key,
            pipeline=pipeline,
            options=options,
            input_bytes=received.size,
        )
    except BaseException:
        await backends.store.delete(key)  # nothing left behind
        raise
    metrics.jobs_submitted.labels(pipeline).inc()
    metrics.upload_bytes.inc(received.size)
    log.info(
        "job.submitted", extra={"job_id": str(job_id), "pipeline": pipeline, "bytes": received.size}
    )
    try:
        await backends.broker.publish_job(job_id)
        await backends.repo.mark_published(job_id)
    except DependencyUnavailable as exc:
        # The row is pending and unpublished: the janitor's outbox publishes it.
        log.warning("job.publish_deferred", extra={"job_id": str(job_id), "error": str(exc)})
    return JSONResponse(
        {"job_id": str(job_id)},
        status_code=202,
        headers={"Location": str(request.url_for("status", job_id=str(job_id)))},
    )


JobId = Annotated[UUID, Path(description="The job id returned by submit")]


@router.get(
    "/status/{job_id}",
    name="status",
    response_model=StatusResponse,
    responses={404: {"model": ErrorResponse}, 503: _ERRORS[503]},
)
async def status(job_id: JobId, backends: Backend) -> StatusResponse:
    return StatusResponse.of(await _job(backends, job_id))


@router.get(
    "/results/{job_id}",
    response_model=ResultsResponse,
    responses={
        404: {"model": ErrorResponse, "description": "Unknown job, or not completed"},
        503: _ERRORS[503],
    },
)
async def results(
    job_id: JobId,
    backends: Backend,
    offset: Annotated[int, Query(ge=0, description="First result entry to return")] = 0,
    limit: Annotated[
        int | None, Query(ge=1, le=10_000, description="At most this many entries")
    ] = None,
) -> Response:
    job = await _job(backends, job_id)
    if job.status is not JobStatus.COMPLETED or job.output_path is None:
        raise ResultsNotReady(job.status.value)
    if offset or limit is not None:
        # A page: parse the document and slice its results.
        raw = b"".join([chunk async for chunk in backends.store.iter_bytes(job.output_path)])
        document = json.loads(raw)
        entries = document.get("results", [])
        end = len(entries) if limit is None else offset + limit
        document["results"] = entries[offset:end]
        document["page"] = {"offset": offset, "limit": limit, "total": len(entries)}
        return JSONResponse(document)
    # The whole document streams from the store: memory stays flat.
    size = await backends.store.size(job.output_path)
    return StreamingResponse(
        backends.store.iter_bytes(job.output_path),
        media_type="application/json",
        headers={"Content-Length": str(size)},
    )
