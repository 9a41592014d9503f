"""The architecture doc names every part of the RabbitMQ topology the code declares.

- ``topology.docs``: every exchange and queue name of ``build_topology(Settings())``
  (defaults, imported from the tree) appears in ``docs/architecture.md``.

That the definitions file compose and Kubernetes load declares the same
topology is ``tests/unit/test_deploy_topology.py``'s to check, with the rest
of what that file must hold (users, permissions, the render script).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tools.governance.core import Context, Rule, Violation

__all__ = ["ARCHITECTURE_DOC", "RULES"]

ARCHITECTURE_DOC = "docs/architecture.md"


def _code_topology(ctx: Context) -> dict[str, Any]:
    part: dict[str, Any] = ctx.probe.get("topology") or {"error": ctx.probe.get("error")}
    return part


def _docs(ctx: Context) -> Iterator[Violation]:
    rule = "topology.docs"
    code = _code_topology(ctx)
    if "error" in code:
        yield Violation(rule, "shared/topology.py", None, f"cannot build: {code['error']}")
        return
    if not ctx.tree.exists(ARCHITECTURE_DOC):
        yield Violation(rule, ARCHITECTURE_DOC, None, "missing")
        return
    text = ctx.tree.read(ARCHITECTURE_DOC)
    names = [e["name"] for e in code["exchanges"]] + [q["name"] for q in code["queues"]]
    for name in names:
        if not re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", text):
            yield Violation(
                rule, ARCHITECTURE_DOC, None, f"`{name}` (declared by the code) is not in the doc"
            )


RULES = [
    Rule("topology.docs", "the architecture doc names every exchange and queue", _docs),
]
