"""No schema drift.

- ``schema.code`` (no database): the schema the migrations declare (parsed
  from their SQL) holds what the repository reads and writes: ``Job``'s
  fields are exactly the ``jobs`` columns, ``_row_to_job`` reads every field,
  every column the repository's SQL inserts or sets exists, and ``JobStatus``
  equals the enum of ``jobs.status``.
- ``schema.migrations`` (PostgreSQL): the migrations applied in order to a
  scratch database give exactly the tables, columns, types, nullability and
  enums their SQL declares (so what a reader of the migrations sees is what
  runs).
"""

from __future__ import annotations

import ast
import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from tools.governance.core import Context, Rule, Violation
from tools.governance.source import Module

__all__ = ["MIGRATIONS", "RULES", "Column", "Declared", "declared_schema", "split_statements"]

MIGRATIONS = "shared/repository/migrations"
JOBS_MODULE = "shared/jobs.py"
REPOSITORY = "shared/repository/postgres.py"
JOBS_TABLE = "jobs"
#: Made by the migration runner itself, not by a migration.
BOOKKEEPING = {"schema_migrations"}


@dataclass
class Column:
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
    #: Statements the parser could not follow (reported, not guessed).
    problems: list[tuple[str, str]] = field(default_factory=list)


# ---- reading SQL -------------------------------------------------------------------


def split_statements(sql: str) -> list[tuple[str, int]]:
    """Statements of ``sql`` with their first line, comments removed; quotes,
    quoted identifiers and dollar-quoted bodies kept whole."""
    out: list[tuple[str, int]] = []
    buf: list[str] = []
    line = 1
    start = 1
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end
            continue
        if ch == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end == -1 else end + 2
            line += sql.count("\n", i, end)
            buf.append(" ")
            i = end
            continue
        if ch in "'\"":
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:
                        end += 2
                        continue
                    break
                end += 1
            end = min(end + 1, n)
            buf.append(sql[i:end])
            line += sql.count("\n", i, end)
            i = end
            continue
        if ch == "$":
            match = re.match(r"\$[A-Za-z_]*\$", sql[i:])
            if match:
                tag = match.group(0)
                end = sql.find(tag, i + len(tag))
                end = n if end == -1 else end + len(tag)
                buf.append(sql[i:end])
                line += sql.count("\n", i, end)
                i = end
                continue
        if ch == ";":
            text = "".join(buf).strip()
            if text:
                out.append((text, start))
            buf = []
            i += 1
            continue
        if ch == "\n":
            line += 1
        if not "".join(buf).strip() and not ch.isspace():
            start = line
        buf.append(ch)
        i += 1
    text = "".join(buf).strip()
    if text:
        out.append((text, start))
    return out


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


def _flatten(text: str) -> str:
    """``text`` with quoted strings and parenthesised groups blanked (to look
    for keywords such as NOT NULL at the top level only)."""
    out: list[str] = []
    depth = 0
    quote: str | None = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch == "'":
            quote = ch
            out.append(" ")
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


_TYPE_ALIASES = {
    "int": "int4",
    "integer": "int4",
    "serial": "int4",
    "serial4": "int4",
    "bigint": "int8",
    "bigserial": "int8",
    "serial8": "int8",
    "smallint": "int2",
    "smallserial": "int2",
    "real": "float4",
    "double precision": "float8",
    "float": "float8",
    "boolean": "bool",
    "character varying": "varchar",
    "char": "bpchar",
    "character": "bpchar",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "timestamp": "timestamp",
    "time with time zone": "timetz",
    "time without time zone": "time",
    "decimal": "numeric",
}
_SERIALS = {"serial", "serial4", "bigserial", "serial8", "smallserial"}
_COLUMN_END = re.compile(
    r"\s+(?:NOT\s+NULL|NULL|DEFAULT|PRIMARY|REFERENCES|CHECK|UNIQUE|CONSTRAINT|GENERATED|COLLATE)\b",
    re.IGNORECASE,
)
_TABLE_CONSTRAINTS = {"constraint", "primary", "unique", "check", "foreign", "exclude", "like"}


