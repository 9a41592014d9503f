"""The governance rules that need PostgreSQL (``schema.code``: the repository
against the migrated database; ``schema.migrations``: the migrated database
against what the migrations declare), and the whole validator on the
repository itself, as the test command runs it.

The migrations a test adds take the next free number, as a real one would
(the project's migration runner refuses gaps): the overlays of
tests/fixtures/governance name theirs ``9999_*.sql``, renamed on the copy.
"""

from __future__ import annotations

import ast
import asyncio
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared.repository.migrate import load_migrations
from tools.governance import check
from tools.governance.migrated import MIGRATIONS, PREFIX
from tools.governance.openapi import SNAPSHOT

# PostgreSQL or S3 only: no RabbitMQ to vary, so not again in the RabbitMQ 4 lane.
pytestmark = [pytest.mark.integration, pytest.mark.single_broker]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "governance"
#: The number the next migration takes.
NEXT = f"{len(load_migrations()) + 1:04d}"


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


def _overlay(tree: Path, name: str) -> Path:
    """Copy the fixture ``name`` over ``tree``, its migrations numbered next."""
    shutil.copytree(FIXTURES / name, tree, dirs_exist_ok=True)
    for path in (tree / MIGRATIONS).glob("9999_*.sql"):
        path.rename(path.with_name(NEXT + path.name.removeprefix("9999")))
    return tree


def _found(tree: Path, admin_url: str, rule: str) -> list[str]:
    report = check(tree, rules=[rule], database_url=admin_url)
    return [str(v) for v in report.violations]


def _only(found: list[str], rule: str, *needles: str) -> None:
    assert found, f"{rule} found nothing"
    assert all(line.startswith(f"[{rule}]") for line in found), found
    for needle in needles:
        assert any(needle in line for line in found), f"{needle!r} not in {found}"


def _migrations(tree: Path, admin_url: str) -> list[str]:
    return _found(tree, admin_url, "schema.migrations")


async def _scratch_databases(admin_url: str) -> set[str]:
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{PREFIX}_%"
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
    _overlay(tree, "ghost_column")
    assert _migrations(tree, admin_url) == [
        f"[schema.migrations] shared/repository/migrations/{NEXT}_priority.sql:3:"
        " `jobs.priority` is declared here but the migrated database has no such column"
    ]


def test_a_column_added_behind_the_reader_s_back_is_caught(tree, admin_url):
    _overlay(tree, "hidden_column")
    assert _migrations(tree, admin_url) == [
        "[schema.migrations] shared/repository/migrations: the migrated database has"
        " `jobs.shadow_owner` (text), which no migration declares readably"
    ]


def test_a_type_the_declaration_does_not_say_is_caught(tree, admin_url):
    migration = tree / MIGRATIONS / f"{NEXT}_retype.sql"
    # The reading sees the ALTER; the dynamic SQL is where the truth hides.
    migration.write_text(
        "ALTER TABLE jobs ADD COLUMN weight real;\n"
        "DO $$ BEGIN EXECUTE 'ALTER TABLE jobs ALTER COLUMN weight TYPE bigint'; END $$;\n"
    )
    found = _migrations(tree, admin_url)
    assert found == [
        f"[schema.migrations] shared/repository/migrations/{NEXT}_retype.sql:1:"
        " `jobs.weight` is declared float4, the database has int8"
    ]


def test_a_migration_that_fails_on_a_fresh_database_is_caught(tree, admin_url):
    migration = tree / MIGRATIONS / f"{NEXT}_broken.sql"
    migration.write_text("ALTER TABLE no_such_table ADD COLUMN x int;\n")
    found = _migrations(tree, admin_url)
    assert len(found) == 1
    assert found[0].startswith(
        f"[schema.migrations] shared/repository/migrations/{NEXT}_broken.sql:"
        " the migration fails on a fresh database"
    )
    assert "no_such_table" in found[0]


def test_a_migration_the_runner_refuses_is_caught(tree, admin_url):
    (tree / MIGRATIONS / "9999_late.sql").write_text("SELECT 1;\n")
    found = _migrations(tree, admin_url)
    assert found == [
        "[schema.migrations] shared/repository/migrations: the migration runner refuses"
        f" them: migration numbers must run 1..n without gaps, got"
        f" {[*range(1, int(NEXT)), 9999]}"
    ]


def test_a_statement_the_reading_does_not_follow_is_reported_not_guessed(tree, admin_url):
    (tree / MIGRATIONS / f"{NEXT}_rename.sql").write_text(
        "ALTER TABLE jobs RENAME COLUMN tag TO label;\n"
    )
    found = _migrations(tree, admin_url)
    assert found[0] == (
        f"[schema.migrations] shared/repository/migrations/{NEXT}_rename.sql:1: RENAME"
        " changes a table or a type in a way this check does not follow: teach"
        " tools/governance/schema.py what it does"
    )


def test_a_database_that_does_not_answer_is_a_violation_not_a_pass(tree):
    found = _migrations(tree, "postgresql://postgres@127.0.0.1:1/postgres")
    assert len(found) == 1
    assert "PostgreSQL at 127.0.0.1 does not answer" in found[0]


def test_a_job_field_without_a_column_is_caught(tree, admin_url):
    jobs = tree / "shared" / "jobs.py"
    text = jobs.read_text()
    cls = next(n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == "Job")
    last = max(s.end_lineno or 0 for s in cls.body if isinstance(s, ast.AnnAssign))
    lines = text.splitlines(keepends=True)
    lines.insert(last, "    priority: int = 0\n")
    jobs.write_text("".join(lines))
    found = _found(tree, admin_url, "schema.code")
    _only(found, "schema.code", "Job.priority has no column", "_row_to_job does not read")


def test_the_repository_writing_an_undeclared_column_is_caught(tree, admin_url):
    (tree / "shared" / "repository" / "extra.py").write_text(
        "SQL = 'UPDATE jobs SET priority = $2 WHERE job_id = $1'\n"
    )
    found = _found(tree, admin_url, "schema.code")
    _only(found, "schema.code", "writes `jobs.priority`, a column no migration declares")


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
