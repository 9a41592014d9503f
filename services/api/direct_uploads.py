"""Direct uploads (docs/uploads.md): the client PUTs its video to the store in
parts, bypassing the api; the api only signs part URLs, lists what arrived,
checks the assembled object and hands it to a submit (``upload_id``).

An upload belongs to the client that made it; any other gets 404. Its
``upload_id`` is the id of the job it becomes, its object that job's input
key (``shared.uploads``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urljoin
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response

from services.api.deps import Backend, Caller, Config
from services.api.models import (
    ErrorResponse,
    PartUrl,
    ReceivedPart,
    UploadComplete,
    UploadCreate,
    UploadCreated,
    UploadStatus,
)
from shared.backends import Backends
from shared.errors import (
    InvalidParameter,
    JobConflict,
    UnsupportedFileType,
    UploadNotFound,
    UploadTooLarge,
)
from shared.jobs import input_key
from shared.sniff import SNIFF_BYTES, looks_like_mp4
from shared.store import FileStore
from shared.store.files import PART_ROUTE
from shared.uploads import UploadRecord, UploadState, discard, part_count, part_size_for

__all__ = ["uploads_router"]

log = logging.getLogger("videoq.api")
uploads_router = APIRouter(prefix="/video/uploads", tags=["uploads"])

_ERR = {"model": ErrorResponse}
_401 = {**_ERR, "description": "Missing or invalid API key"}
_404 = {**_ERR, "description": "No such upload (for this client)"}
_503 = {**_ERR, "description": "A dependency is down; see Retry-After"}
UploadId = Annotated[UUID, Path(description="The upload_id that create returned")]


async def _own_upload(backends: Backends, upload_id: UUID, caller: str) -> UploadRecord:
    upload = await backends.repo.get_upload(upload_id)
    if upload is None or upload.client_id != caller:
        raise UploadNotFound()
    return upload


def _seconds_left(upload: UploadRecord) -> int:
    return max(1, int((upload.expires_at - datetime.now(UTC)).total_seconds()))


async def _part_urls(
    request: Request, backends: Backends, upload: UploadRecord, numbers: list[int]
) -> list[PartUrl]:
    expires_in = _seconds_left(upload)
    base = str(request.base_url)
    return [
        PartUrl(
            part_number=number,
            # The folder store's URLs are relative: the api serves them.
            url=urljoin(
                base,
                await backends.store.presign_part(
                    upload.key, upload.store_upload_id, number, expires_in=expires_in
                ),
            ),
        )
        for number in numbers
    ]


@uploads_router.post(
    "",
    status_code=201,
    response_model=UploadCreated,
    responses={
        401: _401,
        413: {**_ERR, "description": "Larger than the limit"},
        422: {**_ERR, "description": "size is not a positive integer"},
        503: _503,
    },
    summary="Start a direct upload: part URLs to PUT the video to",
)
async def create_upload(
    body: UploadCreate, request: Request, backends: Backend, settings: Config, caller: Caller
) -> UploadCreated:
    """The upload's parts and a presigned URL for each. Every part but the
    last is ``part_size`` bytes; keep each PUT's ``ETag`` for complete."""
    if body.size > settings.max_upload_bytes:
        raise UploadTooLarge(settings.max_upload_bytes)
    upload_id = uuid.uuid4()
    key = input_key(upload_id)
    part_size = part_size_for(body.size)
    store_upload_id = await backends.store.create_multipart(key, content_type="video/mp4")
    try:
        upload = await backends.repo.create_upload(
            upload_id=upload_id,
            client_id=caller,
            key=key,
            store_upload_id=store_upload_id,
            size=body.size,
            part_size=part_size,
            expires_in_seconds=settings.upload_expiry_seconds,
        )
    except BaseException:
        await backends.store.abort_multipart(key, store_upload_id)  # nothing left behind
        raise
    numbers = list(range(1, part_count(body.size, part_size) + 1))
    log.info(
        "upload.created",
        extra={"upload_id": str(upload_id), "bytes": body.size, "client": caller},
    )
    return UploadCreated(
        upload_id=upload_id,
        part_size=part_size,
        parts=await _part_urls(request, backends, upload, numbers),
        expires_at=upload.expires_at,
    )


async def _status(request: Request, backends: Backends, upload: UploadRecord) -> UploadStatus:
    received: list[ReceivedPart] = []
    missing: list[PartUrl] = []
    if upload.state is UploadState.OPEN:
        stored = await backends.store.list_parts(upload.key, upload.store_upload_id)
        received = [
            ReceivedPart(part_number=p.part_number, etag=p.etag, size=p.size) for p in stored
        ]
        have = {p.part_number for p in stored}
        todo = [n for n in range(1, part_count(upload.size, upload.part_size) + 1) if n not in have]
        missing = await _part_urls(request, backends, upload, todo)
    return UploadStatus(
        upload_id=upload.upload_id,
        state=upload.state.value,
        size=upload.size,
        part_size=upload.part_size,
        expires_at=upload.expires_at,
        received=received,
        parts=missing,
        job_id=upload.job_id,
    )


