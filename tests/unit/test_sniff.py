import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.sniff import looks_like_mp4

pytestmark = pytest.mark.unit


def test_an_mp4_header_is_recognised():
    assert looks_like_mp4(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00")


def test_a_64_bit_box_size_is_recognised():
    assert looks_like_mp4(b"\x00\x00\x00\x01ftypmp42")


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x00\x00\x00\x20ftyp",  # too short to judge
        b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81",  # Matroska
        b"GIF89a\x01\x00\x01\x00\x00\x00",
        b"\x00\x00\x00\x08ftypisom",  # box too small to hold a brand
        b"\x00\x00\x00\x20moovisom",
        b"\x00\x00\x00\x20ftyp\x00\x01\x02\x03",  # brand not printable
    ],
)
def test_anything_else_is_not(head):
    assert not looks_like_mp4(head)


@given(st.binary(max_size=64))
def test_only_ftyp_first_boxes_pass(head):
    if looks_like_mp4(head):
        assert head[4:8] == b"ftyp"
