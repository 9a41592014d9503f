"""The figures a benchmark measures, as typed records, and the one function
that prints them (``show``).

A benchmark keeps what it measured in its own dataclasses (a phase, a round,
a baseline run) and turns them into ``Row``s (one measured line: what, how
fast, how long) and ``Target``s (a goal and whether it was met) to print.
``write_json`` writes any mix of dicts, lists and dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Percentiles",
    "Row",
    "Target",
    "median",
    "median_percentiles",
    "percentiles",
    "show",
    "write_json",
]


@dataclass(frozen=True)
class Percentiles:
    """Latencies of a sample, in seconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def ms(self) -> str:
        return (
            f"p50 {self.p50 * 1e3:7.1f} ms  p95 {self.p95 * 1e3:7.1f} ms"
            f"  p99 {self.p99 * 1e3:7.1f} ms  max {self.max * 1e3:7.1f} ms"
        )

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _rank(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ordered sample."""
    index = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def percentiles(values: Sequence[float]) -> Percentiles:
    if not values:
        return Percentiles(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    ordered = sorted(values)
    return Percentiles(
        count=len(ordered),
        p50=_rank(ordered, 0.50),
        p95=_rank(ordered, 0.95),
        p99=_rank(ordered, 0.99),
        max=ordered[-1],
        mean=statistics.fmean(ordered),
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def median_percentiles(runs: Sequence[Percentiles]) -> Percentiles:
    """The median of each field over repeated runs."""
    return Percentiles(
        count=int(median([r.count for r in runs])),
        p50=median([r.p50 for r in runs]),
        p95=median([r.p95 for r in runs]),
        p99=median([r.p99 for r in runs]),
        max=median([r.max for r in runs]),
        mean=median([r.mean for r in runs]),
    )


@dataclass(frozen=True)
class Row:
    """One measured line: what, at what rate, with what latency, and notes."""

    label: str
    rate: float | None = None
    unit: str = ""
    latency: Percentiles | None = None
    note: str = ""


@dataclass(frozen=True)
class Target:
    """A goal the figures are held to: ``goal``, the figure measured, and whether it is met."""

    goal: str
    value: str
    met: bool


def _number(value: float) -> str:
    """Three or four significant figures, without an exponent."""
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _line(record: Row | Target) -> str:
    if isinstance(record, Target):
        return f"  {record.goal}: {record.value}  {'met' if record.met else 'MISSED'}"
    parts = [f"  {record.label:<46}"]
    if record.rate is not None:
        parts.append(f"{_number(record.rate):>8} {record.unit:<8}")
    elif record.latency is not None:
        parts.append(" " * 17)  # the latencies in their column
    if record.latency is not None:
        parts.append(record.latency.ms())
    if record.note:
        parts.append(record.note)
    return "  ".join(parts).rstrip()


def show(records: Sequence[Row | Target], heading: str | None = None) -> None:
    """Print ``records``, one line each, under ``heading`` (after a blank line) if given."""
    if heading is not None:
        print(f"\n{heading}")
    for record in records:
        print(_line(record), flush=True)  # a long run shows its figures as they come


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)  # a path, a date


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    """Write ``data`` (dicts, lists, dataclasses) as JSON to ``path``, if one is given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_encode) + "\n")
    print(f"figures written to {path}")
