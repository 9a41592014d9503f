"""The API's OpenAPI document equals the committed snapshot.

``schema.openapi``: ``create_app(Settings(...)).openapi()`` (imported from the
tree; building the app needs no server) against ``docs/openapi.json``. An
intended API change refreshes the snapshot in the same commit:
``python -m tools.governance --write-openapi``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.governance.core import Context, Rule, Violation

__all__ = ["RULES", "SNAPSHOT", "differences", "render", "write_snapshot"]

SNAPSHOT = "docs/openapi.json"
_SHOWN = 15


def render(document: dict[str, Any]) -> str:
    """The snapshot's text: sorted keys, two-space indent, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where ``new`` (the code's) differs from ``old`` (the snapshot), as
    JSON-pointer-like paths."""
    where = path or "/"
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in old:
                found.append(f"{sub}: added in the code")
            elif key not in new:
                found.append(f"{sub}: gone from the code")
            else:
                found.extend(differences(old[key], new[key], sub))
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            found.extend(differences(a, b, f"{path}/{index}"))
        return found
    if old != new or type(old) is not type(new):
        return [
            f"{where}: {json.dumps(old)[:60]} in the snapshot, {json.dumps(new)[:60]} in the code"
        ]
    return []


def _document(ctx: Context) -> dict[str, Any]:
    part: dict[str, Any] = ctx.probe.get("openapi") or {"error": ctx.probe.get("error")}
    return part


def _openapi(ctx: Context) -> Iterator[Violation]:
    rule = "schema.openapi"
    document = _document(ctx)
    if "error" in document and "openapi" not in document:
        yield Violation(rule, "services/api/app.py", None, f"cannot build: {document['error']}")
        return
    if not ctx.tree.exists(SNAPSHOT):
        yield Violation(
            rule, SNAPSHOT, None, "no snapshot: run `python -m tools.governance --write-openapi`"
        )
        return
    try:
        snapshot = json.loads(ctx.tree.read(SNAPSHOT))
    except ValueError as exc:
        yield Violation(rule, SNAPSHOT, None, f"not JSON: {exc}")
        return
    found = differences(snapshot, document)
    for difference in found[:_SHOWN]:
        yield Violation(rule, SNAPSHOT, None, difference)
    if len(found) > _SHOWN:
        yield Violation(rule, SNAPSHOT, None, f"... and {len(found) - _SHOWN} more differences")
    if found:
        yield Violation(
            rule,
            SNAPSHOT,
            None,
            "the API changed: if intended, run `python -m tools.governance --write-openapi`"
            " and commit the snapshot with the change",
        )


def write_snapshot(ctx: Context) -> Path:
    """Write the code's OpenAPI document to the snapshot; returns its path.

    Raises:
        RuntimeError: the app could not be built.
    """
    document = _document(ctx)
    if "error" in document and "openapi" not in document:
        raise RuntimeError(f"cannot build the OpenAPI document: {document['error']}")
    path = ctx.root / SNAPSHOT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(document), encoding="utf-8")
    return path


RULES = [Rule("schema.openapi", "the OpenAPI document equals docs/openapi.json", _openapi)]
