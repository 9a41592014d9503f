"""Violations, rules and what a run of the validator shares between rules."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tools.governance.source import Tree

__all__ = ["Context", "Rule", "Violation"]


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
    it, each computed once (the probe of the importable code, the live schema)."""

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
    return explicit or os.environ.get("VIDEOQ_TEST_DATABASE_URL") or None