def normalize_type(raw: str) -> str:
    """A declared type as ``information_schema.columns.udt_name`` spells it."""
    text = re.sub(r"\s+", " ", raw.strip().lower())
    array = text.endswith("[]")
    text = text.removesuffix("[]").strip()
    text = re.sub(r"\s*\([^)]*\)", "", text).strip()  # varchar(64), numeric(10,2)
    text = text.removeprefix("public.").strip('"')
    base = _TYPE_ALIASES.get(text, text)
    return f"_{base}" if array else base


def _ident(raw: str) -> str:
    raw = raw.strip()
    if raw.startswith('"') and raw.endswith('"'):
        return raw[1:-1]
    return raw.lower().removeprefix("public.")


def _column(definition: str, where: str) -> tuple[str, Column] | None:
    match = re.match(r'^("[^"]+"|\w+)\s+(.*)$', definition.strip(), re.DOTALL)
    if not match or match.group(1).lower() in _TABLE_CONSTRAINTS:
        return None
    name, rest = _ident(match.group(1)), match.group(2)
    end = _COLUMN_END.search(" " + rest)
    type_text = (" " + rest)[: end.start()] if end else rest
    flat = _flatten(rest).upper()
    not_null = bool(re.search(r"\bNOT\s+NULL\b|\bPRIMARY\s+KEY\b", flat))
    not_null = not_null or type_text.strip().lower() in _SERIALS
    return name, Column(normalize_type(type_text), not not_null, where)


def _body(statement: str) -> tuple[str, str] | None:
    """(head, body) of ``head ( body ) tail``."""
    start = statement.find("(")
    if start == -1:
        return None
    depth = 0
    for index in range(start, len(statement)):
        if statement[index] == "(":
            depth += 1
        elif statement[index] == ")":
            depth -= 1
            if depth == 0:
                return statement[:start], statement[start + 1 : index]
    return None


_CREATE_TABLE = re.compile(
    r"^CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\S+)\s*$", re.IGNORECASE
)
_CREATE_ENUM = re.compile(r"^CREATE\s+TYPE\s+(\S+)\s+AS\s+ENUM\s*\((.*)\)$", re.IGNORECASE | re.S)
_ALTER_ENUM = re.compile(
    r"^ALTER\s+TYPE\s+(\S+)\s+ADD\s+VALUE\s+(?:IF\s+NOT\s+EXISTS\s+)?'([^']*)'"
    r"(?:\s+(BEFORE|AFTER)\s+'([^']*)')?$",
    re.IGNORECASE,
)
_RENAME_ENUM = re.compile(
    r"^ALTER\s+TYPE\s+(\S+)\s+RENAME\s+VALUE\s+'([^']*)'\s+TO\s+'([^']*)'$", re.IGNORECASE
)
_ALTER_TABLE = re.compile(
    r"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(\S+)\s+(.*)$", re.IGNORECASE | re.S
)
_DROP_TABLE = re.compile(
    r"^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(.*?)(?:\s+CASCADE|\s+RESTRICT)?$", re.I
)
_DROP_TYPE = re.compile(
    r"^DROP\s+TYPE\s+(?:IF\s+EXISTS\s+)?(.*?)(?:\s+CASCADE|\s+RESTRICT)?$", re.I
)


