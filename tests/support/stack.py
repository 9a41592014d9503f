"""The three services as real processes, for the system tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
from pydantic import SecretStr

from shared.settings import Settings

__all__ = ["Stack", "free_port", "terminate", "wait_healthy"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
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


def wait_healthy(url: str, proc: subprocess.Popen[bytes], *, within: float = 60) -> None:
    """Until ``GET url`` answers 200, while ``proc`` (the server) lives.

    Raises:
        RuntimeError: ``proc`` exited, or no 200 within ``within`` seconds.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: its server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {within} s")


def terminate(procs: Iterable[subprocess.Popen[bytes]], *, timeout: float = 20) -> None:
    """SIGTERM each process still running, then wait for each; SIGKILL what
    has not exited ``timeout`` seconds later."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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

    def start(
        self,
        name: str,
        argv: list[str],
        extra_env: dict[str, str] | None = None,
        *,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` as process ``name``, with the stack's settings and
        ``extra_env`` in its environment, in ``cwd`` (default: ``self.cwd``),
        its output in ``logs/<name>.log``: for a command other than the three
        services (a wrapper around one, say)."""
        env = _env(self.settings)
        env.update(extra_env or {})
        with (self.logs / f"{name}.log").open("ab") as out:  # the child keeps its own copy
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=self.cwd if cwd is None else cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def _spawn(
        self, name: str, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        return self.start(name, argv, extra_env)

    def start_api(self) -> str:
        port = free_port()
        self._spawn(
            "api",
            [sys.executable, "-m", "services.api.main", "--host", "127.0.0.1", "--port", str(port)],
        )
        self.url = f"http://127.0.0.1:{port}"
        self.wait_healthy("api", self.url)
        return self.url

    def wait_healthy(self, name: str, url: str) -> None:
        """Until process ``name``'s ``/healthz`` at ``url`` answers 200 (its log in the error)."""
        try:
            wait_healthy(f"{url}/healthz", self.procs[name])
        except RuntimeError as exc:
            raise RuntimeError(f"{name} did not start ({exc}): {self.log(name)[-2000:]}") from None

    def start_worker(self, name: str = "worker", **env: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, [sys.executable, "-m", "services.worker.main"], env)

    def start_janitor(self, name: str = "janitor", **env: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, [sys.executable, "-m", "services.janitor.main"], env)

    def start_notifier(self, name: str = "notifier", **env: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, [sys.executable, "-m", "services.notifier.main"], env)

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
        terminate(self.procs.values())
