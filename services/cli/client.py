"""A small client of the videoq HTTP API (what the CLI and the demo use)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiError", "Client"]


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail}")


class Client:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> Any:
        if response.is_error:
            try:
                detail = str(response.json().get("detail"))
            except ValueError:
                detail = response.text[:200]
            raise ApiError(response.status_code, detail)
        return response.json()

    def submit(
        self,
        path: Path,
        *,
        pipeline: str | None = None,
        frame_stride: int | None = None,
        max_frames: int | None = None,
    ) -> str:
        fields = {
            k: str(v)
            for k, v in (
                ("pipeline", pipeline),
                ("frame_stride", frame_stride),
                ("max_frames", max_frames),
            )
            if v is not None
        }
        with path.open("rb") as handle:
            response = self._http.post(
                "/video/submit", files={"file": (path.name, handle, "video/mp4")}, data=fields
            )
        return str(self._check(response)["job_id"])

    def status(self, job_id: str) -> dict[str, Any]:
        return self._check(self._http.get(f"/video/status/{job_id}"))  # type: ignore[no-any-return]

    def results(self, job_id: str) -> dict[str, Any]:
        return self._check(self._http.get(f"/video/results/{job_id}"))  # type: ignore[no-any-return]

    def wait(
        self,
        job_id: str,
        *,
        timeout: float,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.25,
    ) -> dict[str, Any]:
        """Poll until the job is completed or failed; return its last status.

        Raises:
            TimeoutError: still not finished after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if on_status:
                on_status(status)
            if status["status"] in ("completed", "failed"):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status['status']} after {timeout:g} s")
            time.sleep(interval)
