"""In-process adapter of the broker port, for ``videoq dev`` and unit tests.

Same behaviour as the RabbitMQ topology: a work queue, retry tiers that hold
a message for their delay and then hand it back, and a dead-letter list.
Nothing survives the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from uuid import UUID

from shared.broker.base import DeadLetter, Delivery, Handler
from shared.jobs import JobEvent
from shared.payload import build_payload
from shared.settings import Settings
from shared.topology import build_topology

__all__ = ["MemoryBroker"]


class MemoryBroker:
    """``Broker`` in memory."""

    def __init__(self, settings: Settings) -> None:
        topology = build_topology(settings)
        self._delays = dict(zip(topology.tiers, settings.retry_delays, strict=True))
        self._work: asyncio.Queue[tuple[bytes, str | None, dict[str, Any]]] = asyncio.Queue()
        self._dead: list[DeadLetter] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._consumers: list[asyncio.Task[None]] = []
        self._handlers: set[asyncio.Future[None]] = set()
        self.published: list[tuple[str, bytes]] = []  # (destination, body), for tests

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        await self.stop_consuming()
        for timer in self._timers:
            timer.cancel()

    async def publish_job(self, job_id: UUID, *, attempt: int = 0, tier: str | None = None) -> None:
        body = build_payload(job_id)
        item = (body, str(job_id), {"attempt": attempt})
        if tier is None:
            self.published.append(("work", body))
            self._work.put_nowait(item)
            return
        if tier not in self._delays:
            raise ValueError(f"unknown retry tier {tier!r}")
        self.published.append((f"retry.{tier}", body))
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def due() -> None:
            assert timer is not None
            self._timers.discard(timer)
            self._work.put_nowait(item)

        timer = loop.call_later(self._delays[tier], due)
        self._timers.add(timer)

    async def park(
        self, body: bytes, *, reason: str, job_id: str | None = None, attempt: int | None = None
    ) -> None:
        self.published.append(("dead", body))
        self._dead.append(DeadLetter(body=body, job_id=job_id, reason=reason, attempt=attempt))

    async def publish_event(self, event: JobEvent) -> None:
        self.published.append((event.routing_key, event.body()))

    async def consume(self, handler: Handler, *, prefetch: int) -> None:
        # As on RabbitMQ: up to ``prefetch`` deliveries in hand until each is
        # acked or handed back, each handled in a task of its own, so that
        # ``stop_consuming`` stops new deliveries and leaves those in hand
        # running (the worker drains them on shutdown).
        in_hand = asyncio.Semaphore(prefetch)

        async def loop() -> None:
            while True:
                await in_hand.acquire()
                try:
                    item = await self._work.get()
                except BaseException:
                    in_hand.release()
                    raise

                async def ack() -> None:  # a Delivery settles once
                    in_hand.release()

                async def hand_back(item: tuple[bytes, str | None, dict[str, Any]] = item) -> None:
                    # No delivery limit here to spare: back to the queue.
                    self._work.put_nowait(item)
                    in_hand.release()

                body, message_id, headers = item
                task = asyncio.ensure_future(
                    handler(
                        Delivery(
                            body=body,
                            message_id=message_id,
                            headers=headers,
                            redelivered=False,
                            _ack=ack,
                            _hand_back=hand_back,
                        )
                    )
                )
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)

        self._consumers.append(asyncio.create_task(loop()))

    async def stop_consuming(self) -> None:
        """Stop new deliveries; handlers of deliveries in hand run on."""
        consumers, self._consumers = self._consumers, []
        for task in consumers:
            task.cancel()
        for task in consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def dead_letters(self, *, limit: int) -> list[DeadLetter]:
        return list(self._dead[:limit])

    async def take_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        taken, self._dead = self._dead[:limit], self._dead[limit:]
        return taken

    async def purge_dead(self) -> int:
        count, self._dead = len(self._dead), []
        return count
