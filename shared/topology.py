"""The RabbitMQ topology, as plain data built from the settings.

The AMQP adapter declares exactly this at start-up of every service, and the
definitions file that compose and Kubernetes load is checked against it, so
the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.settings import Settings

__all__ = [
    "DEAD_LETTER_LOOKS",
    "PROCESS_KEY",
    "WEBHOOK_EVENTS",
    "WEBHOOK_KEY",
    "Binding",
    "Exchange",
    "Queue",
    "Topology",
    "build_topology",
    "tier_name",
]

#: Routing key of new work on the jobs exchange.
PROCESS_KEY = "process"
#: Routing key of webhook deliveries on the webhooks exchange (fresh, from a
#: retry tier, or redelivered by an operator).
WEBHOOK_KEY = "deliver"
#: Job events that owe a webhook (when their job has a ``callback_url``).
WEBHOOK_EVENTS = ("job.completed", "job.failed")
#: How often an operator may list a parked message before RabbitMQ drops it.
DEAD_LETTER_LOOKS = 1_000_000


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str  # "direct" | "fanout" | "topic"


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    bindings: tuple[Binding, ...]
    #: Retry tier names, shortest delay first (routing keys on the retry exchange).
    tiers: tuple[str, ...]
    #: The webhook retry tiers' names (routing keys on the webhooks' retry exchange).
    webhook_tiers: tuple[str, ...] = ()


def tier_name(delay_seconds: float) -> str:
    """A readable tier name: 10 -> "10s", 60 -> "1m", 600 -> "10m", 7200 -> "2h"."""
    whole = int(delay_seconds)
    if whole != delay_seconds or whole < 1:
        return f"{int(delay_seconds * 1000)}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _quorum(**extra: Any) -> dict[str, Any]:
    # At-least-once dead-lettering needs overflow=reject-publish; plain
    # dead-lettering can drop a message if the target is briefly unavailable.
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        **extra,
    }


def build_topology(settings: Settings) -> Topology:
    """Exchanges, queues (with their arguments) and bindings for ``settings``."""
    tiers = tuple(tier_name(d) for d in settings.retry_delays)
    exchanges = [
        Exchange(settings.exchange_jobs, "direct"),
        Exchange(settings.exchange_retry, "direct"),
        Exchange(settings.exchange_dead, "fanout"),
        # Integrators bind their own queues here (``job.*``, ``job.completed``, ...).
        Exchange(settings.exchange_events, "topic"),
    ]
    queues = [
        Queue(
            settings.queue_process,
            _quorum(
                **{
                    "x-delivery-limit": settings.delivery_limit,
                    "x-dead-letter-exchange": settings.exchange_dead,
                }
            ),
        ),
        # The parking lot keeps messages until an operator acts. Quorum, like
        # the rest: a classic queue lives on one node, and while that node is
        # down every declare and publish that touches it blocks. Listing it
        # hands each message back, which counts toward a delivery limit (20
        # by default on 4.x, and -1 means "drop at once" on 3.x), so the
        # limit is set out of reach of any number of looks.
        Queue(
            settings.queue_dead,
            {"x-queue-type": "quorum", "x-delivery-limit": DEAD_LETTER_LOOKS},
        ),
    ]
    bindings = [
        Binding(settings.exchange_jobs, settings.queue_process, PROCESS_KEY),
        Binding(settings.exchange_dead, settings.queue_dead, ""),
    ]
    _add_tiers(
        queues,
        bindings,
        exchange=settings.exchange_retry,
        delays=settings.retry_delays,
        back_to=(settings.exchange_jobs, PROCESS_KEY),
    )
    webhook_tiers = _add_webhooks(settings, exchanges, queues, bindings)
    return Topology(tuple(exchanges), tuple(queues), tuple(bindings), tiers, webhook_tiers)


def _add_tiers(
    queues: list[Queue],
    bindings: list[Binding],
    *,
    exchange: str,
    delays: tuple[float, ...],
    back_to: tuple[str, str],
) -> tuple[str, ...]:
    """Retry tiers: one TTL queue per delay, bound to ``exchange`` with the
    tier's name, dead-lettering back to ``back_to`` (exchange, routing key)
    when the delay is over. The jobs and the webhooks retry the same way."""
    tiers = tuple(tier_name(d) for d in delays)
    for tier, delay in zip(tiers, delays, strict=True):
        name = f"{exchange}.{tier}"
        queues.append(
            Queue(
                name,
                _quorum(
                    **{
                        "x-message-ttl": int(delay * 1000),
                        "x-dead-letter-exchange": back_to[0],
                        "x-dead-letter-routing-key": back_to[1],
                    }
                ),
            )
        )
        bindings.append(Binding(exchange, name, tier))
    return tiers


def _add_webhooks(
    settings: Settings, exchanges: list[Exchange], queues: list[Queue], bindings: list[Binding]
) -> tuple[str, ...]:
    """The notifier's part: its delivery queue (the janitor publishes there
    each terminal event of a job with a ``callback_url``), its retry tiers
    and its parking lot (docs/webhooks.md)."""
    exchanges += [
        # New deliveries, and those back from a tier or an operator; not
        # through the events exchange, so integrators never see one twice.
        Exchange(settings.exchange_webhooks, "direct"),
        Exchange(settings.exchange_webhooks_retry, "direct"),
        Exchange(settings.exchange_webhooks_dead, "fanout"),
    ]
    queues += [
        Queue(
            settings.queue_webhooks,
            _quorum(
                **{
                    "x-delivery-limit": settings.delivery_limit,
                    "x-dead-letter-exchange": settings.exchange_webhooks_dead,
                }
            ),
        ),
        Queue(
            settings.queue_webhooks_dead,
            {"x-queue-type": "quorum", "x-delivery-limit": DEAD_LETTER_LOOKS},
        ),
    ]
    bindings += [
        Binding(settings.exchange_webhooks, settings.queue_webhooks, WEBHOOK_KEY),
        Binding(settings.exchange_webhooks_dead, settings.queue_webhooks_dead, ""),
    ]
    return _add_tiers(
        queues,
        bindings,
        exchange=settings.exchange_webhooks_retry,
        delays=settings.webhook_retry_delays,
        back_to=(settings.exchange_webhooks, WEBHOOK_KEY),
    )
