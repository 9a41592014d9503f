"""Draw the report's plots from the benchmarks' ``--json`` figures.

    python -m bench.plots [--results bench/results] [--out docs/img]

Reads ``queue.json``, ``api_load.json``, ``upload.json`` and ``scaling.json``
(whichever exist) and writes PNGs (matplotlib, Agg backend):

- ``queue-throughput.png``: jobs/s of videoq beside bare Celery and aio-pika
- ``queue-latency.png``: videoq's light-load latency percentiles
- ``api-latency.png``: status/results/healthz p50 and p99 against concurrency
- ``scaling-workers.png``: jobs/s against worker processes (and linear scaling)
- ``scaling-depth.png``: latency against queue depth
- ``upload.png``: MB/s of videoq's submit against raw multipart
- ``peer.png``: jobs/s and CPU per job of videoq beside the FastAPI + Celery
  peer, from ``peer-1.json``, ``peer-1x4.json`` and ``peer-4.json``
  (``bench.queue_overhead`` with 1 worker process, 1 process running 4 jobs
  at once, 4 processes)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

REPO = Path(__file__).resolve().parents[1]


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _footer(fig: Any, data: dict[str, Any]) -> None:
    info = data["machine"]
    load = " ".join(str(x) for x in info["load_average"])
    fig.text(
        0.01,
        0.01,
        f"{info['cores']} cores, Python {info['python']}, RabbitMQ {info.get('rabbitmq', '?')};"
        f" load average at start {load}; median of {data['args'].get('repeat', '?')} rounds",
        fontsize=7,
        color="0.4",
    )


def queue_plots(data: dict[str, Any], out: Path) -> list[Path]:
    summary = data["summary"]
    names = ["videoq\n(HTTP + PG + S3 + noop)"]
    rates = [summary["videoq_jobs_per_s"]]
    for name, figures in summary["baselines"].items():
        names.append(f"bare {name}")
        rates.append(figures["per_s"])
    fig, ax = plt.subplots(figsize=(8, 3.8))
    colors = ["tab:blue"] + ["tab:gray"] * (len(names) - 1)
    bars = ax.barh(names[::-1], rates[::-1], color=colors[::-1])
    ax.bar_label(bars, fmt="%.0f", padding=3, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("jobs (tasks, messages) per second, log scale")
    ax.set_title("Queue overhead: 1 worker process, no-op work, same RabbitMQ", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footer(fig, data)
    first = out / "queue-throughput.png"
    fig.savefig(first, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.8))
    series = [
        ("submit -> completed", summary["videoq_light_e2e"]),
        ("row created -> completed", summary["videoq_light_row"]),
        ("HTTP submit (202)", summary["videoq_light_http"]),
    ]
    width = 0.25
    for i, q in enumerate(("p50", "p95", "p99")):
        xs = [j + (i - 1) * width for j in range(len(series))]
        values = [s[1][q] * 1e3 for s in series]
        bars = ax.bar(xs, values, width, label=q)
        ax.bar_label(bars, fmt="%.0f", padding=2, fontsize=7)
    ax.axhline(50, color="tab:red", linestyle="--", linewidth=1, label="target p50 (50 ms)")
    ax.set_xticks(range(len(series)), [s[0] for s in series])
    ax.set_ylabel("ms")
    rate = data["args"].get("light_rate", "?")
    ax.set_title(f"videoq latency at light load ({rate} jobs/s, noop pipeline, 1 worker)")
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footer(fig, data)
    second = out / "queue-latency.png"
    fig.savefig(second, dpi=120)
    plt.close(fig)
    return [first, second]


def api_plot(data: dict[str, Any], out: Path) -> list[Path]:
    closed = data["summary"]["closed"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for route, color in (
        ("status", "tab:blue"),
        ("results", "tab:orange"),
        ("healthz", "tab:gray"),
    ):
        points = sorted(
            (int(name.split("c=")[1]), figures)
            for name, figures in closed.items()
            if name.startswith(route + " ")
        )
        if not points:
            continue
        levels = [c for c, _ in points]
        left.plot(
            levels,
            [f["latency"]["p50"] * 1e3 for _, f in points],
            "o-",
            color=color,
            label=f"{route} p50",
        )
        left.plot(
            levels,
            [f["latency"]["p99"] * 1e3 for _, f in points],
            "s--",
            color=color,
            label=f"{route} p99",
        )
        right.plot(levels, [f["requests_per_s"] for _, f in points], "o-", color=color, label=route)
    left.axhline(20, color="tab:red", linewidth=1, linestyle=":", label="20 ms")
    ticks = sorted({int(name.split("c=")[1]) for name in closed})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("clients (closed loop)")
        ax.legend(fontsize=7)
    left.set_yscale("log")
    left.set_ylabel("latency, ms (log)")
    right.set_ylabel("requests/s")
    fixed = data["summary"]["fixed"].get("status")
    rate = data["args"].get("rate", "?")
    note = (
        f"; status at {rate}/s fixed rate: p99 {fixed['latency']['p99'] * 1e3:.0f} ms"
        if fixed
        else ""
    )
    fig.suptitle(f"api GETs under load{note}", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footer(fig, data)
    path = out / "api-latency.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def scaling_plots(data: dict[str, Any], out: Path) -> list[Path]:
    throughput = data["summary"]["throughput"]
    workers = sorted(int(w) for w in throughput)
    rates = [throughput[str(w)]["jobs_per_s"] for w in workers]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(workers, rates, "o-", label="measured")
    ax.plot(workers, [rates[0] * w / workers[0] for w in workers], ":", color="0.5", label="linear")
    for w, r in zip(workers, rates, strict=True):
        ax.annotate(f"{r:.2f}", (w, r), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.axvline(
        data["machine"]["cores"], color="tab:red", linewidth=1, linestyle="--", label="cores"
    )
    clip = data["clip"]
    ax.set_xticks(workers)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("worker processes")
    ax.set_ylabel("jobs/s")
    pipeline = data["args"].get("pipeline", "?")
    ax.set_title(
        f"{pipeline} pipeline, {clip['seconds']} s {clip['size']} clip per job", fontsize=10
    )
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _footer(fig, data)
    first = out / "scaling-workers.png"
    fig.savefig(first, dpi=120)
    plt.close(fig)

    depth = data["summary"]["depth"]
    depths = sorted(int(d) for d in depth)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("p50", "o-"), ("max", "s--"), ("mean", "^:")):
        ax.plot(depths, [depth[str(d)][key] for d in depths], style, label=key)
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("jobs submitted at once (queue depth)")
    ax.set_ylabel("submit -> completed, s")
    ax.set_title(
        f"Latency vs queue depth ({data['args'].get('depth_workers', '?')} workers, {pipeline})",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _footer(fig, data)
    second = out / "scaling-depth.png"
    fig.savefig(second, dpi=120)
    plt.close(fig)
    return [first, second]


def upload_plot(data: dict[str, Any], out: Path) -> list[Path]:
    s = data["summary"]
    names = ["raw multipart\n(1 part in flight)", "raw multipart\n(4 in flight)", "videoq submit"]
    values = [s["raw_mb_s"], s["raw4_mb_s"], s["videoq_mb_s"]]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    bars = ax.bar(names, values, color=["tab:gray", "tab:gray", "tab:blue"])
    ax.bar_label(bars, fmt="%.0f MB/s", padding=2, fontsize=8)
    ax.set_ylabel("MB/s")
    ax.set_title(
        f"{data['args'].get('size_mib', '?')} MiB upload to S3; api RSS growth"
        f" {s['rss_growth_mb']:.0f} MB",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _footer(fig, data)
    path = out / "upload.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


#: The peer comparison's result files, and how each ran both sides.
PEER_RUNS = (
    ("peer-1", "1 process,\n1 job at a time"),
    ("peer-1x4", "1 process,\n4 jobs at once"),
    ("peer-4", "4 processes"),
)


def peer_plot(folder: Path, out: Path) -> list[Path]:
    runs = [(label, data) for name, label in PEER_RUNS if (data := _load(folder, name))]
    if not runs:
        print(f"no peer-*.json in {folder}: skipped")
        return []
    fig, (rate_ax, cpu_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    width = 0.38
    for side, offset, color in (("videoq", -width / 2, "tab:blue"), ("peer", width / 2, "0.55")):
        rates = [
            d["summary"]["videoq_jobs_per_s"]
            if side == "videoq"
            else d["summary"]["peer"]["jobs_per_s"]
            for _, d in runs
        ]
        bars = rate_ax.bar([i + offset for i in range(len(runs))], rates, width, color=color)
        bars.set_label("videoq" if side == "videoq" else "peer (FastAPI + Celery)")
        rate_ax.bar_label(bars, fmt="%.0f", padding=2, fontsize=8)
    rate_ax.set_xticks(
        range(len(runs)),
        [f"{label}\nvideoq {d['summary']['ratios']['peer']:.2f}x" for label, d in runs],
        fontsize=8,
    )
    rate_ax.set_ylim(0, rate_ax.get_ylim()[1] * 1.2)
    rate_ax.set_ylabel("jobs/s (noop, median of the rounds)")
    rate_ax.set_title("Throughput (ratio: median of the rounds' ratios)", fontsize=9)
    rate_ax.legend(fontsize=8, loc="upper left")
    # CPU per job, stacked by process, each side's bar beside the other's.
    parts = list(runs[0][1]["summary"]["videoq_cpu_ms_per_job"])
    colors = [plt.get_cmap("tab10")(k) for k in range(10)]
    for i, (_, d) in enumerate(runs):
        for offset, cpu in (
            (-width / 2, d["summary"]["videoq_cpu_ms_per_job"]),
            (width / 2, d["summary"]["peer"]["cpu_ms_per_job"]),
        ):
            bottom = 0.0
            for k, part in enumerate(parts):
                value = cpu.get(part, 0.0)
                cpu_ax.bar(
                    i + offset,
                    value,
                    width,
                    bottom=bottom,
                    color=colors[k % len(colors)],
                    label=part.split(" (")[0] if i == 0 and offset < 0 else None,
                )
                bottom += value
            cpu_ax.annotate(
                f"{bottom:.1f}", (i + offset, bottom), ha="center", va="bottom", fontsize=7
            )
    cpu_ax.set_xticks(
        [i + o for i in range(len(runs)) for o in (-width / 2, width / 2)],
        ["videoq", "peer"] * len(runs),
        fontsize=7,
    )
    cpu_ax.set_ylabel("CPU ms per job")
    cpu_ax.set_title("CPU per job by process (groups as on the left)", fontsize=9)
    cpu_ax.set_ylim(0, cpu_ax.get_ylim()[1] * 1.15)
    cpu_ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footer(fig, runs[0][1])
    path = out / "peer.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plots", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, draw in (
        ("queue", queue_plots),
        ("api_load", api_plot),
        ("scaling", scaling_plots),
        ("upload", upload_plot),
    ):
        data = _load(args.results, name)
        if data is None:
            print(f"no {name}.json in {args.results}: skipped")
            continue
        written += draw(data, args.out)
    written += peer_plot(args.results, args.out)
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
