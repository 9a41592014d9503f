"""A tiny HTTP endpoint for the worker and janitor: /healthz, /readyz, /metrics.

Enough HTTP for a Kubernetes probe and a Prometheus scrape, with no web
framework in processes that serve nothing else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from shared.errors import CannotStart
from shared.metrics import CONTENT_TYPE, Metrics

__all__ = ["OpsPortUnavailable", "serve_ops"]


class OpsPortUnavailable(CannotStart):
    """The health and metrics port cannot be listened on (taken, or not allowed)."""


ReadyCheck = Callable[[], Awaitable[dict[str, str]]]


async def serve_ops(*, host: str, port: int, metrics: Metrics, ready: ReadyCheck) -> asyncio.Server:
    """Start serving; ``ready`` returns ``{dependency: "ok" | reason}``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            if path == "/healthz":
                status, body, ctype = 200, b'{"status":"ok"}', "application/json"
            elif path == "/readyz":
                checks = await ready()
                ok = all(v == "ok" for v in checks.values())
                status = 200 if ok else 503
                body = json.dumps(
                    {"status": "ok" if ok else "unavailable", "checks": checks}
                ).encode()
                ctype = "application/json"
            elif path == "/metrics":
                status, body, ctype = 200, metrics.render(), CONTENT_TYPE
            else:
                status, body, ctype = 404, b'{"detail":"Not found"}', "application/json"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(handle, host, port)
    except OSError as exc:
        # Two services on one host both default to 9100: say which setting fixes it.
        raise OpsPortUnavailable(
            f"cannot serve /healthz, /readyz and /metrics on {host}:{port}: {exc.strerror};"
            " set VIDEOQ_OPS_PORT to a free port, or 0 to turn the endpoint off"
        ) from None
