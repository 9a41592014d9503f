"""API keys: ``Authorization: Bearer <key>``, checked against hashes.

Settings hold ``client_id:sha256-hex`` entries, never keys. A presented key
is hashed and compared with every entry in constant time, so neither timing
nor an early exit tells which part matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from shared.errors import Unauthorized
from shared.settings import Settings

__all__ = ["ANONYMOUS", "ApiKeys", "hash_key"]

#: The client of every job when authentication is off.
ANONYMOUS = "anonymous"
_ENTRY = re.compile(r"^([A-Za-z0-9_.-]{1,64}):([0-9a-f]{64})$")


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key``: what goes into ``VIDEOQ_API_KEYS``."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeys:
    entries: tuple[tuple[str, bytes], ...]
    disabled: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """Parse ``VIDEOQ_API_KEYS``.

        Raises:
            ValueError: a malformed entry, or no keys while auth is on.
        """
        if settings.auth_disabled:
            return cls((), disabled=True)
        text = settings.api_keys.get_secret_value() if settings.api_keys else ""
        entries = []
        for number, raw in enumerate(filter(None, (p.strip() for p in text.split(","))), 1):
            match = _ENTRY.match(raw)
            if not match:
                raise ValueError(
                    f"VIDEOQ_API_KEYS entry {number} is not client_id:sha256-hex"
                )  # the entry itself is not echoed: it may be a pasted key
            entries.append((match[1], bytes.fromhex(match[2])))
        if not entries:
            raise ValueError(
                "No API keys: set VIDEOQ_API_KEYS (client_id:sha256-hex, ...) or, to serve"
                " without authentication, VIDEOQ_AUTH_DISABLED=true"
            )
        return cls(tuple(entries))

    def client_for(self, authorization: str | None) -> str:
        """The client a ``Authorization`` header belongs to.

        Raises:
            Unauthorized: no header, not ``Bearer``, or no key matches.
        """
        if self.disabled:
            return ANONYMOUS
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized()
        digest = hashlib.sha256(key.strip().encode()).digest()
        found: str | None = None
        for client, expected in self.entries:  # every entry, always
            if hmac.compare_digest(digest, expected):
                found = client
        if found is None:
            raise Unauthorized()
        return found