def _alter_table(declared: Declared, table: str, actions: str, where: str) -> None:
    columns = declared.tables.setdefault(table, {})
    for action in _split_top(actions):
        text = re.sub(r"\s+", " ", action.strip())
        lower = text.lower()
        if match := re.match(r"rename to (\S+)$", lower):
            declared.tables[_ident(match.group(1))] = declared.tables.pop(table)
            return
        if match := re.match(r'rename (?:column )?("[^"]+"|\w+) to ("[^"]+"|\w+)$', text, re.I):
            old, new = _ident(match.group(1)), _ident(match.group(2))
            if old in columns:
                columns[new] = columns.pop(old)
            continue
        if match := re.match(r"add (?:column )?(?:if not exists )?(.*)$", text, re.I | re.S):
            parsed = _column(match.group(1), where)
            if parsed is not None and not lower.startswith(("add constraint", "add primary")):
                columns[parsed[0]] = parsed[1]
            continue
        if match := re.match(r'drop (?:column )?(?:if exists )?("[^"]+"|\w+)', text, re.I):
            name = _ident(match.group(1))
            if name != "constraint":
                columns.pop(name, None)
            continue
        if match := re.match(
            r'alter (?:column )?("[^"]+"|\w+) (?:set data )?type (.+?)(?: using .*)?$', text, re.I
        ):
            name = _ident(match.group(1))
            if name in columns:
                columns[name].type = normalize_type(match.group(2))
            continue
        if match := re.match(r'alter (?:column )?("[^"]+"|\w+) (set|drop) not null$', text, re.I):
            name = _ident(match.group(1))
            if name in columns:
                columns[name].nullable = match.group(2).lower() == "drop"
            continue


def declared_schema(files: list[tuple[str, str]]) -> Declared:
    """The schema ``files`` (``(path, sql)``, applied in order) declare."""
    declared = Declared()
    for rel, sql in files:
        for statement, line in split_statements(sql):
            where = f"{rel}:{line}"
            flat = re.sub(r"\s+", " ", statement).strip()
            if match := _CREATE_ENUM.match(flat):
                labels = re.findall(r"'((?:[^']|'')*)'", match.group(2))
                declared.enums[_ident(match.group(1))] = [s.replace("''", "'") for s in labels]
                continue
            if match := _ALTER_ENUM.match(flat):
                labels = declared.enums.setdefault(_ident(match.group(1)), [])
                value, position, anchor = match.group(2), match.group(3), match.group(4)
                if value in labels:
                    continue
                if position and anchor in labels:
                    index = labels.index(anchor) + (1 if position.upper() == "AFTER" else 0)
                    labels.insert(index, value)
                else:
                    labels.append(value)
                continue
            if match := _RENAME_ENUM.match(flat):
                labels = declared.enums.get(_ident(match.group(1)), [])
                if match.group(2) in labels:
                    labels[labels.index(match.group(2))] = match.group(3)
                continue
            if re.match(r"^CREATE\s+(?:UNLOGGED\s+)?TABLE\b", flat, re.I):
                parts = _body(flat)
                head = _CREATE_TABLE.match(parts[0].strip()) if parts else None
                if parts is None or head is None:
                    declared.problems.append((where, "CREATE TABLE the checker cannot read"))
                    continue
                table = _ident(head.group(2))
                columns = declared.tables.setdefault(table, {})
                # IF NOT EXISTS on a table declared already changes nothing in
                # the database; its columns still count as declared here, so
                # the live comparison catches the misunderstanding.
                for definition in _split_top(parts[1]):
                    parsed = _column(definition, where)
                    if parsed is not None:
                        columns.setdefault(parsed[0], parsed[1])
                continue
            if match := _ALTER_TABLE.match(flat):
                _alter_table(declared, _ident(match.group(1)), match.group(2), where)
                continue
            if match := _DROP_TABLE.match(flat):
                for name in match.group(1).split(","):
                    declared.tables.pop(_ident(name), None)
                continue
            if match := _DROP_TYPE.match(flat):
                for name in match.group(1).split(","):
                    declared.enums.pop(_ident(name), None)
                continue
    return declared


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


