"""A webhook receiver on 127.0.0.1 (a thread), answering from a script."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HANG", "Received", "Receiver", "receiver"]

#: A scripted answer: hold the request (no answer) until ``Receiver.release``.
HANG = -1


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: What it was answered (HANG: nothing).
    status: int


class Receiver:
    """Answers the n-th request with ``script[n]`` (the last entry after that)."""

    def __init__(self, script: list[int]) -> None:
        self.script = list(script)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.url = ""

    def release(self) -> None:
        """Let go of the requests held by ``HANG``."""
        self._released.set()

    def _next(self) -> int:
        with self._lock:
            index = min(len(self.received), len(self.script) - 1)
            return self.script[index]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver._next()
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                        )
                    )
                if status == HANG:
                    receiver._released.wait(60)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@contextmanager
def receiver(script: list[int]) -> Iterator[Receiver]:
    """Serve ``Receiver(script)`` on a free loopback port; ``.url`` is its address."""
    rec = Receiver(script)
    server = ThreadingHTTPServer(("127.0.0.1", 0), rec._handler())
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/videoq"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.release()
        server.shutdown()
        server.server_close()
