"""``videoq``: the user's and operator's command line.

Talks to the HTTP API (``--url`` or ``VIDEOQ_URL``, default
http://127.0.0.1:8000, with ``--api-key`` or ``VIDEOQ_API_KEY`` sent as
``Authorization: Bearer``) for jobs; ``migrate`` and ``dlq`` talk to
PostgreSQL and RabbitMQ with the service settings. The exit codes are part of
the interface (see ``EXIT_CODES``): scripts may rely on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shared.pipeline.sampling import SAMPLING_MODES

__all__ = ["EXIT_CODES", "exit_code_for_http", "format_jobs", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_ERROR = 4
EXIT_NOT_FOUND = 5
EXIT_DENIED = 6
EXIT_INTERRUPTED = 130

#: Every exit code and what it means (printed by ``videoq --help``).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done (submit --wait: the job completed; status: it has not failed)",
    EXIT_FAILED: "the job failed (its error message is on stderr)",
    EXIT_USAGE: "bad arguments, or the api refused the input (400, 413, 415, 422)",
    EXIT_TIMEOUT: "--wait gave up before the job finished (the job goes on)",
    EXIT_ERROR: "the service is unreachable or failing (5xx, 503, 429): try again later",
    EXIT_NOT_FOUND: "no such job, or its results are not ready yet (404)",
    EXIT_DENIED: "missing or wrong API key (401, 403)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

_STATUSES = ("pending", "running", "completed", "failed")


def exit_code_for_http(status: int) -> int:
    """The exit code for an error answer of the API with HTTP ``status``."""
    if status in (401, 403):
        return EXIT_DENIED
    if status == 404:
        return EXIT_NOT_FOUND
    if status in (408, 429) or status >= 500:
        return EXIT_ERROR
    return EXIT_USAGE


_COLUMNS = (
    ("JOB_ID", "job_id"),
    ("STATUS", "status"),
    ("PROGRESS", "progress"),
    ("PIPELINE", "pipeline"),
    ("ATTEMPTS", "attempts"),
    ("UPDATED", "updated_at"),
    ("ERROR", "error_message"),
)


def _cell(job: Mapping[str, Any], key: str) -> str:
    value = job.get(key)
    if value is None:
        return ""
    if key == "progress":
        try:
            return f"{float(value) * 100:.0f}%"
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def format_jobs(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Status objects as the lines of an aligned table, a header first."""
    rows = [[title for title, _ in _COLUMNS]]
    rows += [[_cell(job, key) for _, key in _COLUMNS] for job in jobs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _print_summary(job_id: str, status: dict[str, Any], results: dict[str, Any] | None) -> None:
    print(f"job {job_id}: {status['status']}")
    if status.get("error_message"):
        print(f"  error: {status['error_message']}")
    if results is None:
        return
    video = results.get("video", {})
    frames = results.get("results", [])
    print(
        f"  video: {video.get('width')}x{video.get('height')} {video.get('codec')},"
        f" {video.get('duration_s')} s at {video.get('fps')} fps"
    )
    print(f"  pipeline: {results.get('pipeline')}, {len(frames)} frames analysed")
    for entry in frames[:3]:
        print(
            f"    frame {entry['frame_index']} @ {entry['timestamp_s']} s: {json.dumps(entry['result'])}"
        )
    if len(frames) > 3:
        last = frames[-1]
        print(
            f"    ... frame {last['frame_index']} @ {last['timestamp_s']} s: {json.dumps(last['result'])}"
        )


def _cmd_dev(args: argparse.Namespace) -> int:
    from services.cli.embedded import embedded_stack
    from shared.logs import configure_logging
    from shared.runtime import wait_for_signal

    configure_logging(service="dev", fmt="text")

    async def run() -> None:
        async with embedded_stack(data_dir=Path(args.data), port=args.port) as url:
            print(
                f"videoq dev: serving on {url} (embedded PostgreSQL, folder store, in-process broker)"
            )
            print("videoq dev: authentication is off in dev mode. Ctrl-C to stop.")
            await wait_for_signal()

    asyncio.run(run())
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from services.cli.client import Client
    from services.cli.embedded import embedded_stack
    from services.cli.sample import make_sample_mp4
    from shared.logs import configure_logging

    configure_logging(service="dev", fmt="text", level="WARNING")

    async def run() -> int:
        async with embedded_stack(data_dir=Path(args.data), port=_free_port()) as url:
            print(f"demo: embedded videoq running at {url}")
            with tempfile.TemporaryDirectory() as tmp:
                sample = make_sample_mp4(Path(tmp) / "sample.mp4")
                print(f"demo: made {sample.name} ({sample.stat().st_size} bytes); submitting")

                def talk() -> int:
                    with Client(url) as client:
                        job_id = client.submit(sample, frame_stride=3)
                        print(f"demo: job {job_id} accepted; waiting")
                        status = client.wait(job_id, timeout=120)
                        results = (
                            client.results(job_id) if status["status"] == "completed" else None
                        )
                        _print_summary(job_id, status, results)
                        return EXIT_OK if results else EXIT_FAILED

                return await asyncio.to_thread(talk)

    return asyncio.run(run())


def _client(args: argparse.Namespace) -> Any:
    from services.cli.client import Client

    return Client(args.url, api_key=args.api_key)


def _write_results(client: Any, job_id: str, output: str | None) -> None:
    """The results document to ``output`` (streamed; "-" or None: stdout)."""
    if output and output != "-":
        size = client.download_results(job_id, Path(output))
        print(f"results of job {job_id} written to {output} ({size} bytes)", file=sys.stderr)
    else:
        print(json.dumps(client.results(job_id)))


def _cmd_submit(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"videoq: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    from services.cli.progress import JobProgress, upload_progress

    show = sys.stderr.isatty() if args.progress is None else args.progress
    with _client(args) as client:
        with upload_progress(path.stat().st_size, stream=sys.stderr, show=show) as upload:
            job_id = client.submit(
                path,
                pipeline=args.pipeline,
                frame_stride=args.stride,
                max_frames=args.max_frames,
                sampling=args.sampling,
                callback_url=args.callback_url,
                on_upload=upload.update,
                **(
                    {}
                    if args.direct_upload_above is None
                    else {"direct_above": args.direct_upload_above}
                ),
            )
        if not args.wait:
            print(job_id)
            return EXIT_OK
        print(f"job {job_id} submitted", file=sys.stderr)
        bar = JobProgress(sys.stderr) if show else None
        try:
            status = client.wait(
                job_id, timeout=args.timeout, on_status=bar.update if bar else None
            )
        finally:
            if bar is not None:
                bar.close()
        if status["status"] != "completed":
            print(
                f"videoq: job {job_id} {status['status']}: {status.get('error_message')}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        _write_results(client, job_id, args.output)
        return EXIT_OK


def _cmd_deliveries(args: argparse.Namespace) -> int:
    with _client(args) as client:
        deliveries = client.deliveries(args.job)
    print(json.dumps({"deliveries": deliveries}, indent=2))
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.status(args.job)
    print(json.dumps(status, indent=2))
    return EXIT_FAILED if status["status"] == "failed" else EXIT_OK


def _cmd_results(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _write_results(client, args.job, args.output)
    return EXIT_OK


def _cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        jobs = client.iter_jobs(status=args.status, limit=args.limit)
        if args.json:
            for job in jobs:
                print(json.dumps(job))
        else:
            for line in format_jobs(list(jobs)):
                print(line)
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.cancel(args.job, erase=args.erase)
    print(json.dumps(status, indent=2))
    return EXIT_OK


def _cmd_hash_key(args: argparse.Namespace) -> int:
    from services.api.auth import hash_key

    # "-" reads the key from stdin, keeping it out of shell history and `ps`.
    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    digest = hash_key(key)
    print(f"{args.client}:{digest}" if args.client else digest)
    return EXIT_OK


def _cmd_migrate(args: argparse.Namespace) -> int:
    from shared.repository import connect_repository
    from shared.settings import Settings

    async def run() -> None:
        repo = await connect_repository(Settings().database_url.get_secret_value(), migrate=True)
        await repo.close()

    asyncio.run(run())
    print("migrations applied")
    return EXIT_OK


def _cmd_dlq(args: argparse.Namespace) -> int:
    from services.cli.dlq import run_dlq

    return asyncio.run(run_dlq(args))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _epilog() -> str:
    codes = "\n".join(f"  {code:<4}{meaning}" for code, meaning in EXIT_CODES.items())
    return (
        f"exit codes:\n{codes}\n\n"
        "examples:\n"
        "  videoq submit clip.mp4 --stride 5 --wait > results.json\n"
        "  videoq submit clip.mp4 --stride 30 --sampling fast --wait  # ~1 frame/s, fast\n"
        "  videoq jobs --status failed --limit 20\n"
        "  videoq results <job_id> -o results.json"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videoq",
        description="videoq: submit videos for analysis, follow jobs, fetch results,"
        " and operate the queues.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("VIDEOQ_URL", "http://127.0.0.1:8000"),
        help="the api's base URL (env VIDEOQ_URL; default %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("VIDEOQ_API_KEY"),
        help="sent as 'Authorization: Bearer <key>' (env VIDEOQ_API_KEY)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("dev", help="run api, worker and janitor in one process (embedded backends)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data", default="var/dev", help="folder for the embedded database and files")
    p.set_defaults(func=_cmd_dev)

    p = sub.add_parser(
        "demo", help="start the embedded service, submit a sample MP4, print its results"
    )
    p.add_argument("--data", default="var/demo")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "submit",
        help="upload an MP4 and start a job (prints its id, or with --wait its results)",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file")
    p.add_argument("--pipeline", help="analysis pipeline (default: the service's)")
    p.add_argument("--stride", type=_positive_int, help="analyse every Nth frame")
    p.add_argument("--max-frames", type=_positive_int, help="analyse at most N frames")
    p.add_argument(
        "--sampling",
        choices=SAMPLING_MODES,
        help="exact (default): every Nth frame; fast/keyframes: frames near them that"
        " decode cheaply",
    )
    p.add_argument(
        "--callback-url",
        metavar="URL",
        help="POST a signed webhook here when the job completes or fails (docs/webhooks.md)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for the job; print its results (exit 0) or its error (exit 1)",
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds --wait waits (then exit 3)")
    p.add_argument("-o", "--output", help="with --wait: write the results to this file")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr for the upload and the --wait"
        " (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--direct-upload-above",
        type=int,
        metavar="BYTES",
        help="send files of at least this size straight to the store in parts"
        " (resumable; docs/uploads.md), not through the api; 0: never"
        " (default: 64 MiB)",
    )
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser("status", help="show a job's status (exit 1 if it failed)")
    p.add_argument("job")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("deliveries", help="show a job's webhook delivery attempts")
    p.add_argument("job")
    p.set_defaults(func=_cmd_deliveries)

    p = sub.add_parser("results", help="print a completed job's results (exit 5 if not ready)")
    p.add_argument("job")
    p.add_argument("-o", "--output", help="write them to this file instead (streamed)")
    p.set_defaults(func=_cmd_results)

    p = sub.add_parser("jobs", help="list your jobs, newest first")
    p.add_argument("--status", choices=_STATUSES, help="only jobs in this status")
    p.add_argument(
        "--limit", type=_positive_int, default=50, help="at most N jobs (default %(default)s)"
    )
    p.add_argument("--json", action="store_true", help="one JSON status object per line")
    p.set_defaults(func=_cmd_jobs)

    p = sub.add_parser("cancel", help="cancel a job (a running one stops at its next heartbeat)")
    p.add_argument("job")
    p.add_argument(
        "--erase",
        action="store_true",
        help="erase it: input, results and rows (a running one once it stops)",
    )
    p.set_defaults(func=_cmd_cancel)

    p = sub.add_parser(
        "hash-key", help="print the hash of an API key, for VIDEOQ_API_KEYS (client_id:hash)"
    )
    p.add_argument("key", help="the key, or - to read it from stdin")
    p.add_argument("--client", help="prefix the client id: prints client:hash")
    p.set_defaults(func=_cmd_hash_key)

    p = sub.add_parser("migrate", help="apply database migrations and exit")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("dlq", help="inspect and replay the dead-letter queue")
    dlq = p.add_subparsers(dest="dlq_command", required=True)
    lot = argparse.ArgumentParser(add_help=False)
    lot.add_argument(
        "--webhooks",
        action="store_true",
        help="the parked webhook deliveries (videoq.dead.webhooks) instead of the jobs",
    )
    q = dlq.add_parser("list", help="show parked messages and why", parents=[lot])
    q.add_argument("--limit", type=int, default=100)
    q = dlq.add_parser(
        "replay",
        help="failed -> pending and publish again (--webhooks: deliver again)",
        parents=[lot],
    )
    q.add_argument("job", nargs="?", help="one job id (default: every parked message)")
    q.add_argument("--limit", type=int, default=1000)
    dlq.add_parser("purge", help="drop every parked message", parents=[lot])
    p.set_defaults(func=_cmd_dlq)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exits with one of ``EXIT_CODES``."""
    import httpx

    from services.cli.client import ApiError
    from shared.errors import VideoqError

    args = _parser().parse_args(argv)
    try:
        code = args.func(args)
    except ApiError as exc:
        code = exit_code_for_http(exc.status)
        hint = " (set --api-key or VIDEOQ_API_KEY)" if code == EXIT_DENIED else ""
        print(f"videoq: {exc.detail} (HTTP {exc.status}){hint}", file=sys.stderr)
    except TimeoutError as exc:
        print(f"videoq: {exc}", file=sys.stderr)
        code = EXIT_TIMEOUT
    except KeyboardInterrupt:
        print(file=sys.stderr)
        code = EXIT_INTERRUPTED
    except httpx.TransportError as exc:
        print(f"videoq: cannot reach the service at {args.url}: {exc}", file=sys.stderr)
        code = EXIT_ERROR
    except VideoqError as exc:
        print(f"videoq: {exc}", file=sys.stderr)
        code = EXIT_ERROR
    except OSError as exc:
        print(f"videoq: {exc}", file=sys.stderr)
        code = EXIT_ERROR
    sys.exit(code)


if __name__ == "__main__":
    main()
