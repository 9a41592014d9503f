"""``videoq``: the user's and operator's command line.

Talks to the HTTP API (``--url`` or ``VIDEOQ_URL``, default
http://127.0.0.1:8000) for jobs; ``migrate`` and ``dlq`` talk to PostgreSQL
and RabbitMQ with the service settings. Exit codes: 0 done (job completed),
1 job failed, 2 usage, 3 timed out, 4 service error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_ERROR = 0, 1, 2, 3, 4


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


def _cmd_submit(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"videoq: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    with _client(args) as client:
        job_id = client.submit(
            path, pipeline=args.pipeline, frame_stride=args.stride, max_frames=args.max_frames
        )
        if not args.wait:
            print(job_id)
            return EXIT_OK
        print(f"job {job_id} submitted", file=sys.stderr)
        status = client.wait(job_id, timeout=args.timeout)
        if status["status"] != "completed":
            print(f"job {job_id} failed: {status.get('error_message')}", file=sys.stderr)
            return EXIT_FAILED
        print(json.dumps(client.results(job_id)))
        return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.status(args.job)
    print(json.dumps(status, indent=2))
    return EXIT_FAILED if status["status"] == "failed" else EXIT_OK


def _cmd_results(args: argparse.Namespace) -> int:
    with _client(args) as client:
        results = client.results(args.job)
    text = json.dumps(results)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoq", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("VIDEOQ_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("VIDEOQ_API_KEY"))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dev", help="run api, worker and janitor in one process (embedded backends)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data", default="var/dev", help="folder for the embedded database and files")
    p.set_defaults(func=_cmd_dev)

    p = sub.add_parser(
        "demo", help="start the embedded service, submit a sample MP4, print its results"
    )
    p.add_argument("--data", default="var/demo")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("submit", help="upload an MP4 and start a job")
    p.add_argument("file")
    p.add_argument("--pipeline")
    p.add_argument("--stride", type=int)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--wait", action="store_true", help="wait and print the results")
    p.add_argument("--timeout", type=float, default=600)
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser("status", help="show a job's status")
    p.add_argument("job")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("results", help="print a completed job's results")
    p.add_argument("job")
    p.add_argument("-o", "--output")
    p.set_defaults(func=_cmd_results)

    p = sub.add_parser("migrate", help="apply database migrations and exit")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("dlq", help="inspect and replay the dead-letter queue")
    dlq = p.add_subparsers(dest="dlq_command", required=True)
    q = dlq.add_parser("list", help="show parked messages and why")
    q.add_argument("--limit", type=int, default=100)
    q = dlq.add_parser("replay", help="failed -> pending and publish again")
    q.add_argument("job", nargs="?", help="one job id (default: every parked message)")
    q.add_argument("--limit", type=int, default=1000)
    dlq.add_parser("purge", help="drop every parked message")
    p.set_defaults(func=_cmd_dlq)
    return parser


def main(argv: list[str] | None = None) -> None:
    from services.cli.client import ApiError

    args = _parser().parse_args(argv)
    try:
        code = args.func(args)
    except ApiError as exc:
        print(f"videoq: {exc.detail} (HTTP {exc.status})", file=sys.stderr)
        code = EXIT_ERROR
    except TimeoutError as exc:
        print(f"videoq: {exc}", file=sys.stderr)
        code = EXIT_TIMEOUT
    except KeyboardInterrupt:
        code = EXIT_ERROR
    except OSError as exc:
        print(f"videoq: cannot reach the service: {exc}", file=sys.stderr)
        code = EXIT_ERROR
    sys.exit(code)


if __name__ == "__main__":
    main()
