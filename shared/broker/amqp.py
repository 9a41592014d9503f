"""RabbitMQ (aio-pika) adapter of the broker port.

The connection is robust (it reconnects and re-declares by itself); the
channel has publisher confirms and ``on_return_raises``, so an unroutable or
unconfirmed publish raises instead of vanishing.
"""

from __future__ import annotations

import contextlib
import logging
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

from shared.broker.base import DeadLetter, Handler
from shared.broker.base import Delivery as Delivery
from shared.errors import DependencyUnavailable
from shared.jobs import JobEvent
from shared.payload import CONTENT_TYPE, MESSAGE_TYPE, build_payload
from shared.settings import Settings
from shared.topology import PROCESS_KEY, Topology, build_topology

__all__ = ["AmqpBroker"]

log = logging.getLogger(__name__)

_EXCHANGE_TYPES = {
    "direct": aio_pika.ExchangeType.DIRECT,
    "fanout": aio_pika.ExchangeType.FANOUT,
    "topic": aio_pika.ExchangeType.TOPIC,
}
_PUBLISH_TIMEOUT = 10.0
_FAILURES = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.PublishError,
    ConnectionError,
    OSError,
    TimeoutError,
    RuntimeError,  # aio-pika: "channel closed" while reconnecting
)


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
        self._consumer_tag: str | None = None

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
        )
        try:
            await connection.connect(timeout=10)
        except _FAILURES as exc:
            with contextlib.suppress(*_FAILURES):
                await connection.close()
            raise DependencyUnavailable("broker", type(exc).__name__) from None
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            broker = cls(
                connection=connection,
                channel=channel,
                topology=build_topology(settings),
                settings=settings,
                app_id=app_id,
            )
            await broker._declare()
        except _FAILURES as exc:
            await connection.close()
            raise DependencyUnavailable("broker", type(exc).__name__) from None
        return broker

    async def _declare(self) -> None:
        for ex in self._topology.exchanges:
            self._exchanges[ex.name] = await self._channel.declare_exchange(
                ex.name, _EXCHANGE_TYPES[ex.type], durable=True
            )
        for q in self._topology.queues:
            self._queues[q.name] = await self._channel.declare_queue(
                q.name, durable=True, arguments=q.arguments
            )
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
        try:
            await self._exchanges[exchange].publish(
                message, routing_key=routing_key, mandatory=mandatory, timeout=_PUBLISH_TIMEOUT
            )
        except _FAILURES as exc:
            raise DependencyUnavailable("broker", f"publish failed: {type(exc).__name__}") from None

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

    async def consume(self, handler: Handler, *, prefetch: int) -> None:
        try:
            await self._channel.set_qos(prefetch_count=prefetch)
        except _FAILURES as exc:
            raise DependencyUnavailable("broker", type(exc).__name__) from None
        queue = self._queues[self._settings.queue_process]

        async def on_message(message: AbstractIncomingMessage) -> None:
            async def ack() -> None:
                await message.ack()

            async def requeue() -> None:
                await message.nack(requeue=True)

            await handler(
                Delivery(
                    body=message.body,
                    message_id=message.message_id,
                    headers=dict(message.headers or {}),
                    redelivered=bool(message.redelivered),
                    _ack=ack,
                    _requeue=requeue,
                )
            )

        try:
            self._consumer_tag = await queue.consume(on_message)
        except _FAILURES as exc:
            raise DependencyUnavailable("broker", type(exc).__name__) from None

    async def stop_consuming(self) -> None:
        if self._consumer_tag is not None:
            tag, self._consumer_tag = self._consumer_tag, None
            try:
                await self._queues[self._settings.queue_process].cancel(tag)
            except _FAILURES as exc:
                log.warning("cancel consumer failed: %s", type(exc).__name__)

    async def _get_dead(self, *, limit: int, remove: bool) -> list[DeadLetter]:
        # A channel of its own: closing it hands back whatever was not acked.
        channel = await self._connection.channel()
        found: list[DeadLetter] = []
        try:
            queue = await channel.get_queue(self._settings.queue_dead, ensure=False)
            while len(found) < limit:
                message = await queue.get(no_ack=False, fail=False, timeout=5)
                if message is None:
                    break
                headers = dict(message.headers or {})
                attempt = headers.get("attempt")
                found.append(
                    DeadLetter(
                        body=message.body,
                        job_id=message.message_id,
                        reason=str(headers.get("reason") or _death_reason(headers)),
                        attempt=int(attempt) if isinstance(attempt, int) else None,
                        headers=headers,
                    )
                )
                if remove:
                    await message.ack()
        except _FAILURES as exc:
            raise DependencyUnavailable("broker", type(exc).__name__) from None
        finally:
            await channel.close()
        return found

    async def dead_letters(self, *, limit: int) -> list[DeadLetter]:
        return await self._get_dead(limit=limit, remove=False)

    async def take_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        return await self._get_dead(limit=limit, remove=True)

    async def purge_dead(self) -> int:
        try:
            result = await self._queues[self._settings.queue_dead].purge()
        except _FAILURES as exc:
            raise DependencyUnavailable("broker", type(exc).__name__) from None
        return int(result.message_count or 0)


def _death_reason(headers: dict[str, Any]) -> str:
    """Why the broker itself dead-lettered a message (delivery limit, rejection)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return f"broker: {deaths[0].get('reason', 'unknown')} from {deaths[0].get('queue', '?')}"
    return "unknown"
