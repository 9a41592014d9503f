"""The submit form: one model states each limit, for the checks and for the
OpenAPI document alike (the messages are checked over HTTP in
tests/integration/test_api.py)."""

import pytest

from services.api.app import create_app
from services.api.models import submit_form
from shared.errors import InvalidParameter, PipelineNotFound
from shared.settings import Settings

pytestmark = pytest.mark.unit

DEPLOYMENT = Settings(
    auth_disabled=True,
    max_upload_bytes=1000,
    max_frames_limit=50,
    default_frame_stride=3,
    default_pipeline="noop",
)


def _documented(settings: Settings) -> dict:
    document = create_app(settings).openapi()
    body = document["paths"]["/video/submit"]["post"]["requestBody"]
    return body["content"]["multipart/form-data"]["schema"]


def test_the_documented_body_states_every_limit_and_default_of_the_deployment():
    schema = _documented(DEPLOYMENT)
    fields = schema["properties"]
    # Exactly one input: the file part, the source field or a direct upload.
    assert schema["oneOf"] == [
        {"required": ["file"]},
        {"required": ["source"]},
        {"required": ["upload_id"]},
    ]
    assert fields["upload_id"]["format"] == "uuid"
    assert fields["file"]["format"] == "binary"
    assert "at most 1000 bytes" in fields["file"]["description"]
    assert fields["pipeline"]["default"] == "noop"
    assert {"basic", "noop"} <= set(fields["pipeline"]["enum"])
    assert (fields["frame_stride"]["minimum"], fields["frame_stride"]["maximum"]) == (1, 1_000_000)
    assert fields["frame_stride"]["default"] == 3
    assert (fields["max_frames"]["minimum"], fields["max_frames"]["maximum"]) == (1, 50)
    assert fields["tag"]["maxLength"] == 128
    assert fields["metadata"]["contentMediaType"] == "application/json"
    assert "at most 2048 bytes" in fields["metadata"]["description"]
    # A field left out takes its default: none is documented as nullable.
    assert all("anyOf" not in field and field.get("type") != "null" for field in fields.values())


def test_the_checks_use_the_limits_the_document_states():
    form = submit_form(DEPLOYMENT, ["basic", "noop"])
    assert form.parse({}).job_fields() == {
        "pipeline": "noop",
        "options": {"frame_stride": 3, "max_frames": None},
        "tag": None,
        "metadata": {},
        "callback_url": None,
    }
    with pytest.raises(InvalidParameter, match=r"^max_frames must be between 1 and 50$"):
        form.parse({"max_frames": "51"})
    with pytest.raises(PipelineNotFound):
        form.parse({"pipeline": "scene"})


def test_an_unregistered_default_pipeline_is_refused_like_a_named_one():
    form = submit_form(DEPLOYMENT.model_copy(update={"default_pipeline": "gone"}), ["basic"])
    with pytest.raises(PipelineNotFound):
        form.parse({})
    assert form.parse({"pipeline": "basic"}).pipeline == "basic"
