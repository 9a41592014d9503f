import http.server
import io
import json
import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from services.cli.main import EXIT_CODES, _parser, exit_code_for_http, format_jobs, main
from services.cli.progress import JobProgress, job_state, upload_progress

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
        ({"status": "pending", "progress": 0.0}, "  0% pending"),
        ({"status": "running", "progress": 0.42}, " 42% running"),
        ({"status": "running", "progress": 0.5, "attempts": 2}, " 50% running attempt 2"),
        ({"status": "completed", "progress": 0.9}, "100% completed"),
        ({"status": "running", "progress": 7}, "100% running"),
        ({"status": "running", "progress": None}, "  0% running"),
        ({"status": "failed", "progress": "x"}, "  0% failed"),
    ],
)
def test_the_progress_line_shows_the_bar_the_percentage_and_the_state(status, expected):
    fraction, text = job_state(status)
    assert f"{fraction * 100:3.0f}% {text}" == expected
    out = io.StringIO()
    bar = JobProgress(out)
    bar.update(status)
    bar.close()
    line = out.getvalue().split("\r")[-1]
    assert f" {expected} " in line
    assert line.endswith(" 00:00\n")  # the time since the first status


def test_the_progress_bar_redraws_one_line_and_ends_it():
    out = io.StringIO()
    bar = JobProgress(out)
    bar.update({"status": "running", "progress": 0.5, "attempts": 2})
    bar.update({"status": "completed", "progress": 1.0})
    bar.close()
    text = out.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    first, second, *_ = text.split("\r")[1:]
    assert "50% running attempt 2" in first and "100% completed" in text.split("\r")[-1]
    assert len(second) >= len(first)  # the longer first draw is blanked out


def test_a_bar_that_never_drew_writes_nothing():
    out = io.StringIO()
    JobProgress(out).close()
    assert out.getvalue() == ""


def test_the_bars_draw_on_a_terminal_that_reports_no_size(monkeypatch):
    leader, follower = pty.openpty()  # a fresh pseudo-terminal: 0x0
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            monkeypatch.setattr(sys, "stderr", terminal)  # tqdm sizes only stderr and stdout
            with upload_progress(2048, stream=terminal, show=True) as upload:
                upload.update(2048)
            bar = JobProgress(terminal)
            bar.update({"status": "completed", "progress": 1.0})
            bar.close()
        drawn = _read_until(leader, "upload: 100%", "100% completed")
    finally:
        os.close(leader)
        os.close(follower)
    assert "upload: 100%" in drawn and "100% completed" in drawn


def _read_until(leader: int, *expected: str, within_s: float = 10.0) -> str:
    """What the pseudo-terminal's other end has received, read until it holds
    every ``expected`` text (or ``within_s`` passes).

    One ``read`` is not enough: the kernel hands a pty's output to the reading
    side from a work queue, so on a loaded machine a read can return only the
    first of the writes (the upload bar) while the rest is still on its way.
    """
    received = b""
    deadline = time.monotonic() + within_s
    while not all(text.encode() in received for text in expected):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([leader], [], [], left)[0]:
            break
        received += os.read(leader, 65536)
    return received.decode(errors="replace")


def test_the_upload_bar_shows_bytes_and_rate_and_ends_its_line():
    out = io.StringIO()
    with upload_progress(5 * 1024 * 1024, stream=out, show=True) as bar:
        for _ in range(5):
            bar.update(1024 * 1024)
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("upload: 100%") and last.endswith("\n")
    assert "5.00M/5.00M" in last and "B/s" in last


def test_a_hidden_upload_bar_writes_nothing():
    out = io.StringIO()
    with upload_progress(1024, stream=out, show=False) as bar:
        bar.update(1024)
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


class _Api(http.server.BaseHTTPRequestHandler):
    """Just enough of the HTTP API for ``submit --wait``: the job runs for one poll."""

    job_id = str(uuid.uuid4())
    results = {"job_id": job_id, "pipeline": "basic", "results": []}
    uploads: list[tuple[str | None, bytes]] = []
    polls = 0

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = self.headers["Content-Length"]
        self.uploads.append((length, self.rfile.read(int(length or 0))))
        self._answer(202, {"job_id": self.job_id})

    def do_GET(self) -> None:
        if self.path.startswith("/video/status/"):
            type(self).polls += 1
            state = "running" if self.polls == 1 else "completed"
            self._answer(200, {"job_id": self.job_id, "status": state, "progress": 0.5})
        else:
            self._answer(200, self.results)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _Api.uploads, _Api.polls = [], 0
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: several chunks of the upload
    return path


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    return capsys.readouterr()


def test_off_a_terminal_submit_prints_what_it_always_did_and_no_progress(api, clip, capsys):
    out = _run(["--url", api, "submit", str(clip), "--wait"], capsys)
    assert out.out == json.dumps(_Api.results) + "\n"
    assert out.err == f"job {_Api.job_id} submitted\n"
    out = _run(["--url", api, "submit", str(clip)], capsys)
    assert (out.out, out.err) == (_Api.job_id + "\n", "")
    # streamed with its length, whole
    length, body = _Api.uploads[0]
    assert length == str(len(body)) and clip.read_bytes() in body


def test_with_progress_the_upload_and_the_job_are_drawn_on_stderr_only(api, clip, capsys):
    out = _run(["--url", api, "submit", str(clip), "--wait", "--progress"], capsys)
    assert out.out == json.dumps(_Api.results) + "\n"
    upload, job = out.err.split(f"job {_Api.job_id} submitted\n")
    assert upload.startswith("\rupload:   0%") and upload.endswith("\n")
    assert "upload: 100%" in upload and "1.00M/1.00M" in upload and "B/s" in upload
    assert " 50% running" in job and job.split("\r")[-1].count("100% completed") == 1
    length, body = _Api.uploads[0]  # the bar changes nothing of the request
    assert length == str(len(body)) and clip.read_bytes() in body
