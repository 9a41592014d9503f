"""Direct uploads' part arithmetic (shared/uploads.py)."""

import pytest

from shared.uploads import MAX_PARTS, MIN_PART_BYTES, PART_BYTES, part_count, part_size_for

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("size", "part_size", "parts"),
    [
        (1, PART_BYTES, 1),
        (PART_BYTES, PART_BYTES, 1),
        (PART_BYTES + 1, PART_BYTES, 2),
        (2 * 1024**3, PART_BYTES, 256),
        (MAX_PARTS * PART_BYTES, PART_BYTES, MAX_PARTS),
        (MAX_PARTS * PART_BYTES + 1, 9 * MiB, 8889),
        (5 * 1024**4, 525 * MiB, 9987),  # S3's largest object
    ],
)
def test_parts_are_8_mib_or_larger_whole_mib_and_never_more_than_10000(size, part_size, parts):
    assert part_size_for(size) == part_size
    assert part_count(size, part_size) == parts
    assert part_size >= MIN_PART_BYTES and part_count(size, part_size) <= MAX_PARTS
