"""The smoke test: one small job through a deployed service, end to end.

``python -m services.cli.smoke BASE_URL [--api-key KEY] [--timeout S]``
(the ``videoq-smoke`` console script) waits until ``/readyz`` answers, makes a
small MP4 on the spot (2 s at 10 fps, 20 frames), submits it with
``frame_stride=5``, polls its status until it ends, and checks the results:
``job_id``, and one ``{frame_index, timestamp_s, result}`` entry per sampled
frame (0, 5, 10, 15 at 0.0, 0.5, 1.0, 1.5 s). It prints each check as it
passes and exits 0, or prints the reason and exits non-zero:

- 1: a check failed (refused submit, failed job, wrong shape, ...);
- 2: usage;
- 3: timed out (not ready, or the job did not finish, within ``--timeout``);
- 4: the service could not be reached at all.

The API key comes from ``--api-key`` or ``VIDEOQ_API_KEY`` (as for ``videoq``).
It leaves one small completed job behind, like any client would.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["SmokeFailure", "main", "run_smoke"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_UNREACHABLE = 0, 1, 2, 3, 4

#: The sample video and how it is sampled.
SECONDS, FPS, SIZE, STRIDE = 2.0, 10, (160, 90), 5
_POLL_SECONDS = 0.5
_STATUSES = {"pending", "running", "completed", "failed"}


class SmokeFailure(Exception):
    """Why the smoke test failed, and the exit code that says so."""

    def __init__(self, reason: str, *, code: int = EXIT_FAILED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Expected:
    """What the results of the sample must hold."""

    frame_indexes: tuple[int, ...]
    fps: int

    @classmethod
    def for_sample(cls) -> Expected:
        frames = int(SECONDS * FPS)
        return cls(tuple(range(0, frames, STRIDE)), FPS)

    def timestamp(self, frame_index: int) -> float:
        return frame_index / self.fps


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]


def check_submitted(response: httpx.Response) -> str:
    """The job id of an accepted submit (202, ``{"job_id"}``, ``Location``)."""
    if response.status_code in (401, 403):
        raise SmokeFailure(
            f"submit refused: HTTP {response.status_code} {_detail(response)}"
            " (pass the API key with --api-key or VIDEOQ_API_KEY)"
        )
    if response.status_code != 202:
        raise SmokeFailure(
            f"submit answered HTTP {response.status_code}, not 202: {_detail(response)}"
        )
    body = response.json()
    job_id = body.get("job_id") if isinstance(body, dict) else None
    try:
        canonical = str(uuid.UUID(str(job_id)))
    except ValueError:
        raise SmokeFailure(f"submit answered no job_id UUID: {body!r}") from None
    if canonical != job_id:
        raise SmokeFailure(f"job_id {job_id!r} is not a canonical UUID")
    location = response.headers.get("location", "")
    if not location.endswith(f"/video/status/{job_id}"):
        raise SmokeFailure(f"Location {location!r} does not point at the job's status")
    return canonical


def check_status(body: Any, job_id: str) -> str:
    """The status of a well-formed status document."""
    if not isinstance(body, dict):
        raise SmokeFailure(f"status is not a JSON object: {body!r}")
    if body.get("job_id") != job_id:
        raise SmokeFailure(f"status names job {body.get('job_id')!r}, not {job_id}")
    status = body.get("status")
    if status not in _STATUSES:
        raise SmokeFailure(f"status {status!r} is none of {sorted(_STATUSES)}")
    progress = body.get("progress")
    if not isinstance(progress, int | float) or not 0 <= progress <= 1:
        raise SmokeFailure(f"progress {progress!r} is not a number from 0 to 1")
    return str(status)


def check_results(body: Any, job_id: str, expected: Expected) -> int:
    """The number of entries of a results document of the sample."""
    if not isinstance(body, dict):
        raise SmokeFailure(f"results are not a JSON object: {str(body)[:200]}")
    if body.get("job_id") != job_id:
        raise SmokeFailure(f"results name job {body.get('job_id')!r}, not {job_id}")
    results = body.get("results")
    if not isinstance(results, list):
        raise SmokeFailure(f"`results` is {type(results).__name__}, not a list")
    if len(results) != len(expected.frame_indexes):
        raise SmokeFailure(
            f"{len(results)} results, expected {len(expected.frame_indexes)}"
            f" (one per sampled frame: {list(expected.frame_indexes)})"
        )
    for number, (entry, index) in enumerate(zip(results, expected.frame_indexes, strict=True)):
        if not isinstance(entry, dict):
            raise SmokeFailure(f"results[{number}] is not an object: {entry!r}")
        missing = {"frame_index", "timestamp_s", "result"} - set(entry)
        if missing:
            raise SmokeFailure(f"results[{number}] lacks {sorted(missing)}: {entry!r}")
        if entry["frame_index"] != index:
            raise SmokeFailure(
                f"results[{number}].frame_index is {entry['frame_index']!r}, expected {index}"
            )
        timestamp = entry["timestamp_s"]
        if not isinstance(timestamp, int | float) or not math.isclose(
            timestamp, expected.timestamp(index), abs_tol=1e-3
        ):
            raise SmokeFailure(
                f"results[{number}].timestamp_s is {timestamp!r},"
                f" expected {expected.timestamp(index):g}"
            )
        if not isinstance(entry["result"], dict):
            raise SmokeFailure(f"results[{number}].result is not an object: {entry['result']!r}")
    return len(results)


class _Run:
    def __init__(self, client: httpx.Client, *, timeout: float, say: Callable[[str], None]):
        self._client = client
        self._deadline = time.monotonic() + timeout
        self._timeout = timeout
        self._say = say

    def _left(self) -> float:
        return max(0.1, self._deadline - time.monotonic())

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, timeout=min(30.0, self._left()), **kwargs)
        except httpx.TimeoutException as exc:
            raise SmokeFailure(
                f"{method} {path} timed out: {type(exc).__name__}", code=EXIT_TIMEOUT
            ) from None
        except httpx.HTTPError as exc:
            raise SmokeFailure(
                f"cannot reach {self._client.base_url}{path}: {type(exc).__name__}: {exc}",
                code=EXIT_UNREACHABLE,
            ) from None

    def ready(self) -> None:
        last: str | None = None
        reached = False
        while True:
            try:
                response = self._request("GET", "/readyz")
            except SmokeFailure as failure:
                last = failure.reason
            else:
                reached = True
                if response.status_code == 200:
                    checks = response.json().get("checks", {})
                    listed = ", ".join(f"{k} {v}" for k, v in sorted(checks.items()))
                    self._say(f"ready: /readyz 200 ({listed or 'no checks listed'})")
                    return
                last = f"/readyz answered {response.status_code}: {_detail(response)}"
            if time.monotonic() + 1 > self._deadline:
                code = EXIT_TIMEOUT if reached else EXIT_UNREACHABLE
                raise SmokeFailure(f"not ready after {self._timeout:g} s: {last}", code=code)
            time.sleep(1)

    def submit(self, video: Path, pipeline: str | None) -> str:
        data = {"frame_stride": str(STRIDE)}
        if pipeline:
            data["pipeline"] = pipeline
        with video.open("rb") as handle:
            response = self._request(
                "POST",
                "/video/submit",
                files={"file": ("videoq-smoke.mp4", handle, "video/mp4")},
                data=data,
            )
        job_id = check_submitted(response)
        self._say(f"submitted: 202, job {job_id}, Location {response.headers['location']}")
        return job_id

    def wait(self, job_id: str) -> None:
        seen: list[str] = []
        while True:
            response = self._request("GET", f"/video/status/{job_id}")
            if response.status_code != 200:
                raise SmokeFailure(
                    f"status answered HTTP {response.status_code}: {_detail(response)}"
                )
            body = response.json()
            status = check_status(body, job_id)
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == "failed":
                raise SmokeFailure(f"the job failed: {body.get('error_message')!r}")
            if status == "completed":
                if body.get("progress") != 1:
                    raise SmokeFailure(f"completed with progress {body.get('progress')!r}, not 1")
                self._say(f"status: {' -> '.join(seen)}, progress 1.0")
                return
            if time.monotonic() + _POLL_SECONDS > self._deadline:
                raise SmokeFailure(
                    f"job {job_id} still {status} after {self._timeout:g} s", code=EXIT_TIMEOUT
                )
            time.sleep(_POLL_SECONDS)

    def results(self, job_id: str, expected: Expected) -> None:
        response = self._request("GET", f"/video/results/{job_id}")
        if response.status_code != 200:
            raise SmokeFailure(f"results answered HTTP {response.status_code}: {_detail(response)}")
        count = check_results(response.json(), job_id, expected)
        indexes = ", ".join(str(i) for i in expected.frame_indexes)
        self._say(
            f"results: job_id matches, {count} entries {{frame_index, timestamp_s, result}},"
            f" one per sampled frame ({indexes})"
        )


def run_smoke(
    base_url: str,
    *,
    api_key: str | None = None,
    timeout: float = 300.0,
    pipeline: str | None = None,
    say: Callable[[str], None] = print,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Run every check against ``base_url``.

    Raises:
        SmokeFailure: a check failed; its ``code`` is the exit code.
    """
    from services.cli.sample import make_sample_mp4

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with (
        httpx.Client(base_url=base_url.rstrip("/"), headers=headers, transport=transport) as client,
        tempfile.TemporaryDirectory(prefix="videoq-smoke-") as tmp,
    ):
        run = _Run(client, timeout=timeout, say=say)
        run.ready()
        video = make_sample_mp4(Path(tmp) / "smoke.mp4", seconds=SECONDS, fps=FPS, size=SIZE)
        expected = Expected.for_sample()
        say(
            f"sample: {SIZE[0]}x{SIZE[1]} H.264, {SECONDS:g} s at {FPS} fps"
            f" ({int(SECONDS * FPS)} frames), frame_stride {STRIDE}"
        )
        job_id = run.submit(video, pipeline)
        run.wait(job_id)
        run.results(job_id, expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="videoq-smoke",
        description="Submit a small MP4 to a videoq service, wait, and check its results.",
    )
    parser.add_argument("base_url", help="the API's base URL, e.g. http://videoq-api")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("VIDEOQ_API_KEY"),
        help="API key (default: VIDEOQ_API_KEY)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds for the whole test, waiting for readiness included (default 300)",
    )
    parser.add_argument("--pipeline", help="pipeline to run (default: the service's default)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"smoke: ok  {line}", flush=True)

    try:
        run_smoke(
            args.base_url,
            api_key=args.api_key,
            timeout=args.timeout,
            pipeline=args.pipeline,
            say=say,
        )
    except SmokeFailure as failure:
        print(f"smoke: FAILED: {failure.reason}", file=sys.stderr, flush=True)
        return failure.code
    print(f"smoke: passed against {args.base_url} in {time.monotonic() - started:.1f} s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
