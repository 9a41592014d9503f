"""The schema a tree's migrations build, read back from PostgreSQL.

``migrated_schema(root, admin_url)`` makes a scratch database on the server of
``admin_url`` (:func:`tools.scratch_db.scratch_database`), applies the tree's
migrations with the project's own runner
(:func:`shared.repository.migrate.apply_migrations`, as every service does at
start-up; the runner of the checkout the validator runs from, which is the
tree's own when it checks itself) and reads the tables, columns and enums of
the ``public`` schema back from ``information_schema`` and ``pg_catalog``. A
run computes it once (:attr:`tools.governance.core.Context.migrated`) for
every ``schema.*`` rule.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import asyncpg

from tools.governance.core import DATABASE_VARIABLE
from tools.scratch_db import scratch_database

if TYPE_CHECKING:
    from shared.repository.migrate import Migration

__all__ = ["MIGRATIONS", "Migrated", "Schema", "migrated_schema"]

MIGRATIONS = "shared/repository/migrations"
#: Scratch databases of the validator are named ``videoq_governance_<random>``.
PREFIX = "videoq_governance"
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Schema:
    #: table -> column -> (``udt_name``, nullable), columns in their order.
    tables: dict[str, dict[str, tuple[str, bool]]]
    #: enum type -> its labels, in their order.
    enums: dict[str, list[str]]


@dataclass(frozen=True)
class Migrated:
    """The schema the migrations built, or why there is none."""

    schema: Schema | None = None
    #: ``(path, message)`` when ``schema`` is None.
    failure: tuple[str, str] | None = None


class _MigrationFailed(Exception):
    def __init__(self, rel: str, error: str) -> None:
        super().__init__(f"{rel}: {error}")
        self.rel = rel
        self.error = error


def migrated_schema(root: Path, admin_url: str | None) -> Migrated:
    """Migrate a scratch database on ``admin_url``'s server with the migrations
    of the tree at ``root``, and read its schema (the database is dropped)."""
    if not admin_url:
        return Migrated(
            failure=(
                MIGRATIONS,
                f"needs PostgreSQL: pass --database-url or set {DATABASE_VARIABLE}"
                " (or skip this check with --no-database)",
            )
        )
    # Imported here, not with the validator: a broken shared/ is reported by
    # the rules (source.parse) instead of stopping them all.
    from shared.repository.migrate import load_migrations

    directory = root / MIGRATIONS
    try:
        migrations = load_migrations(directory)
    except ValueError as exc:
        return Migrated(failure=(MIGRATIONS, f"the migration runner refuses them: {exc}"))
    host = urlsplit(admin_url).hostname
    try:
        return Migrated(schema=asyncio.run(_migrate_and_read(admin_url, directory, migrations)))
    except _MigrationFailed as exc:
        return Migrated(failure=(exc.rel, f"the migration fails on a fresh database: {exc.error}"))
    except (OSError, TimeoutError) as exc:
        return Migrated(failure=(MIGRATIONS, f"PostgreSQL at {host} does not answer: {exc!r}"))
    except asyncpg.PostgresError as exc:
        return Migrated(
            failure=(MIGRATIONS, f"PostgreSQL at {host} gives no scratch database: {exc}")
        )


async def _migrate_and_read(admin_url: str, directory: Path, migrations: list[Migration]) -> Schema:
    from shared.repository.migrate import apply_migrations

    async with scratch_database(admin_url, prefix=PREFIX) as url:
        conn = await asyncpg.connect(url, timeout=_CONNECT_TIMEOUT)
        try:
            try:
                await apply_migrations(conn, directory)
            except asyncpg.PostgresError as exc:
                # Each migration commits on its own, in order: the first one
                # not recorded is the one that failed.
                done = await conn.fetchval("SELECT count(*) FROM schema_migrations")
                failed = migrations[done]
                rel = f"{MIGRATIONS}/{failed.version:04d}_{failed.name}.sql"
                raise _MigrationFailed(rel, str(exc)) from None
            return await _read(conn)
        finally:
            await conn.close()


async def _read(conn: asyncpg.Connection) -> Schema:
    columns = await conn.fetch(
        "SELECT table_name, column_name, udt_name, is_nullable"
        " FROM information_schema.columns WHERE table_schema = 'public'"
        " ORDER BY table_name, ordinal_position"
    )
    labels = await conn.fetch(
        "SELECT t.typname, e.enumlabel FROM pg_type t"
        " JOIN pg_enum e ON e.enumtypid = t.oid"
        " JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE n.nspname = 'public' ORDER BY t.typname, e.enumsortorder"
    )
    tables: dict[str, dict[str, tuple[str, bool]]] = {}
    for row in columns:
        tables.setdefault(row["table_name"], {})[row["column_name"]] = (
            row["udt_name"],
            row["is_nullable"] == "YES",
        )
    enums: dict[str, list[str]] = {}
    for row in labels:
        enums.setdefault(row["typname"], []).append(row["enumlabel"])
    return Schema(tables, enums)
