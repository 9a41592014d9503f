"""Domain errors -> HTTP, in one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from shared.errors import (
    DependencyUnavailable,
    EmptyUpload,
    InvalidParameter,
    JobConflict,
    JobNotFound,
    PartUrlRefused,
    PipelineNotFound,
    RequestError,
    ResultsExpired,
    ResultsNotReady,
    SourceForbidden,
    TooManyJobs,
    Unauthorized,
    UnsupportedFileType,
    UploadNotFound,
    UploadTooLarge,
    VideoqError,
)

__all__ = ["RETRY_AFTER_SECONDS", "install_error_handlers"]

log = logging.getLogger("videoq.api")

#: What a client is told to wait when a dependency is down.
RETRY_AFTER_SECONDS = 5

_STATUS: dict[type[VideoqError], int] = {
    JobNotFound: 404,
    Unauthorized: 401,
    JobConflict: 409,
    ResultsNotReady: 404,
    ResultsExpired: 410,
    SourceForbidden: 403,
    UnsupportedFileType: 415,
    EmptyUpload: 400,
    UploadTooLarge: 413,
    InvalidParameter: 422,
    PipelineNotFound: 422,
    TooManyJobs: 429,
    UploadNotFound: 404,
    PartUrlRefused: 403,
}


def _status_for(exc: VideoqError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400 if isinstance(exc, RequestError) else 500


def _describe(exc: RequestValidationError) -> str:
    """The first problem as one line, ``name: what is wrong`` (the input is
    not echoed back: it may be large, or hostile)."""
    errors = exc.errors()
    if not errors:
        return "Bad parameters"
    first = errors[0]
    where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    return f"{'.'.join(where) or 'request'}: {first.get('msg', 'invalid')}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Every error has the same shape, {"detail": str}, FastAPI's own included.
        return JSONResponse({"detail": _describe(exc)}, status_code=422)

    @app.exception_handler(DependencyUnavailable)
    async def unavailable(request: Request, exc: DependencyUnavailable) -> JSONResponse:
        log.warning(
            "http.dependency_unavailable", extra={"dependency": exc.dependency, "error": str(exc)}
        )
        return JSONResponse(
            {"detail": f"Service temporarily unavailable ({exc.dependency}); retry later"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(VideoqError)
    async def domain(request: Request, exc: VideoqError) -> JSONResponse:
        status = _status_for(exc)
        if status >= 500:
            log.error("http.unhandled_domain_error", extra={"error": type(exc).__name__})
            return JSONResponse({"detail": "Internal server error"}, status_code=500)
        headers: dict[str, str] | None = None
        if status == 413:
            # Answered before the body was read to its end: close the connection.
            headers = {"Connection": "close"}
        elif status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        elif status == 429:
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)
