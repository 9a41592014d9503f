"""MinIO's users and policies for the S3 stand-in (rclone's `serve s3`).

rclone authenticates (it checks each request's signature against the secret
that ``auth`` looks up), but knows no policies; this gate, in front of it on
the port clients use, refuses with ``403 AccessDenied`` every request whose
S3 action the signer's policies do not allow, as MinIO does. The root user
may do anything. What `mc admin` (the mc shim) sets up is kept where MinIO
keeps it, under the data directory's ``.minio.sys``: written over S3 with the
root keys, read here on every request (so a change applies at once).

    policy_gate.py serve --data DIR --listen HOST:PORT --upstream HOST:PORT -- RCLONE...
    policy_gate.py auth --data DIR      (rclone's --auth-proxy: JSON in, JSON out)
    policy_gate.py check FILE           (is FILE a policy the gate can apply?)

Test infrastructure only (tests/compose/compose.standins.yaml), stdlib only.
Requests are relayed byte for byte (signatures stay valid); only each request's
head is read, to find its signer, bucket, key and action. Clients that
pipeline requests are not supported (S3 clients do not).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

#: MinIO's own bucket: never reachable with a user's keys.
SYSTEM_BUCKET = ".minio.sys"
IAM_PREFIX = "standin"  # .minio.sys/standin/{users/ACCESS/{secret,policies},policies/NAME.json}
_SUPPORTED_STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource"}

# (subresource in the query, action): the first that the request names wins.
_BUCKET_ACTIONS = {
    "GET": [
        ("location", "s3:GetBucketLocation"),
        ("uploads", "s3:ListBucketMultipartUploads"),
        ("versions", "s3:ListBucketVersions"),
        ("policy", "s3:GetBucketPolicy"),
        ("acl", "s3:GetBucketAcl"),
        ("tagging", "s3:GetBucketTagging"),
        ("versioning", "s3:GetBucketVersioning"),
        ("lifecycle", "s3:GetLifecycleConfiguration"),
        ("cors", "s3:GetBucketCORS"),
        ("notification", "s3:GetBucketNotification"),
        ("encryption", "s3:GetEncryptionConfiguration"),
        ("object-lock", "s3:GetBucketObjectLockConfiguration"),
        ("", "s3:ListBucket"),
    ],
    "HEAD": [("", "s3:ListBucket")],
    "PUT": [
        ("policy", "s3:PutBucketPolicy"),
        ("acl", "s3:PutBucketAcl"),
        ("tagging", "s3:PutBucketTagging"),
        ("versioning", "s3:PutBucketVersioning"),
        ("lifecycle", "s3:PutLifecycleConfiguration"),
        ("cors", "s3:PutBucketCORS"),
        ("notification", "s3:PutBucketNotification"),
        ("encryption", "s3:PutEncryptionConfiguration"),
        ("object-lock", "s3:PutBucketObjectLockConfiguration"),
        ("", "s3:CreateBucket"),
    ],
    "DELETE": [
        ("policy", "s3:DeleteBucketPolicy"),
        ("tagging", "s3:PutBucketTagging"),
        ("lifecycle", "s3:PutLifecycleConfiguration"),
        ("cors", "s3:PutBucketCORS"),
        ("encryption", "s3:PutEncryptionConfiguration"),
        ("", "s3:DeleteBucket"),
    ],
}
_OBJECT_ACTIONS = {
    "GET": [
        ("uploadId", "s3:ListMultipartUploadParts"),
        ("acl", "s3:GetObjectAcl"),
        ("tagging", "s3:GetObjectTagging"),
        ("", "s3:GetObject"),
    ],
    "HEAD": [("", "s3:GetObject")],
    "PUT": [
        ("acl", "s3:PutObjectAcl"),
        ("tagging", "s3:PutObjectTagging"),
        ("retention", "s3:PutObjectRetention"),
        ("legal-hold", "s3:PutObjectLegalHold"),
        ("", "s3:PutObject"),
    ],
    # Starting and completing a multipart upload are PutObject, as on AWS.
    "POST": [
        ("uploads", "s3:PutObject"),
        ("uploadId", "s3:PutObject"),
        ("select", "s3:GetObject"),
        ("restore", "s3:RestoreObject"),
    ],
    "DELETE": [
        ("uploadId", "s3:AbortMultipartUpload"),
        ("tagging", "s3:DeleteObjectTagging"),
        ("", "s3:DeleteObject"),
    ],
}


class PolicyError(ValueError):
    """A policy document the gate cannot apply faithfully."""


# ---- policies -------------------------------------------------------------------------


def _as_list(value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise PolicyError(f"expected a string or a list of strings, got {value!r}")
    return items


def _pattern(glob: str, *, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run, ? one character; nothing else is special.
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(body, re.IGNORECASE if ignore_case else 0)


@dataclass(frozen=True)
class Statement:
    allow: bool
    actions: tuple[re.Pattern[str], ...]
    resources: tuple[re.Pattern[str], ...]

    def matches(self, action: str, resource: str) -> bool:
        return any(a.fullmatch(action) for a in self.actions) and any(
            r.fullmatch(resource) for r in self.resources
        )


def parse_policy(text: str) -> list[Statement]:
    """The statements of an IAM policy document.

    Raises PolicyError for anything the gate would not enforce as MinIO does
    (conditions, NotAction, NotResource, principals): refusing it beats
    enforcing a different policy without saying so.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise PolicyError(f"not JSON: {e}") from None
    statements = document.get("Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise PolicyError("no Statement")
    parsed = []
    for raw in statements:
        if not isinstance(raw, dict):
            raise PolicyError(f"a statement is not an object: {raw!r}")
        unsupported = set(raw) - _SUPPORTED_STATEMENT_KEYS
        if unsupported:
            raise PolicyError(f"the stand-in cannot apply {sorted(unsupported)}")
        if raw.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"Effect must be Allow or Deny: {raw.get('Effect')!r}")
        parsed.append(
            Statement(
                allow=raw["Effect"] == "Allow",
                actions=tuple(_pattern(a, ignore_case=True) for a in _as_list(raw.get("Action"))),
                resources=tuple(
                    _pattern(r, ignore_case=False) for r in _as_list(raw.get("Resource"))
                ),
            )
        )
    return parsed


