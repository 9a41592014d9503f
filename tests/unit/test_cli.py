import io
import socket
import subprocess
import sys
import uuid

import pytest

from services.cli.main import (
    EXIT_CODES,
    _parser,
    _ProgressBar,
    exit_code_for_http,
    format_jobs,
    main,
    render_progress,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "status,code",
    [
        (400, 2),
        (413, 2),
        (415, 2),
        (422, 2),
        (401, 6),
        (403, 6),
        (404, 5),
        (429, 4),
        (500, 4),
        (503, 4),
    ],
)
def test_each_http_error_maps_to_a_documented_exit_code(status, code):
    assert exit_code_for_http(status) == code
    assert code in EXIT_CODES


def test_exit_codes_are_distinct_and_in_the_help(capsys):
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 4, 5, 6, 130]
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for code, meaning in EXIT_CODES.items():
        assert f"{code:<4}{meaning}" in out


@pytest.mark.parametrize(
    "status,expected",
    [
        ({"status": "pending", "progress": 0.0}, "[----------]   0% pending"),
        ({"status": "running", "progress": 0.42}, "[####------]  42% running"),
        (
            {"status": "running", "progress": 0.5, "attempts": 2},
            "[#####-----]  50% running   attempt 2",
        ),
        ({"status": "completed", "progress": 0.9}, "[##########] 100% completed"),
        ({"status": "running", "progress": 7}, "[##########] 100% running"),
        ({"status": "running", "progress": None}, "[----------]   0% running"),
        ({"status": "failed", "progress": "x"}, "[----------]   0% failed"),
    ],
)
def test_the_progress_line_shows_the_bar_the_percentage_and_the_state(status, expected):
    line = render_progress(status, elapsed=3.25, width=10)
    assert line.startswith(expected)
    assert line.endswith("    3.2s") or line.endswith("    3.3s")


def test_the_progress_bar_redraws_one_line_and_ends_it():
    out = io.StringIO()
    bar = _ProgressBar(out)
    bar.update({"status": "running", "progress": 0.5, "attempts": 2})
    bar.update({"status": "completed", "progress": 1.0})
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    first, second = text.split("\r")[1:]
    assert len(second.rstrip("\n")) >= len(first)  # the longer first draw is blanked out


def test_a_bar_that_never_drew_writes_nothing():
    out = io.StringIO()
    _ProgressBar(out).close()
    assert out.getvalue() == ""


def test_the_jobs_table_aligns_columns_and_shows_blanks_for_missing_values():
    lines = format_jobs(
        [
            {
                "job_id": "a" * 36,
                "status": "completed",
                "progress": 1.0,
                "pipeline": "basic",
                "attempts": 1,
                "updated_at": "2025-01-01T00:00:00Z",
                "error_message": None,
            },
            {
                "job_id": "b" * 36,
                "status": "failed",
                "progress": 0.25,
                "pipeline": "scene",
                "attempts": 5,
                "updated_at": "2025-01-01T00:01:00Z",
                "error_message": "Unable to read video file",
            },
        ]
    )
    assert lines[0].split() == [
        "JOB_ID",
        "STATUS",
        "PROGRESS",
        "PIPELINE",
        "ATTEMPTS",
        "UPDATED",
        "ERROR",
    ]
    assert lines[1].split() == ["a" * 36, "completed", "100%", "basic", "1", "2025-01-01T00:00:00Z"]
    assert lines[2].endswith("Unable to read video file")
    column = lines[0].index("STATUS")
    assert lines[1][column:].startswith("completed") and lines[2][column:].startswith("failed")


def test_an_empty_jobs_table_is_just_the_header():
    assert len(format_jobs([])) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "x.mp4", "--stride", "0"],
        ["submit", "x.mp4", "--max-frames", "two"],
        ["jobs", "--status", "sleeping"],
        ["jobs", "--limit", "0"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_the_api_key_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv("VIDEOQ_API_KEY", "from-env")
    monkeypatch.setenv("VIDEOQ_URL", "http://example.invalid:1")
    args = _parser().parse_args(["status", "j"])
    assert (args.api_key, args.url) == ("from-env", "http://example.invalid:1")
    assert _parser().parse_args(["--api-key", "given", "status", "j"]).api_key == "given"


def test_submit_of_a_missing_file_exits_2_before_any_request(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--url", "http://127.0.0.1:9", "submit", str(tmp_path / "nope.mp4")])
    assert exited.value.code == 2
    assert "no such file" in capsys.readouterr().err


def test_an_unreachable_service_exits_4_with_a_message_and_no_traceback():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "--url",
            f"http://127.0.0.1:{port}",
            "status",
            str(uuid.uuid4()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4, done.stderr
    assert f"cannot reach the service at http://127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
