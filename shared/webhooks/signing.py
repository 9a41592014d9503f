"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Signed here with ``hmac``/``hashlib`` rather than the ``standardwebhooks``
package: the scheme is one HMAC, and the package (which the tests use as the
independent verifier) would pull its generated HTTP client into every image.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from pydantic import SecretStr

__all__ = ["signed_headers"]


def signed_headers(
    *, secret: SecretStr, webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
    ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``)
    headers, keyed by ``secret``: the base64 after ``whsec_``."""
    key = base64.b64decode(secret.get_secret_value())
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