def allowed(statements: list[Statement], checks: list[tuple[str, str]]) -> bool:
    """Every (action, resource) allowed by a statement and denied by none."""
    return all(
        any(s.allow and s.matches(a, r) for s in statements)
        and not any(not s.allow and s.matches(a, r) for s in statements)
        for a, r in checks
    )


# ---- what `mc admin` stored ---------------------------------------------------------------


@dataclass(frozen=True)
class Iam:
    data: Path

    @property
    def root(self) -> Path:
        return self.data / SYSTEM_BUCKET / IAM_PREFIX

    def secret(self, access_key: str) -> str | None:
        if access_key == os.environ.get("MINIO_ROOT_USER", "minioadmin"):
            return os.environ.get("MINIO_ROOT_PASSWORD")
        try:
            return self._user_file(access_key, "secret").read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            return None

    def statements(self, access_key: str) -> list[Statement]:
        """The statements of the user's attached policies ([] if none, or unknown)."""
        try:
            names = self._user_file(access_key, "policies").read_text(encoding="utf-8").split()
        except (OSError, ValueError):
            return []
        statements = []
        for name in names:
            path = self.root / "policies" / f"{name}.json"
            try:
                statements += parse_policy(path.read_text(encoding="utf-8"))
            except (OSError, PolicyError) as e:
                _log(f"policy {name} of {access_key} not applied ({e}): nothing it grants holds")
        return statements

    def _user_file(self, access_key: str, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9._@=+-]{1,128}", access_key) or access_key[0] == ".":
            raise ValueError(f"not an access key: {access_key!r}")
        return self.root / "users" / access_key / name


def auth_proxy(iam: Iam, request: dict[str, str]) -> dict[str, str]:
    """rclone's --auth-proxy answer: the secret to check the signature with
    (none: refused) and the backend, the whole data directory for every user
    (the gate decides what each may touch)."""
    secret = iam.secret(request.get("user", ""))
    return {"type": "local", "_root": str(iam.data), "_secret_access_key": secret or ""}


# ---- requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    bucket: str
    key: str
    query: frozenset[str]
    headers: dict[str, str]  # lower-cased names

    @classmethod
    def parse(cls, head: bytes) -> Request:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        query = frozenset(parse_qs(url.query, keep_blank_values=True))
        return cls(method.upper(), target, bucket, key, query, headers)

    @property
    def access_key(self) -> str | None:
        """Who signed it (the signature itself is rclone's to check)."""
        found = re.search(r"Credential=([^/,\s]+)/", self.headers.get("authorization", ""))
        if found:
            return found.group(1)
        credential = parse_qs(urlsplit(self.target).query).get("X-Amz-Credential", [""])[0]
        return credential.split("/", 1)[0] or None

    def checks(self) -> list[tuple[str, str]]:
        """The (action, resource) pairs a policy must allow for this request."""
        if not self.bucket:
            action = "s3:ListAllMyBuckets" if self.method == "GET" else "s3:Unsupported"
            return [(action, "arn:aws:s3:::*")]
        if not self.key:
            if self.method == "POST":
                # Multi-object delete, or a browser form upload.
                action = "s3:DeleteObject" if "delete" in self.query else "s3:PutObject"
                return [(action, f"arn:aws:s3:::{self.bucket}/*")]
            return [(self._action(_BUCKET_ACTIONS), f"arn:aws:s3:::{self.bucket}")]
        checks = [(self._action(_OBJECT_ACTIONS), f"arn:aws:s3:::{self.bucket}/{self.key}")]
        source = self.headers.get("x-amz-copy-source")
        if source and self.method == "PUT":
            path = unquote(source.split("?", 1)[0]).lstrip("/")
            checks.append(("s3:GetObject", f"arn:aws:s3:::{path}"))
        return checks

    def _action(self, table: dict[str, list[tuple[str, str]]]) -> str:
        for subresource, action in table.get(self.method, []):
            if not subresource or subresource in self.query:
                return action
        return "s3:Unsupported"


