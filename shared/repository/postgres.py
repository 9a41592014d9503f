"""PostgreSQL (asyncpg) adapter of the job repository.

Every status change goes through ``_transition``, which builds the guarded
UPDATE from ``shared.jobs.Transition``; no other SQL here writes ``status``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import asyncpg

from shared.errors import DependencyUnavailable, JobConflict
from shared.jobs import CANCELLED, TERMINAL, Job, JobEvent, JobStatus, Transition
from shared.repository.base import ExpiredLeases, LockedRows, Retained
from shared.repository.migrate import apply_migrations
from shared.uploads import UploadRecord, UploadState
from shared.webhooks.model import DeliveryAttempt

__all__ = ["PostgresJobRepository", "connect_repository"]

T = TypeVar("T")
if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: A pooled connection, as the pool hands it out.
    Conn = PoolConnectionProxy[asyncpg.Record]

# Errors that mean "the database cannot do this right now", not "bad SQL":
# connection loss (class 08), shutdown, crash or a cancelled statement
# (class 57), full disk or too many connections (class 53), and a read-only
# server (a failover that left connections on the demoted primary). Each is
# an outage to wait out (503 + Retry-After, claim retried, lease grace),
# never a 500 or a crashed handler.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)

# What each transition writes besides status (SQL fragments; $owner, $error,
# $output_path and $lease are bound by name below).
_SETS: dict[Transition, tuple[str, ...]] = {
    Transition.CLAIM: (
        "attempts = attempts + 1",
        "lease_owner = $owner",
        "lease_expires_at = now() + make_interval(secs => $lease)",
        "progress = 0",
    ),
    Transition.COMPLETE: (
        "output_path = $output_path",
        "output_bytes = $output_bytes",
        "progress = 1",
        "error_message = NULL",
        "lease_owner = NULL",
        "lease_expires_at = NULL",
        "finished_at = now()",
    ),
    Transition.FAIL: (
        "error_message = $error",
        "lease_owner = NULL",
        "lease_expires_at = NULL",
        "finished_at = now()",
    ),
    Transition.RETRY: (
        "error_message = $error",
        "progress = 0",
        "lease_owner = NULL",
        "lease_expires_at = NULL",
        "published_at = NULL",
    ),
    Transition.RELEASE: (
        "attempts = greatest(attempts - 1, 0)",
        "progress = 0",
        "lease_owner = NULL",
        "lease_expires_at = NULL",
        "published_at = NULL",
    ),
    Transition.EXPIRE: (
        "error_message = $error",
        "progress = 0",
        "lease_owner = NULL",
        "lease_expires_at = NULL",
        "published_at = NULL",
    ),
    Transition.EXPIRE_FAIL: (
        "error_message = $error",
        "lease_owner = NULL",
        "lease_expires_at = NULL",
        # parked inside the same transaction (expire_leases), or rolled back
        "parked_at = now()",
        "finished_at = now()",
    ),
    Transition.CANCEL: ("error_message = $error", "finished_at = now()"),
    Transition.REPLAY: (
        "attempts = 0",
        "cancel_requested = false",
        "progress = 0",
        "error_message = NULL",
        "output_path = NULL",
        "output_bytes = NULL",
        "published_at = NULL",
        "parked_at = NULL",
        "finished_at = NULL",
    ),
}

# Extra guards beyond "status = source [AND lease_owner = $owner]".
_GUARDS: dict[Transition, str] = {
    Transition.EXPIRE: "lease_expires_at < now() AND attempts < $max_attempts",
    Transition.EXPIRE_FAIL: "lease_expires_at < now() AND attempts >= $max_attempts",
}


def _bind(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """Turn ``$name`` placeholders into asyncpg's ``$1..$n`` (longest names first)."""
    args: list[Any] = []
    for name in sorted(params, key=len, reverse=True):
        token = f"${name}"
        if token in sql:
            args.append(params[name])
            sql = sql.replace(token, f"${len(args)}")
    return sql, args


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value)


