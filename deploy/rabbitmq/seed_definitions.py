"""Copy ``definitions.json`` with the users' passwords set from the environment.

The checked-in definitions file holds no password: every user's
``password_hash`` is empty, which RabbitMQ treats as "no password login
possible". This script (standard library only; compose runs it in a throw-away
``python`` container before RabbitMQ starts) writes a copy in which each user
whose ``RABBITMQ_PASSWORD_<USER>`` variable is set gets a salted SHA-256 hash
of that password, the format RabbitMQ's ``rabbit_password_hashing_sha256``
expects. ``<USER>`` is the user name in upper case with every character that
is not a letter or digit replaced by ``_``: ``videoq-api`` reads
``RABBITMQ_PASSWORD_VIDEOQ_API``. Users without a variable stay locked.

With ``RABBITMQ_ADMIN_USER`` and ``RABBITMQ_ADMIN_PASSWORD`` set it also adds an
administrator (for the management UI), since a node that imports definitions at
boot creates no default user.

Usage: ``python seed_definitions.py [--drop-locked] SOURCE DEST``. With
``--drop-locked`` users left without a password (and their permissions) are
left out of the copy, so importing it into a running broker never resets the
password of a user that already exists there. Exit 2 on a usage error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"


def password_hash(password: str, *, salt: bytes | None = None) -> str:
    """RabbitMQ's stored form: base64(salt[4] + sha256(salt[4] + utf-8 password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    if len(salt) != 4:
        raise ValueError("RabbitMQ's salt is 4 bytes")
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def env_name(user: str) -> str:
    """The variable that holds ``user``'s password."""
    return "RABBITMQ_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", user).upper()


def seed(
    definitions: dict[str, Any], environ: Mapping[str, str], *, drop_locked: bool = False
) -> dict[str, Any]:
    """Return a copy of ``definitions`` with passwords hashed from ``environ``."""
    data = json.loads(json.dumps(definitions))
    for user in data.get("users", []):
        password = environ.get(env_name(user["name"]))
        if password:
            user["password_hash"] = password_hash(password)
            user["hashing_algorithm"] = HASHING_ALGORITHM
    admin, admin_password = (
        environ.get("RABBITMQ_ADMIN_USER"),
        environ.get("RABBITMQ_ADMIN_PASSWORD"),
    )
    if admin and admin_password:
        data["users"] = [u for u in data.get("users", []) if u["name"] != admin]
        data["users"].append(
            {
                "name": admin,
                "password_hash": password_hash(admin_password),
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": ["administrator"],
                "limits": {},
            }
        )
        data["permissions"] = [p for p in data.get("permissions", []) if p["user"] != admin]
        data["permissions"].extend(
            {"user": admin, "vhost": vhost["name"], "configure": ".*", "write": ".*", "read": ".*"}
            for vhost in data.get("vhosts", [])
        )
    if drop_locked:
        locked = {u["name"] for u in data.get("users", []) if not u.get("password_hash")}
        data["users"] = [u for u in data.get("users", []) if u["name"] not in locked]
        data["permissions"] = [p for p in data.get("permissions", []) if p["user"] not in locked]
    return data


def main(argv: list[str]) -> int:
    args = argv[1:]
    drop_locked = "--drop-locked" in args
    args = [a for a in args if a != "--drop-locked"]
    if len(args) != 2 or any(a.startswith("-") for a in args):
        print("usage: seed_definitions.py [--drop-locked] SOURCE DEST", file=sys.stderr)
        return 2
    source, dest = Path(args[0]), Path(args[1])
    data = seed(json.loads(source.read_text(encoding="utf-8")), os.environ, drop_locked=drop_locked)
    locked = [u["name"] for u in data["users"] if not u.get("password_hash")]
    dest.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    # RabbitMQ runs as another user and must read the file; it holds salted
    # hashes only, on a volume mounted into RabbitMQ alone.
    dest.chmod(0o644)
    print(f"wrote {dest}; users without a password (locked): {', '.join(locked) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
