"""Request and response bodies of the HTTP API (what the OpenAPI document shows)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self, cast
from uuid import UUID

from annotated_types import Ge, Le, MaxLen
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from shared.errors import CallbackRefused, InvalidParameter, PipelineNotFound, VideoqError
from shared.jobs import Job, JobStatus
from shared.settings import Settings
from shared.webhooks.model import DeliveryAttempt
from shared.webhooks.ssrf import CallbackPolicy

__all__ = [
    "CompletedPart",
    "Delivery",
    "DeliveryList",
    "ErrorResponse",
    "JobList",
    "PartUrl",
    "ReceivedPart",
    "ResultsResponse",
    "StatusResponse",
    "SubmitForm",
    "SubmitResponse",
    "UploadComplete",
    "UploadCreate",
    "UploadCreated",
    "UploadStatus",
    "submit_form",
]

_MAX_FRAME_STRIDE = 1_000_000
_MAX_TAG = 128
_MAX_METADATA_BYTES = 2048


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _integer(value: Any, info: ValidationInfo) -> Any:
    """Read as ``int()`` reads it (pydantic's own parsing takes other spellings)."""
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        raise PydanticCustomError(
            "not_an_integer", "{field} must be an integer", {"field": info.field_name}
        ) from None


def _printable(value: str | None) -> str | None:
    if value is not None and not value.isprintable():
        raise PydanticCustomError("string_not_printable", "String should be printable")
    return value


def _metadata(value: Any) -> dict[str, Any]:
    raw = str(value)
    if len(raw.encode()) > _MAX_METADATA_BYTES:
        raise PydanticCustomError(
            "metadata_too_large", f"metadata must be at most {_MAX_METADATA_BYTES} bytes"
        )
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise PydanticCustomError("metadata_not_json", "metadata must be a JSON object") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(v, str | int | float | bool) for v in parsed.values()
    ):
        raise PydanticCustomError(
            "metadata_not_flat", "metadata must be a JSON object of strings, numbers or booleans"
        )
    return parsed


# Constraints before validators: pydantic then checks them as its own (and
# documents them as minimum, maximum, maxLength).
_FrameStride = Annotated[
    int,
    Field(ge=1, le=_MAX_FRAME_STRIDE, description="Analyse every n-th frame"),
    BeforeValidator(_integer),
]
_MaxFrames = Annotated[
    int | None,
    Field(ge=1, description="Analyse at most this many frames"),
    BeforeValidator(_integer),
]