@uploads_router.get(
    "/{upload_id}",
    response_model=UploadStatus,
    responses={401: _401, 404: _404, 422: {**_ERR, "description": "Not a UUID"}, 503: _503},
    summary="The parts received so far (resume a broken upload)",
)
async def upload_status(
    upload_id: UploadId, request: Request, backends: Backend, caller: Caller
) -> UploadStatus:
    return await _status(request, backends, await _own_upload(backends, upload_id, caller))


@uploads_router.post(
    "/{upload_id}/complete",
    response_model=UploadStatus,
    responses={
        401: _401,
        404: _404,
        409: {**_ERR, "description": "Submitted already"},
        415: {**_ERR, "description": "Not an MP4: the object is deleted"},
        422: {**_ERR, "description": "Parts missing, or the object is not the declared size"},
        503: _503,
    },
    summary="Assemble the parts and check the video",
)
async def complete_upload(
    upload_id: UploadId, body: UploadComplete, request: Request, backends: Backend, caller: Caller
) -> UploadStatus:
    """Retry-safe: completing a completed upload answers its status again.
    A wrong size (422) or a file that is not an MP4 (415) deletes the
    object and the upload."""
    upload = await _own_upload(backends, upload_id, caller)
    if upload.state is UploadState.SUBMITTED:
        raise JobConflict(f"Upload was submitted already (job {upload.job_id})")
    if upload.state is UploadState.OPEN:
        parts = [(p.part_number, p.etag) for p in body.parts]
        size = await backends.store.complete_multipart(upload.key, upload.store_upload_id, parts)
        await _check_object(backends, upload, size)
        completed = await backends.repo.mark_upload_completed(upload_id)
        upload = completed or await _own_upload(backends, upload_id, caller)
        log.info("upload.completed", extra={"upload_id": str(upload_id), "bytes": size})
    return await _status(request, backends, upload)


async def _check_object(backends: Backends, upload: UploadRecord, size: int) -> None:
    """The assembled object has the declared size and starts like an MP4;
    else it and its upload are deleted and the error raised."""
    problem: Exception | None = None
    if size != upload.size:
        problem = InvalidParameter(f"The upload is {size} bytes; {upload.size} were declared")
    else:
        chunks = backends.store.iter_bytes(upload.key)
        head = b""
        async for chunk in chunks:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        await chunks.aclose()
        if not looks_like_mp4(head):
            problem = UnsupportedFileType()
    if problem is not None:
        await backends.store.delete(upload.key)
        await backends.repo.delete_upload(upload.upload_id)
        log.info(
            "upload.refused",
            extra={"upload_id": str(upload.upload_id), "error": type(problem).__name__},
        )
        raise problem


@uploads_router.delete(
    "/{upload_id}",
    status_code=204,
    responses={
        401: _401,
        404: _404,
        409: {**_ERR, "description": "Submitted: the upload is a job's input now"},
        422: {**_ERR, "description": "Not a UUID"},
        503: _503,
    },
    summary="Abort an upload: its parts (or object) are deleted",
)
async def abort_upload(upload_id: UploadId, backends: Backend, caller: Caller) -> Response:
    upload = await _own_upload(backends, upload_id, caller)
    if upload.state is UploadState.SUBMITTED:
        raise JobConflict(f"Upload is the input of job {upload.job_id}; cancel the job instead")
    await discard(backends.store, upload)
    await backends.repo.delete_upload(upload_id)
    log.info("upload.aborted", extra={"upload_id": str(upload_id)})
    return Response(status_code=204)


@uploads_router.put(
    PART_ROUTE.removeprefix("/video/uploads"),
    include_in_schema=False,  # only `videoq dev`'s folder store has it
)
async def put_part(
    store_upload_id: str,
    part_number: Annotated[int, Path(ge=1, le=10_000)],
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
    request: Request,
    backends: Backend,
) -> Response:
    """A part URL of the folder store: no API key, the signature is the authority."""
    store = backends.store
    if not isinstance(store, FileStore):
        raise UploadNotFound()
    etag = await store.receive_part(
        store_upload_id,
        part_number,
        expires=expires,
        signature=signature,
        body=request.stream(),
    )
    return Response(status_code=200, headers={"ETag": etag})
