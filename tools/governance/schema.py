"""No schema drift between the migrations, the database they build and the code.

The schema is the one the project's migration runner builds on a scratch
database (:mod:`tools.governance.migrated`), so both rules need PostgreSQL.

- ``schema.code``: the migrated database holds what the repository reads and
  writes: ``Job``'s fields are exactly the ``jobs`` columns, ``_row_to_job``
  reads every field, every column the repository's SQL inserts or sets
  exists, and ``JobStatus`` equals the enum of ``jobs.status``.
- ``schema.migrations``: the migrations apply to a fresh database, and it has
  exactly the tables, columns, types, nullability and enums their statements
  declare, so what a reader of the migrations sees is what runs. A column
  added by dynamic SQL (``DO``, ``EXECUTE``) or one declared by a statement
  that did nothing (``CREATE TABLE IF NOT EXISTS`` on a table that exists) is
  drift. The statements are read with PostgreSQL's own parser (pglast); the
  reading follows the ones migrations use to make tables and enums (CREATE
  TABLE, ALTER TABLE ADD and DROP COLUMN, CREATE TYPE AS ENUM, ALTER TYPE ADD
  VALUE) and reports any other statement that changes a table or a type
  rather than guess what it does.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast as sql_ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

from tools.governance.core import Context, Rule, Violation
from tools.governance.migrated import MIGRATIONS, Schema
from tools.governance.source import Module

__all__ = ["MIGRATIONS", "RULES", "Column", "Declared", "declared_schema", "statements"]

JOBS_MODULE = "shared/jobs.py"
REPOSITORY = "shared/repository/postgres.py"
JOBS_TABLE = "jobs"
#: Made by the migration runner itself, not by a migration.
BOOKKEEPING = {"schema_migrations"}


# ---- what the migrations declare ------------------------------------------------------


@dataclass
class Column:
    #: As ``information_schema.columns.udt_name`` spells it.
    type: str
    nullable: bool
    #: ``path:line`` of the statement that declared it.
    where: str

    @property
    def path(self) -> str:
        return self.where.rpartition(":")[0]

    @property
    def line(self) -> int:
        return int(self.where.rpartition(":")[2])


@dataclass
class Declared:
    """What the migrations say, statement by statement."""

    tables: dict[str, dict[str, Column]] = field(default_factory=dict)
    enums: dict[str, list[str]] = field(default_factory=dict)
    #: ``(path, line, problem)``: statements the reading does not follow
    #: (reported, not guessed).
    problems: list[tuple[str, int | None, str]] = field(default_factory=list)


def statements(sql: str) -> list[tuple[sql_ast.Node, int]]:
    """The statements of ``sql`` with the line each starts on (comments and
    blank lines before it skipped).

    Raises:
        pglast.parser.ParseError: ``sql`` is not PostgreSQL.
    """
    data = sql.encode()  # the parser's locations count bytes
    return [
        (raw.stmt, data[: raw.stmt_location or 0].count(b"\n") + 1)
        for raw in pglast.parse_sql(sql)
        if raw.stmt is not None
    ]


def declared_schema(files: list[tuple[str, str]]) -> Declared:
    """The schema ``files`` (``(path, sql)``, applied in order) declare."""
    declared = Declared()
    for rel, sql in files:
        try:
            found = statements(sql)
        except pglast.parser.ParseError as exc:
            declared.problems.append((rel, None, f"not PostgreSQL: {exc}"))
            continue
        for statement, line in found:
            problem = _follow(declared, statement, f"{rel}:{line}")
            if problem:
                declared.problems.append((rel, line, problem))
    return declared


#: The grammar keeps serial types by their own name: a serial is an int4
#: (NOT NULL, with a sequence).
_SERIALS = {"smallserial": "int2", "serial2": "int2", "serial": "int4", "serial4": "int4"}
_SERIALS |= {"bigserial": "int8", "serial8": "int8"}
_NOT_NULL = {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY}
#: ALTER TABLE actions that change a column's type or nullability.
_CHANGES_A_COLUMN = {
    AlterTableType.AT_AlterColumnType,
    AlterTableType.AT_SetNotNull,
    AlterTableType.AT_DropNotNull,
}
_TABLES_AND_TYPES = {ObjectType.OBJECT_TABLE, ObjectType.OBJECT_TYPE, ObjectType.OBJECT_COLUMN}
_UNFOLLOWED = (
    "{} changes a table or a type in a way this check does not follow: teach"
    " tools/governance/schema.py what it does"
)


def _follow(declared: Declared, statement: sql_ast.Node, where: str) -> str | None:
    """Apply ``statement`` to ``declared``; a problem when it cannot."""
    if isinstance(statement, sql_ast.CreateEnumStmt):
        declared.enums[_last(statement.typeName)] = [_text(v) for v in statement.vals or ()]
    elif isinstance(statement, sql_ast.AlterEnumStmt) and statement.oldVal is None:
        labels = declared.enums.setdefault(_last(statement.typeName), [])
        value, anchor = str(statement.newVal), statement.newValNeighbor
        if value not in labels:
            at = len(labels)
            if anchor in labels:
                at = labels.index(str(anchor)) + (1 if statement.newValIsAfter else 0)
            labels.insert(at, value)
    elif isinstance(statement, sql_ast.CreateStmt):
        elements = statement.tableElts or ()
        primary_key = {
            _text(key)
            for e in elements
            if isinstance(e, sql_ast.Constraint) and e.contype == ConstrType.CONSTR_PRIMARY
            for key in e.keys or ()
        }
        columns = declared.tables.setdefault(_table(statement.relation), {})
        for element in elements:
            # IF NOT EXISTS on a table that exists changes nothing in the
            # database; its columns still count as declared here, so the
            # comparison with the database catches the misunderstanding.
            if isinstance(element, sql_ast.ColumnDef):
                columns.setdefault(str(element.colname), _column(element, where, primary_key))
    elif isinstance(statement, sql_ast.AlterTableStmt):
        if statement.objtype != ObjectType.OBJECT_TABLE:
            return None
        columns = declared.tables.setdefault(_table(statement.relation), {})
        for command in statement.cmds or ():
            if command.subtype == AlterTableType.AT_AddColumn:
                column = command.def_
                assert isinstance(column, sql_ast.ColumnDef)
                columns[str(column.colname)] = _column(column, where, set())
            elif command.subtype == AlterTableType.AT_DropColumn:
                columns.pop(str(command.name), None)
            elif command.subtype in _CHANGES_A_COLUMN:
                return _UNFOLLOWED.format(f"ALTER COLUMN {command.name}")
    elif isinstance(statement, sql_ast.AlterEnumStmt):
        return _UNFOLLOWED.format("ALTER TYPE ... RENAME VALUE")
    elif isinstance(statement, sql_ast.DropStmt) and statement.removeType in _TABLES_AND_TYPES:
        return _UNFOLLOWED.format("DROP")
    elif isinstance(statement, sql_ast.RenameStmt) and statement.renameType in _TABLES_AND_TYPES:
        return _UNFOLLOWED.format("RENAME")
    return None


def _column(definition: sql_ast.ColumnDef, where: str, primary_key: set[str]) -> Column:
    # The grammar spells integer, double precision, varchar(64) ... as
    # pg_catalog.int4, pg_catalog.float8, pg_catalog.varchar: udt_name's words.
    type_name = definition.typeName
    assert type_name is not None
    base = _last(type_name.names)
    spelled = _SERIALS.get(base, base)
    constraints = {c.contype for c in definition.constraints or ()}
    not_null = bool(constraints & _NOT_NULL) or base in _SERIALS
    not_null = not_null or definition.colname in primary_key
    return Column(f"_{spelled}" if type_name.arrayBounds else spelled, not not_null, where)


def _text(node: Any) -> str:
    """The text of a ``String`` node."""
    return str(node.sval)


def _last(names: tuple[Any, ...] | None) -> str:
    """``job_status`` of ``public.job_status`` (a qualified name's parts)."""
    return _text(names[-1]) if names else ""


def _table(relation: sql_ast.RangeVar | None) -> str:
    return str(relation.relname) if relation is not None else ""


def migration_files(ctx: Context) -> list[tuple[str, str]]:
    directory = ctx.root / MIGRATIONS
    return [
        (p.relative_to(ctx.root).as_posix(), p.read_text(encoding="utf-8"))
        for p in sorted(directory.glob("*.sql"))
    ]


# ---- what the code reads and writes ----------------------------------------------------


def _dataclass_fields(module: Module, name: str) -> dict[str, int]:
    for node in module.tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            found = {}
            for statement in node.body:
                if (
                    isinstance(statement, ast.AnnAssign)
                    and isinstance(statement.target, ast.Name)
                    and "ClassVar" not in ast.unparse(statement.annotation)
                ):
                    found[statement.target.id] = statement.lineno
            return found
    return {}


def _enum_values(module: Module, name: str) -> list[str]:
    for node in module.tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return [
                s.value.value
                for s in node.body
                if isinstance(s, ast.Assign)
                and isinstance(s.value, ast.Constant)
                and isinstance(s.value.value, str)
            ]
    return []


def _row_keys(module: Module, function: str) -> dict[str, int]:
    for node in module.nodes:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            keys: dict[str, int] = {}
            for sub in ast.walk(node):
                if (
                    isinstance(sub, ast.Subscript)
                    and isinstance(sub.slice, ast.Constant)
                    and isinstance(sub.slice.value, str)
                ):
                    keys.setdefault(sub.slice.value, sub.lineno)
            return keys
    return {}


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    current: list[str] = []
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


_INSERT = re.compile(r"\bINSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)
_UPDATE = re.compile(
    r"\bUPDATE\s+(\w+)\s+SET\s+(.*?)(?=\bWHERE\b|\bRETURNING\b|\bFROM\b|$)", re.I | re.S
)
_FRAGMENT = re.compile(r"^\s*(\w+)\s*=(?![=>])")


def written_columns(module: Module) -> list[tuple[str, str, int]]:
    """``(table, column, line)`` the module's SQL inserts or sets. A bare
    ``column = ...`` fragment (the SET parts the repository assembles) is
    taken to be about ``jobs``."""
    found = []
    for node, text in module.strings():
        sql = re.sub(r"\s+", " ", text)
        matched = False
        for match in _INSERT.finditer(sql):
            matched = True
            for column in match.group(2).split(","):
                found.append((match.group(1).lower(), column.strip().lower(), node.lineno))
        for match in _UPDATE.finditer(sql):
            matched = True
            for assignment in _split_top(match.group(2)):
                target = _FRAGMENT.match(assignment)
                if target:
                    found.append((match.group(1).lower(), target.group(1).lower(), node.lineno))
        if not matched:
            target = _FRAGMENT.match(sql)
            if target and not target.group(1).isdigit():
                found.append((JOBS_TABLE, target.group(1).lower(), node.lineno))
    return found


def _failure(rule: str, ctx: Context) -> Iterator[Violation]:
    failure = ctx.migrated.failure
    if failure is not None:
        yield Violation(rule, failure[0], None, failure[1])


def _code(ctx: Context) -> Iterator[Violation]:
    rule = "schema.code"
    schema = ctx.migrated.schema
    if schema is None:
        yield from _failure(rule, ctx)
        return
    columns = schema.tables.get(JOBS_TABLE)
    if columns is None:
        yield Violation(rule, MIGRATIONS, None, f"no migration creates the `{JOBS_TABLE}` table")
        return
    jobs = ctx.tree.module(JOBS_MODULE)
    repository = ctx.tree.module(REPOSITORY)
    if jobs is None or repository is None:
        yield Violation(rule, JOBS_MODULE, None, f"{JOBS_MODULE} or {REPOSITORY} is missing")
        return
    fields = _dataclass_fields(jobs, "Job")
    for name, line in fields.items():
        if name not in columns:
            yield Violation(
                rule,
                JOBS_MODULE,
                line,
                f"Job.{name} has no column in `{JOBS_TABLE}` (no migration declares it)",
            )
    for name in columns:
        if name not in fields:
            yield Violation(
                rule,
                MIGRATIONS,
                None,
                f"`{JOBS_TABLE}.{name}` is not a field of Job ({JOBS_MODULE}): the"
                " repository never reads it",
            )
    keys = _row_keys(repository, "_row_to_job")
    for name, line in keys.items():
        if name not in columns:
            yield Violation(
                rule, REPOSITORY, line, f"_row_to_job reads `{name}`, not a column of `jobs`"
            )
    for name in fields:
        if keys and name not in keys:
            yield Violation(
                rule, REPOSITORY, None, f"_row_to_job does not read Job.{name} from the row"
            )
    for module in ctx.tree.modules("shared/repository"):
        for table, written, line in sorted(set(written_columns(module))):
            if table in BOOKKEEPING:
                continue
            if table not in schema.tables:
                yield Violation(
                    rule, module.rel, line, f"writes `{table}`, a table no migration declares"
                )
            elif written not in schema.tables[table]:
                yield Violation(
                    rule,
                    module.rel,
                    line,
                    f"writes `{table}.{written}`, a column no migration declares",
                )
    status = columns.get("status")
    statuses = _enum_values(jobs, "JobStatus")
    if status is not None and status[0] in schema.enums:
        labels = schema.enums[status[0]]
        if sorted(labels) != sorted(statuses):
            yield Violation(
                rule,
                JOBS_MODULE,
                None,
                f"JobStatus {sorted(statuses)} differs from the enum `{status[0]}`"
                f" {sorted(labels)} of the migrations",
            )


def _migrations(ctx: Context) -> Iterator[Violation]:
    rule = "schema.migrations"
    live = ctx.migrated.schema
    if live is None:
        yield from _failure(rule, ctx)
        return
    declared = declared_schema(migration_files(ctx))
    for path, line, problem in declared.problems:
        yield Violation(rule, path, line, problem)
    yield from _compare(rule, declared, live)


def _compare(rule: str, declared: Declared, live: Schema) -> Iterator[Violation]:
    live_tables = {t: c for t, c in live.tables.items() if t not in BOOKKEEPING}
    for table in sorted(set(declared.tables) | set(live_tables)):
        said = declared.tables.get(table)
        got = live_tables.get(table)
        if got is None:
            yield Violation(
                rule, MIGRATIONS, None, f"the migrations declare `{table}`; the database has none"
            )
            continue
        if said is None:
            yield Violation(
                rule,
                MIGRATIONS,
                None,
                f"the database has table `{table}`, which no migration declares readably",
            )
            continue
        for name in sorted(set(said) | set(got)):
            if name not in got:
                yield Violation(
                    rule,
                    said[name].path,
                    said[name].line,
                    f"`{table}.{name}` is declared here but the migrated database has no"
                    " such column",
                )
            elif name not in said:
                yield Violation(
                    rule,
                    MIGRATIONS,
                    None,
                    f"the migrated database has `{table}.{name}` ({got[name][0]}), which no"
                    " migration declares readably",
                )
            else:
                column = said[name]
                live_type, live_nullable = got[name]
                if column.type != live_type:
                    yield Violation(
                        rule,
                        column.path,
                        column.line,
                        f"`{table}.{name}` is declared {column.type}, the database has {live_type}",
                    )
                if column.nullable != live_nullable:
                    yield Violation(
                        rule,
                        column.path,
                        column.line,
                        f"`{table}.{name}` is declared"
                        f" {'nullable' if column.nullable else 'NOT NULL'}, the database has it"
                        f" {'nullable' if live_nullable else 'NOT NULL'}",
                    )
    for enum in sorted(set(declared.enums) | set(live.enums)):
        if declared.enums.get(enum) != live.enums.get(enum):
            yield Violation(
                rule,
                MIGRATIONS,
                None,
                f"enum `{enum}`: declared {declared.enums.get(enum)}, database"
                f" {live.enums.get(enum)}",
            )


RULES = [
    Rule(
        "schema.code",
        "the repository reads and writes what the migrated database has",
        _code,
        needs_database=True,
    ),
    Rule(
        "schema.migrations",
        "the migrated database is what the migrations declare",
        _migrations,
        needs_database=True,
    ),
]
