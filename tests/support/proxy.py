"""TCP proxies for the tests.

- ``TcpProxy``: one the tests can cut: the network between a service and its
  dependency goes away (connections reset, new ones refused) and comes back.
- ``TcpBalancer``: a round robin over several backends that skips one that
  refuses, as a Kubernetes Service does once a dead pod leaves its endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Sequence
from typing import Any

__all__ = ["TcpBalancer", "TcpProxy"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.up()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(*self._target)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _up(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    def up(self) -> None:
        """Accept and forward connections."""
        self._call(self._up())

    def down(self) -> None:
        """Reset every connection and refuse new ones."""
        self._call(self._down())

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


class TcpBalancer(TcpProxy):
    """Forwards each new connection to the next backend in turn; a backend that
    refuses (or does not answer within ``connect_timeout``) is skipped, and a
    client is refused only when every backend is."""

    def __init__(self, targets: Sequence[tuple[str, int]], *, connect_timeout: float = 2.0) -> None:
        if not targets:
            raise ValueError("a balancer needs at least one backend")
        self._targets = list(targets)
        self._next = 0
        self._connect_timeout = connect_timeout
        #: Connections forwarded to each backend so far, by its index in ``targets``.
        self.forwarded = [0] * len(self._targets)
        super().__init__(*self._targets[0])

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        for _ in self._targets:
            index = self._next
            self._next = (index + 1) % len(self._targets)
            try:
                pair = await asyncio.wait_for(
                    asyncio.open_connection(*self._targets[index]), self._connect_timeout
                )
            except (OSError, TimeoutError):
                continue
            self.forwarded[index] += 1
            return pair
        raise ConnectionRefusedError("no backend accepts connections")
