import contextlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidPayload
from shared.payload import build_payload, parse_payload

pytestmark = pytest.mark.unit


def test_the_payload_is_exactly_the_compact_json_of_the_spec():
    job_id = uuid.UUID("0b5cd2a4-8f4e-4f4a-9a8e-0d2f3c4b5a69")
    assert build_payload(job_id) == b'{"job_id":"0b5cd2a4-8f4e-4f4a-9a8e-0d2f3c4b5a69"}'


@given(st.uuids())
def test_the_same_job_gives_the_same_bytes_and_parses_back(job_id):
    assert build_payload(job_id) == build_payload(uuid.UUID(str(job_id)))
    assert parse_payload(build_payload(job_id)) == job_id


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"job_id": 5}',
        b'{"job_id": "not-a-uuid"}',
        b'{"job_id": "0B5CD2A4-8F4E-4F4A-9A8E-0D2F3C4B5A69"}',
        b'{"job_id": "0b5cd2a4-8f4e-4f4a-9a8e-0d2f3c4b5a69", "extra": 1}',
        b"{}",
    ],
)
def test_anything_else_is_an_invalid_payload(body):
    with pytest.raises(InvalidPayload):
        parse_payload(body)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(body):
    with contextlib.suppress(InvalidPayload):
        parse_payload(body)
