"""Logging: one JSON object per line in services, readable text in dev.

Log with an event name as the message and context as ``extra``::

    log.info("job.claimed", extra={"job_id": str(job.job_id), "attempt": 1})

Every line, whichever the format, goes through :func:`redact` on its way out:
a password in a URL (``amqp://user:secret@host``) becomes ``***``, and so does
the value of any field whose name says it holds a secret (``password``,
``token``, ``api_key``, ``authorization``, ...), at any depth. That is a safety
net, not a licence: log ``Settings.redacted()``, never the settings.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["REDACTED", "configure_logging", "redact", "redact_text"]

#: What a secret is replaced with.
REDACTED = "***"

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

# scheme://user:password@ -> scheme://user:***@ (the user name is kept: it
# tells an operator which account failed, and is not a secret).
_URL_CREDENTIALS = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s\"'\\]*):[^@/\s\"'\\]+@"
)
# password=... in a query string or a libpq key/value DSN.
_PASSWORD_PARAM = re.compile(r"(?P<head>\b(?:password|passwd|pwd)=)[^&\s\"'\\]+", re.IGNORECASE)
# Field names whose values are secrets: a name that ends in a secret word
# (``api_key``, ``access_token``), or has ``password``/``secret`` anywhere
# (``aws_secret_access_key``). ``token_count`` is not a secret.
_SECRET_KEY = re.compile(
    r"(?:^|[_.\-])(?:passwd|token|api[_-]?keys?|apikey|authorization|credentials?|cookie"
    r"|private[_-]?key)$|password|secret",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """``text`` with every URL password (and ``password=`` parameter) replaced by ``***``."""
    text = _URL_CREDENTIALS.sub(rf"\g<head>:{REDACTED}@", text)
    return _PASSWORD_PARAM.sub(rf"\g<head>{REDACTED}", text)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value)


def redact(value: Any) -> Any:
    """A copy of ``value`` that is safe to log.

    Strings lose URL passwords; in mappings (at any depth, and inside lists
    and tuples) the value of a key that names a secret becomes ``***``.
    Other values are returned as they are.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and _SECRET_KEY.search(k) and _present(v)
            else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    return redact(fields)  # type: ignore[no-any-return]


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # The last pass covers what the field pass cannot see: the message,
        # an exception's text, and objects rendered by ``default=str``.
        return redact_text(json.dumps(line, default=str, separators=(",", ":")))


class _TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        text = f"{stamp} {record.levelname:<7} {self._service:<7} {record.getMessage()} {extra}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact_text(text.rstrip())


def configure_logging(*, service: str, fmt: str = "json", level: str = "INFO") -> None:
    """Send every log record to stderr in ``fmt`` ("json" or "text")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(service) if fmt == "json" else _TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log every connection attempt at INFO; keep their warnings.
    for noisy in ("aiormq", "aio_pika", "botocore", "aiobotocore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
