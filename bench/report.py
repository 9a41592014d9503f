"""Print the benchmarks' figures as Markdown tables (for docs/benchmarks.md).

    python -m bench.report [--results bench/results]

Reads whichever ``--json`` outputs exist in the folder: ``queue.json``,
``queue-whatif.json``, ``queue-concurrency4.json``, ``queue-diagnose.json``,
``api_load.json``, ``api_load-async-deps.json``, ``upload.json``, ``scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _conditions(data: dict[str, Any]) -> str:
    start = " ".join(str(x) for x in data["machine"]["load_average"])
    end = " ".join(str(x) for x in data.get("load_average_end", []))
    return (
        f"load average {start} at the start, {end} at the end; {data['args'].get('repeat')} rounds"
    )


def queue(name: str, data: dict[str, Any]) -> None:
    s = data["summary"]
    print(f"### {name} ({_conditions(data)})\n")
    print("| figure | jobs/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|")
    variants = [("videoq", s)]
    if "whatif" in s:
        variants.append((f"videoq + what-if `{s['whatif']['patches']}`", s["whatif"]))
    for label, v in variants:
        for key, title in (
            ("videoq_light_e2e", "light load: submit → completed"),
            ("videoq_light_row", "light load: row created → completed"),
            ("videoq_light_http", "light load: HTTP submit"),
        ):
            p = v[key]
            print(
                f"| {label} {title} | {data['args']['light_rate']} |"
                f" {_ms(p['p50'])} | {_ms(p['p95'])} | {_ms(p['p99'])} |"
            )
        p = v["videoq_throughput_e2e"]
        print(
            f"| {label} throughput ({data['args']['jobs']} jobs): submit → completed |"
            f" **{v['videoq_jobs_per_s']:.1f}** | {_ms(p['p50'])} | {_ms(p['p95'])} | {_ms(p['p99'])} |"
        )
    for base, figures in s["baselines"].items():
        p = figures["latency"]
        print(
            f"| bare {base} (videoq = {s['ratios'][base]:.3f}x) | **{figures['per_s']:.0f}** |"
            f" {_ms(p['p50'])} | {_ms(p['p95'])} | {_ms(p['p99'])} |"
        )
    for label, v in variants:
        cpu = v.get("videoq_cpu_ms_per_job")
        if cpu:
            parts = ", ".join(f"{k} {ms:.1f}" for k, ms in cpu.items())
            print(f"\n{label}: CPU ms per job (throughput phase): {parts}")
    if "whatif" in s:
        print(f"\nwhat-if throughput: {s['whatif']['throughput_x_plain']:.2f}x plain videoq")
        whatif_steps(data)
    print()


def whatif_steps(data: dict[str, Any]) -> None:
    """Per-step medians of the plain and the patched stack (round 1)."""
    first = data["rounds"][0]
    plain, patched = first["videoq"].get("steps"), first["videoq what-if"].get("steps")
    if not plain or not patched:
        return
    for service in ("api", "worker"):
        a, b = plain.get(service, {}), patched.get(service, {})
        print(f"\n{service}, round 1: ms per job, plain → patched\n")
        print("| step | plain ms/job | patched ms/job |")
        print("|---|---|---|")
        jobs_a = (a.get("db.create") or a.get("db.claim") or {"count": 1})["count"]
        jobs_b = (b.get("db.create") or b.get("db.claim") or {"count": 1})["count"]
        for label in sorted(
            set(a) | set(b), key=lambda k: -a.get(k, b.get(k, {"total": 0}))["total"]
        ):
            x = a[label]["total"] / jobs_a * 1e3 if label in a else 0.0
            y = b[label]["total"] / jobs_b * 1e3 if label in b else 0.0
            print(f"| {label} | {x:.2f} | {y:.2f} |")


def steps(data: dict[str, Any]) -> None:
    for service, figures in (data.get("steps") or {}).items():
        jobs = (figures.get("db.create") if service == "api" else figures.get("db.claim"))["count"]
        print(f"### {service}: time per step ({jobs} jobs)\n")
        print("| step | calls/job | median ms | mean ms | ms/job |")
        print("|---|---|---|---|---|")
        for label, f in sorted(figures.items(), key=lambda kv: -kv[1]["total"]):
            print(
                f"| {label} | {f['count'] / jobs:.2f} | {f['median'] * 1e3:.2f} |"
                f" {f['mean'] * 1e3:.2f} | {f['total'] / jobs * 1e3:.2f} |"
            )
        print()


def api_load(data: dict[str, Any]) -> None:
    print(f"### api load ({_conditions(data)})\n")
    print("| measurement | req/s | p50 ms | p95 ms | p99 ms | api CPU ms/request |")
    print("|---|---|---|---|---|---|")
    for kind in ("closed", "fixed"):
        for name, f in data["summary"][kind].items():
            p = f["latency"]
            label = f"{name} at {data['args']['rate']}/s fixed rate" if kind == "fixed" else name
            cpu = f.get("api_cpu_ms_per_request")
            print(
                f"| {label} | {f['requests_per_s']:.0f} | {p['p50'] * 1e3:.1f} |"
                f" {p['p95'] * 1e3:.1f} | {p['p99'] * 1e3:.1f} |"
                f" {'' if cpu is None else f'{cpu:.2f}'} |"
            )
    print()


def upload(data: dict[str, Any]) -> None:
    s = data["summary"]
    print(f"### upload ({data['args']['size_mib']} MiB; {_conditions(data)})\n")
    print("| figure | median |")
    print("|---|---|")
    rows = [
        ("raw multipart, 1 part in flight, MB/s", f"{s['raw_mb_s']:.1f}"),
        ("raw multipart, 4 parts in flight, MB/s", f"{s['raw4_mb_s']:.1f}"),
        ("videoq POST /video/submit, MB/s", f"{s['videoq_mb_s']:.1f}"),
        ("videoq / raw (1 in flight), median of the rounds' ratios", f"{s['ratio']:.2f}x"),
        ("api RSS before", f"{s['rss_baseline_mb']:.0f} MB"),
        ("api RSS growth (peak - before)", f"{s['rss_growth_mb']:.1f} MB"),
        ("api CPU per GiB", f"{s['api_cpu_s_per_gib']:.1f} s"),
    ]
    if "whatif_ratio" in s:
        rows += [
            ("what-if upload-overlap, MB/s", f"{s['whatif_mb_s']:.1f}"),
            ("what-if / raw", f"{s['whatif_ratio']:.2f}x"),
            ("what-if api RSS growth", f"{s['whatif_rss_growth_mb']:.1f} MB"),
        ]
    for label, value in rows:
        print(f"| {label} | {value} |")
    print()


def scaling(data: dict[str, Any]) -> None:
    s = data["summary"]
    clip = data["clip"]
    print(
        f"### scaling ({data['args']['pipeline']}, {clip['seconds']} s {clip['size']} clip,"
        f" {clip['frames']} frames; {_conditions(data)})\n"
    )
    print(
        "| workers | jobs/s | video s/s | frames/s | x 1 worker | worker CPU s/job"
        " | core-s per video s |"
    )
    print("|---|---|---|---|---|---|---|")
    for workers, f in s["throughput"].items():
        cpu = f.get("worker_cpu_s_per_job")
        per_video = f.get("worker_core_s_per_video_s")
        print(
            f"| {workers} | {f['jobs_per_s']:.2f} | {f['video_s_per_s']:.2f} |"
            f" {f['frames_per_s']:.0f} | {f['speedup']:.2f} |"
            f" {'-' if cpu is None else f'{cpu:.2f}'} |"
            f" {'-' if per_video is None else f'{per_video:.3f}'} |"
        )
    print(f"\n| queue depth ({data['args']['depth_workers']} workers) | p50 s | mean s | max s |")
    print("|---|---|---|---|")
    for depth, p in s["depth"].items():
        print(f"| {depth} | {p['p50']:.2f} | {p['mean']:.2f} | {p['max']:.2f} |")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    for name in ("queue", "queue-whatif", "queue-concurrency4", "queue-diagnose"):
        data = _load(args.results, name)
        if data is not None:
            queue(name, data)
            steps(data)
    for name, show in (
        ("api_load", api_load),
        ("api_load-async-deps", api_load),
        ("upload", upload),
        ("scaling", scaling),
    ):
        data = _load(args.results, name)
        if data is not None:
            if name != "api_load":
                print(f"({name})")
            show(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
