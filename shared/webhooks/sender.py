"""One webhook attempt over HTTP, to the address the SSRF guard checked.

httpcore (the transport under httpx) takes a network backend: ours connects
to ``Target.address`` whatever host it is asked for, while the request
keeps the URL's host for its ``Host`` header, TLS server name and
certificate check. So there is no second lookup, and no redirect is ever
followed (httpcore has none to follow).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import ssl
import sys
from collections.abc import Iterable

import httpcore

from shared.errors import WebhookFailed
from shared.webhooks.ssrf import Target

__all__ = ["MAX_RESPONSE_BYTES", "post"]

# httpcore runs `import sniffio` on every request; without sniffio installed
# (anyio 4 no longer needs it) each failed import scans sys.path: a third of
# an attempt's CPU, measured with py-spy (bench/webhooks.py). A None entry
# makes that import fail at once, as it would anyway.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

#: Read no more of a receiver's answer than this (it is never stored).
MAX_RESPONSE_BYTES = 4096


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to one address, whatever host the request names."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_tcp(
            self._address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise WebhookFailed("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _tls() -> ssl.SSLContext:
    # Built once: loading the CA bundle costs tens of milliseconds of CPU.
    return ssl.create_default_context()


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


async def post(
    target: Target,
    *,
    headers: dict[str, str],
    body: bytes,
    timeout_seconds: float,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """POST ``body`` to ``target``; return the HTTP status (any, 3xx included).

    Raises:
        WebhookFailed: no answer within ``timeout_seconds`` (the whole
            attempt), or the connection failed.
    """
    sent = [
        (b"Host", _host_header(target).encode()),
        (b"Content-Type", b"application/json"),
        (b"User-Agent", b"videoq-notifier"),
        *((k.encode(), v.encode()) for k, v in headers.items()),
    ]
    limits = {"connect": timeout_seconds, "read": timeout_seconds, "write": timeout_seconds}
    pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context or _tls(),
        network_backend=_PinnedBackend(target.address),
        max_connections=1,
        retries=0,
    )
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            pool,
            pool.stream(
                "POST", target.url, headers=sent, content=body, extensions={"timeout": limits}
            ) as response,
        ):
            read = 0
            async for chunk in response.aiter_stream():
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES:
                    break
            return response.status
    except TimeoutError:
        raise WebhookFailed(f"no answer within {timeout_seconds:g} s") from None
    except httpcore.TimeoutException:
        raise WebhookFailed(f"no answer within {timeout_seconds:g} s") from None
    except (httpcore.NetworkError, httpcore.ProtocolError, OSError, ssl.SSLError) as exc:
        raise WebhookFailed(f"connection failed: {type(exc).__name__}") from None
