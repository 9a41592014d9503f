"""``python -m tools.governance``: exit 0 when the tree keeps every rule,
1 (after printing each violation) when it does not, 2 on a usage error."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tools.governance import RULES, check, select
from tools.governance.core import Context, default_database_url
from tools.governance.openapi import SNAPSHOT, write_snapshot
from tools.governance.source import Tree

_ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.governance",
        description="Check the phase-16 governance rules on the project tree.",
    )
    parser.add_argument(
        "--root", type=Path, default=_ROOT, help="tree to check (default: this one)"
    )
    parser.add_argument(
        "--database-url",
        help="admin URL of a PostgreSQL server for the schema checks (a scratch database"
        " is created, migrated and dropped); default VIDEOQ_TEST_DATABASE_URL",
    )
    parser.add_argument(
        "--no-database", action="store_true", help="skip the checks that need PostgreSQL"
    )
    parser.add_argument(
        "--rule",
        action="append",
        metavar="NAME",
        help="check only this rule or group (repeatable), e.g. --rule schema",
    )
    parser.add_argument("--list", action="store_true", help="list the rules and exit")
    parser.add_argument(
        "--write-openapi",
        action="store_true",
        help=f"write the API's OpenAPI document to {SNAPSHOT} and exit",
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    if args.list:
        for rule in RULES:
            extra = " (needs PostgreSQL)" if rule.needs_database else ""
            print(f"{rule.name:24} {rule.summary}{extra}")
        return 0
    if not root.is_dir():
        parser.error(f"--root {root} is not a directory")
    if args.write_openapi:
        try:
            path = write_snapshot(Context(Tree(root)))
        except RuntimeError as exc:
            print(f"governance: {exc}", file=sys.stderr)
            return 1
        print(f"governance: wrote {path}")
        return 0
    try:
        select(args.rule)
    except ValueError as exc:
        parser.error(str(exc))
    started = time.monotonic()
    report = check(
        root,
        rules=args.rule,
        database_url=default_database_url(args.database_url),
        use_database=not args.no_database,
    )
    for violation in sorted(report.violations, key=lambda v: (v.rule, v.path, v.line or 0)):
        print(violation)
    elapsed = time.monotonic() - started
    skipped = f", skipped {', '.join(report.skipped)}" if report.skipped else ""
    if report.ok:
        print(f"governance: {len(report.checked)} rules kept ({elapsed:.1f} s{skipped})")
        return 0
    broken = sorted({v.rule for v in report.violations})
    print(
        f"governance: {len(report.violations)} violations of {len(broken)} rules"
        f" ({', '.join(broken)}; {elapsed:.1f} s{skipped})"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
