"""The governance validator: the spec's rules for phase 16, checked on the code.

``python -m tools.governance [--root DIR]`` prints each violation and exits 1,
or exits 0 when the tree keeps every rule. The rules (``--list`` prints them):

- ``forbidden.*``: no WebSockets, real-time streaming, GPU scheduling,
  multi-pipeline DAGs or frame-level progress (:mod:`.forbidden`);
- ``payload.*``: one deterministic payload builder (:mod:`.payload`);
- ``transitions.*``: the state machine in the code equals the docs, and only
  the repository's ``transition`` writes status (:mod:`.transitions`);
- ``schema.*``: no schema drift between the migrations, the database the
  project's migration runner builds from them, the repository code, and the
  API's OpenAPI snapshot (:mod:`.schema`, :mod:`.openapi`);
- ``topology.docs``: the architecture doc names the code's RabbitMQ
  exchanges and queues (:mod:`.topology`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.governance import forbidden, openapi, payload, schema, topology, transitions
from tools.governance.core import Context, Rule, Violation
from tools.governance.source import SCANNED, Tree

__all__ = ["RULES", "Report", "Rule", "Violation", "check", "select"]


def _parse(ctx: Context) -> Iterable[Violation]:
    for rel in ctx.tree.unparseable(*SCANNED):
        yield Violation("source.parse", rel, None, "does not parse: the rules cannot read it")


RULES: list[Rule] = [
    Rule("source.parse", "every module of shared/ and services/ parses", _parse),
    *forbidden.RULES,
    *payload.RULES,
    *transitions.RULES,
    *schema.RULES,
    *openapi.RULES,
    *topology.RULES,
]


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def select(names: Iterable[str] | None) -> list[Rule]:
    """The rules named, or under a named group (``schema`` selects ``schema.*``).

    Raises:
        ValueError: a name that selects no rule.
    """
    if not names:
        return list(RULES)
    chosen: list[Rule] = []
    for name in names:
        matched = [r for r in RULES if r.name == name or r.name.startswith(name + ".")]
        if not matched:
            raise ValueError(f"no rule {name!r} (see --list)")
        chosen.extend(r for r in matched if r not in chosen)
    return chosen


def check(
    root: Path,
    *,
    rules: Iterable[str] | None = None,
    database_url: str | None = None,
    use_database: bool = True,
    probe_runner: Callable[[Path], dict[str, Any]] | None = None,
) -> Report:
    """Check the tree at ``root``. A rule that crashes counts as violated.

    ``database_url`` is an admin URL of a PostgreSQL server (a scratch
    database is created there, migrated and dropped); with
    ``use_database=False`` the rules that need it are skipped (and listed as
    skipped).
    """
    ctx = Context(Tree(root), database_url=database_url, probe_runner=probe_runner)
    report = Report()
    for rule in select(rules):
        if rule.needs_database and not use_database:
            report.skipped.append(rule.name)
            continue
        report.checked.append(rule.name)
        try:
            report.violations.extend(rule.check(ctx))
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            report.violations.append(
                Violation(
                    rule.name,
                    "tools/governance",
                    None,
                    f"the check crashed: {type(exc).__name__}: {exc}"
                    f" ({Path(where.filename).name}:{where.lineno})",
                )
            )
    return report
