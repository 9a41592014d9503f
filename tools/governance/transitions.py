"""Deterministic job state transitions.

- ``transitions.table``: the ``Transition`` table of ``shared/jobs.py`` (read
  from its source) equals the transition table of ``docs/architecture.md``
  (a markdown table with the columns ``transition``, ``from``, ``to`` and
  ``lease``), and the doc's Mermaid ``stateDiagram`` draws exactly those
  edges, each labelled with its transition's name.
- ``transitions.writers``: nothing writes the ``status`` of a job but the
  repository's generic ``transition`` method: no other SQL assigns it
  (``UPDATE jobs SET ... status = ...``, a ``status = ...`` SET fragment, an
  ``INSERT INTO jobs`` naming it), and no code ``replace()``s it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

from tools.governance.core import Context, Rule, Violation
from tools.governance.source import Module, Tree, call_name

__all__ = ["ARCHITECTURE_DOC", "JOBS_MODULE", "RULES", "DocRow", "code_transitions", "doc_table"]

JOBS_MODULE = "shared/jobs.py"
ARCHITECTURE_DOC = "docs/architecture.md"
JOBS_TABLE = "jobs"
#: The one method allowed to write ``status``: ``transition`` in the repository package.
WRITER_PACKAGE = "shared/repository/"
WRITER_FUNCTION = "transition"


@dataclass(frozen=True)
class DocRow:
    name: str
    source: str
    target: str
    lease: bool | None
    line: int


def _enum_values(cls: ast.ClassDef) -> dict[str, ast.expr]:
    values = {}
    for statement in cls.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            if isinstance(target, ast.Name):
                values[target.id] = statement.value
    return values


def _class(module: Module, name: str) -> ast.ClassDef | None:
    for node in module.tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    return None


def code_transitions(tree: Tree) -> tuple[dict[str, tuple[str, str, bool | None, int]], list[str]]:
    """``{name: (source, target, needs_lease, line)}`` from ``Transition`` in
    shared/jobs.py, and the problems met reading it."""
    problems: list[str] = []
    module = tree.module(JOBS_MODULE)
    if module is None:
        return {}, [f"{JOBS_MODULE} is missing or does not parse"]
    status_cls, transition_cls = _class(module, "JobStatus"), _class(module, "Transition")
    if status_cls is None or transition_cls is None:
        return {}, ["JobStatus or Transition is not a class of shared/jobs.py"]
    statuses = {
        name: value.value
        for name, value in _enum_values(status_cls).items()
        if isinstance(value, ast.Constant) and isinstance(value.value, str)
    }

    def status(node: ast.expr) -> str | None:
        if isinstance(node, ast.Attribute) and node.attr in statuses:
            return statuses[node.attr]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return None

    table: dict[str, tuple[str, str, bool | None, int]] = {}
    for member, value in _enum_values(transition_cls).items():
        if not isinstance(value, ast.Tuple) or len(value.elts) < 3:
            problems.append(f"Transition.{member} is not (name, source, target, ...)")
            continue
        first, source, target = value.elts[:3]
        name = first.value if isinstance(first, ast.Constant) else None
        lease: bool | None = None
        if len(value.elts) > 3 and isinstance(value.elts[3], ast.Constant):
            lease = bool(value.elts[3].value)
        src, dst = status(source), status(target)
        if not isinstance(name, str) or src is None or dst is None:
            problems.append(f"Transition.{member} cannot be read statically")
            continue
        table[name] = (src, dst, lease, value.lineno)
    return table, problems


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [c.strip().strip("`*").strip() for c in inner.split("|")]


def _lease(text: str) -> bool | None:
    word = text.lower()
    if word in {"yes", "y", "true", "✓"}:
        return True
    if word in {"no", "n", "false", "", "-", "—"}:
        return False
    return None


def doc_table(text: str) -> list[DocRow] | None:
    """The rows of the first markdown table whose header has ``transition``,
    ``from`` and ``to``; ``None`` if there is none."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            continue
        header = [c.lower() for c in _cells(line)]
        if not {"transition", "from", "to"} <= set(header):
            continue
        col = {name: header.index(name) for name in ("transition", "from", "to")}
        lease_col = next((i for i, h in enumerate(header) if "lease" in h), None)
        rows = []
        for number in range(index + 2, len(lines)):  # skip the |---| line
            row_line = lines[number]
            if not row_line.lstrip().startswith("|"):
                break
            cells = _cells(row_line)
            if len(cells) < len(header):
                cells += [""] * (len(header) - len(cells))
            rows.append(
                DocRow(
                    name=cells[col["transition"]],
                    source=cells[col["from"]],
                    target=cells[col["to"]],
                    lease=None if lease_col is None else _lease(cells[lease_col]),
                    line=number + 1,
                )
            )
        return rows
    return None


