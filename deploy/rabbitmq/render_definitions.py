"""Rewrite the topology part of ``definitions.json`` from the code.

Usage (from the repository root, in the project's virtualenv)::

    python deploy/rabbitmq/render_definitions.py

Exchanges, queues and bindings are rebuilt from ``shared.topology.build_topology``
with the default settings; vhosts, users, permissions and policies in the file
are kept as they are. ``tests/unit/test_deploy_topology.py`` fails when the file
and the code disagree, and tells you to run this.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFINITIONS = HERE / "definitions.json"

#: The virtual host videoq's topology lives in (the path of VIDEOQ_AMQP_URL).
VHOST = "videoq"


def topology_definitions(vhost: str = VHOST) -> dict[str, list[dict[str, Any]]]:
    """The ``exchanges``/``queues``/``bindings`` sections for the default settings."""
    sys.path.insert(0, str(HERE.parent.parent))
    from shared.settings import Settings
    from shared.topology import build_topology

    topology = build_topology(Settings())
    return {
        "exchanges": [
            {
                "name": exchange.name,
                "vhost": vhost,
                "type": exchange.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for exchange in topology.exchanges
        ],
        "queues": [
            {
                "name": queue.name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": dict(sorted(queue.arguments.items())),
            }
            for queue in topology.queues
        ],
        "bindings": [
            {
                "source": binding.exchange,
                "vhost": vhost,
                "destination": binding.queue,
                "destination_type": "queue",
                "routing_key": binding.routing_key,
                "arguments": {},
            }
            for binding in topology.bindings
        ],
    }


def main() -> int:
    data = json.loads(DEFINITIONS.read_text(encoding="utf-8"))
    data.update(topology_definitions())
    DEFINITIONS.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {DEFINITIONS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
