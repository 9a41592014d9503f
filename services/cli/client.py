"""A small client of the videoq HTTP API (what the CLI and the demo use)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential
from tqdm.utils import CallbackIOWrapper

__all__ = ["DIRECT_UPLOAD_ABOVE", "ApiError", "Client"]

#: Files at least this large go up as direct uploads (docs/uploads.md), not
#: through the api.
DIRECT_UPLOAD_ABOVE = 64 * 1024 * 1024
#: Rounds of "list what arrived, send the rest" before a direct upload gives up.
_UPLOAD_ROUNDS = 3


def _worth_retrying(exc: BaseException) -> bool:
    """A part PUT that may go through next time: a broken connection or a
    5xx (not a refused signature, which a fresh URL cures)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


class ApiError(Exception):
    """The API answered with an error status; ``detail`` is its message."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail}")


class Client:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
        # Part URLs carry their own authority: no API key goes to the store.
        self._parts = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()
        self._parts.close()

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
        sampling: str | None = None,
        callback_url: str | None = None,
        on_upload: Callable[[int], object] | None = None,
        direct_above: int = DIRECT_UPLOAD_ABOVE,
    ) -> str:
        """Upload ``path`` and start a job; return its id.

        The file is streamed, not read into memory; ``on_upload`` is called with
        the size of each chunk read for the request body (a progress bar's ``update``).
        A file of at least ``direct_above`` bytes (0: none) goes up as a
        direct upload (``upload``), bypassing the api.
        """
        fields = {
            k: str(v)
            for k, v in (
                ("pipeline", pipeline),
                ("frame_stride", frame_stride),
                ("max_frames", max_frames),
                ("sampling", sampling),
                ("callback_url", callback_url),
            )
            if v is not None
        }
        if direct_above and path.stat().st_size >= direct_above:
            upload_id = self.upload(path, on_upload=on_upload)
            response = self._http.post(
                "/video/submit", files={"upload_id": (None, upload_id)}, data=fields
            )
            return str(self._check(response)["job_id"])
        with path.open("rb") as handle:
            # The wrapper passes fileno() through: httpx still sends a Content-Length.
            upload = (
                handle
                if on_upload is None
                else cast(BinaryIO, CallbackIOWrapper(on_upload, handle))
            )
            response = self._http.post(
                "/video/submit", files={"file": (path.name, upload, "video/mp4")}, data=fields
            )
        return str(self._check(response)["job_id"])

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The job's webhook delivery log, oldest attempt first."""
        answer = self._check(self._http.get(f"/video/jobs/{job_id}/deliveries"))
        return list(answer["deliveries"])

    def upload(self, path: Path, *, on_upload: Callable[[int], object] | None = None) -> str:
        """Send ``path`` as a direct upload and complete it; return its ``upload_id``.

        One part in memory at a time. A part PUT that fails is retried with
        backoff; what still failed is sent again from fresh URLs after
        listing the parts the store holds (``resume``).

        Raises:
            ApiError: refused (413, 415 after complete, ...), or parts still
                missing after a few rounds.
        """
        created = self._check(self._http.post("/video/uploads", json={"size": path.stat().st_size}))
        self._send_parts(path, created["part_size"], created["parts"], on_upload)
        return self.resume(path, str(created["upload_id"]), on_upload=on_upload)

    def resume(
        self, path: Path, upload_id: str, *, on_upload: Callable[[int], object] | None = None
    ) -> str:
        """Send the parts of ``upload_id`` the store does not hold yet, then
        complete it; return ``upload_id``."""
        for _ in range(_UPLOAD_ROUNDS):
            status = self._check(self._http.get(f"/video/uploads/{upload_id}"))
            if status["state"] != "open":  # completed already (an answer was lost)
                return upload_id
            if not status["parts"]:
                parts = [
                    {"part_number": p["part_number"], "etag": p["etag"]} for p in status["received"]
                ]
                done = self._http.post(
                    f"/video/uploads/{upload_id}/complete", json={"parts": parts}
                )
                self._check(done)
                return upload_id
            self._send_parts(path, status["part_size"], status["parts"], on_upload)
        raise ApiError(
            502, f"upload {upload_id}: parts still missing after {_UPLOAD_ROUNDS} rounds"
        )

    def _send_parts(
        self,
        path: Path,
        part_size: int,
        parts: list[dict[str, Any]],
        on_upload: Callable[[int], object] | None,
    ) -> None:
        """PUT each part; one that fails even after its retries is left for
        the next round of ``resume``."""
        with path.open("rb") as handle:
            for part in parts:
                handle.seek((part["part_number"] - 1) * part_size)
                data = handle.read(part_size)
                try:
                    self._put_part(part["url"], data)
                except httpx.HTTPError:
                    continue
                if on_upload is not None:
                    on_upload(len(data))

    @retry(
        retry=retry_if_exception(_worth_retrying),
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.5, max=8),
        reraise=True,
    )
    def _put_part(self, url: str, data: bytes) -> None:
        self._parts.put(url, content=data).raise_for_status()

    def status(self, job_id: str) -> dict[str, Any]:
        return self._check(self._http.get(f"/video/status/{job_id}"))  # type: ignore[no-any-return]

    def cancel(self, job_id: str, *, erase: bool = False) -> dict[str, Any]:
        """Cancel the job; with ``erase``, erase it (``{"job_id", "erased": true}``
        when it is gone now, else its status with ``erase_requested``)."""
        params = {"erase": "true"} if erase else None
        response = self._http.delete(f"/video/jobs/{job_id}", params=params)
        if response.status_code == 204:
            return {"job_id": job_id, "erased": True}
        return self._check(response)  # type: ignore[no-any-return]

    def results(self, job_id: str) -> dict[str, Any]:
        return self._check(self._http.get(f"/video/results/{job_id}"))  # type: ignore[no-any-return]

    def download_results(self, job_id: str, target: Path) -> int:
        """Stream a completed job's results document into ``target``; return its size.

        The file appears whole or not at all (written beside it, then renamed).

        Raises:
            ApiError: unknown job (404), not completed yet (404), or a service error.
        """
        with self._http.stream("GET", f"/video/results/{job_id}") as response:
            if response.is_error:
                response.read()
                self._check(response)
            handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".videoq-")
            try:
                with os.fdopen(handle, "wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        return target.stat().st_size

    def jobs(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of ``GET /video/jobs``: ``{"jobs": [...], "next_cursor": str | None}``.

        Jobs are status objects, as ``status`` returns them.
        """
        params = {
            k: str(v)
            for k, v in (("status", status), ("limit", limit), ("cursor", cursor))
            if v is not None
        }
        return self._check(self._http.get("/video/jobs", params=params))  # type: ignore[no-any-return]

    def iter_jobs(
        self, *, status: str | None = None, limit: int | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every job (with ``status``, if given), following the cursor page by
        page, at most ``limit`` of them."""
        cursor: str | None = None
        left = limit
        while left is None or left > 0:
            size = page_size if left is None else min(page_size, left)
            page = self.jobs(status=status, limit=size, cursor=cursor)
            yield from page["jobs"][:size]
            if left is not None:
                left -= min(size, len(page["jobs"]))
            cursor = page.get("next_cursor")
            if not cursor or not page["jobs"]:
                return

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
