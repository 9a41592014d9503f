"""RabbitMQ (aio-pika) adapter of the broker port.

The connection is robust (it reconnects by itself); the channel has
publisher confirms and ``on_return_raises``, so an unroutable or unconfirmed
publish raises instead of vanishing.

The topology is declared once, at connect. On a reconnect only the work
queue is declared again (its consumer comes back with it): re-declaring a
queue whose node is down blocks the channel, and with it every publish, for
as long as RabbitMQ takes to give up (about 70 s on 4.0).

What RabbitMQ-specific policy the services need lives here too: how a
delivery is handed back without using up the work queue's delivery limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from uuid import UUID

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url

from shared.broker.base import DeadLetter, Handler, Lot
from shared.broker.base import Delivery as Delivery
from shared.errors import CannotStart, DependencyUnavailable
from shared.jobs import JobEvent
from shared.payload import CONTENT_TYPE, MESSAGE_TYPE, build_payload
from shared.settings import Settings
from shared.topology import PROCESS_KEY, WEBHOOK_KEY, Topology, build_topology

__all__ = ["AmqpBroker"]

log = logging.getLogger(__name__)

_EXCHANGE_TYPES = {
    "direct": aio_pika.ExchangeType.DIRECT,
    "fanout": aio_pika.ExchangeType.FANOUT,
    "topic": aio_pika.ExchangeType.TOPIC,
}
# A publish waits for its confirm; a quorum queue confirms only once it has a
# leader, and after its leader's node dies the election holds confirms for
# about 7 s (seen in the cluster test). A submit waits for this publish, so it
# gives up sooner and leaves the job to the outbox (a late confirm then means
# one duplicate delivery, which the claim drops).
_PUBLISH_TIMEOUT = 3.0
_RECONNECT_SECONDS = 1.0
_FAILURES = (
    # aio-pika's own list of "the connection failed": AMQP and socket errors,
    # RuntimeError ("channel closed" while reconnecting) and StopAsyncIteration,
    # which aiormq raises when the socket is at EOF before a handshake frame
    # (a node still booting, or a load balancer with no ready node, accepts
    # and hangs up; uvloop sees that EOF sooner than asyncio's loop does).
    *aio_pika.exceptions.CONNECTION_EXCEPTIONS,
    aio_pika.exceptions.PublishError,
    TimeoutError,
)


@contextlib.contextmanager
def _unavailable(doing: str = "") -> Iterator[None]:
    """Translate the client library's failures into ``DependencyUnavailable``."""
    try:
        yield
    except _FAILURES as exc:
        detail = f"{doing} failed: {type(exc).__name__}" if doing else type(exc).__name__
        raise DependencyUnavailable("broker", detail) from None


