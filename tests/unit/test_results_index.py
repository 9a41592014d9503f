"""The index a results document is written with: each offset is where its entry starts."""

import json

import pytest

from shared.pipeline.document import ResultsWriter
from shared.pipeline.index import (
    INDEX_HEADER_BYTES,
    INDEX_SUFFIX,
    OFFSET_BYTES,
    IndexHeader,
    offset_at,
)

pytestmark = pytest.mark.unit


def _write(tmp_path, entries):
    path = tmp_path / "results.json"
    writer = ResultsWriter(path, header={"job_id": "j", "pipeline": "basic"})
    for entry in entries:
        writer.write(entry)
    size = writer.finish({"frames_sampled": len(entries)})
    return path.read_bytes(), (tmp_path / ("results.json" + INDEX_SUFFIX)).read_bytes(), size


@pytest.mark.parametrize("count", [0, 1, 5])
def test_the_index_locates_every_entry_and_the_results_array(tmp_path, count):
    # Non-ASCII text is kept as is: offsets count bytes, not characters.
    entries = [{"frame_index": i, "label": "é→" * i, "x": i / 3} for i in range(count)]
    document, index, size = _write(tmp_path, entries)
    assert size == len(document)
    assert json.loads(document)["results"] == entries
    header = IndexHeader.parse(index[:INDEX_HEADER_BYTES])
    assert header is not None
    assert header.entries == count
    assert document[: header.results_start].endswith(b'"results":[')
    assert document[header.results_end :].startswith(b'],"summary":')
    table = index[INDEX_HEADER_BYTES:]
    assert len(table) == OFFSET_BYTES * (count + 1)
    offsets = [offset_at(table, i) for i in range(count + 1)]
    assert offsets[-1] == header.results_end + 1
    for i, entry in enumerate(entries):
        assert json.loads(document[offsets[i] : offsets[i + 1] - 1]) == entry


def test_an_aborted_writer_leaves_neither_document_nor_index(tmp_path):
    writer = ResultsWriter(tmp_path / "results.json", header={})
    writer.write({"frame_index": 0})
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_header_that_is_not_an_index_is_refused():
    assert IndexHeader.parse(b"{" * INDEX_HEADER_BYTES) is None
    assert IndexHeader.parse(b"") is None