_EDGE = re.compile(r"^\s*(\[\*\]|\w+)\s*-->\s*(\[\*\]|\w+)\s*(?::\s*(.*))?$")


def doc_state_edges(text: str) -> list[tuple[str, str, list[str], int]] | None:
    """Edges ``(source, target, label words, line)`` of the doc's Mermaid
    ``stateDiagram``; ``None`` if there is none."""
    lines = text.splitlines()
    inside = False
    is_state = False
    edges: list[tuple[str, str, list[str], int]] = []
    found = False
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("```mermaid"):
            inside, is_state = True, False
            continue
        if inside and stripped.startswith("```"):
            inside = False
            continue
        if not inside:
            continue
        if stripped.startswith("stateDiagram"):
            is_state = found = True
            continue
        if not is_state:
            continue
        match = _EDGE.match(stripped)
        if match and "[*]" not in (match.group(1), match.group(2)):
            words = re.findall(r"[a-z_]+", (match.group(3) or "").lower())
            edges.append((match.group(1), match.group(2), words, number))
    return edges if found else None


def _table(ctx: Context) -> Iterator[Violation]:
    rule = "transitions.table"
    code, problems = code_transitions(ctx.tree)
    for problem in problems:
        yield Violation(rule, JOBS_MODULE, None, problem)
    if not ctx.tree.exists(ARCHITECTURE_DOC):
        yield Violation(rule, ARCHITECTURE_DOC, None, "missing: it holds the transition table")
        return
    text = ctx.tree.read(ARCHITECTURE_DOC)
    rows = doc_table(text)
    if rows is None:
        yield Violation(
            rule,
            ARCHITECTURE_DOC,
            None,
            "no transition table (a markdown table with columns transition | from | to | lease)",
        )
        rows = []
    seen: dict[str, DocRow] = {}
    for row in rows:
        if row.name in seen:
            yield Violation(rule, ARCHITECTURE_DOC, row.line, f"`{row.name}` is listed twice")
            continue
        seen[row.name] = row
        if row.name not in code:
            yield Violation(
                rule,
                ARCHITECTURE_DOC,
                row.line,
                f"`{row.name}` is not a Transition of {JOBS_MODULE}",
            )
            continue
        source, target, lease, _ = code[row.name]
        if (row.source, row.target) != (source, target):
            yield Violation(
                rule,
                ARCHITECTURE_DOC,
                row.line,
                f"`{row.name}` goes {source} -> {target} in {JOBS_MODULE},"
                f" the doc says {row.source} -> {row.target}",
            )
        if row.lease is not None and lease is not None and row.lease != lease:
            yield Violation(
                rule,
                ARCHITECTURE_DOC,
                row.line,
                f"`{row.name}` {'needs' if lease else 'does not need'} the lease in"
                f" {JOBS_MODULE}, the doc says otherwise",
            )
    for name, (source, target, _, line) in code.items():
        if name not in seen:
            yield Violation(
                rule,
                JOBS_MODULE,
                line,
                f"Transition `{name}` ({source} -> {target}) is not in the table of"
                f" {ARCHITECTURE_DOC}",
            )
    edges = doc_state_edges(text)
    if edges is None:
        yield Violation(rule, ARCHITECTURE_DOC, None, "no Mermaid stateDiagram of the job")
        return
    drawn: set[str] = set()
    for source, target, words, line in edges:
        for word in words:
            if word not in code:
                yield Violation(
                    rule, ARCHITECTURE_DOC, line, f"state diagram edge `{word}` is no Transition"
                )
            elif code[word][:2] != (source, target):
                yield Violation(
                    rule,
                    ARCHITECTURE_DOC,
                    line,
                    f"state diagram draws `{word}` as {source} -> {target}; the code says"
                    f" {code[word][0]} -> {code[word][1]}",
                )
            drawn.add(word)
        if not words:
            yield Violation(rule, ARCHITECTURE_DOC, line, "state diagram edge without a name")
    for name, (source, target, _, _) in code.items():
        if name not in drawn:
            yield Violation(
                rule,
                ARCHITECTURE_DOC,
                None,
                f"the state diagram lacks `{name}` ({source} --> {target} : {name})",
            )


