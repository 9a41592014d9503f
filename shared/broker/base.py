"""The broker port: publish work, consume it, park what cannot be done."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from uuid import UUID

from shared.jobs import JobEvent

__all__ = ["Broker", "DeadLetter", "Delivery", "Handler", "Lot"]

#: A parking lot: the jobs' (``videoq.dead.jobs``) or the webhooks'
#: (``videoq.dead.webhooks``).
Lot = Literal["jobs", "webhooks"]


@dataclass
class Delivery:
    """One message taken from the work queue; settled once, by ``ack`` or
    ``hand_back``. Neither raises: a delivery whose connection is gone is
    back with the broker already."""

    body: bytes
    message_id: str | None
    headers: dict[str, Any]
    redelivered: bool
    _ack: Callable[[], Awaitable[None]]
    _hand_back: Callable[[], Awaitable[None]]
    #: Acked or handed back already (each message is settled once).
    settled: bool = False

    async def ack(self) -> None:
        """Acknowledge: the broker forgets the message."""
        if not self.settled:
            self.settled = True
            await self._ack()

    async def hand_back(self) -> None:
        """Give the message back, unprocessed, for any consumer to take.

        How is the adapter's business: waiting must never count against the
        work queue's delivery limit, which is there to catch crash loops.
        """
        if not self.settled:
            self.settled = True
            await self._hand_back()


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True)
class DeadLetter:
    """A message parked in the dead-letter queue, and why."""

    body: bytes
    job_id: str | None
    reason: str
    attempt: int | None
    headers: dict[str, Any] = field(default_factory=dict)
    #: The message's own id (a webhook's ``<job_id>:<event number>``).
    message_id: str | None = None


class Broker(Protocol):
    """Publishing is confirmed and ``mandatory``: when one of these returns,
    the broker has the message in a queue.

    Raises:
        DependencyUnavailable: the broker could not be reached, refused, or
            could not route the message.
    """

    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    async def publish_job(self, job_id: UUID, *, attempt: int = 0, tier: str | None = None) -> None:
        """Publish work for ``job_id``: now, or after the delay of retry ``tier``."""

    async def park(
        self, body: bytes, *, reason: str, job_id: str | None = None, attempt: int | None = None
    ) -> None:
        """Park ``body`` in the dead-letter queue with a ``reason``."""

    async def publish_event(self, event: JobEvent) -> None:
        """Publish a job status event (confirmed, not ``mandatory``: an event
        nobody has bound a queue for yet is not an error)."""

    async def consume(self, handler: Handler, *, prefetch: int) -> None:
        """Start delivering work-queue messages to ``handler``.

        Each delivery runs in a task of its own that nothing but the handler
        ends: a lost connection stops the deliveries, never the work. (The
        broker takes back what was not acked; settling such a delivery later
        does nothing.)
        """

    async def consume_webhooks(self, handler: Handler, *, prefetch: int) -> None:
        """As ``consume``, from the webhook delivery queue (``videoq.webhooks.deliver``)."""

    async def publish_webhook(
        self, body: bytes, *, message_id: str, attempts: int, tier: str | None = None
    ) -> None:
        """Publish a webhook delivery that has had ``attempts`` attempts:
        after the delay of webhook retry ``tier``, or now (a redelivery)."""

    async def park_webhook(
        self, body: bytes, *, message_id: str, reason: str, attempts: int
    ) -> None:
        """Park a webhook delivery in the webhooks' dead-letter queue."""

    async def stop_consuming(self) -> None:
        """Stop new deliveries (messages in hand stay in hand)."""

    async def stop_consuming_webhooks(self) -> None:
        """As ``stop_consuming``, for the webhook delivery queue."""

    async def dead_letters(self, *, limit: int, lot: Lot = "jobs") -> list[DeadLetter]:
        """Look at up to ``limit`` parked messages without removing them."""

    async def take_dead_letters(self, *, limit: int, lot: Lot = "jobs") -> list[DeadLetter]:
        """Remove and return up to ``limit`` parked messages."""

    async def purge_dead(self, *, lot: Lot = "jobs") -> int:
        """Drop every parked message; return how many."""
