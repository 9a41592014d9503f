"""What a run ran on: the machine, the software versions, the load."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.support.services import Services

__all__ = ["describe", "figures_document", "load_average", "print_description"]


def _version(command: list[str]) -> str:
    if not shutil.which(command[0]):
        return "?"
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def figures_document(
    benchmark: str, args: argparse.Namespace, machine: dict[str, Any], **figures: Any
) -> dict[str, Any]:
    """A benchmark's JSON figures: what ran (its name and arguments), on what
    machine, at what load when it ended, then ``figures``."""
    return {
        "benchmark": benchmark,
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": machine,
        "load_average_end": load_average(),
        **figures,
    }


def describe(services: Services | None = None) -> dict[str, Any]:
    """The machine and the software versions, for the JSON figures."""
    import aio_pika
    import asyncpg
    import fastapi
    import uvicorn

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "aio_pika": aio_pika.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "asyncpg": asyncpg.__version__,
        "load_average": load_average(),
    }
    # The peer's stack (bench/peer/), when the bench extra is installed.
    for name in ("celery", "kombu", "psycopg", "boto3"):
        with contextlib.suppress(PackageNotFoundError):
            info[name] = version(name)
    if services is not None:
        parts = urlsplit(services.rabbitmq_api)
        with contextlib.suppress(Exception):
            overview = httpx.get(
                f"{parts.scheme}://{parts.hostname}:{parts.port}/api/overview",
                auth=(parts.username or "guest", parts.password or "guest"),
                timeout=5,
            ).json()
            info["rabbitmq"] = overview.get("rabbitmq_version", "?")
            info["erlang"] = overview.get("erlang_version", "?")
    info["postgresql"] = _version(["psql", "--version"])
    return info


def print_description(info: dict[str, Any]) -> None:
    print(
        f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB;"
        f" Python {info['python']}, aio-pika {info['aio_pika']}, FastAPI {info['fastapi']},"
        f" uvicorn {info['uvicorn']}, asyncpg {info['asyncpg']};"
        f" RabbitMQ {info.get('rabbitmq', '?')}; {info['postgresql']}"
    )
    peer = [
        f"{name} {info[name]}" for name in ("celery", "kombu", "psycopg", "boto3") if name in info
    ]
    if peer:
        print(f"peer stack: {', '.join(peer)}")
    print(f"load average at start: {' '.join(str(x) for x in info['load_average'])}", flush=True)
