"""Job rows with nothing behind them, for tests of what the database, the
janitor and the listing do with rows (no worker ever reads their input)."""

from __future__ import annotations

import uuid
from typing import Any


async def add_job(repo: Any, job_id: uuid.UUID | None = None, **fields: Any) -> uuid.UUID:
    """Create a pending ``basic`` job (a 1-byte input that is never stored);
    ``fields`` are more of ``repo.create``'s (client_id, tag, callback_url, ...)."""
    job_id = job_id or uuid.uuid4()
    await repo.create(
        job_id=job_id,
        input_path=f"inputs/{job_id}.mp4",
        pipeline="basic",
        options={},
        input_bytes=1,
        **fields,
    )
    return job_id