def decide(iam: Iam, request: Request) -> bool:
    """Whether to pass the request on to rclone."""
    access_key = request.access_key
    if access_key is None:
        return True  # unsigned: rclone refuses it
    if access_key == os.environ.get("MINIO_ROOT_USER", "minioadmin"):
        return True
    if request.bucket == SYSTEM_BUCKET:
        return False
    return allowed(iam.statements(access_key), request.checks())


def access_denied(request: Request) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        f"<Message>Access Denied.</Message><Resource>{_xml(request.target)}</Resource></Error>"
    ).encode()
    head = (
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nServer: MinIO (videoq stand-in)\r\n"
    )
    if "100-continue" in request.headers.get("expect", "").lower():
        head += "Connection: close\r\n"  # the body may or may not follow: no next request
    return (head + "\r\n").encode() + (b"" if request.method == "HEAD" else body)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---- the relay ---------------------------------------------------------------------------


async def _body(
    reader: asyncio.StreamReader, request: Request, out: asyncio.StreamWriter | None
) -> None:
    """Copy (or, with ``out`` None, drop) the request's body, as its framing says."""

    async def copy(n: int) -> None:
        while n > 0:
            chunk = await reader.readexactly(min(n, 1 << 16))
            n -= len(chunk)
            if out is not None:
                out.write(chunk)
                await out.drain()

    def emit(data: bytes) -> None:
        if out is not None:
            out.write(data)

    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        while True:
            line = await reader.readuntil(b"\r\n")
            emit(line)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                    emit(trailer)
                emit(b"\r\n")
                break
            await copy(size + 2)  # the chunk and its CRLF
    else:
        await copy(int(request.headers.get("content-length", "0") or 0))
    if out is not None:
        await out.drain()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Relay rclone's responses; when it closes the connection, so do we."""
    try:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()


async def _serve(
    iam: Iam, upstream: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    up_reader, up_writer = await asyncio.open_connection(*upstream)
    # Responses go back as they come: a client sends its next request only
    # after it has read the whole response to the last one.
    responses = asyncio.create_task(_pump(up_reader, writer))
    try:
        while not responses.done():
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                break
            request = Request.parse(head)
            if decide(iam, request):
                up_writer.write(head)
                await _body(reader, request, up_writer)
                continue
            _log(
                f"denied {request.access_key}: {request.method} {request.target} {request.checks()}"
            )
            expects = "100-continue" in request.headers.get("expect", "").lower()
            if not expects:
                await _body(reader, request, None)
            writer.write(access_denied(request))
            await writer.drain()
            if expects:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        # Let a response in flight reach the client, then close both sides.
        up_writer.close()
        try:
            await asyncio.wait_for(responses, 30)
        except (TimeoutError, ConnectionError):
            responses.cancel()
        writer.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


async def _main_serve(iam: Iam, listen: str, upstream: str, rclone: list[str]) -> int:
    server_process = await asyncio.create_subprocess_exec(*rclone)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server_process.terminate)
    server = await asyncio.start_server(
        lambda r, w: _serve(iam, _address(upstream), r, w), *_address(listen)
    )
    _log(f"policies of {iam.root} enforced on {listen}, for rclone on {upstream}")
    async with server:
        # The container lives as long as rclone does.
        return await server_process.wait()


def _log(message: str) -> None:
    print(f"minio (stand-in): {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--data", type=Path, required=True)
    serve.add_argument("--listen", required=True)
    serve.add_argument("--upstream", required=True)
    serve.add_argument("rclone", nargs="+")
    auth = commands.add_parser("auth")
    auth.add_argument("--data", type=Path, required=True)
    check = commands.add_parser("check")
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return asyncio.run(_main_serve(Iam(args.data), args.listen, args.upstream, args.rclone))
    if args.command == "auth":
        json.dump(auth_proxy(Iam(args.data), json.load(sys.stdin)), sys.stdout)
        return 0
    try:
        parse_policy(args.file.read_text(encoding="utf-8"))
    except (OSError, PolicyError) as e:
        print(f"mc (stand-in): {args.file}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
