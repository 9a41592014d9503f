"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the time goes.

    python -m bench.hotspots PROFILE.txt [--top N]

Prints the share of samples (CPU time; py-spy leaves idle threads out) spent

- *inclusive* in each group of frames: the project's own code by module, and
  the libraries it calls (asyncpg, aio-pika/aiormq, aiobotocore/botocore,
  uvicorn/h11/starlette/fastapi, pydantic, python-multipart, logging, PyAV),
- *self* in each function (the leaf frame), the top N.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

# Inclusive groups: a stack counts once for each group any of its frames matches.
GROUPS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in (
        ("api: submit route", r"\bsubmit \(.*services/api/routes\.py"),
        ("api: submit use case", r"\bsubmit_job \(.*services/api/submission\.py"),
        (
            "api: receive_upload (multipart parse + S3 put)",
            r"receive_upload \(.*services/api/upload\.py",
        ),
        ("api: status route", r"\bstatus \(.*services/api/routes\.py"),
        ("api: results route", r"\bresults \(.*services/api/routes\.py"),
        (
            "api: sync dependencies in the threadpool",
            r"run_in_threadpool|to_thread\.py|anyio/_backends",
        ),
        ("api: http middleware (BaseHTTPMiddleware)", r"starlette/middleware/base\.py"),
        ("worker: claim", r"claim \(.*shared/repository/postgres\.py"),
        (
            "worker: _process (download, pipeline, upload)",
            r"_process \(.*services/worker/worker\.py",
        ),
        ("worker: pipeline analyze (thread)", r"analyze \(.*shared/pipeline/service\.py"),
        ("worker: pause/resume consuming", r"(_pause|_resume) \(.*services/worker/worker\.py"),
        ("repository (asyncpg calls)", r"shared/repository/postgres\.py"),
        ("broker publish", r"_publish \(.*shared/broker/amqp\.py"),
        ("store adapter (S3)", r"shared/store/s3\.py"),
        ("botocore request signing", r"botocore/(auth|signers)\.py"),
        (
            "botocore serialize/parse/validate/hooks",
            r"botocore/(endpoint|parsers|validate|serialize|hooks|handlers)\.py",
        ),
        ("logging (shared/logs.py + logging)", r"(shared/logs\.py|/logging/)"),
        ("prometheus_client", r"prometheus_client/"),
        ("TCP connect (new connections)", r"sock_connect|create_connection"),
        ("tempfile / rmtree", r"(tempfile|shutil)\.py"),
    )
]

# Exclusive categories: each sample goes to the innermost frame that names one
# (so "asyncpg" is time inside asyncpg's own code, not the calls under it).
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in (
        (
            "idle: waiting (select, locks, queues)",
            r"^(\w+\.)?(select|poll|wait|_wait_for_tstate_lock|get) \((selectors|threading|queue)\.py|^_worker \(concurrent/futures/thread\.py",
        ),
        (
            "socket syscalls (send, recv, connect, close)",
            r"^(_SelectorSocketTransport\.write|\w+\._sock_connect|socket\._real_close|_SelectorSocketTransport\._read_ready__\w+|_set_nodelay|getaddrinfo|\w+\.sock_sendall|\w+\.sock_recv\w*) \(",
        ),
        (
            "thread hand-off (futures, conditions)",
            r"^[\w.]+ \(((concurrent/futures/\w+)|threading|queue)\.py|_write_to_self|_read_from_self",
        ),
        ("asyncio event loop", r"\(asyncio/"),
        ("h11 + uvicorn (HTTP server)", r"\((h11|uvicorn)/"),
        ("starlette + fastapi", r"\((starlette|fastapi)/"),
        ("anyio", r"\(anyio/"),
        ("pydantic", r"\(pydantic"),
        ("python-multipart", r"\(python_multipart/"),
        ("asyncpg", r"\(asyncpg/"),
        ("aio-pika / aiormq / pamqp", r"\((aio_pika|aiormq|pamqp)/"),
        ("botocore / aiobotocore", r"\((aiobotocore|botocore)/"),
        ("aiohttp / yarl / multidict", r"\((aiohttp|yarl|multidict)/"),
        ("logging", r"\((logging/|shared/logs\.py)"),
        ("prometheus_client", r"\(prometheus_client/"),
        ("PyAV / OpenCV / numpy", r"\((av|cv2|numpy)/"),
        ("videoq code", r"\((shared|services)/"),
        ("json / uuid / email / http stdlib", r"\((json|uuid|email|http|urllib)/"),
        ("tempfile / shutil / pathlib / os", r"\((tempfile|shutil|pathlib|os|posixpath)\.py"),
    )
]


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        stacks.append((head.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    func, where = match.groups()
    parts = where.split("/")
    for anchor in ("site-packages", "python3.11", "main"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
    return f"{func} ({'/'.join(parts[-3:])})"


def summarise(path: Path, *, top: int = 12, out: TextIO | None = None) -> dict[str, float]:
    """Print the summary (to ``out``, default stdout); return the share of each exclusive category."""

    def write(line: str) -> None:
        print(line, file=out)

    stacks = load(path)
    total = sum(n for _, n in stacks)
    if not total:
        write(f"  {path}: no samples")
        return {}
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        short = [_short(f) for f in frames]
        category = "other"
        for frame in reversed(short):
            found = next((name for name, pattern in CATEGORIES if pattern.search(frame)), None)
            if found:
                category = found
                break
        exclusive[category] += count
        if category.startswith("idle"):
            continue
        text = ";".join(frames)
        for name, pattern in GROUPS:
            if pattern.search(text):
                inclusive[name] += count
        leaves[short[-1]] += count
    idle = sum(n for c, n in exclusive.items() if c.startswith("idle"))
    busy = total - idle
    write(
        f"  {total} samples ({path.name}), {busy} busy ({busy / total * 100:.0f}%);"
        " shares of the busy samples:"
    )
    write("  by where the innermost frame is (exclusive):")
    shares = {}
    for name, count in exclusive.most_common():
        if name.startswith("idle"):
            continue
        shares[name] = count / busy
        if count / busy >= 0.01:
            write(f"    {count / busy * 100:5.1f}%  {name}")
    write("  by what it is doing (inclusive, a sample may count in several):")
    for name, _ in GROUPS:
        if inclusive[name] / busy >= 0.01:
            write(f"    {inclusive[name] / busy * 100:5.1f}%  {name}")
    write(f"  top {top} functions by self time:")
    for frame, count in leaves.most_common(top):
        write(f"    {count / busy * 100:5.1f}%  {frame}")
    return shares


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hotspots", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("profile", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    for path in args.profile:
        print(path)
        summarise(path, top=args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