_SPACES = re.compile(r"\s+")
_UPDATE = re.compile(
    r"\bUPDATE\s+(?:ONLY\s+)?([\w.{}\"]+)\s+(?:AS\s+\w+\s+)?SET\s+(.*?)(?=\bWHERE\b|\bRETURNING\b|\bFROM\b|$)",
    re.IGNORECASE | re.DOTALL,
)
_INSERT = re.compile(r"\bINSERT\s+INTO\s+([\w.{}\"]+)\s*\(([^)]*)\)", re.IGNORECASE)
_STATUS_SET = re.compile(r"(?:^|,)\s*\"?status\"?\s*=(?![=>])", re.IGNORECASE)
_FRAGMENT = re.compile(r"^\s*\"?status\"?\s*=(?![=>])", re.IGNORECASE)


def _table_name(raw: str) -> str:
    name = raw.strip('"').lower()
    return name.rsplit(".", 1)[-1]


def status_writes(text: str) -> list[str]:
    """How ``text`` (a SQL string or fragment) writes a job's status, if it does."""
    sql = _SPACES.sub(" ", text)
    found = []
    for match in _UPDATE.finditer(sql):
        table = _table_name(match.group(1))
        if table in (JOBS_TABLE, "{}") and _STATUS_SET.search(match.group(2)):
            found.append("UPDATE jobs SET status")
    for match in _INSERT.finditer(sql):
        columns = [c.strip().strip('"').lower() for c in match.group(2).split(",")]
        if _table_name(match.group(1)) == JOBS_TABLE and "status" in columns:
            found.append("INSERT INTO jobs (status)")
    if not found and _FRAGMENT.match(sql) and not re.search(r"\bUPDATE\b", sql, re.IGNORECASE):
        found.append("a `status = ...` SET fragment")
    return found


def _allowed(module: Module, node: ast.AST) -> bool:
    function = module.function(node)
    return (
        module.rel.startswith(WRITER_PACKAGE)
        and function is not None
        and function.name == WRITER_FUNCTION
    )


def _writers(ctx: Context) -> Iterator[Violation]:
    rule = "transitions.writers"
    for module in ctx.tree.modules():
        for node, text in module.strings():
            for how in status_writes(text):
                if not _allowed(module, node):
                    yield Violation(
                        rule,
                        module.rel,
                        node.lineno,
                        f"{how} in `{module.qualname(node)}`: only the repository's"
                        f" `{WRITER_FUNCTION}` method writes status (guarded by the"
                        " Transition table)",
                    )
        for call in module.nodes:
            if (
                isinstance(call, ast.Call)
                and call_name(call) == "replace"
                and any(k.arg == "status" for k in call.keywords)
                and not _allowed(module, call)
            ):
                yield Violation(
                    rule,
                    module.rel,
                    call.lineno,
                    f"`{ast.unparse(call)[:60]}` changes a status outside the repository's"
                    f" `{WRITER_FUNCTION}` method",
                )


RULES = [
    Rule("transitions.table", "the Transition table equals the one in the docs", _table),
    Rule("transitions.writers", "only the repository's transition method writes status", _writers),
]
