"""``videoq dlq``: the operator's path for the dead-letter queue."""

from __future__ import annotations

import argparse
import json
from uuid import UUID

from shared import outbox
from shared.backends import Backends, open_backends
from shared.errors import InvalidPayload
from shared.payload import parse_payload
from shared.settings import Settings

__all__ = ["run_dlq"]


async def run_dlq(args: argparse.Namespace) -> int:
    settings = Settings()
    backends = await open_backends(settings, app_id="videoq-cli")
    try:
        if args.dlq_command == "list":
            for letter in await backends.broker.dead_letters(limit=args.limit):
                print(
                    json.dumps(
                        {
                            "job_id": letter.job_id,
                            "attempt": letter.attempt,
                            "reason": letter.reason,
                        }
                    )
                )
            return 0
        if args.dlq_command == "purge":
            print(f"purged {await backends.broker.purge_dead()} messages")
            return 0
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


async def _replay(backends: Backends, job_id: UUID) -> bool:
    """failed -> pending, then publish; ``False`` if the job is not failed."""
    job = await backends.repo.replay(job_id)
    if job is None:
        print(json.dumps({"job_id": str(job_id), "replayed": False, "why": "not failed"}))
        return False
    await outbox.publish_and_record(backends.broker, backends.repo, job_id, attempt=job.attempts)
    print(json.dumps({"job_id": str(job_id), "replayed": True}))
    return True
