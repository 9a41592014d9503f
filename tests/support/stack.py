"""The three services as real processes, for the system tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from shared.settings import Settings

__all__ = ["Stack"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, tuple | list):
            value = ",".join(str(v) for v in value)
        env[f"VIDEOQ_{name.upper()}"] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Stack:
    """Starts ``videoq-api``, ``videoq-worker`` and ``videoq-janitor`` processes."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""
        #: Where the processes start (``python -m`` imports from there first).
        self.cwd: Path | None = None

    def _spawn(
        self, name: str, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        env = _env(self.settings)
        env.update(extra_env or {})
        with (self.logs / f"{name}.log").open("ab") as out:  # the child keeps its own copy
            proc = subprocess.Popen(
                argv, env=env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs[name] = proc
        return proc

    def start_api(self) -> str:
        port = _free_port()
        self._spawn(
            "api",
            [sys.executable, "-m", "services.api.main", "--host", "127.0.0.1", "--port", str(port)],
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.procs["api"].poll() is not None:
                raise RuntimeError(f"api exited: {self.log('api')[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("api did not start")

    def start_worker(self, name: str = "worker", **env: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, [sys.executable, "-m", "services.worker.main"], env)

    def start_janitor(self, name: str = "janitor", **env: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, [sys.executable, "-m", "services.janitor.main"], env)

    def start_all(self) -> str:
        url = self.start_api()
        self.start_worker()
        self.start_janitor()
        return url

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        proc = self.procs[name]
        proc.send_signal(sig)
        return proc.wait(timeout=60)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
