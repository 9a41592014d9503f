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

from shared.broker.base import DeadLetter, Delivery, Handler, Lot
from shared.jobs import JobEvent
from shared.payload import build_payload
from shared.settings import Settings
from shared.topology import build_topology

_Item = tuple[bytes, str | None, dict[str, Any]]

__all__ = ["MemoryBroker"]


class MemoryBroker:
    """``Broker`` in memory."""

    def __init__(self, settings: Settings) -> None:
        topology = build_topology(settings)
        self._delays = dict(zip(topology.tiers, settings.retry_delays, strict=True))
        self._webhook_delays = dict(
            zip(topology.webhook_tiers, settings.webhook_retry_delays, strict=True)
        )
        self._work: asyncio.Queue[_Item] = asyncio.Queue()
        self._webhooks: asyncio.Queue[_Item] = asyncio.Queue()
        self._dead: list[DeadLetter] = []
        self._dead_webhooks: list[DeadLetter] = []
        self._timers: set[asyncio.TimerHandle] = set()
        #: Consumer loops of the work queue and of the webhook queue.
        self._consumers: dict[bool, list[asyncio.Task[None]]] = {False: [], True: []}
        self._handlers: set[asyncio.Future[None]] = set()
        self.published: list[tuple[str, bytes]] = []  # (destination, body), for tests

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        await self.stop_consuming()
        await self.stop_consuming_webhooks()
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
        self._later(self._delays[tier], self._work, item)

    def _later(self, delay: float, queue: asyncio.Queue[_Item], item: _Item) -> None:
        """Put ``item`` in ``queue`` after ``delay`` seconds (a retry tier's TTL)."""
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def due() -> None:
            assert timer is not None
            self._timers.discard(timer)
            queue.put_nowait(item)

        timer = loop.call_later(delay, due)
        self._timers.add(timer)

    async def park(
        self, body: bytes, *, reason: str, job_id: str | None = None, attempt: int | None = None
    ) -> None:
        self.published.append(("dead", body))
        self._dead.append(DeadLetter(body=body, job_id=job_id, reason=reason, attempt=attempt))

    async def publish_event(self, event: JobEvent) -> None:
        self.published.append((event.routing_key, event.body()))

    async def publish_webhook(
        self, body: bytes, *, message_id: str, attempts: int, tier: str | None = None
    ) -> None:
        item = (body, message_id, {"attempts": attempts})
        if tier is None:
            self._webhooks.put_nowait(item)
        elif tier not in self._webhook_delays:
            raise ValueError(f"unknown webhook retry tier {tier!r}")
        else:
            self._later(self._webhook_delays[tier], self._webhooks, item)

    async def park_webhook(
        self, body: bytes, *, message_id: str, reason: str, attempts: int
    ) -> None:
        self._dead_webhooks.append(
            DeadLetter(
                body=body,
                job_id=message_id.split(":")[0],
                reason=reason,
                attempt=attempts,
                message_id=message_id,
            )
        )

    async def consume_webhooks(self, handler: Handler, *, prefetch: int) -> None:
        self._consume(self._webhooks, handler, prefetch=prefetch, webhooks=True)

    async def consume(self, handler: Handler, *, prefetch: int) -> None:
        self._consume(self._work, handler, prefetch=prefetch, webhooks=False)

    def _consume(
        self, queue: asyncio.Queue[_Item], handler: Handler, *, prefetch: int, webhooks: bool
    ) -> None:
        # As on RabbitMQ: up to ``prefetch`` deliveries in hand until each is
        # acked or handed back, each handled in a task of its own, so that
        # ``stop_consuming`` stops new deliveries and leaves those in hand
        # running (the worker drains them on shutdown).
        in_hand = asyncio.Semaphore(prefetch)

        async def loop() -> None:
            while True:
                await in_hand.acquire()
                try:
                    item = await queue.get()
                except BaseException:
                    in_hand.release()
                    raise

                async def ack() -> None:  # a Delivery settles once
                    in_hand.release()

                async def hand_back(item: _Item = item) -> None:
                    # No delivery limit here to spare: back to the queue.
                    queue.put_nowait(item)
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

        self._consumers[webhooks].append(asyncio.create_task(loop()))

    async def stop_consuming(self) -> None:
        """Stop new deliveries; handlers of deliveries in hand run on."""
        await self._stop(webhooks=False)

    async def stop_consuming_webhooks(self) -> None:
        await self._stop(webhooks=True)

    async def _stop(self, *, webhooks: bool) -> None:
        consumers, self._consumers[webhooks] = self._consumers[webhooks], []
        for task in consumers:
            task.cancel()
        for task in consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _lot(self, lot: Lot) -> list[DeadLetter]:
        return self._dead_webhooks if lot == "webhooks" else self._dead

    async def dead_letters(self, *, limit: int, lot: Lot = "jobs") -> list[DeadLetter]:
        return list(self._lot(lot)[:limit])

    async def take_dead_letters(self, *, limit: int, lot: Lot = "jobs") -> list[DeadLetter]:
        letters = self._lot(lot)
        taken = letters[:limit]
        del letters[:limit]
        return taken

    async def purge_dead(self, *, lot: Lot = "jobs") -> int:
        letters = self._lot(lot)
        count = len(letters)
        letters.clear()
        return count