class AmqpBroker:
    """``Broker`` on RabbitMQ. Build it with ``await AmqpBroker.connect(...)``."""

    def __init__(
        self,
        *,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        topology: Topology,
        settings: Settings,
        app_id: str,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._topology = topology
        self._settings = settings
        self._app_id = app_id
        self._exchanges: dict[str, AbstractExchange] = {}
        self._queues: dict[str, AbstractQueue] = {}
        #: Consumer tags by queue name.
        self._consumer_tags: dict[str, str] = {}
        #: The tasks handling deliveries (a reference keeps each alive).
        self._handlers: set[asyncio.Future[None]] = set()

    @classmethod
    async def connect(cls, settings: Settings, *, app_id: str) -> AmqpBroker:
        """Connect, open a confirming channel and declare the topology.

        Raises:
            DependencyUnavailable: RabbitMQ is not reachable.
        """
        # What aio_pika.connect_robust does, but keeping the connection object
        # when connecting fails: closed here, it cannot reach its __del__
        # unclosed (which leaves an un-awaited close() coroutine behind).
        connection = aio_pika.RobustConnection(
            make_url(settings.amqp_url.get_secret_value()),
            client_properties={"connection_name": app_id},
            # aio-pika's default is 5 s: after a node loss, that long with
            # no consuming and every publish deferred to the outbox.
            reconnect_interval=_RECONNECT_SECONDS,
        )
        try:
            with _unavailable():
                await connection.connect(timeout=10)
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                broker = cls(
                    connection=connection,
                    channel=channel,
                    topology=build_topology(settings),
                    settings=settings,
                    app_id=app_id,
                )
                await broker._declare()
        except (DependencyUnavailable, CannotStart):
            with contextlib.suppress(*_FAILURES):
                await connection.close()
            raise
        return broker

    async def _declare(self) -> None:
        # robust=False: not declared again on a reconnect (see the module doc).
        # The exchanges and queues are durable; they outlive the connection.
        for ex in self._topology.exchanges:
            self._exchanges[ex.name] = await self._channel.declare_exchange(
                ex.name, _EXCHANGE_TYPES[ex.type], durable=True, robust=False
            )
        for q in self._topology.queues:
            try:
                self._queues[q.name] = await self._channel.declare_queue(
                    q.name,
                    durable=True,
                    arguments=q.arguments,
                    robust=q.name == self._settings.queue_process,
                )
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                # Declared before with other arguments (an older version's
                # classic parking lot): retrying cannot fix it, an operator can.
                raise CannotStart(
                    f"queue {q.name!r} exists with other arguments than {q.arguments}:"
                    f" {exc.args[0] if exc.args else exc}; see docs/runbook.md,"
                    " 'A queue declared with other arguments'"
                ) from None
        for b in self._topology.bindings:
            await self._queues[b.queue].bind(self._exchanges[b.exchange], routing_key=b.routing_key)

    async def ping(self) -> None:
        if self._connection.is_closed or self._channel.is_closed:
            raise DependencyUnavailable("broker", "connection closed")

    async def close(self) -> None:
        await self._connection.close()

    async def _publish(
        self, exchange: str, routing_key: str, message: aio_pika.Message, *, mandatory: bool = True
    ) -> None:
        if not self._connection.connected.is_set() or self._channel.is_closed:
            # Reconnecting: waiting for it would hold a submit for seconds;
            # the outbox publishes the job once the connection is back.
            raise DependencyUnavailable("broker", "publish failed: reconnecting")
        with _unavailable("publish"):
            await self._exchanges[exchange].publish(
                message, routing_key=routing_key, mandatory=mandatory, timeout=_PUBLISH_TIMEOUT
            )

    def _message(
        self, body: bytes, *, message_id: str | None, headers: dict[str, Any]
    ) -> aio_pika.Message:
        return aio_pika.Message(
            body,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            type=MESSAGE_TYPE,
            app_id=self._app_id,
            headers=headers,
        )

    async def publish_job(self, job_id: UUID, *, attempt: int = 0, tier: str | None = None) -> None:
        message = self._message(
            build_payload(job_id), message_id=str(job_id), headers={"attempt": attempt}
        )
        if tier is None:
            await self._publish(self._settings.exchange_jobs, PROCESS_KEY, message)
        else:
            if tier not in self._topology.tiers:
                raise ValueError(f"unknown retry tier {tier!r}")
            await self._publish(self._settings.exchange_retry, tier, message)

    async def park(
        self, body: bytes, *, reason: str, job_id: str | None = None, attempt: int | None = None
    ) -> None:
        headers: dict[str, Any] = {"reason": reason}
        if attempt is not None:
            headers["attempt"] = attempt
        await self._publish(
            self._settings.exchange_dead,
            "",
            self._message(body, message_id=job_id, headers=headers),
        )

    async def publish_event(self, event: JobEvent) -> None:
        message = aio_pika.Message(
            event.body(),
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=f"{event.job_id}:{event.event_id}",
            type=event.routing_key,
            app_id=self._app_id,
            timestamp=event.occurred_at,
        )
        await self._publish(
            self._settings.exchange_events, event.routing_key, message, mandatory=False
        )

    async def publish_webhook(
        self, body: bytes, *, message_id: str, attempts: int, tier: str | None = None
    ) -> None:
        message = self._message(body, message_id=message_id, headers={"attempts": attempts})
        if tier is None:
            await self._publish(self._settings.exchange_webhooks, WEBHOOK_KEY, message)
        else:
            if tier not in self._topology.webhook_tiers:
                raise ValueError(f"unknown webhook retry tier {tier!r}")
            await self._publish(self._settings.exchange_webhooks_retry, tier, message)

    async def park_webhook(
        self, body: bytes, *, message_id: str, reason: str, attempts: int
    ) -> None:
        message = self._message(
            body, message_id=message_id, headers={"reason": reason, "attempts": attempts}
        )
        await self._publish(self._settings.exchange_webhooks_dead, "", message)

    async def consume(self, handler: Handler, *, prefetch: int) -> None:
        await self._consume(
            self._queues[self._settings.queue_process],
            handler,
            prefetch=prefetch,
            hand_back=self._hand_back,
        )

    async def consume_webhooks(self, handler: Handler, *, prefetch: int) -> None:
        # Declared again, robust this time, so its consumer comes back after a
        # reconnect (only the consuming service pays the re-declare).
        spec = next(q for q in self._topology.queues if q.name == self._settings.queue_webhooks)
        with _unavailable():
            queue = await self._channel.declare_queue(
                spec.name, durable=True, arguments=spec.arguments, robust=True
            )

        async def requeue(message: AbstractIncomingMessage) -> None:
            await self._settle(message, message.nack(requeue=True), "hand back")

        await self._consume(queue, handler, prefetch=prefetch, hand_back=requeue)

    async def _consume(
        self,
        queue: AbstractQueue,
        handler: Handler,
        *,
        prefetch: int,
        hand_back: Callable[[AbstractIncomingMessage], Awaitable[None]],
    ) -> None:
        with _unavailable():
            await self._channel.set_qos(prefetch_count=prefetch)

        async def on_message(message: AbstractIncomingMessage) -> None:
            # aiormq runs this callback in a task of the channel's and cancels
            # it when the channel closes: the handler gets a task of its own,
            # or a connection loss would kill the job in hand.
            delivery = Delivery(
                body=message.body,
                message_id=message.message_id,
                headers=dict(message.headers or {}),
                redelivered=bool(message.redelivered),
                _ack=lambda: self._settle(message, message.ack(), "ack"),
                _hand_back=lambda: hand_back(message),
            )
            task = asyncio.ensure_future(handler(delivery))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

        with _unavailable():
            self._consumer_tags[queue.name] = await queue.consume(on_message)

    async def _settle(
        self, message: AbstractIncomingMessage, settling: Awaitable[None], how: str
    ) -> None:
        """Ack or return ``message``; if its channel is gone (aio-pika's
        ChannelInvalidStateError, a RuntimeError), the broker has taken it
        back already and will deliver it again: nothing to do."""
        try:
            await settling
        except _FAILURES as exc:
            log.warning(
                "message.settle_skipped",
                extra={"job_id": message.message_id, "settle": how, "error": type(exc).__name__},
            )

    async def _hand_back(self, message: AbstractIncomingMessage) -> None:
        """Return an unprocessed message without using up its delivery limit.

        A requeue keeps the message's place in the queue, but RabbitMQ 3.x
        counts every return toward the work queue's delivery limit (4.x
        counts them too, from ``x-delivery-count``). With many busy workers
        a message can be handed back several times (4 times with 10 workers
        on short jobs, measured), so once it has used half the limit it is
        published afresh (a new message, at the tail) and the old one acked:
        waiting never dead-letters a job. If that publish fails, requeue.
        """
        count = (message.headers or {}).get("x-delivery-count")
        returns = count if isinstance(count, int) else 0
        if returns + 1 >= self._settings.delivery_limit // 2:
            try:
                fresh = self._message(
                    message.body,
                    message_id=message.message_id,
                    headers={"attempt": (message.headers or {}).get("attempt", 0)},
                )
                await self._publish(self._settings.exchange_jobs, PROCESS_KEY, fresh)
            except DependencyUnavailable:
                pass
            else:
                await self._settle(message, message.ack(), "ack")
                log.info(
                    "message.republished", extra={"job_id": message.message_id, "returns": returns}
                )
                return
        await self._settle(message, message.nack(requeue=True), "hand back")

    async def stop_consuming(self) -> None:
        await self._cancel(self._settings.queue_process)

    async def stop_consuming_webhooks(self) -> None:
        await self._cancel(self._settings.queue_webhooks)

    async def _cancel(self, queue: str) -> None:
        tag = self._consumer_tags.pop(queue, None)
        if tag is not None:
            try:
                await self._queues[queue].cancel(tag)
            except _FAILURES as exc:
                log.warning("cancel consumer failed: %s", type(exc).__name__)

    def _lot(self, lot: Lot) -> str:
        if lot == "webhooks":
            return self._settings.queue_webhooks_dead
        return self._settings.queue_dead

    async def _get_dead(self, *, limit: int, remove: bool, lot: Lot) -> list[DeadLetter]:
        # A channel of its own: closing it hands back whatever was not acked.
        with _unavailable():
            channel = await self._connection.channel()
        found: list[DeadLetter] = []
        try:
            with _unavailable():
                queue = await channel.get_queue(self._lot(lot), ensure=False)
                while len(found) < limit:
                    message = await queue.get(no_ack=False, fail=False, timeout=5)
                    if message is None:
                        break
                    headers = dict(message.headers or {})
                    attempt = headers.get("attempt" if lot == "jobs" else "attempts")
                    found.append(
                        DeadLetter(
                            body=message.body,
                            job_id=(message.message_id or "").split(":")[0] or None,
                            reason=str(headers.get("reason") or _death_reason(headers)),
                            attempt=int(attempt) if isinstance(attempt, int) else None,
                            headers=headers,
                            message_id=message.message_id,
                        )
                    )
                    if remove:
                        await message.ack()
        finally:
            with contextlib.suppress(*_FAILURES):
                await channel.close()
        return found

    async def dead_letters(self, *, limit: int, lot: Lot = "jobs") -> list[DeadLetter]:
        return await self._get_dead(limit=limit, remove=False, lot=lot)

    async def take_dead_letters(self, *, limit: int, lot: Lot = "jobs") -> list[DeadLetter]:
        return await self._get_dead(limit=limit, remove=True, lot=lot)

    async def purge_dead(self, *, lot: Lot = "jobs") -> int:
        with _unavailable():
            result = await self._queues[self._lot(lot)].purge()
        return int(result.message_count or 0)


def _death_reason(headers: dict[str, Any]) -> str:
    """Why the broker itself dead-lettered a message (delivery limit, rejection)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return f"broker: {deaths[0].get('reason', 'unknown')} from {deaths[0].get('queue', '?')}"
    return "unknown"
