"""The api service's FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from services.api.auth import ApiKeys
from services.api.deps import Backend, MetricsDep
from services.api.direct_uploads import uploads_router
from services.api.errors import install_error_handlers
from services.api.models import submit_form
from services.api.observe import ObserveMiddleware
from services.api.pages import IndexedPages
from services.api.routes import video_router
from shared.backends import Backends, open_backends
from shared.errors import CannotStart
from shared.metrics import CONTENT_TYPE, Metrics
from shared.pipeline import load_registry
from shared.settings import Settings

__all__ = ["create_app"]

BackendsFactory = Callable[[], Awaitable[Backends]]


def create_app(
    settings: Settings,
    *,
    backends: BackendsFactory | None = None,
    metrics: Metrics | None = None,
    close_backends: bool = True,
) -> FastAPI:
    """Build the app. ``backends`` opens the adapters at start-up (default:
    the real ones named by ``settings``); they are closed at shutdown unless
    ``close_backends`` is false (when someone else owns them)."""
    opener = backends or (lambda: open_backends(settings, app_id="videoq-api"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            app.state.backends = await opener()
        except CannotStart as exc:
            # What waiting cannot cure: one line that says why (uvicorn exits).
            logging.getLogger("videoq.api").error("api.start_failed", extra={"error": str(exc)})
            raise
        try:
            yield
        finally:
            if close_backends:
                await app.state.backends.close()

    app = FastAPI(
        title="videoq",
        version="0.1.0",
        summary="Asynchronous video analysis: submit an MP4, poll its status, fetch per-frame results.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics or Metrics()
    app.state.pages = IndexedPages()
    pipelines = load_registry(plugins=settings.plugins).names()
    app.state.submit_form = submit_form(settings, pipelines)
    app.state.api_keys = ApiKeys.from_settings(settings)  # refuses to start without keys
    install_error_handlers(app)
    app.include_router(video_router(app.state.submit_form))
    app.include_router(uploads_router)

    app.add_middleware(ObserveMiddleware, metrics=app.state.metrics)

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: database, broker and store answer",
        responses={
            200: {"description": "Every dependency answers"},
            503: {"description": "A dependency is down; `checks` says which"},
        },
    )
    async def readyz(backends: Backend) -> JSONResponse:
        checks = await backends.check()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
            headers=None if ok else {"Retry-After": "5"},
        )

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_endpoint(m: MetricsDep) -> Response:
        return Response(m.render(), media_type=CONTENT_TYPE)

    return app
