"""The notifier: deliver each terminal job event to its job's ``callback_url``.

It consumes ``videoq.webhooks.deliver``, where the janitor publishes the
``job.completed`` and ``job.failed`` events of jobs with a ``callback_url``
(``shared.outbox.publish_owed_events``). For each delivery it reads
the job row (an erased job gets no webhook), builds the body from it, signs
it with the client's secret, checks the URL with the SSRF guard and POSTs it
to the address it checked. Then it logs the attempt in
``webhook_deliveries`` and, if the attempt failed, publishes the delivery to
its next retry tier or parks it (``shared.retry.decide``, the jobs' rule).
The message is acked only after all that: a notifier killed mid-delivery
leaves it with the broker, which hands it to another (at least once; the
``webhook-id`` is the same every time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from pydantic import SecretStr

from shared.broker import Broker, Delivery
from shared.errors import (
    DependencyUnavailable,
    InvalidPayload,
    PermanentError,
    VideoqError,
    WebhookFailed,
)
from shared.jobs import JobStatus
from shared.metrics import Metrics
from shared.repository import JobRepository
from shared.retry import Action, decide
from shared.settings import Settings, parse_webhook_secrets
from shared.topology import WEBHOOK_EVENTS, build_topology
from shared.webhooks.model import DeliveryAttempt, build_body, webhook_id
from shared.webhooks.sender import post
from shared.webhooks.signing import signed_headers
from shared.webhooks.ssrf import CallbackPolicy

__all__ = ["Notifier", "OwedWebhook", "parse_delivery"]

log = logging.getLogger("videoq.notifier")


@dataclass(frozen=True)
class OwedWebhook:
    """What a message on the delivery queue asks for."""

    job_id: UUID
    event_id: int
    #: ``job.completed`` or ``job.failed``.
    type: str
    #: When the event happened (the body's ``timestamp``).
    occurred_at: datetime
    #: The job's attempt the event is about.
    job_attempt: int
    #: Attempts this delivery has had before this one.
    attempts: int

    @property
    def webhook_id(self) -> str:
        return webhook_id(str(self.job_id), self.event_id)


def parse_delivery(delivery: Delivery) -> OwedWebhook:
    """The webhook a delivery owes: its body is the job event's, its
    ``message_id`` ``<job_id>:<event number>``.

    Raises:
        InvalidPayload: neither is what the events exchange publishes.
    """
    try:
        event = json.loads(delivery.body)
        job_id, _, event_id = (delivery.message_id or "").partition(":")
        owed = OwedWebhook(
            job_id=UUID(str(event["job_id"])),
            event_id=int(event_id),
            type=f"job.{JobStatus(event['status']).value}",
            occurred_at=datetime.fromisoformat(str(event["timestamp"])),
            job_attempt=int(event["attempt"]),
            attempts=int(delivery.headers.get("attempts", 0)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidPayload(f"not a job event: {type(exc).__name__}") from None
    if owed.type not in WEBHOOK_EVENTS or str(owed.job_id) != job_id:
        raise InvalidPayload(f"not a webhook event: {owed.type}")
    return owed


class Notifier:
    """Consumes the delivery queue; ``start`` and ``stop`` it."""

    def __init__(
        self, *, settings: Settings, repo: JobRepository, broker: Broker, metrics: Metrics
    ) -> None:
        self._settings = settings
        self._repo = repo
        self._broker = broker
        self._metrics = metrics
        self._policy = CallbackPolicy.from_settings(settings)
        self._secrets: dict[str, SecretStr] = (
            parse_webhook_secrets(settings.webhook_secrets) if settings.webhook_secrets else {}
        )
        self._tiers = build_topology(settings).webhook_tiers
        self._delays = settings.webhook_retry_delays
        self._in_hand: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._broker.consume_webhooks(
            self._handle, prefetch=self._settings.webhook_concurrency
        )
        log.info("notifier.started", extra={"clients_with_secrets": len(self._secrets)})

    async def stop(self, *, grace_seconds: float) -> None:
        """Stop taking deliveries; let those in hand end within ``grace_seconds``
        (one that does not is left unacked: the broker delivers it again)."""
        await self._broker.stop_consuming_webhooks()
        if self._in_hand:
            await asyncio.wait(set(self._in_hand), timeout=grace_seconds)

    async def _handle(self, delivery: Delivery) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_hand.add(task)
        try:
            await self._settle(delivery)
        finally:
            self._in_hand.discard(task)

    async def _settle(self, delivery: Delivery) -> None:
        try:
            owed = parse_delivery(delivery)
        except InvalidPayload as exc:
            await self._park_unreadable(delivery, str(exc))
            return
        try:
            await self._deliver(owed, delivery.body)
        except DependencyUnavailable as exc:
            # The database or the broker is away: this delivery waits one
            # tier without using an attempt (or, if even that publish fails,
            # goes back to the queue).
            log.warning(
                "webhook.deferred", extra={"webhook_id": owed.webhook_id, "error": str(exc)}
            )
            try:
                await self._broker.publish_webhook(
                    delivery.body,
                    message_id=delivery.message_id or "",
                    attempts=owed.attempts,
                    tier=self._tiers[0],
                )
            except DependencyUnavailable:
                await asyncio.sleep(1.0)
                await delivery.hand_back()
                return
        await delivery.ack()

    async def _park_unreadable(self, delivery: Delivery, reason: str) -> None:
        log.error("webhook.unreadable", extra={"message_id": delivery.message_id, "error": reason})
        try:
            await self._broker.park_webhook(
                delivery.body, message_id=delivery.message_id or "", reason=reason, attempts=0
            )
        except DependencyUnavailable:
            await delivery.hand_back()
            return
        await delivery.ack()

    async def _deliver(self, owed: OwedWebhook, message: bytes) -> None:
        """One attempt, logged, then retried or parked if it failed.

        Raises:
            DependencyUnavailable: the job row could not be read, the attempt
                logged, or the retry published (the caller defers it).
        """
        extra: dict[str, object] = {
            "webhook_id": owed.webhook_id,
            "job_id": str(owed.job_id),
            "type": owed.type,
        }
        job = await self._repo.get(owed.job_id)
        if job is None:
            log.info("webhook.dropped", extra={**extra, "why": "job gone"})
            self._metrics.webhook_attempts.labels("dropped").inc()
            return
        if job.callback_url is None:
            return
        attempt = owed.attempts + 1
        status_code: int | None = None
        error: VideoqError | None = None
        secret = self._secrets.get(job.client_id)
        if secret is None:
            error = PermanentError("no webhook signing secret is configured for this client")
        else:
            body = build_body(owed.type, job, timestamp=owed.occurred_at, attempt=owed.job_attempt)
            try:
                target = await self._policy.resolve(job.callback_url)
                status_code = await post(
                    target,
                    headers=_signed(secret, owed.webhook_id, body),
                    body=body,
                    timeout_seconds=self._settings.webhook_timeout_seconds,
                )
                if not 200 <= status_code < 300:
                    error = WebhookFailed(f"HTTP {status_code}")
            except VideoqError as exc:  # CallbackRefused, WebhookFailed
                error = exc
        now = datetime.now(UTC)
        decision = None
        if error is not None:
            decision = decide(
                error, attempts=attempt, max_attempts=len(self._tiers) + 1, tiers=len(self._tiers)
            )
        retrying = decision is not None and decision.action is Action.RETRY
        next_at = None
        if decision is not None and decision.tier is not None and retrying:
            next_at = now + timedelta(seconds=self._delays[decision.tier])
        logged = await self._repo.record_delivery(
            owed.job_id,
            DeliveryAttempt(
                webhook_id=owed.webhook_id,
                type=owed.type,
                attempt=attempt,
                status_code=status_code,
                error=None if decision is None else decision.message,
                at=now,
                next_attempt_at=next_at,
            ),
        )
        extra = {**extra, "attempt": attempt, "status_code": status_code}
        if not logged:  # erased while we were at it
            log.info("webhook.dropped", extra={**extra, "why": "job gone"})
            self._metrics.webhook_attempts.labels("dropped").inc()
            return
        if decision is None:
            log.info("webhook.delivered", extra=extra)
            self._metrics.webhook_attempts.labels("delivered").inc()
            return
        if retrying:
            assert decision.tier is not None
            await self._broker.publish_webhook(
                message,
                message_id=f"{owed.job_id}:{owed.event_id}",
                attempts=attempt,
                tier=self._tiers[decision.tier],
            )
            log.warning("webhook.retry", extra={**extra, "error": decision.message})
            self._metrics.webhook_attempts.labels("retried").inc()
            return
        await self._broker.park_webhook(
            message,
            message_id=f"{owed.job_id}:{owed.event_id}",
            reason=decision.message,
            attempts=attempt,
        )
        log.error("webhook.parked", extra={**extra, "error": decision.message})
        self._metrics.webhook_attempts.labels("parked").inc()


def _signed(secret: SecretStr, webhook: str, body: bytes) -> dict[str, str]:
    return signed_headers(secret=secret, webhook_id=webhook, timestamp=int(time.time()), body=body)
