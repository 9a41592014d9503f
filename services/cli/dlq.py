"""``videoq dlq``: the operator's path for the dead-letter queue."""

from __future__ import annotations

import argparse
import json
from uuid import UUID

from shared.backends import open_backends
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
            targets = [UUID(args.job)]
        else:
            targets = []
            for letter in await backends.broker.take_dead_letters(limit=args.limit):
                try:
                    targets.append(parse_payload(letter.body))
                except InvalidPayload:
                    print(
                        json.dumps(
                            {
                                "dropped": letter.body.decode("utf-8", "replace")[:200],
                                "reason": letter.reason,
                            }
                        )
                    )
        replayed = 0
        for job_id in targets:
            job = await backends.repo.replay(job_id)
            if job is None:
                print(json.dumps({"job_id": str(job_id), "replayed": False, "why": "not failed"}))
                continue
            await backends.broker.publish_job(job_id)
            await backends.repo.mark_published(job_id)
            replayed += 1
            print(json.dumps({"job_id": str(job_id), "replayed": True}))
        print(f"replayed {replayed} of {len(targets)}")
        return 0
    finally:
        await backends.close()
