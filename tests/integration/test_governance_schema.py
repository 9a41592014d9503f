"""The governance rules that need PostgreSQL (``schema.migrations``: the live
schema after the migrations equals what they declare), and the whole
validator on the repository itself, as the test command runs it.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tools.governance import check
from tools.governance.openapi import SNAPSHOT

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "governance"


@pytest.fixture
def admin_url(services_ready) -> str:
    return str(services_ready.database_url)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The repository's migrations and the code that reads them."""
    dest = tmp_path / "tree"
    for name in ("shared", "services"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _migrations(tree: Path, admin_url: str) -> list[str]:
    report = check(tree, rules=["schema.migrations"], database_url=admin_url)
    return [str(v) for v in report.violations]


async def _scratch_databases(admin_url: str) -> set[str]:
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'videoq_governance_%'"
        )
    finally:
        await conn.close()
    return {r["datname"] for r in rows}


def test_the_migrated_database_is_what_the_migrations_declare(tree, admin_url):
    before = asyncio.run(_scratch_databases(admin_url))
    assert _migrations(tree, admin_url) == []
    left = asyncio.run(_scratch_databases(admin_url)) - before
    assert not left, f"scratch databases left behind: {left}"


def test_a_migration_column_the_database_never_gets_is_caught(tree, admin_url):
    shutil.copytree(FIXTURES / "ghost_column", tree, dirs_exist_ok=True)
    assert _migrations(tree, admin_url) == [
        "[schema.migrations] shared/repository/migrations/9999_priority.sql:3:"
        " `jobs.priority` is declared here but the migrated database has no such column"
    ]


def test_a_column_added_behind_the_reader_s_back_is_caught(tree, admin_url):
    shutil.copytree(FIXTURES / "hidden_column", tree, dirs_exist_ok=True)
    assert _migrations(tree, admin_url) == [
        "[schema.migrations] shared/repository/migrations: the migrated database has"
        " `jobs.shadow_owner` (text), which no migration declares readably"
    ]


def test_a_type_the_declaration_does_not_say_is_caught(tree, admin_url):
    migration = tree / "shared" / "repository" / "migrations" / "9999_retype.sql"
    # The parser reads the ALTER; the USING clause is where the truth hides.
    migration.write_text(
        "ALTER TABLE jobs ADD COLUMN weight real;\n"
        "DO $$ BEGIN EXECUTE 'ALTER TABLE jobs ALTER COLUMN weight TYPE bigint'; END $$;\n"
    )
    found = _migrations(tree, admin_url)
    assert found == [
        "[schema.migrations] shared/repository/migrations/9999_retype.sql:1:"
        " `jobs.weight` is declared float4, the database has int8"
    ]


def test_a_migration_that_fails_on_a_fresh_database_is_caught(tree, admin_url):
    migration = tree / "shared" / "repository" / "migrations" / "9999_broken.sql"
    migration.write_text("ALTER TABLE no_such_table ADD COLUMN x int;\n")
    found = _migrations(tree, admin_url)
    assert len(found) == 1
    assert found[0].startswith(
        "[schema.migrations] shared/repository/migrations/9999_broken.sql:"
        " the migration fails on a fresh database"
    )
    assert "no_such_table" in found[0]


def test_a_database_that_does_not_answer_is_a_violation_not_a_pass(tree):
    found = _migrations(tree, "postgresql://postgres@127.0.0.1:1/postgres")
    assert len(found) == 1
    assert "PostgreSQL at 127.0.0.1 does not answer" in found[0]


def test_the_repository_keeps_every_governance_rule(admin_url):
    """What `python -m tools.governance` checks in the test command. An
    intended API change refreshes docs/openapi.json in the same commit
    (`python -m tools.governance --write-openapi`)."""
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    report = check(ROOT, database_url=url)
    assert report.skipped == []
    found = [str(v) for v in report.violations]
    hint = (
        f" (API changed? refresh {SNAPSHOT} with --write-openapi)"
        if any("schema.openapi" in f for f in found)
        else ""
    )
    assert found == [], "\n".join(found) + hint
