"""Facts that only the code itself can tell, read by importing it.

``run_probe(root)`` runs this file as a script in a child process whose
``sys.path`` starts at ``root``, so the code under check is the tree's own
(not whatever this interpreter imported first), with no ``VIDEOQ_*``
variable in its environment (defaults only). The script writes one JSON
object: for each part, its data or ``{"error": "..."}``.

The script half imports nothing from ``tools``: the tree under check may
not have it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["PAYLOAD_SAMPLES", "SNAPSHOT_API_KEYS", "run_probe"]

#: Job ids the payload builder is tried with (lower/upper-case spellings of
#: the same id must give the same bytes).
PAYLOAD_SAMPLES = (
    "00000000-0000-0000-0000-000000000000",
    "0b5cd2a4-8f4e-4f4a-9a8e-0d2f3c4b5a69",
    "ffffffff-ffff-4fff-bfff-ffffffffffff",
)
#: API keys the app is built with for the OpenAPI snapshot (a hash of no real
#: key): the snapshot documents the service as deployed, with authentication on.
SNAPSHOT_API_KEYS = "openapi-snapshot:" + "0" * 64
_TIMEOUT = 180


def run_probe(root: Path) -> dict[str, Any]:
    """Run the probe on ``root``; the parts it could not compute hold ``error``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOQ_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory(prefix="videoq-governance-") as tmp:
        out = Path(tmp) / "probe.json"
        try:
            result = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), str(root), str(out)],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"the probe did not finish in {_TIMEOUT} s"}
        if result.returncode != 0 or not out.exists():
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            return {"error": "the probe crashed: " + " | ".join(tail)}
        data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return data


# ---- the script half: runs inside the child -------------------------------------


def _settings() -> Any:
    from shared.settings import Settings

    fields = Settings.model_fields
    overrides: dict[str, Any] = {}
    if "api_keys" in fields:
        overrides["api_keys"] = SNAPSHOT_API_KEYS
    return Settings(**overrides)


def _topology() -> dict[str, Any]:
    from shared.topology import build_topology

    topology = build_topology(_settings())
    return {
        "exchanges": [{"name": e.name} for e in topology.exchanges],
        "queues": [{"name": q.name} for q in topology.queues],
    }


def _openapi() -> dict[str, Any]:
    from services.api.app import create_app

    document: dict[str, Any] = create_app(_settings()).openapi()
    # Through JSON, exactly as the snapshot file holds it.
    loaded: dict[str, Any] = json.loads(json.dumps(document))
    return loaded


def _payload() -> dict[str, Any]:
    from uuid import UUID

    from shared.payload import build_payload

    samples = []
    for text in PAYLOAD_SAMPLES:
        outputs = [
            build_payload(UUID(text)),
            build_payload(UUID(text)),
            build_payload(UUID(text.upper())),
        ]
        samples.append(
            {
                "job_id": text,
                "outputs": [o.hex() if isinstance(o, bytes) else repr(o) for o in outputs],
                "types": [type(o).__name__ for o in outputs],
            }
        )
    return {"samples": samples}


_PARTS: dict[str, Callable[[], Any]] = {
    "topology": _topology,
    "openapi": _openapi,
    "payload": _payload,
}


def _main(argv: list[str]) -> int:
    root, out = argv[1], argv[2]
    # The tree under check first (sys.path[0] is this file's directory).
    sys.path[0] = root
    result: dict[str, Any] = {}
    for name, part in _PARTS.items():
        try:
            result[name] = part()
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            result[name] = {
                "error": f"{type(exc).__name__}: {exc}"
                f" (at {Path(where.filename).name}:{where.lineno})"
            }
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
