"""Submit a job as the api does, without HTTP: the real submit use case
(``services.api.submission``) on the caller's backends, the video sent as a
multipart body the way a client sends it."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from services.api.auth import ANONYMOUS
from services.api.models import submit_form
from services.api.submission import SubmitRequest, submit_job
from shared import outbox
from shared.backends import Backends
from shared.metrics import Metrics
from shared.pipeline import load_registry
from shared.settings import Settings


async def submit_video(
    backends: Backends, settings: Settings, video: Path, **fields: str | int
) -> uuid.UUID:
    """Store ``video``, create its job with the form ``fields`` and publish it,
    then tell the outbox (as the api does after its 202); returns the job id."""
    body = httpx.Request(
        "POST",
        "http://videoq/video/submit",
        files={"file": (video.name, video.read_bytes(), "video/mp4")},
        data={name: str(value) for name, value in fields.items()},
    )
    form = submit_form(settings, load_registry(plugins=settings.plugins).names())
    submitted = await submit_job(
        SubmitRequest(
            client_id=ANONYMOUS,
            idempotency_key=None,
            content_type=body.headers["content-type"],
            body=aiter(body.stream),
        ),
        backends=backends,
        settings=settings,
        form=form,
        metrics=Metrics(),
    )
    if submitted.published:
        await outbox.record_published(backends.repo, submitted.job_id)
    return submitted.job_id
