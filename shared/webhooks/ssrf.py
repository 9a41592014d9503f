"""The SSRF guard: which callback URLs the notifier may connect to, and where.

A callback URL is the client's, so it may point anywhere: at the metadata
service of the cloud the notifier runs in, at the database, at localhost.
The rules (docs/webhooks.md):

- ``https`` only, unless ``VIDEOQ_WEBHOOK_ALLOW_HTTP``; no user info in the
  URL; a host name or an IP literal;
- every address the host resolves to must be public: none loopback, private,
  link-local, unique-local, shared (CGNAT), multicast, unspecified, reserved
  or a cloud metadata address, unless it lies in
  ``VIDEOQ_WEBHOOK_ALLOW_NETWORKS``. IPv4 addresses carried inside IPv6 ones
  (mapped, 6to4, NAT64) are judged as the IPv4 address they carry;
- the caller connects to the address checked here (``Target.address``), so a
  second lookup cannot answer differently (DNS rebinding).

The judgement of an address (``refusal``) is pure and tested on every range
without a connection; ``resolve`` adds the lookup.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import CallbackRefused, WebhookFailed
from shared.settings import Settings

__all__ = ["CallbackPolicy", "Target", "refusal"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Metadata services that sit on public-looking or easily missed addresses;
#: most others (169.254.169.254, fd00:ec2::254, 100.100.100.200, 192.0.0.192)
#: are link-local, unique-local, shared or reserved and refused as such.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure wire server (a public address)
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_MAX_URL = 2048
_RESOLVE_SECONDS = 5.0


def refusal(address: Address) -> str | None:
    """Why ``address`` is not a public one a webhook may go to, or ``None``."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = address.ipv4_mapped or address.sixtofour
        if carried is None and address in _NAT64:
            carried = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if carried is not None:
            return refusal(carried)
    checks = (
        (address in _METADATA, "a cloud metadata address"),
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL, "unique-local"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
        # Shared address space (100.64.0.0/10) and the rest of what IANA
        # lists as not globally reachable.
        (not address.is_global, "not globally reachable"),
    )
    return next((why for refused, why in checks if refused), None)


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the URL as given, and the checked address to
    connect to (the URL's host stays the ``Host`` header and TLS name)."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


@dataclass(frozen=True)
class CallbackPolicy:
    """The rules above, with the deployment's exceptions."""

    allow_http: bool = False
    allow_networks: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackPolicy:
        return cls(
            allow_http=settings.webhook_allow_http,
            allow_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in settings.webhook_allow_networks
            ),
        )

    def check_url(self, url: str) -> tuple[str, str, int]:
        """``(scheme, host, port)`` of a URL the rules allow in form; no lookup.

        Raises:
            CallbackRefused: bad scheme, user info, no host, a refused IP literal.
        """
        if len(url) > _MAX_URL:
            raise CallbackRefused(f"callback_url must be at most {_MAX_URL} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise CallbackRefused("callback_url is not a valid URL") from None
        allowed = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in allowed:
            raise CallbackRefused(f"callback_url must use {' or '.join(allowed)}")
        if parts.username is not None or parts.password is not None:
            raise CallbackRefused("callback_url must not hold credentials")
        host = parts.hostname
        if not host:
            raise CallbackRefused("callback_url has no host")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            self.check_address(literal)
        return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)

    def check_address(self, address: Address) -> None:
        """Raises CallbackRefused unless ``address`` is public or allowed."""
        if any(address in network for network in self.allow_networks):
            return
        why = refusal(address)
        if why is not None:
            raise CallbackRefused(f"callback_url resolves to {why} address {address}")

    async def resolve(self, url: str) -> Target:
        """Check ``url``, look its host up and check every address it has.

        Raises:
            CallbackRefused: the URL or one of its addresses is refused.
            WebhookFailed: the host does not resolve (now: DNS may be back later).
        """
        scheme, host, port = self.check_url(url)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), _RESOLVE_SECONDS
            )
        except (OSError, TimeoutError):
            raise WebhookFailed(f"callback_url host {host!r} does not resolve") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise WebhookFailed(f"callback_url host {host!r} does not resolve")
        # Any refused address refuses the host: a name that resolves to a
        # public and a private address must not reach the private one.
        for address in addresses:
            self.check_address(address)
        return Target(url=url, scheme=scheme, host=host, port=port, address=str(addresses[0]))
