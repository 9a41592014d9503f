"""``videoq-api``: the HTTP service (one process, what the api container runs)."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from services.api.app import create_app
from shared.logs import configure_logging
from shared.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="videoq-api", description="Run the videoq HTTP API.")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(service="api", fmt=settings.log_format, level=settings.log_level)
    logging.getLogger("videoq.api").info("api.starting", extra={"settings": settings.redacted()})
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        # Finish in-flight requests on SIGTERM (Kubernetes gives 30 s).
        timeout_graceful_shutdown=20,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
