"""Run ``videoq-api`` or ``videoq-worker`` with each step of a job timed,
and optionally with a proposed optimisation patched in (a "what if").

    [BENCH_WHATIF=upload-overlap] python -m bench.trace api|worker OUT.json [service arguments...]

The service runs unchanged; the adapters' methods it calls (repository,
broker, store, pipeline) and the request/delivery around them are wrapped
with timers. At exit the process writes, per step, the count and the total,
mean and median wall-clock seconds to ``OUT.json``. ``python -m
bench.queue_overhead --trace DIR`` starts the services this way and prints
the steps per job.

The wrappers cost about a microsecond per call: the figures are the
service's own, not the tracer's.

``BENCH_WHATIF`` (comma-separated) patches the service at start-up, to
measure a proposed change before anyone makes it in the code:

- ``upload-overlap``: the store adapter's multipart upload sends part N in
  the background while the api receives part N+1 (one part in flight, one
  8 MiB buffer more), instead of not reading the request while a part uploads;
- ``stock-http``: uvicorn on the stock asyncio loop and h11, the way it ran
  before uvloop and httptools were dependencies (a what-if in reverse: it
  measures what they bring);
- ``inline-tiny``: the worker runs the pipeline on its event loop instead of
  handing each job to a thread (what the thread hand-off costs a tiny
  ``noop`` job; not safe for real jobs, which would block the loop).

Two earlier what-ifs landed in the code after they were measured here and
are gone from this list: ``async-deps`` (commit 5da7ab8) and
``keep-consuming`` (the worker keeps its consumer while busy).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import inspect
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_stats: dict[str, list[float]] = defaultdict(list)
_lock = threading.Lock()


def _record(label: str, seconds: float) -> None:
    with _lock:
        _stats[label].append(seconds)


def wrap(owner: Any, name: str, label: str) -> None:
    """Time every call of ``owner.name`` (a sync or async function) as ``label``."""
    original: Callable[..., Any] = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                _record(label, time.perf_counter() - started)

        setattr(owner, name, timed_async)
    else:

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _record(label, time.perf_counter() - started)

        setattr(owner, name, timed)


def _dump(out: Path) -> None:
    with _lock:
        data = {
            label: {
                "count": len(values),
                "total": sum(values),
                "mean": statistics.fmean(values),
                "median": statistics.median(values),
            }
            for label, values in _stats.items()
            if values
        }
    out.write_text(json.dumps(data, indent=2) + "\n")


def _common() -> None:
    import aio_pika.message
    import fastapi.dependencies.utils

    from shared.broker.amqp import AmqpBroker
    from shared.repository.postgres import PostgresJobRepository
    from shared.store import s3

    for name in ("create", "get", "mark_published", "claim", "complete", "heartbeat"):
        wrap(PostgresJobRepository, name, f"db.{name}")
    wrap(AmqpBroker, "publish_job", "broker.publish_job")
    wrap(AmqpBroker, "consume", "broker.consume (basic.qos + basic.consume)")
    wrap(AmqpBroker, "stop_consuming", "broker.stop_consuming (basic.cancel)")
    wrap(aio_pika.message.IncomingMessage, "ack", "broker.ack")
    wrap(s3.S3Store, "download_file", "s3.download_file (GET)")
    wrap(s3.S3Store, "upload_file", "s3.upload_file (PUT)")
    wrap(s3.S3Store, "delete", "s3.delete")
    wrap(s3._S3Upload, "complete", "s3.upload.complete (PUT)")
    wrap(s3._S3Upload, "write", "s3.upload.write")
    wrap(
        fastapi.dependencies.utils,
        "run_in_threadpool",
        "fastapi: sync dependency run in the threadpool",
    )


def _whatif_upload_overlap() -> None:
    import asyncio

    from shared.store import s3

    upload = s3._S3Upload
    complete, abort = upload.complete, upload.abort

    async def wait_pending(self: Any) -> None:
        pending = getattr(self, "_pending", None)
        if pending is not None:
            self._pending = None
            await pending  # its error, if any, is the upload's

    async def write(self: Any, chunk: bytes) -> None:
        self._buffer += chunk
        self._size += len(chunk)
        while len(self._buffer) >= s3.PART_SIZE:
            part = bytes(self._buffer[: s3.PART_SIZE])
            del self._buffer[: s3.PART_SIZE]
            await wait_pending(self)  # one part in flight at most, numbered in order
            self._pending = asyncio.ensure_future(self._upload_part(part))

    async def overlapped_complete(self: Any) -> int:
        try:
            await wait_pending(self)
        except BaseException:
            await abort(self)
            raise
        return await complete(self)

    async def overlapped_abort(self: Any) -> None:
        pending = getattr(self, "_pending", None)
        if pending is not None:
            self._pending = None
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await abort(self)

    upload.write = write  # type: ignore[method-assign]
    upload.complete = overlapped_complete  # type: ignore[method-assign]
    upload.abort = overlapped_abort  # type: ignore[method-assign]


def _whatif_stock_http() -> None:
    import uvicorn

    run = uvicorn.run

    def stock(*args: Any, **kwargs: Any) -> None:
        run(*args, **{**kwargs, "loop": "asyncio", "http": "h11"})

    uvicorn.run = stock


def _whatif_inline_tiny() -> None:
    """The worker runs the pipeline on its event loop instead of a thread (the
    "thread hand-off for tiny jobs" candidate; only safe for tiny jobs)."""
    import asyncio
    import types

    from services.worker import worker

    async def inline(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    shim = types.SimpleNamespace(
        **{k: getattr(asyncio, k) for k in dir(asyncio) if not k.startswith("__")}
    )
    shim.to_thread = inline
    setattr(worker, "asyncio", shim)  # noqa: B010 - only the worker module sees the shim


WHATIFS = {
    "inline-tiny": _whatif_inline_tiny,
    "upload-overlap": _whatif_upload_overlap,
    "stock-http": _whatif_stock_http,
}


def _api() -> None:
    import importlib

    import services.api.main as main

    # Where the submit code calls it: submission.py, or routes.py in a
    # --baseline revision from before the submit use case had its module.
    try:
        caller = importlib.import_module("services.api.submission")
    except ModuleNotFoundError:
        caller = importlib.import_module("services.api.routes")
    wrap(caller, "receive_upload", "api: receive_upload (parse + S3 upload)")
    # The name ``services.api.main`` calls, in its own namespace.
    create_app = vars(main)["create_app"]

    def traced_create_app(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            path = scope["path"]
            route = path if path.count("/") < 3 else "/".join(path.split("/")[:3])
            started = time.perf_counter()
            try:
                await app(scope, receive, send)
            finally:
                _record(
                    f"api: {scope['method']} {route} (whole request)", time.perf_counter() - started
                )

        return asgi

    vars(main)["create_app"] = traced_create_app


def _worker() -> None:
    from services.worker import worker
    from shared.pipeline import service

    wrap(worker.Worker, "_handle", "worker: _handle (one delivery, whole)")
    wrap(worker.Worker, "_run", "worker: _run (claimed job, whole)")
    wrap(worker.Worker, "_process", "worker: _process (download + analyze + upload)")
    wrap(worker.Worker, "_pause", "worker: _pause")
    wrap(worker.Worker, "_resume", "worker: _resume")
    wrap(service.VideoFilePipelineService, "analyze", "pipeline: analyze (in a thread)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.trace",
        description="Run videoq-api or videoq-worker with each step of a job timed"
        " (and BENCH_WHATIF's patches applied).",
    )
    parser.add_argument("service", choices=("api", "worker"))
    parser.add_argument("out", type=Path, help="the step timings, written at exit (JSON)")
    parser.add_argument(
        "service_args", nargs=argparse.REMAINDER, help="the service's own arguments"
    )
    args = parser.parse_args(argv)
    service, out = args.service, args.out
    sys.argv = [f"videoq-{service}", *args.service_args]
    for name in filter(None, os.environ.get("BENCH_WHATIF", "").split(",")):
        WHATIFS[name]()
    _common()
    atexit.register(_dump, out)
    if service == "api":
        # uvicorn re-raises SIGTERM once it has shut down (after restoring
        # the handler it found): this handler writes the figures then.
        signal.signal(signal.SIGTERM, lambda *_: _dump(out))
        _api()
        from services.api.main import main as run_api

        run_api()
    elif service == "worker":
        _worker()
        from services.worker.main import main as run_worker

        run_worker()


if __name__ == "__main__":
    main()
