"""The deterministic queue payload.

- ``payload.builder``: a job message body comes from ``build_payload`` and
  nowhere else. Every ``publish_job`` implementation calls it, and no code
  outside ``shared/payload.py`` hand-builds a ``{"job_id": ...}`` body that
  reaches a publish call (directly, through a variable, ``json.dumps`` or
  ``.encode()``), or spells one as bytes.
- ``payload.deterministic``: ``build_payload``, imported from the tree, gives
  bytes, the same bytes on every call and for every spelling of the same id,
  and exactly the compact ``{"job_id":"<uuid>"}`` of the spec.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator

from tools.governance.core import Context, Rule, Violation
from tools.governance.source import Module, call_name, string_value

__all__ = ["RULES"]

PAYLOAD_MODULE = "shared/payload.py"
_BUILDER = "build_payload"
_JOB_BODY_TEXT = re.compile(r'^\s*\{\s*\\?"job_id\\?"\s*:')


def _is_publish_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = call_name(node) or ""
    # ``park`` publishes too: a copy in the dead-letter queue.
    return name.lstrip("_").startswith("publish") or name in {"park", "Message", "basic_publish"}


def _is_stub(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A protocol method: only a docstring and/or ``...``."""
    for statement in function.body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue
        if isinstance(statement, ast.Pass):
            continue
        return False
    return True


def _job_body(node: ast.AST) -> bool:
    """A hand-made job body: ``{"job_id": x}`` (only that key), ``dict(job_id=x)``,
    or text starting ``{"job_id":``."""
    if isinstance(node, ast.Dict):
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        return keys == ["job_id"] and len(node.keys) == 1
    if isinstance(node, ast.Call) and call_name(node) == "dict":
        return [k.arg for k in node.keywords] == ["job_id"] and not node.args
    text = string_value(node)
    return text is not None and bool(_JOB_BODY_TEXT.match(text))


def _in_log_extra(module: Module, node: ast.AST) -> bool:
    """Part of a ``log.x(..., extra={...})`` argument (a log record, not a message)."""
    return any(isinstance(a, ast.keyword) and a.arg == "extra" for a in module.ancestors(node))


def _publish_args(function: ast.AST) -> Iterator[ast.AST]:
    for node in ast.walk(function):
        if _is_publish_call(node):
            assert isinstance(node, ast.Call)
            yield from node.args
            yield from (k.value for k in node.keywords)


def _assigned_name(module: Module, node: ast.AST) -> str | None:
    """``x`` when ``node`` is (part of) the value of ``x = ...``."""
    for ancestor in module.ancestors(node):
        if isinstance(ancestor, ast.Assign):
            targets = [t.id for t in ancestor.targets if isinstance(t, ast.Name)]
            return targets[0] if targets else None
        if isinstance(ancestor, ast.stmt):
            return None
    return None


def _builder(ctx: Context) -> Iterator[Violation]:
    rule = "payload.builder"
    if not ctx.tree.exists(PAYLOAD_MODULE):
        yield Violation(rule, PAYLOAD_MODULE, None, "the payload module is missing")
    for module in ctx.tree.modules():
        for node in module.nodes:
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name == "publish_job"
                and not _is_stub(node)
            ):
                calls = {call_name(c) for c in ast.walk(node) if isinstance(c, ast.Call)}
                if _BUILDER not in calls:
                    yield Violation(
                        rule,
                        module.rel,
                        node.lineno,
                        f"`{module.qualname(node)}.publish_job` does not build its body"
                        f" with `{_BUILDER}`",
                    )
        if module.rel == PAYLOAD_MODULE:
            continue
        for node in module.nodes:
            if not _job_body(node) or node in module.docstrings or _in_log_extra(module, node):
                continue
            if isinstance(module.parent(node), ast.JoinedStr):
                continue  # the f-string around it is checked as a whole
            if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
                reason = "spells a job message body as bytes"
            else:
                function = module.function(node) or module.tree
                published = {id(n) for arg in _publish_args(function) for n in ast.walk(arg)}
                name = _assigned_name(module, node)
                used = name is not None and any(
                    isinstance(n, ast.Name) and n.id == name
                    for arg in _publish_args(function)
                    for n in ast.walk(arg)
                )
                encoded = any(
                    isinstance(a, ast.Call) and call_name(a) == "encode"
                    for a in module.ancestors(node)
                    if isinstance(a, ast.expr)
                )
                if id(node) in published or used:
                    reason = "builds a job message body that is published"
                elif encoded:
                    reason = "encodes a job message body"
                else:
                    continue
            yield Violation(
                rule,
                module.rel,
                getattr(node, "lineno", None),
                f"{reason}: `{ast.unparse(node)[:60]}`; use `{_BUILDER}` (shared/payload.py)",
            )


def _canonical(job_id: str) -> bytes:
    return json.dumps({"job_id": job_id}, separators=(",", ":")).encode("utf-8")


def _deterministic(ctx: Context) -> Iterator[Violation]:
    rule = "payload.deterministic"
    part = ctx.probe.get("payload") or ctx.probe
    if "error" in part:
        yield Violation(rule, PAYLOAD_MODULE, None, f"cannot call {_BUILDER}: {part['error']}")
        return
    for sample in part["samples"]:
        job_id = sample["job_id"]
        if set(sample["types"]) != {"bytes"}:
            yield Violation(
                rule, PAYLOAD_MODULE, None, f"{_BUILDER} returns {sample['types'][0]}, not bytes"
            )
            continue
        outputs = [bytes.fromhex(o) for o in sample["outputs"]]
        if len(set(outputs)) != 1:
            yield Violation(
                rule,
                PAYLOAD_MODULE,
                None,
                f"{_BUILDER}({job_id}) differs between calls or spellings of the id:"
                f" {[o.decode('utf-8', 'replace') for o in outputs]}",
            )
        elif outputs[0] != _canonical(job_id):
            yield Violation(
                rule,
                PAYLOAD_MODULE,
                None,
                f"{_BUILDER}({job_id}) gives {outputs[0].decode('utf-8', 'replace')!r},"
                f" not {_canonical(job_id).decode()!r}",
            )


RULES = [
    Rule("payload.builder", "every job message body comes from build_payload", _builder),
    Rule("payload.deterministic", "build_payload gives the same bytes for a job", _deterministic),
]