def _code(ctx: Context) -> Iterator[Violation]:
    rule = "schema.code"
    files = migration_files(ctx)
    if not files:
        yield Violation(rule, MIGRATIONS, None, "no migrations")
        return
    declared = declared_schema(files)
    for where, problem in declared.problems:
        path, _, number = where.rpartition(":")
        yield Violation(rule, path, int(number), problem)
    columns = declared.tables.get(JOBS_TABLE)
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
    for name, declared_column in columns.items():
        if name not in fields:
            yield Violation(
                rule,
                declared_column.path,
                declared_column.line,
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
            if table not in declared.tables:
                yield Violation(
                    rule, module.rel, line, f"writes `{table}`, a table no migration declares"
                )
            elif written not in declared.tables[table]:
                yield Violation(
                    rule,
                    module.rel,
                    line,
                    f"writes `{table}.{written}`, a column no migration declares",
                )
    status = columns.get("status")
    statuses = _enum_values(jobs, "JobStatus")
    if status is not None and status.type in declared.enums:
        labels = declared.enums[status.type]
        if sorted(labels) != sorted(statuses):
            yield Violation(
                rule,
                JOBS_MODULE,
                None,
                f"JobStatus {sorted(statuses)} differs from the enum `{status.type}`"
                f" {sorted(labels)} of the migrations",
            )


# ---- the live schema -----------------------------------------------------------------------


@dataclass
class Live:
    tables: dict[str, dict[str, tuple[str, bool]]]
    enums: dict[str, list[str]]


async def _live_schema(admin_url: str, files: list[tuple[str, str]]) -> Live:
    import asyncpg

    name = f"videoq_governance_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            for rel, sql in files:
                try:
                    async with conn.transaction():
                        await conn.execute(sql)
                except asyncpg.PostgresError as exc:
                    raise MigrationFailed(rel, str(exc)) from None
            rows = await conn.fetch(
                "SELECT table_name, column_name, udt_name, is_nullable"
                " FROM information_schema.columns WHERE table_schema = 'public'"
                " ORDER BY table_name, ordinal_position"
            )
            enum_rows = await conn.fetch(
                "SELECT t.typname, e.enumlabel FROM pg_type t"
                " JOIN pg_enum e ON e.enumtypid = t.oid"
                " JOIN pg_namespace n ON n.oid = t.typnamespace"
                " WHERE n.nspname = 'public' ORDER BY t.typname, e.enumsortorder"
            )
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(admin_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    tables: dict[str, dict[str, tuple[str, bool]]] = {}
    for row in rows:
        tables.setdefault(row["table_name"], {})[row["column_name"]] = (
            row["udt_name"],
            row["is_nullable"] == "YES",
        )
    enums: dict[str, list[str]] = {}
    for row in enum_rows:
        enums.setdefault(row["typname"], []).append(row["enumlabel"])
    return Live(tables, enums)


class MigrationFailed(Exception):
    def __init__(self, rel: str, error: str) -> None:
        super().__init__(f"{rel}: {error}")
        self.rel = rel
        self.error = error


def _migrations(ctx: Context) -> Iterator[Violation]:
    rule = "schema.migrations"
    files = migration_files(ctx)
    if not ctx.database_url:
        yield Violation(
            rule,
            MIGRATIONS,
            None,
            "needs PostgreSQL: pass --database-url or set VIDEOQ_TEST_DATABASE_URL"
            " (or skip this check with --no-database)",
        )
        return
    try:
        live = asyncio.run(_live_schema(ctx.database_url, files))
    except MigrationFailed as exc:
        yield Violation(
            rule, exc.rel, None, f"the migration fails on a fresh database: {exc.error}"
        )
        return
    except (OSError, TimeoutError) as exc:
        host = urlsplit(ctx.database_url).hostname
        yield Violation(rule, MIGRATIONS, None, f"PostgreSQL at {host} does not answer: {exc!r}")
        return
    declared = declared_schema(files)
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
    Rule("schema.code", "the repository reads and writes what the migrations declare", _code),
    Rule(
        "schema.migrations",
        "the migrated database is what the migrations declare",
        _migrations,
        needs_database=True,
    ),
]