class _FormFieldsSchema(GenerateJsonSchema):
    """Form fields as they travel: one left out takes its default, none is ever null."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        if json_schema.get("default", ...) is None:
            del json_schema["default"]
        return json_schema


class SubmitForm(BaseModel):
    """A submit's form fields; the file part streams apart (``services.api.upload``).

    :func:`submit_form` makes the one a deployment uses, with its pipelines,
    defaults and ``max_frames`` cap. Its JSON schema is submit's documented
    request body and its constraints are the checks, so each limit is stated
    once, here.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: The upload limit, for the documented file part (the upload enforces it).
    max_upload_bytes: ClassVar[int]

    #: One of the deployment's pipelines (:func:`submit_form` names them).
    pipeline: Annotated[str, BeforeValidator(_stripped)]
    frame_stride: _FrameStride = 1
    max_frames: _MaxFrames = None
    #: ``shared.pipeline.sampling.Sampling``'s values (a unit test checks).
    sampling: Annotated[
        Literal["exact", "fast", "keyframes"],
        Field(
            description="exact: every n-th frame; fast, keyframes: frames near those"
            " that decode cheaply, nothing else decoded (see docs/pipeline.md)"
        ),
        BeforeValidator(_stripped),
    ] = "exact"
    tag: Annotated[
        str | None,
        Field(
            max_length=_MAX_TAG, description="Printable characters, echoed in status and results"
        ),
        BeforeValidator(_stripped),
        AfterValidator(_printable),
    ] = None
    metadata: Annotated[
        dict[str, Any],
        PlainValidator(_metadata, json_schema_input_type=str),
        Field(
            description="A JSON object of strings, numbers or booleans,"
            f" at most {_MAX_METADATA_BYTES} bytes; echoed in status and results",
            json_schema_extra={
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
            },
        ),
    ] = Field(default_factory=dict)
    #: Instead of the file part: an object already in the store (services.api.source).
    source: Annotated[
        str | None,
        Field(
            max_length=1024,
            description="Instead of 'file': s3://bucket/key of an MP4 already in the store,"
            " under a prefix VIDEOQ_SOURCE_PREFIXES grants the client (else 403); never"
            " deleted by the service. In videoq dev: file:///path under a granted folder",
        ),
        BeforeValidator(_stripped),
    ] = None
    #: Where the job's end is announced; :func:`submit_form` adds the deployment's rules.
    callback_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _blank_is_left_out(cls, data: Any) -> Any:
        """A field sent blank takes its default, as one left out does."""
        if not isinstance(data, Mapping):
            return data
        return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}

    @classmethod
    def parse(cls, fields: Mapping[str, str]) -> Self:
        """The fields, validated. Raises ``PipelineNotFound`` or ``InvalidParameter``
        for the first bad field, in the order above."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise cls._problem(exc.errors()[0]) from None

    @classmethod
    def _problem(cls, error: ErrorDetails) -> VideoqError:
        """One validation error as the client reads it, naming the field and its limits."""
        name = str(error["loc"][0])
        limits = cls.model_fields[name].metadata
        if error["type"] == "literal_error" and name == "pipeline":
            return PipelineNotFound(str(error["input"]))
        if error["type"] == "literal_error":
            return InvalidParameter(f"{name} must be one of {error.get('ctx', {})['expected']}")
        if error["type"] in ("greater_than_equal", "less_than_equal"):
            low = next(m.ge for m in limits if isinstance(m, Ge))
            high = next(m.le for m in limits if isinstance(m, Le))
            return InvalidParameter(f"{name} must be between {low} and {high}")
        if error["type"] in ("string_too_long", "string_not_printable"):
            longest = next(m.max_length for m in limits if isinstance(m, MaxLen))
            return InvalidParameter(f"{name} must be at most {longest} printable characters")
        return InvalidParameter(error["msg"])  # the validators' own, field named

    def job_fields(self) -> dict[str, Any]:
        """What the job row keeps of the request (and what its hash covers)."""
        return {
            "pipeline": self.pipeline,
            "options": {
                "frame_stride": self.frame_stride,
                "max_frames": self.max_frames,
                # Kept only when not the default, so that a job's options (and
                # an idempotent retry's hash) read as they did before.
                **({"sampling": self.sampling} if self.sampling != "exact" else {}),
            },
            "tag": self.tag,
            "metadata": self.metadata,
            "callback_url": self.callback_url,
        }

    @classmethod
    def openapi_body(cls) -> dict[str, Any]:
        """Submit's ``requestBody`` for the OpenAPI document: the file and these fields."""
        schema = cls.model_json_schema(schema_generator=_FormFieldsSchema)
        file = {
            "type": "string",
            "format": "binary",
            "description": f"The MP4 to analyse, at most {cls.max_upload_bytes} bytes"
            " (or give 'source' instead)",
        }
        upload_id = {
            "type": "string",
            "format": "uuid",
            "description": "Instead of file: a completed direct upload (POST /video/uploads)",
        }
        schema["properties"] = {"file": file, "upload_id": upload_id, **schema["properties"]}
        # Exactly one input: the file part, the source field or an upload_id.
        schema["oneOf"] = [
            {"required": ["file"]},
            {"required": ["source"]},
            {"required": ["upload_id"]},
        ]
        return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def _callback_url(settings: Settings) -> tuple[Any, Any]:
    """The ``callback_url`` field under the deployment's SSRF rules, as far
    as they go without a lookup (``submission`` resolves the host)."""
    policy = CallbackPolicy.from_settings(settings)

    def check(url: str | None) -> str | None:
        if url is not None:
            try:
                policy.check_url(url)
            except CallbackRefused as exc:
                raise PydanticCustomError("callback_url_refused", str(exc)) from None
        return url

    schemes = "https or http" if settings.webhook_allow_http else "https"
    return (
        Annotated[str | None, BeforeValidator(_stripped), AfterValidator(check)],
        Field(
            None,
            description=f"A {schemes} URL that gets a signed webhook (JSON POST) when the job"
            " completes or fails; its host must resolve to public addresses"
            " (docs/webhooks.md)",
            json_schema_extra={"format": "uri", "maxLength": 2048},
        ),
    )


