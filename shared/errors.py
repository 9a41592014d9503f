"""The domain's error tree.

Two kinds matter to the worker: ``TransientError`` (try again later, from a
retry tier) and ``PermanentError`` (fail the job now). The API maps the
``RequestError`` branch to HTTP status codes in one exception handler.
Adapters turn library errors into these at their boundary.
"""

from __future__ import annotations

__all__ = [
    "CallbackRefused",
    "CannotStart",
    "DependencyUnavailable",
    "EmptyUpload",
    "InputMissing",
    "InvalidParameter",
    "InvalidPayload",
    "JobConflict",
    "JobInterrupted",
    "JobNotFound",
    "JobTimedOut",
    "PartUrlRefused",
    "PermanentError",
    "PipelineNotFound",
    "RequestError",
    "ResultsExpired",
    "ResultsNotReady",
    "SourceForbidden",
    "TooManyJobs",
    "TransientError",
    "Unauthorized",
    "UnsupportedFileType",
    "UploadNotFound",
    "UploadTooLarge",
    "VideoUnreadable",
    "VideoqError",
    "WebhookFailed",
]


class VideoqError(Exception):
    """Root of every error videoq raises on purpose."""


# --- failures while running a job -------------------------------------------


class TransientError(VideoqError):
    """Might succeed if tried again later: the job goes to the next retry tier."""


class DependencyUnavailable(TransientError):
    """The database, broker or object store could not be reached."""

    def __init__(self, dependency: str, detail: str = "") -> None:
        self.dependency = dependency
        super().__init__(f"{dependency} unavailable" + (f": {detail}" if detail else ""))


class JobTimedOut(TransientError):
    """The job ran longer than the per-job time limit."""

    @classmethod
    def after(cls, limit_seconds: float) -> JobTimedOut:
        """The error for a job stopped at ``limit_seconds`` (what its row says)."""
        return cls(f"Job exceeded the time limit of {limit_seconds:g} s")


class WebhookFailed(TransientError):
    """A webhook attempt got no 2xx answer (status, timeout, connection
    error): the delivery goes to its next retry tier."""


class PermanentError(VideoqError):
    """Will fail the same way every time: the job fails at once."""


class CallbackRefused(PermanentError):
    """A ``callback_url`` the SSRF rules refuse (docs/webhooks.md): 422 at
    submit, a delivery that fails for good without connecting later."""


class VideoUnreadable(PermanentError):
    """The upload is not a decodable video."""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__("Unable to read video file")


class InputMissing(PermanentError):
    """The job's input object is not in the store."""


class PipelineNotFound(PermanentError):
    """No pipeline has that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__("Pipeline not found")


class InvalidPayload(PermanentError):
    """A queue message that is not the deterministic payload."""


# --- errors a client caused ---------------------------------------------------


class RequestError(VideoqError):
    """Raised while handling an HTTP request; mapped to a 4xx in one place."""


class JobNotFound(RequestError):
    def __init__(self) -> None:
        super().__init__("Job not found")


class UploadNotFound(RequestError):
    """No such direct upload for this client (or the store no longer holds it)."""

    def __init__(self) -> None:
        super().__init__("Upload not found")


class PartUrlRefused(RequestError):
    """A part URL of the folder store whose signature is wrong or expired."""

    def __init__(self) -> None:
        super().__init__("Part URL is invalid or has expired")


class ResultsNotReady(RequestError):
    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(f"Results not available: job is {status}")


class ResultsExpired(RequestError):
    """The job completed, but its results are past retention and deleted."""

    def __init__(self, expired_at: str) -> None:
        super().__init__(
            f"Results expired at {expired_at} (results retention); the job's status stays"
            " completed, but its results were deleted"
        )


class SourceForbidden(RequestError):
    """A ``source=`` outside every prefix granted to the client."""

    def __init__(self) -> None:
        super().__init__(
            "source is not under a prefix granted to this client (VIDEOQ_SOURCE_PREFIXES)"
        )


class UnsupportedFileType(RequestError):
    def __init__(self) -> None:
        super().__init__("Unsupported file type")


class EmptyUpload(RequestError):
    def __init__(self) -> None:
        super().__init__("Uploaded file is empty")


class UploadTooLarge(RequestError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"Uploaded file is larger than the limit of {limit} bytes")


class Unauthorized(RequestError):
    def __init__(self) -> None:
        super().__init__("Missing or invalid API key")


class JobConflict(RequestError):
    """The request contradicts the job's state or an earlier request."""


class TooManyJobs(RequestError):
    """The client has as many jobs pending or running as it may."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"Too many jobs in flight: at most {limit} pending or running per client;"
            " retry once some have finished"
        )


class InvalidParameter(RequestError):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class JobInterrupted(VideoqError):
    """The job was asked to stop (shutdown, lease lost, time limit)."""


# --- start-up -------------------------------------------------------------------


class CannotStart(VideoqError):
    """A service cannot start until an operator acts (the message says how);
    waiting would not help, unlike ``DependencyUnavailable``."""
