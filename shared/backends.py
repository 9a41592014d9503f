"""Open the real adapters named by the settings (the services' wiring)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from shared.broker import AmqpBroker, Broker
from shared.errors import DependencyUnavailable
from shared.repository import JanitorRepository, connect_repository
from shared.settings import Settings
from shared.store import FileStore, ObjectStore, S3Store

__all__ = ["Backends", "open_backends", "open_store", "until_available"]

log = logging.getLogger("videoq.backends")
T = TypeVar("T")


@dataclass
class Backends:
    repo: JanitorRepository
    broker: Broker
    store: ObjectStore

    async def close(self) -> None:
        await self.broker.close()
        await self.store.close()
        await self.repo.close()

    async def check(self) -> dict[str, str]:
        """Readiness of each dependency: ``"ok"`` or why not (no secrets)."""
        results: dict[str, str] = {}
        for name, ping in (
            ("database", self.repo.ping),
            ("broker", self.broker.ping),
            ("store", self.store.ping),
        ):
            try:
                await asyncio.wait_for(ping(), 3)
                results[name] = "ok"
            except (DependencyUnavailable, TimeoutError) as exc:
                results[name] = f"unavailable: {exc}" if str(exc) else "unavailable"
            except Exception as exc:
                results[name] = f"unavailable: {type(exc).__name__}"
        return results


async def open_store(settings: Settings, *, create_bucket: bool = False) -> ObjectStore:
    if settings.storage_url.startswith("file://"):
        return FileStore(Path(urlparse(settings.storage_url).path))
    return await S3Store.open(
        settings.storage_url,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        create_bucket=create_bucket,
        public_endpoint_url=settings.s3_public_endpoint_url,
    )


async def until_available(what: str, connect: Callable[[], Awaitable[T]]) -> T:
    """Call ``connect`` until it stops raising DependencyUnavailable (backoff to 10 s)."""
    delay = 0.5
    while True:
        try:
            return await connect()
        except DependencyUnavailable as exc:
            log.warning("startup.waiting", extra={"dependency": what, "error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def open_backends(settings: Settings, *, app_id: str) -> Backends:
    """Connect to PostgreSQL, RabbitMQ and the store, waiting for each."""
    repo = await until_available(
        "database",
        lambda: connect_repository(
            settings.database_url.get_secret_value(), migrate=settings.migrate_on_start
        ),
    )
    broker = await until_available("broker", lambda: AmqpBroker.connect(settings, app_id=app_id))
    store = await open_store(settings)
    return Backends(repo=repo, broker=broker, store=store)
