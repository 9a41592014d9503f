"""The RabbitMQ topology the code declares equals the definitions file that
compose and Kubernetes load, and the architecture doc names every part.

- ``topology.definitions``: ``build_topology(Settings())`` (defaults, imported
  from the tree) against ``deploy/rabbitmq/definitions.json``: the same
  exchanges (name, type), queues (name, arguments, compared with their JSON
  types: 10, 10.0 and "10" differ) and bindings; everything durable. The
  same comparison as ``tests/unit/test_deploy_topology.py``.
- ``topology.docs``: every exchange and queue name appears in
  ``docs/architecture.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tools.governance.core import Context, Rule, Violation

__all__ = ["DEFINITIONS", "RULES", "compare_topology", "typed"]

DEFINITIONS = "deploy/rabbitmq/definitions.json"
ARCHITECTURE_DOC = "docs/architecture.md"
REGENERATE = "run `python deploy/rabbitmq/render_definitions.py` and review the diff"


def typed(value: Any) -> Any:
    """``value`` with its JSON types kept apart (10 != 10.0 != "10", True != 1)."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def compare_topology(code: dict[str, Any], definitions: dict[str, Any]) -> list[str]:
    """How ``definitions`` (RabbitMQ's file) differs from ``code`` (the probe's
    ``topology``: exchanges, queues, bindings); empty when they agree."""
    problems: list[str] = []
    in_file = {e["name"]: e["type"] for e in definitions.get("exchanges", [])}
    in_code = {e["name"]: e["type"] for e in code["exchanges"]}
    for name in sorted(set(in_file) | set(in_code)):
        if name not in in_file:
            problems.append(f"exchange `{name}` ({in_code[name]}) is missing from the file")
        elif name not in in_code:
            problems.append(f"exchange `{name}` is in the file, not in the code")
        elif in_file[name] != in_code[name]:
            problems.append(
                f"exchange `{name}` is {in_file[name]} in the file, {in_code[name]} in the code"
            )
    queues_file = {q["name"]: q.get("arguments", {}) for q in definitions.get("queues", [])}
    queues_code = {q["name"]: q["arguments"] for q in code["queues"]}
    for name in sorted(set(queues_file) | set(queues_code)):
        if name not in queues_file:
            problems.append(f"queue `{name}` is missing from the file")
        elif name not in queues_code:
            problems.append(f"queue `{name}` is in the file, not in the code")
        else:
            got, want = queues_file[name], queues_code[name]
            for key in sorted(set(got) | set(want)):
                if key not in got:
                    problems.append(f"queue `{name}`: argument {key}={want[key]!r} is missing")
                elif key not in want:
                    problems.append(
                        f"queue `{name}`: argument {key}={got[key]!r} is not in the code"
                    )
                elif typed(got[key]) != typed(want[key]):
                    problems.append(
                        f"queue `{name}`: {key} is {got[key]!r} in the file,"
                        f" {want[key]!r} in the code"
                    )
    bindings_file = sorted(
        (b["source"], b["destination"], b.get("destination_type"), b["routing_key"])
        for b in definitions.get("bindings", [])
    )
    bindings_code = sorted(
        (b["exchange"], b["queue"], "queue", b["routing_key"]) for b in code["bindings"]
    )
    for binding in sorted(set(bindings_code) - set(bindings_file)):
        problems.append(f"binding {binding[0]} -> {binding[1]} ({binding[3]!r}) is missing")
    for binding in sorted(set(bindings_file) - set(bindings_code)):
        problems.append(
            f"binding {binding[0]} -> {binding[1]} ({binding[3]!r}) is in the file, not the code"
        )
    for kind in ("exchanges", "queues"):
        for entry in definitions.get(kind, []):
            if entry.get("durable") is not True or entry.get("auto_delete") is not False:
                problems.append(f"{kind[:-1]} `{entry['name']}` is not durable (or auto-deletes)")
    for kind in ("exchanges", "queues"):
        names = [e["name"] for e in definitions.get(kind, [])]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"{kind[:-1]} `{name}` is listed twice")
    return problems


def _code_topology(ctx: Context) -> dict[str, Any]:
    part: dict[str, Any] = ctx.probe.get("topology") or {"error": ctx.probe.get("error")}
    return part


def _definitions(ctx: Context) -> Iterator[Violation]:
    rule = "topology.definitions"
    code = _code_topology(ctx)
    if "error" in code:
        yield Violation(rule, "shared/topology.py", None, f"cannot build: {code['error']}")
        return
    if not ctx.tree.exists(DEFINITIONS):
        yield Violation(rule, DEFINITIONS, None, "missing")
        return
    try:
        definitions = json.loads(ctx.tree.read(DEFINITIONS))
    except ValueError as exc:
        yield Violation(rule, DEFINITIONS, None, f"not JSON: {exc}")
        return
    problems = compare_topology(code, definitions)
    for problem in problems:
        yield Violation(rule, DEFINITIONS, None, problem)
    if problems:
        yield Violation(rule, DEFINITIONS, None, REGENERATE)


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
    Rule("topology.definitions", "the definitions file declares the code's topology", _definitions),
    Rule("topology.docs", "the architecture doc names every exchange and queue", _docs),
]
