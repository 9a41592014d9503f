"""A scratch PostgreSQL database: made fresh on a server, dropped afterwards.

The one way the tests (the ``database_url`` fixture), the benchmarks and the
governance validator get a database of their own on the server named by
``VIDEOQ_TEST_DATABASE_URL``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = ["scratch_database"]

#: Long enough for a loaded machine, short enough that a server that does not
#: answer is reported rather than waited on for asyncpg's default minute.
_CONNECT_TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str, *, prefix: str = "videoq_scratch") -> AsyncIterator[str]:
    """Create an empty database named ``<prefix>_<random>`` and yield its URL
    (``admin_url`` with the database name replaced); drop it on the way out,
    even while connections to it remain open (``WITH (FORCE)``).

    ``admin_url`` is a URL of the server whose user may create databases
    (``postgresql://postgres@127.0.0.1:5432/postgres``).

    Raises:
        OSError, TimeoutError: the server does not answer.
        asyncpg.PostgresError: it refuses (no such user, no permission).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _as_admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        parts = urlsplit(admin_url)
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        await _as_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _as_admin(admin_url: str, statement: str) -> None:
    # CREATE and DROP DATABASE cannot run inside a transaction, nor on a
    # connection to the database itself: one short connection each.
    conn = await asyncpg.connect(admin_url, timeout=_CONNECT_TIMEOUT)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
