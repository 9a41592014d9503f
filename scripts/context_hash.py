"""Print a short hash of what ``docker build .`` would send and build from.

The files of the build context (as ``.dockerignore`` lets them through, with
Docker's rule that the last matching line wins), the Dockerfile, and the base
image's id (``--base``). scripts/compose_check.sh tags the project's images
with it, so an image is built again only when something that goes into it
changed. Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from fnmatch import fnmatchcase
from pathlib import Path

#: Never part of the context here, and slow to walk.
_SKIP_DIRS = {".git", ".venv", ".venv-checkov", "var", "node_modules"}


def _rules(root: Path) -> list[tuple[bool, str]]:
    """(include?, pattern) per line of .dockerignore, in order."""
    ignore = root / ".dockerignore"
    if not ignore.exists():
        return []
    rules = []
    for line in ignore.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        rules.append((include, line.lstrip("!").strip("/")))
    return rules


def _matches(path: str, pattern: str) -> bool:
    """Whether ``pattern`` names ``path`` or a directory above it."""
    parts = path.split("/")
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(
            fnmatchcase("/".join(parts[i:j]), tail)
            for i in range(len(parts))
            for j in range(i + 1, len(parts) + 1)
        )
    return any(fnmatchcase("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1))


def context_files(root: Path) -> list[str]:
    rules = _rules(root)
    kept = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in files:
            path = (Path(directory) / name).relative_to(root).as_posix()
            included = True
            for include, pattern in rules:
                if _matches(path, pattern):
                    included = include
            if included:
                kept.append(path)
    return sorted(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd())
    parser.add_argument("--dockerfile", default="Dockerfile")
    parser.add_argument("--base", default="", help="the base image's id")
    args = parser.parse_args()
    digest = hashlib.sha256()
    digest.update(f"base {args.base}\n".encode())
    for path in [args.dockerfile, *context_files(args.root)]:
        digest.update(f"{path}\n".encode())
        digest.update(hashlib.sha256((args.root / path).read_bytes()).digest())
    print(digest.hexdigest()[:12])


if __name__ == "__main__":
    main()