def submit_form(settings: Settings, pipelines: Sequence[str]) -> type[SubmitForm]:
    """The submit form of a deployment: its pipelines, defaults and ``max_frames`` cap."""
    registered = cast(Any, Literal)[tuple(pipelines)]
    deployment: dict[str, Any] = {
        # The default is checked too: an unregistered default_pipeline is
        # "Pipeline not found", as for a client that names one.
        "pipeline": (
            Annotated[registered, BeforeValidator(_stripped)],
            Field(
                settings.default_pipeline,
                validate_default=True,
                description="A registered pipeline",
            ),
        ),
        "frame_stride": (_FrameStride, settings.default_frame_stride),
        "max_frames": (_MaxFrames, Field(None, le=settings.max_frames_limit)),
        "callback_url": _callback_url(settings),
    }
    form = create_model("SubmitForm", __base__=SubmitForm, __module__=__name__, **deployment)
    form.max_upload_bytes = settings.max_upload_bytes
    return form


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
    #: When retention deleted the results (``GET /video/results`` is then 410).
    results_expired_at: datetime | None = None
    #: Erasure was asked for: the job is erased (then 404) once it stops.
    erase_requested: bool = False

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
            results_expired_at=job.results_expired_at,
            erase_requested=job.erase_requested,
        )


class FrameResult(BaseModel):
    frame_index: int
    timestamp_s: float
    result: dict[str, Any]
    #: Present (true) only where the decoder concealed damage in this frame.
    concealed: bool = Field(
        default=False, description="The decoder concealed damage in this frame (bit rot)"
    )


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


class Delivery(BaseModel):
    """One attempt to deliver a job's webhook."""

    webhook_id: str = Field(description="The webhook-id header: the same for every attempt")
    type: str = Field(description="job.completed or job.failed")
    attempt: int = Field(description="1 for the first attempt, 2 for the first retry, ...")
    status_code: int | None = Field(description="The receiver's HTTP status; null: no answer")
    error: str | None = Field(description="Why the attempt failed; null when it succeeded")
    at: datetime
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due; null when none is"
    )

    @classmethod
    def of(cls, attempt: DeliveryAttempt) -> Delivery:
        return cls(
            webhook_id=attempt.webhook_id,
            type=attempt.type,
            attempt=attempt.attempt,
            status_code=attempt.status_code,
            error=attempt.error,
            at=attempt.at,
            next_attempt_at=attempt.next_attempt_at,
        )


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


class ErrorResponse(BaseModel):
    detail: str


# ---- direct uploads (docs/uploads.md) ---------------------------------------------


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(gt=0, description="The video's size in bytes")


class PartUrl(BaseModel):
    part_number: int
    #: PUT the part's bytes here (no API key: the URL is the authority).
    url: str


class ReceivedPart(BaseModel):
    part_number: int
    etag: str
    size: int


class UploadCreated(BaseModel):
    upload_id: UUID
    #: Every part but the last is exactly this many bytes.
    part_size: int
    parts: list[PartUrl]
    expires_at: datetime


class UploadStatus(BaseModel):
    upload_id: UUID
    state: Literal["open", "completed", "submitted"]
    size: int
    part_size: int
    expires_at: datetime
    #: The parts the store holds (``open`` uploads only).
    received: list[ReceivedPart]
    #: Fresh URLs for the parts not received yet (``open`` uploads only).
    parts: list[PartUrl]
    #: The job made from it (``submitted``).
    job_id: UUID | None = None


class CompletedPart(BaseModel):
    part_number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=200)


class UploadComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[CompletedPart] = Field(min_length=1, max_length=10_000)
