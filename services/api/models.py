"""Response bodies of the HTTP API (what the OpenAPI document shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from shared.jobs import Job, JobStatus

__all__ = ["ErrorResponse", "JobList", "ResultsResponse", "StatusResponse", "SubmitResponse"]


class SubmitResponse(BaseModel):
    job_id: UUID


class StatusResponse(BaseModel):
    job_id: UUID
    status: JobStatus
    #: Fraction of sampled frames analysed, 0..1 (coarse: updated every few seconds).
    progress: float
    #: Why the job failed, or why its last attempt did.
    error_message: str | None
    pipeline: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    tag: str | None = None
    metadata: dict[str, Any] = {}
    #: A cancel was asked for while the job was running.
    cancel_requested: bool = False

    @classmethod
    def of(cls, job: Job) -> StatusResponse:
        return cls(
            job_id=job.job_id,
            status=job.status,
            progress=round(job.progress, 4),
            error_message=job.error_message,
            pipeline=job.pipeline,
            attempts=job.attempts,
            created_at=job.created_at,
            updated_at=job.updated_at,
            tag=job.tag,
            metadata=job.metadata,
            cancel_requested=job.cancel_requested,
        )


class FrameResult(BaseModel):
    frame_index: int
    timestamp_s: float
    result: dict[str, Any]


class Page(BaseModel):
    offset: int
    limit: int | None
    total: int


class ResultsResponse(BaseModel):
    job_id: UUID
    pipeline: str
    video: dict[str, Any]
    summary: dict[str, Any]
    results: list[FrameResult]
    tag: str | None = None
    metadata: dict[str, Any] = {}
    #: Present when ``offset`` or ``limit`` was given.
    page: Page | None = None


class JobList(BaseModel):
    jobs: list[StatusResponse]
    #: Pass as ``cursor`` for the next page; ``null`` on the last one.
    next_cursor: str | None


class ErrorResponse(BaseModel):
    detail: str