def _row_to_job(row: asyncpg.Record) -> Job:
    return Job(
        job_id=row["job_id"],
        status=JobStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        input_path=row["input_path"],
        output_path=row["output_path"],
        error_message=row["error_message"],
        progress=float(row["progress"]),
        attempts=row["attempts"],
        pipeline=row["pipeline"],
        options=_json(row["options"]),
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        published_at=row["published_at"],
        parked_at=row["parked_at"],
        input_bytes=row["input_bytes"],
        output_bytes=row["output_bytes"],
        client_id=row["client_id"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        tag=row["tag"],
        metadata=_json(row["metadata"]),
        cancel_requested=row["cancel_requested"],
        finished_at=row["finished_at"],
        input_owned=row["input_owned"],
        input_deleted_at=row["input_deleted_at"],
        results_expired_at=row["results_expired_at"],
        erase_requested=row["erase_requested"],
        callback_url=row["callback_url"],
    )


# Appended to a statement whose CTE ``t`` returns changed job rows: records
# one event per row in the same statement, so no status change goes unpublished.
_WITH_EVENT = (
    ", e AS (INSERT INTO job_events (job_id, status, attempt, tag)"
    " SELECT job_id, status, attempts, tag FROM t) SELECT * FROM t"
)
_EVENTS_LOCK_KEY = 0x766964656F72  # one events publisher at a time keeps the order
_FINISHED = "('failed', 'completed')"
# Which jobs' objects each retention sweep takes (source= inputs never).
_RETAINED: dict[Retained, str] = {
    "input": f"status IN {_FINISHED} AND input_owned AND input_deleted_at IS NULL",
    "results": "status IN ('completed') AND results_expired_at IS NULL",
}


_INSERT_JOB = (
    "WITH t AS (INSERT INTO jobs (job_id, input_path, pipeline, options, input_bytes,"
    " client_id, idempotency_key, request_hash, tag, metadata, input_owned, callback_url)"
    " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10::jsonb, $11, $12)"
    " ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
    " DO NOTHING RETURNING *)" + _WITH_EVENT
)


class _KeyTaken(Exception):
    """Rolls back a submit-from-upload whose Idempotency-Key is taken."""


def _row_to_upload(row: asyncpg.Record) -> UploadRecord:
    return UploadRecord(
        upload_id=row["upload_id"],
        client_id=row["client_id"],
        key=row["key"],
        store_upload_id=row["store_upload_id"],
        size=row["size"],
        part_size=row["part_size"],
        state=UploadState(row["state"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        job_id=row["job_id"],
    )


class PostgresJobRepository:
    """``JanitorRepository`` (and so ``JobRepository``) on a PostgreSQL
    connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        try:
            async with self._pool.acquire() as conn:
                return await op(conn)
        except _UNAVAILABLE as exc:
            raise DependencyUnavailable("database", type(exc).__name__) from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A connection inside a transaction (the sweeps' locked rows)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn
        except _UNAVAILABLE as exc:
            raise DependencyUnavailable("database", type(exc).__name__) from None

    async def ping(self) -> None:
        await self._run(lambda c: c.fetchval("SELECT 1"))

    async def close(self) -> None:
        await self._pool.close()

    async def create(
        self,
        *,
        job_id: UUID,
        input_path: str,
        pipeline: str,
        options: dict[str, Any],
        input_bytes: int,
        client_id: str = "anonymous",
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        tag: str | None = None,
        metadata: dict[str, Any] | None = None,
        input_owned: bool = True,
        callback_url: str | None = None,
        upload_id: UUID | None = None,
    ) -> Job | None:
        """Insert a pending job (and its ``pending`` event). ``None`` when the
        client's ``idempotency_key`` is taken already (see ``by_idempotency_key``).

        With ``upload_id``, the completed upload becomes the job's input in
        the same transaction; ``JobConflict`` when it is not completed (or
        another submit took it first).
        """
        args = (
            job_id,
            input_path,
            pipeline,
            json.dumps(options, sort_keys=True),
            input_bytes,
            client_id,
            idempotency_key,
            request_hash,
            tag,
            json.dumps(metadata or {}, sort_keys=True),
            input_owned,
            callback_url,
        )
        if upload_id is None:
            row = await self._run(lambda c: c.fetchrow(_INSERT_JOB, *args))
            return None if row is None else _row_to_job(row)
        try:
            return await self._create_from_upload(upload_id, client_id, job_id, args)
        except _KeyTaken:
            return None

    async def _create_from_upload(
        self, upload_id: UUID, client_id: str, job_id: UUID, args: tuple[Any, ...]
    ) -> Job:
        async with self.transaction() as conn:
            # The upload's row lock makes two racing submits of it take turns.
            taken = await conn.fetchval(
                "UPDATE uploads SET state = 'submitted' WHERE upload_id = $1"
                " AND client_id = $2 AND state = 'completed' RETURNING upload_id",
                upload_id,
                client_id,
            )
            if taken is None:
                raise JobConflict("Upload is not completed, or was submitted already")
            row = await conn.fetchrow(_INSERT_JOB, *args)
            if row is None:
                raise _KeyTaken()  # rolls back the upload's change too
            await conn.execute(
                "UPDATE uploads SET job_id = $2 WHERE upload_id = $1", upload_id, job_id
            )
        return _row_to_job(row)

    async def count_in_flight(self, client_id: str) -> int:
        """How many of the client's jobs are pending or running."""
        count = await self._run(
            lambda c: c.fetchval(
                "SELECT count(*) FROM jobs WHERE client_id = $1"
                " AND status IN ('pending', 'running')",
                client_id,
            )
        )
        return int(count)

    async def by_idempotency_key(self, *, client_id: str, key: str) -> Job | None:
        row = await self._run(
            lambda c: c.fetchrow(
                "SELECT * FROM jobs WHERE client_id = $1 AND idempotency_key = $2", client_id, key
            )
        )
        return None if row is None else _row_to_job(row)

    async def list_jobs(
        self,
        *,
        client_id: str,
        status: JobStatus | None,
        limit: int,
        after: tuple[datetime, UUID] | None,
    ) -> list[Job]:
        """A client's jobs, newest first, after the keyset position ``after``."""
        rows = await self._run(
            lambda c: c.fetch(
                "SELECT * FROM jobs WHERE client_id = $1"
                " AND ($2::job_status IS NULL OR status = $2::job_status)"
                " AND ($3::timestamptz IS NULL OR (created_at, job_id) < ($3, $4::uuid))"
                " ORDER BY created_at DESC, job_id DESC LIMIT $5",
                client_id,
                None if status is None else status.value,
                None if after is None else after[0],
                None if after is None else after[1],
                limit,
            )
        )
        return [_row_to_job(r) for r in rows]

    async def cancel(self, job_id: UUID) -> Job | None:
        """Cancel: a pending job fails at once ("Cancelled"); a running one is
        flagged for its worker to stop at its next heartbeat. Returns the job
        as it is now, or ``None`` when it had finished already."""
        job = await self.transition(Transition.CANCEL, job_id, error=CANCELLED)
        if job is not None:
            return job
        row = await self._run(
            lambda c: c.fetchrow(
                "UPDATE jobs SET cancel_requested = true, updated_at = now()"
                " WHERE job_id = $1 AND status = 'running' RETURNING *",
                job_id,
            )
        )
        if row is not None:
            return _row_to_job(row)
        current = await self.get(job_id)
        if current is not None and current.status is JobStatus.PENDING:
            return await self.cancel(job_id)  # it was released meanwhile: try again
        return None

    async def get(self, job_id: UUID) -> Job | None:
        row = await self._run(lambda c: c.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job_id))
        return None if row is None else _row_to_job(row)

    async def record_delivery(self, job_id: UUID, attempt: DeliveryAttempt) -> bool:
        """Log one webhook delivery attempt; ``False`` when the job row is gone."""
        row = await self._run(
            lambda c: c.fetchval(
                "INSERT INTO webhook_deliveries (job_id, webhook_id, type, attempt, status_code,"
                " error, at, next_attempt_at)"
                " SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS"
                " (SELECT 1 FROM jobs WHERE job_id = $1) RETURNING attempt_id",
                job_id,
                attempt.webhook_id,
                attempt.type,
                attempt.attempt,
                attempt.status_code,
                attempt.error,
                attempt.at,
                attempt.next_attempt_at,
            )
        )
        return row is not None

    async def list_deliveries(self, job_id: UUID, *, limit: int) -> list[DeliveryAttempt]:
        """The job's webhook delivery attempts, oldest first (at most ``limit``)."""
        rows = await self._run(
            lambda c: c.fetch(
                "SELECT webhook_id, type, attempt, status_code, error, at, next_attempt_at"
                " FROM webhook_deliveries WHERE job_id = $1 ORDER BY attempt_id LIMIT $2",
                job_id,
                limit,
            )
        )
        return [DeliveryAttempt(**dict(r)) for r in rows]

    async def mark_parked(self, job_id: UUID) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE jobs SET parked_at = now() WHERE job_id = $1 AND status = 'failed'",
                job_id,
            )
        )

    async def mark_published(self, job_id: UUID) -> bool:
        status = await self._run(
            lambda c: c.execute(
                "UPDATE jobs SET published_at = now() WHERE job_id = $1 AND status = 'pending'",
                job_id,
            )
        )
        return status.endswith(" 1")

    async def transition(
        self,
        transition: Transition,
        job_id: UUID,
        *,
        conn: Conn | None = None,
        **params: Any,
    ) -> Job | None:
        """Apply ``transition`` to ``job_id`` if its guard holds; else ``None``."""
        sets = ", ".join(("status = $target", "updated_at = now()", *_SETS[transition]))
        where = ["job_id = $job_id", "status = $source"]
        if transition.needs_lease:
            where.append("lease_owner = $owner")
        if transition in _GUARDS:
            where.append(_GUARDS[transition])
        sql, args = _bind(
            f"WITH t AS (UPDATE jobs SET {sets} WHERE {' AND '.join(where)} RETURNING *)"
            + _WITH_EVENT,
            {
                **params,
                "job_id": job_id,
                "source": transition.source.value,
                "target": transition.target.value,
            },
        )
        if conn is not None:
            row = await conn.fetchrow(sql, *args)
        else:
            row = await self._run(lambda c: c.fetchrow(sql, *args))
        return None if row is None else _row_to_job(row)

    async def claim(self, job_id: UUID, *, owner: str, lease_seconds: float) -> Job | None:
        return await self.transition(Transition.CLAIM, job_id, owner=owner, lease=lease_seconds)

    async def heartbeat(
        self, job_id: UUID, *, owner: str, lease_seconds: float, progress: float | None
    ) -> Job | None:
        """Extend the owner's lease and record progress; ``None`` if the lease
        is lost. The returned job says whether a cancel was requested."""
        row = await self._run(
            lambda c: c.fetchrow(
                "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3),"
                " progress = COALESCE($4, progress), updated_at = now()"
                " WHERE job_id = $1 AND status = 'running' AND lease_owner = $2 RETURNING *",
                job_id,
                owner,
                lease_seconds,
                progress,
            )
        )
        return None if row is None else _row_to_job(row)

    async def complete(
        self, job_id: UUID, *, owner: str, output_path: str, output_bytes: int | None = None
    ) -> Job | None:
        return await self.transition(
            Transition.COMPLETE,
            job_id,
            owner=owner,
            output_path=output_path,
            output_bytes=output_bytes,
        )

    async def fail(self, job_id: UUID, *, owner: str, error: str) -> Job | None:
        return await self.transition(Transition.FAIL, job_id, owner=owner, error=error)

    async def retry(self, job_id: UUID, *, owner: str, error: str) -> Job | None:
        return await self.transition(Transition.RETRY, job_id, owner=owner, error=error)

    async def release(self, job_id: UUID, *, owner: str) -> Job | None:
        return await self.transition(Transition.RELEASE, job_id, owner=owner)

    async def replay(self, job_id: UUID) -> Job | None:
        return await self.transition(Transition.REPLAY, job_id)

    @asynccontextmanager
    async def expire_leases(self, *, max_attempts: int, limit: int) -> AsyncIterator[ExpiredLeases]:
        """Running jobs whose lease expired, their rows locked until the block
        exits: back to pending, or failed (``parked_at`` set) when their
        attempts are used up. See ``ExpiredLeases``."""
        requeued: list[Job] = []
        failed: list[Job] = []
        async with self.transaction() as conn:
            ids = await conn.fetch(
                "SELECT job_id FROM jobs WHERE status = 'running' AND lease_expires_at < now()"
                " ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
                limit,
            )
            for row in ids:
                job_id = row["job_id"]
                job = await self.transition(
                    Transition.EXPIRE,
                    job_id,
                    conn=conn,
                    max_attempts=max_attempts,
                    error="Worker lease expired; job requeued",
                )
                if job is not None:
                    requeued.append(job)
                    continue
                job = await self.transition(
                    Transition.EXPIRE_FAIL,
                    job_id,
                    conn=conn,
                    max_attempts=max_attempts,
                    error=f"Worker lost the job {max_attempts} times (crash or timeout);"
                    " attempts used up",
                )
                if job is not None:
                    failed.append(job)
            yield ExpiredLeases(requeued=requeued, failed=failed)

    def lock_unpublished(
        self, *, grace_seconds: float, republish_after_seconds: float, limit: int
    ) -> AbstractAsyncContextManager[LockedRows[Job]]:
        return self._lock_jobs(
            "SELECT * FROM jobs WHERE status = 'pending' AND ("
            " (published_at IS NULL AND updated_at < now() - make_interval(secs => $1))"
            " OR published_at < now() - make_interval(secs => $2))"
            " ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED",
            (grace_seconds, republish_after_seconds, limit),
            record="UPDATE jobs SET published_at = now() WHERE job_id = ANY($1::uuid[])",
        )

    def lock_unparked(
        self, *, grace_seconds: float, limit: int
    ) -> AbstractAsyncContextManager[LockedRows[Job]]:
        return self._lock_jobs(
            "SELECT * FROM jobs WHERE status = 'failed' AND parked_at IS NULL"
            " AND error_message IS DISTINCT FROM $1"
            " AND updated_at < now() - make_interval(secs => $2)"
            " ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED",
            (CANCELLED, grace_seconds, limit),
            record="UPDATE jobs SET parked_at = now() WHERE job_id = ANY($1::uuid[])",
        )

    @asynccontextmanager
    async def _lock_jobs(
        self, select: str, args: tuple[Any, ...], *, record: str
    ) -> AsyncIterator[LockedRows[Job]]:
        """The job rows ``select`` locks; ``record`` (given their ids) marks
        them sent, in the same transaction."""
        async with self.transaction() as conn:
            jobs = [_row_to_job(row) for row in await conn.fetch(select, *args)]

            async def stamp(sent: Sequence[Job]) -> None:
                await conn.execute(record, [job.job_id for job in sent])

            yield LockedRows(jobs, stamp)

    @asynccontextmanager
    async def lock_unpublished_events(self, *, limit: int) -> AsyncIterator[LockedRows[JobEvent]]:
        async with self.transaction() as conn:
            events: list[JobEvent] = []
            if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _EVENTS_LOCK_KEY):
                # An erased job publishes nothing more: its owed events are
                # skipped here and deleted with it.
                rows = await conn.fetch(
                    "SELECT e.event_id, e.job_id, e.status, e.attempt, e.tag, e.occurred_at,"
                    " j.callback_url IS NOT NULL AS has_callback"
                    " FROM job_events e JOIN jobs j ON j.job_id = e.job_id"
                    " WHERE e.published_at IS NULL AND NOT j.erase_requested"
                    " ORDER BY e.event_id LIMIT $1",
                    limit,
                )
                events = [
                    JobEvent(
                        event_id=row["event_id"],
                        job_id=row["job_id"],
                        status=JobStatus(row["status"]),
                        attempt=row["attempt"],
                        tag=row["tag"],
                        occurred_at=row["occurred_at"],
                        webhook=row["has_callback"] and JobStatus(row["status"]) in TERMINAL,
                    )
                    for row in rows
                ]

            async def stamp(sent: Sequence[JobEvent]) -> None:
                await conn.execute(
                    "UPDATE job_events SET published_at = now() WHERE event_id = ANY($1::bigint[])",
                    [event.event_id for event in sent],
                )

            yield LockedRows(events, stamp)

    # ---- direct uploads --------------------------------------------------------------

    async def create_upload(
        self,
        *,
        upload_id: UUID,
        client_id: str,
        key: str,
        store_upload_id: str,
        size: int,
        part_size: int,
        expires_in_seconds: float,
    ) -> UploadRecord:
        """Record an ``open`` upload that expires ``expires_in_seconds`` from now."""
        row = await self._run(
            lambda c: c.fetchrow(
                "INSERT INTO uploads (upload_id, client_id, key, store_upload_id, size,"
                " part_size, expires_at) VALUES ($1, $2, $3, $4, $5, $6,"
                " now() + make_interval(secs => $7)) RETURNING *",
                upload_id,
                client_id,
                key,
                store_upload_id,
                size,
                part_size,
                expires_in_seconds,
            )
        )
        assert row is not None  # an INSERT ... RETURNING without conflict clause
        return _row_to_upload(row)

    async def get_upload(self, upload_id: UUID) -> UploadRecord | None:
        row = await self._run(
            lambda c: c.fetchrow("SELECT * FROM uploads WHERE upload_id = $1", upload_id)
        )
        return None if row is None else _row_to_upload(row)

    async def mark_upload_completed(self, upload_id: UUID) -> UploadRecord | None:
        """``open`` -> ``completed``; ``None`` when it was not open."""
        row = await self._run(
            lambda c: c.fetchrow(
                "UPDATE uploads SET state = 'completed' WHERE upload_id = $1"
                " AND state = 'open' RETURNING *",
                upload_id,
            )
        )
        return None if row is None else _row_to_upload(row)

    async def delete_upload(self, upload_id: UUID) -> bool:
        """Forget an upload no job took over; ``False`` if there was none."""
        status = await self._run(
            lambda c: c.execute(
                "DELETE FROM uploads WHERE upload_id = $1 AND state <> 'submitted'", upload_id
            )
        )
        return status.endswith(" 1")

    @asynccontextmanager
    async def lock_expired_uploads(self, *, limit: int) -> AsyncIterator[LockedRows[UploadRecord]]:
        async with self.transaction() as conn:
            rows = await conn.fetch(
                "SELECT * FROM uploads WHERE state <> 'submitted' AND expires_at < now()"
                " ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
                limit,
            )

            async def forget(done: Sequence[UploadRecord]) -> None:
                await conn.execute(
                    "DELETE FROM uploads WHERE upload_id = ANY($1::uuid[])",
                    [upload.upload_id for upload in done],
                )

            yield LockedRows([_row_to_upload(row) for row in rows], forget)

    async def forget_idempotency_keys(self, *, older_than_seconds: float, limit: int) -> int:
        """Clear the ``Idempotency-Key`` of up to ``limit`` jobs created more
        than ``older_than_seconds`` ago, so their clients may use the keys
        again; returns how many were cleared."""
        status = await self._run(
            lambda c: c.execute(
                "UPDATE jobs SET idempotency_key = NULL, request_hash = NULL WHERE job_id IN ("
                " SELECT job_id FROM jobs WHERE idempotency_key IS NOT NULL"
                " AND created_at < now() - make_interval(secs => $1)"
                " LIMIT $2 FOR UPDATE SKIP LOCKED)",
                older_than_seconds,
                limit,
            )
        )
        return int(status.split()[-1])

    # --- retention and erasure ---------------------------------------------------

    async def request_erase(self, job_id: UUID) -> Job | None:
        """Flag the job for erasure (``cancel`` stops one that is not
        finished). ``None`` when there is no such job."""
        row = await self._run(
            lambda c: c.fetchrow(
                "UPDATE jobs SET erase_requested = true, updated_at = now()"
                " WHERE job_id = $1 RETURNING *",
                job_id,
            )
        )
        return None if row is None else _row_to_job(row)

    async def erase(self, job_id: UUID) -> bool:
        """Delete a failed or completed job's row and every row about it, in
        one transaction (tables added later refer to jobs ``ON DELETE
        CASCADE``); its idempotency key is free again. ``False`` when the job
        is gone already or not finished (a non-terminal job is never erased)."""
        async with self.transaction() as conn:
            found = await conn.fetchval(
                f"SELECT job_id FROM jobs WHERE job_id = $1 AND status IN {_FINISHED} FOR UPDATE",
                job_id,
            )
            if found is None:
                return False
            await conn.execute("DELETE FROM job_events WHERE job_id = $1", job_id)
            await conn.execute("DELETE FROM jobs WHERE job_id = $1", job_id)
        return True

    async def due_for_erasure(self, *, job_retention_seconds: float, limit: int) -> list[Job]:
        rows = await self._run(
            lambda c: c.fetch(
                f"SELECT * FROM jobs WHERE status IN {_FINISHED} AND (erase_requested"
                " OR ($1 > 0 AND finished_at < now() - make_interval(secs => $1)))"
                " ORDER BY finished_at LIMIT $2",
                float(job_retention_seconds),
                limit,
            )
        )
        return [_row_to_job(r) for r in rows]

    async def unstopped_erasures(self, *, limit: int) -> list[Job]:
        rows = await self._run(
            lambda c: c.fetch(
                "SELECT * FROM jobs WHERE erase_requested AND (status = 'pending'"
                " OR (status = 'running' AND NOT cancel_requested)) LIMIT $1",
                limit,
            )
        )
        return [_row_to_job(r) for r in rows]

    async def due_for_retention(
        self, what: Retained, *, older_than_seconds: float, limit: int
    ) -> list[Job]:
        where = _RETAINED[what]
        rows = await self._run(
            lambda c: c.fetch(
                f"SELECT * FROM jobs WHERE {where}"
                " AND finished_at < now() - make_interval(secs => $1)"
                " ORDER BY finished_at LIMIT $2",
                float(older_than_seconds),
                limit,
            )
        )
        return [_row_to_job(r) for r in rows]

    async def record_retained(self, what: Retained, job_ids: Sequence[UUID]) -> None:
        column = {"input": "input_deleted_at", "results": "results_expired_at"}[what]
        await self._run(
            lambda c: c.execute(
                f"UPDATE jobs SET {column} = now() WHERE job_id = ANY($1::uuid[])", list(job_ids)
            )
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a pooled connection without asyncpg's default reset query.

    That query (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL``) costs one more round trip on every pool use, about half of a
    status GET's database time. This code keeps no session state on pooled
    connections: its advisory lock is transaction-scoped, it never LISTENs
    or SETs, and migrations run on a connection of their own. asyncpg still
    rolls back a transaction left open before calling this.
    """


async def connect_repository(
    database_url: str, *, migrate: bool, min_size: int = 1, max_size: int = 10
) -> PostgresJobRepository:
    """Open a pool (and apply migrations when ``migrate``).

    Raises:
        DependencyUnavailable: the database could not be reached.
    """
    try:
        if migrate:
            conn = await asyncpg.connect(database_url, timeout=10)
            try:
                await apply_migrations(conn)
            finally:
                await conn.close()
        pool = await asyncpg.create_pool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            timeout=10,
            command_timeout=30,
            reset=_keep_session,
        )
    except _UNAVAILABLE as exc:
        raise DependencyUnavailable("database", type(exc).__name__) from None
    return PostgresJobRepository(pool)
