"""Violations, rules and what a run of the validator shares between rules."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.governance.source import Tree

if TYPE_CHECKING:
    from tools.governance.migrated import Migrated

__all__ = ["DATABASE_VARIABLE", "Context", "Rule", "Violation", "default_database_url"]

#: Where the validator finds its PostgreSQL server when ``--database-url`` is
#: not given: the variable the test command exports for the tests.
DATABASE_VARIABLE = "VIDEOQ_TEST_DATABASE_URL"


@dataclass(frozen=True, order=True)
class Violation:
    """One way the tree breaks one rule."""

    rule: str
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"[{self.rule}] {where}: {self.message}"


@dataclass
class Context:
    """What the rules of one run share: the tree, and the costly facts about
    it, each computed once (the probe of the importable code, the migrated schema)."""

    tree: Tree
    #: An admin URL of a PostgreSQL server (a scratch database is created on it).
    database_url: str | None = None
    #: Where the results of the probe come from (tests may inject them).
    probe_runner: Callable[[Path], dict[str, Any]] | None = None
    _notes: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.tree.root

    @cached_property
    def probe(self) -> dict[str, Any]:
        """Facts only the code itself can tell (it is imported in a child
        process, from this tree): see :mod:`tools.governance.probe`."""
        from tools.governance.probe import run_probe

        runner = self.probe_runner or run_probe
        return runner(self.root)

    @cached_property
    def migrated(self) -> Migrated:
        """The schema the tree's migrations build on a scratch database of the
        server at ``database_url``: see :mod:`tools.governance.migrated`."""
        from tools.governance.migrated import migrated_schema

        return migrated_schema(self.root, self.database_url)

    def note(self, text: str) -> None:
        """Something the user should know that is not a violation."""
        self._notes.append(text)

    @property
    def notes(self) -> list[str]:
        return list(self._notes)


@dataclass(frozen=True)
class Rule:
    """A named check: ``check(context)`` yields what breaks it."""

    name: str
    summary: str
    check: Callable[[Context], Iterable[Violation]]
    #: Needs PostgreSQL (skipped, loudly, with ``--no-database``).
    needs_database: bool = False


def default_database_url(explicit: str | None) -> str | None:
    """``--database-url``, else ``VIDEOQ_TEST_DATABASE_URL``."""
    return explicit or os.environ.get(DATABASE_VARIABLE) or None
