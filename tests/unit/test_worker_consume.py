"""A worker that cannot start consuming (broker away) keeps trying."""

import asyncio
from typing import Any

import pytest

from services.worker import worker as worker_module
from services.worker.worker import Worker
from shared.broker import MemoryBroker
from shared.errors import DependencyUnavailable
from shared.metrics import Metrics
from shared.settings import Settings

pytestmark = pytest.mark.unit


class _BrokerAwayAtFirst(MemoryBroker):
    def __init__(self, settings: Settings, failures: int) -> None:
        super().__init__(settings)
        self.failures = failures
        self.calls = 0

    async def consume(self, handler: Any, *, prefetch: int) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise DependencyUnavailable("broker", "connection closed")
        await super().consume(handler, prefetch=prefetch)


async def test_a_worker_starts_consuming_once_the_broker_is_back(monkeypatch):
    monkeypatch.setattr(worker_module, "_RESUME_RETRY_SECONDS", 0.01)
    settings = Settings(storage_url="file:///tmp/unused")
    broker = _BrokerAwayAtFirst(settings, failures=3)
    worker = Worker(
        settings=settings,
        repo=None,  # type: ignore[arg-type]  # never reached: no message is delivered
        broker=broker,
        store=None,  # type: ignore[arg-type]
        pipelines=None,  # type: ignore[arg-type]
        metrics=Metrics(),
        worker_id="w",
    )
    await worker.start()  # does not raise while the broker is away
    for _ in range(100):
        if broker.calls == 4:
            break
        await asyncio.sleep(0.01)
    assert broker.calls == 4 and worker._consuming
    await worker.stop(grace_seconds=0)
    await broker.close()
