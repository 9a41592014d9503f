"""HTTP request latency by route and status, as a pure ASGI middleware.

Starlette's ``BaseHTTPMiddleware`` (``@app.middleware("http")``) runs every
request in an extra task with memory streams between it and the app; this
one only watches the ``http.response.start`` message go by.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import Metrics

__all__ = ["ObserveMiddleware"]


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before answering

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, watch)
        finally:
            # The matched route's template (low cardinality), set by the router.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self._metrics.http_latency.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
