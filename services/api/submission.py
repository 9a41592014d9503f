"""The submit use case: a streamed upload (or a ``source=`` object already in
the store, ``services.api.source``) becomes a stored input, a pending job row
and a published message.

A refused submit leaves nothing behind (no object, no row). Once the row
exists the job goes ahead whatever fails next: a publish that cannot go out
is left to the janitor's outbox, and a row whose commit is in doubt is looked
for before anything is deleted. The HTTP layer (``routes.submit``) only turns
the outcome into a response.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from services.api.models import SubmitForm
from services.api.source import Source, check_source
from services.api.upload import receive_upload
from shared import outbox
from shared.backends import Backends
from shared.errors import (
    CallbackRefused,
    DependencyUnavailable,
    InvalidParameter,
    JobConflict,
    TooManyJobs,
    UploadNotFound,
    WebhookFailed,
)
from shared.jobs import Job, input_key
from shared.metrics import Metrics
from shared.settings import Settings
from shared.uploads import UploadState
from shared.webhooks.ssrf import CallbackPolicy

__all__ = ["SubmitRequest", "Submitted", "submit_job"]

log = logging.getLogger("videoq.api")


@dataclass(frozen=True, kw_only=True)
class SubmitRequest:
    """A submit as the HTTP layer hands it over, its body still unread."""

    #: The authenticated client the job will belong to.
    client_id: str
    #: A well-formed ``Idempotency-Key``, or ``None``.
    idempotency_key: str | None
    #: The request's ``Content-Type`` (``multipart/form-data`` with its boundary).
    content_type: str | None
    #: The request body, as it arrives.
    body: AsyncIterator[bytes]


@dataclass(frozen=True)
class Submitted:
    """What became of an accepted submit."""

    job_id: UUID
    #: The same key and request came before: ``job_id`` is that earlier job.
    replay: bool = False
    #: The job's message went out; record it with ``outbox.record_published``
    #: (after answering: the client need not wait for it).
    published: bool = False


async def submit_job(
    request: SubmitRequest,
    *,
    backends: Backends,
    settings: Settings,
    form: type[SubmitForm],
    metrics: Metrics,
) -> Submitted:
    """Store the upload, validate its fields with ``form``, create the job and publish it.

    Raises ``TooManyJobs`` before reading the body when the client is at its
    in-flight limit, a ``RequestError`` for a bad upload or field, and
    ``JobConflict`` for a key reused with another request; after any of these
    nothing is stored. ``DependencyUnavailable`` when a backend is away
    before the job exists.
    """
    client_id, key = request.client_id, request.idempotency_key
    await _check_in_flight(backends, settings, client_id, key)
    job_id = uuid.uuid4()
    path = input_key(job_id)
    received = await receive_upload(
        stream=request.body,
        content_type=request.content_type,
        store=backends.store,
        key=path,
        max_bytes=settings.max_upload_bytes,
        digest=key is not None,
    )
    source: Source | None = None
    try:
        parsed = form.parse(received.fields)
        fields = parsed.job_fields()
        _one_input(
            {
                "file": received.has_file,
                "source": parsed.source is not None,
                _UPLOAD_FIELD: _UPLOAD_FIELD in received.fields,
            }
        )
        if parsed.source is not None:
            source = await check_source(
                parsed.source, client_id=client_id, settings=settings, store=backends.store
            )
        if fields["callback_url"] is not None:
            await _check_callback(settings, fields["callback_url"])
    except BaseException:
        if received.upload is not None:
            await received.upload.abort()
        raise
    if _UPLOAD_FIELD in received.fields:
        return await _submit_upload(
            received.fields[_UPLOAD_FIELD], fields, request, backends=backends, metrics=metrics
        )
    if received.upload is not None:
        await received.upload.complete()
    identity: dict[str, str | None]
    if source is not None:
        path, size, identity = source.uri, source.size, {"source": source.uri}
    else:
        size, identity = received.size, {"file_sha256": received.sha256}
    owned = source is None
    request_hash = _request_hash(fields, identity) if key else None
    try:
        job = await backends.repo.create(
            job_id=job_id,
            input_path=path,
            input_bytes=size,
            client_id=client_id,
            idempotency_key=key,
            request_hash=request_hash,
            input_owned=owned,
            **fields,
        )
    except DependencyUnavailable:
        found = await _created_anyway(backends, job_id, path if owned else None)
        if found is None:
            raise
        job = found
    except BaseException:
        if owned:
            await backends.store.delete(path)  # nothing left behind
        raise
    if job is None:  # the key was used before (or concurrently)
        if owned:
            await backends.store.delete(path)
        assert key is not None
        earlier = await backends.repo.by_idempotency_key(client_id=client_id, key=key)
        if earlier is None or earlier.request_hash != request_hash:
            raise JobConflict(
                "Idempotency-Key was already used with different parameters or a different file"
            )
        return Submitted(earlier.job_id, replay=True)
    metrics.jobs_submitted.labels(job.pipeline).inc()
    metrics.upload_bytes.inc(received.size)  # 0 for a source=
    log.info(
        "job.submitted",
        extra={
            "job_id": str(job_id),
            "pipeline": job.pipeline,
            "bytes": size,
            "client": client_id,
        },
    )
    # Recorded after the 202 (outbox.record_published): one database round
    # trip less before the client hears back.
    return Submitted(job_id, published=await outbox.publish(backends.broker, job_id))


async def _check_callback(settings: Settings, url: str) -> None:
    """Refuse a callback URL whose host does not resolve, or resolves to an
    address the SSRF rules refuse (the delivery checks it again each time)."""
    try:
        await CallbackPolicy.from_settings(settings).resolve(url)
    except (CallbackRefused, WebhookFailed) as exc:
        raise InvalidParameter(str(exc)) from None


#: The form field naming a completed direct upload (docs/uploads.md).
_UPLOAD_FIELD = "upload_id"
#: A submit names its input in exactly one of these (a form part or field).
_INPUTS = ("file", "source", _UPLOAD_FIELD)


def _one_input(given: dict[str, bool]) -> None:
    named = [name for name in _INPUTS if given.get(name)]
    if len(named) != 1:
        choices = " or ".join(f"'{name}'" for name in _INPUTS)
        raise InvalidParameter(
            f"Give exactly one input: {choices}"
            + (f" (got {', '.join(named)})" if named else " (got none)")
        )


async def _submit_upload(
    raw_id: str,
    fields: dict[str, Any],
    request: SubmitRequest,
    *,
    backends: Backends,
    metrics: Metrics,
) -> Submitted:
    """A job from a completed direct upload: its id is the upload's, its
    input the upload's object (``shared.uploads``). One job per upload: a
    second submit is a 409, unless it is a retry with the same
    Idempotency-Key (the same job again). A refused submit leaves the upload
    as it was, for a corrected retry."""
    try:
        upload_id = UUID(raw_id.strip())
    except ValueError:
        raise InvalidParameter("upload_id must be a UUID") from None
    client_id, key = request.client_id, request.idempotency_key
    text = json.dumps({**fields, "upload_id": str(upload_id)}, sort_keys=True)
    request_hash = hashlib.sha256(text.encode()).hexdigest() if key else None
    if key is not None:
        earlier = await backends.repo.by_idempotency_key(client_id=client_id, key=key)
        if earlier is not None:
            return _replay(earlier, request_hash)
    upload = await backends.repo.get_upload(upload_id)
    if upload is None or upload.client_id != client_id:
        raise UploadNotFound()
    if upload.state is not UploadState.COMPLETED:
        done = f" as job {upload.job_id}" if upload.job_id else ""
        raise JobConflict(
            f"Upload is {upload.state.value}{done}; only a completed one starts a job"
        )
    job = await backends.repo.create(
        job_id=upload.upload_id,
        input_path=upload.key,
        input_bytes=upload.size,
        client_id=client_id,
        idempotency_key=key,
        request_hash=request_hash,
        upload_id=upload.upload_id,
        **fields,
    )
    if job is None:  # the key was taken meanwhile
        assert key is not None
        earlier = await backends.repo.by_idempotency_key(client_id=client_id, key=key)
        if earlier is None:
            raise JobConflict("Idempotency-Key was already used with a different request")
        return _replay(earlier, request_hash)
    metrics.jobs_submitted.labels(job.pipeline).inc()
    log.info(
        "job.submitted",
        extra={
            "job_id": str(job.job_id),
            "pipeline": job.pipeline,
            "bytes": upload.size,
            "client": client_id,
            "upload": True,
        },
    )
    return Submitted(job.job_id, published=await outbox.publish(backends.broker, job.job_id))


def _replay(earlier: Job, request_hash: str | None) -> Submitted:
    if earlier.request_hash != request_hash:
        raise JobConflict(
            "Idempotency-Key was already used with different parameters or a different file"
        )
    return Submitted(earlier.job_id, replay=True)


def _request_hash(fields: dict[str, object], identity: dict[str, str | None]) -> str:
    """What tells a retry (same key, same request) from a reuse of the key:
    the fields and the input (the file's hash, or the source URI)."""
    text = json.dumps({**fields, **identity}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


async def _check_in_flight(
    backends: Backends, settings: Settings, client_id: str, key: str | None
) -> None:
    """Refuse the submit before reading the upload when the client is at its
    limit; a retry of an earlier submit (its key is known) passes, so it can
    get its job back."""
    limit = settings.max_jobs_in_flight
    if not limit or await backends.repo.count_in_flight(client_id) < limit:
        return
    if key is not None and await backends.repo.by_idempotency_key(client_id=client_id, key=key):
        return
    raise TooManyJobs(limit)


async def _created_anyway(backends: Backends, job_id: UUID, path: str | None) -> Job | None:
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
        log.warning("job.create_uncertain", extra={"job_id": str(job_id), "input": path})
        return None
    if job is None and path is not None:  # None: not ours to delete (source=)
        await backends.store.delete(path)
    return job
