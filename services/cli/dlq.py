"""``videoq dlq``: the operator's path for the dead-letter queue."""

from __future__ import annotations

import argparse
import json
from uuid import UUID

from shared import outbox
from shared.backends import Backends, open_backends
from shared.broker.base import DeadLetter, Lot
from shared.errors import InvalidPayload
from shared.payload import parse_payload
from shared.settings import Settings
from shared.webhooks.model import webhook_id

__all__ = ["run_dlq"]


async def run_dlq(args: argparse.Namespace) -> int:
    settings = Settings()
    backends = await open_backends(settings, app_id="videoq-cli")
    lot: Lot = "webhooks" if getattr(args, "webhooks", False) else "jobs"
    try:
        if args.dlq_command == "list":
            for letter in await backends.broker.dead_letters(limit=args.limit, lot=lot):
                shown: dict[str, object] = {"job_id": letter.job_id}
                if lot == "webhooks":
                    shown["webhook_id"] = _webhook_id(letter)
                    shown["attempts"] = letter.attempt
                else:
                    shown["attempt"] = letter.attempt
                print(json.dumps({**shown, "reason": letter.reason}))
            return 0
        if args.dlq_command == "purge":
            print(f"purged {await backends.broker.purge_dead(lot=lot)} messages")
            return 0
        if lot == "webhooks":
            return await _redeliver(backends, job=args.job, limit=args.limit)
        # replay
        if args.job:
            replayed = int(await _replay(backends, UUID(args.job)))
            print(f"replayed {replayed} of 1")
            return 0
        # One letter at a time: taking a letter removes it from the queue, so
        # a failure mid-way puts only the one in hand back, not a batch.
        replayed = taken = 0
        while taken < args.limit:
            letters = await backends.broker.take_dead_letters(limit=1)
            if not letters:
                break
            letter, taken = letters[0], taken + 1
            try:
                job_id = parse_payload(letter.body)
            except InvalidPayload:
                print(
                    json.dumps(
                        {
                            "dropped": letter.body.decode("utf-8", "replace")[:200],
                            "reason": letter.reason,
                        }
                    )
                )
                continue
            try:
                replayed += await _replay(backends, job_id)
            except BaseException:
                await backends.broker.park(
                    letter.body, reason=letter.reason, job_id=letter.job_id, attempt=letter.attempt
                )
                raise
        print(f"replayed {replayed} of {taken}")
        return 0
    finally:
        await backends.close()


def _webhook_id(letter: DeadLetter) -> str | None:
    job_id, _, event_id = (letter.message_id or "").partition(":")
    return webhook_id(job_id, int(event_id)) if event_id.isdigit() else None


async def _redeliver(backends: Backends, *, job: str | None, limit: int) -> int:
    """Publish parked webhook deliveries again, each with fresh retry tiers
    (of one job only, when given; the others are parked again)."""
    broker = backends.broker
    # Bounded by what is parked now: deliveries parked again below are not taken twice.
    parked = len(await broker.dead_letters(limit=limit, lot="webhooks"))
    redelivered = 0
    for _ in range(parked):
        letters = await broker.take_dead_letters(limit=1, lot="webhooks")
        if not letters:
            break
        letter = letters[0]
        message_id = letter.message_id or ""
        try:
            if job is None or letter.job_id == job:
                await broker.publish_webhook(letter.body, message_id=message_id, attempts=0)
                redelivered += 1
                print(json.dumps({"webhook_id": _webhook_id(letter), "redelivered": True}))
                continue
        except BaseException:
            await broker.park_webhook(
                letter.body,
                message_id=message_id,
                reason=letter.reason,
                attempts=letter.attempt or 0,
            )
            raise
        await broker.park_webhook(
            letter.body, message_id=message_id, reason=letter.reason, attempts=letter.attempt or 0
        )
    print(f"redelivered {redelivered} of {parked}")
    return 0


async def _replay(backends: Backends, job_id: UUID) -> bool:
    """failed -> pending, then publish; ``False`` if the job is not failed."""
    job = await backends.repo.replay(job_id)
    if job is None:
        print(json.dumps({"job_id": str(job_id), "replayed": False, "why": "not failed"}))
        return False
    await outbox.publish_and_record(backends.broker, backends.repo, job_id, attempt=job.attempts)
    print(json.dumps({"job_id": str(job_id), "replayed": True}))
    return True
