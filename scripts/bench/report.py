"""Table (and optionally JSON and a PNG plot) of a load run made with scripts/bench/mix.lua.

    python report.py RESULTS_DIR [--meta meta.json] [--out DIR] [--png]

RESULTS_DIR holds one wrk output per endpoint class, named <class>.out, each with the
RESULT line mix.lua prints; --meta's "header_lines" are printed above the table. Shared
by scripts/bench-api and scripts/bench-pilot. With --out, writes DIR/results.txt (the
table), DIR/results.json (figures and --meta) and, with --png, DIR/results.png.
A benchmark: nothing here fails on a figure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

CLASSES = ("facts", "corrections", "heartbeat", "escalation")
# STET's deployment guide has one load figure, in its
# go-live checklist: "Load testing completed (1000+ req/s)". It has no per-endpoint SLA
# table; the per-endpoint targets below are those scripts/bench-api has always printed
# (p95 in ms, accepted req/s), kept so both benches are read against the same marks.
GUIDE_TOTAL_RATE = 1000.0
TARGETS = {"facts": (50.0, 1000.0), "corrections": (100.0, 500.0)}
COUNTS = ("ok", "limited_edge", "limited_api", "other", "socket_errors")


def read_result(path: Path) -> dict:
    """The figures of one wrk run: the RESULT line mix.lua printed into its output file."""
    line = next((x for x in path.read_text().splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"report: no RESULT line in {path}:\n{path.read_text()[-2000:]}")
    fields = dict(re.findall(r"(\w+)=(\S+)", line))
    seconds = float(fields["seconds"])
    row = {
        "requests": int(fields["requests"]),
        "seconds": seconds,
        "rate": int(fields["requests"]) / seconds,
        "p50_ms": float(fields["p50_ms"]),
        "p95_ms": float(fields["p95_ms"]),
        "p99_ms": float(fields["p99_ms"]),
    }
    row.update({key: int(fields[key]) for key in COUNTS})
    row["ok_rate"] = row["ok"] / seconds
    return row


def read_results(directory: Path) -> list[dict]:
    rows = [
        {"endpoint": name, **read_result(directory / f"{name}.out")}
        for name in CLASSES
        if (directory / f"{name}.out").exists()
    ]
    if not rows:
        raise SystemExit(f"report: no <class>.out in {directory}")
    return rows


def verdict(row: dict) -> str:
    target = TARGETS.get(row["endpoint"])
    if target is None:
        return "-"
    refused = row["requests"] - row["ok"]
    if refused > 0.05 * row["requests"]:
        # The percentiles are then mostly those of the refusals: judging them says nothing.
        return f"not judged: {refused / row['requests']:.0%} of answers not 2xx"
    p95_limit, rate_target = target
    p95 = "met" if row["p95_ms"] < p95_limit else "MISSED"
    rate = "reached" if row["ok_rate"] >= rate_target else "not reached"
    return f"p95 < {p95_limit:.0f} ms: {p95}; {rate_target:.0f} 2xx/s: {rate}"


def table(rows: list[dict]) -> str:
    total = sum(r["rate"] for r in rows)
    total_ok = sum(r["ok_rate"] for r in rows)
    head = (
        f"{'endpoint':<12} {'req/s':>8} {'share':>6} {'2xx/s':>8} {'429 edge':>9} {'429 api':>8}"
        f" {'other':>6} {'sockerr':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}   target"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['endpoint']:<12} {r['rate']:>8.1f} {r['rate'] / total:>6.0%} {r['ok_rate']:>8.1f}"
            f" {r['limited_edge']:>9} {r['limited_api']:>8} {r['other']:>6} {r['socket_errors']:>7}"
            f" {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['p99_ms']:>8.2f}   {verdict(r)}"
        )
    reached = "reached" if total_ok >= GUIDE_TOTAL_RATE else "not reached"
    lines.append(
        f"{'total':<12} {total:>8.1f} {'':>6} {total_ok:>8.1f}"
        f"   guide's go-live item 'load testing 1000+ req/s' (2xx/s): {reached}"
    )
    lines += [
        "",
        "req/s: every answer; 2xx/s: accepted; 429 edge / 429 api: refused by nginx's limit_req /",
        "the API's write limit (counts over the run); other: any other status; sockerr: connect,",
        "read, write or timeout errors. Latency percentiles cover every answer, 429s included.",
        "Targets: the guide has only the total '1000+ req/s' (go-live checklist); the per-endpoint",
        "p95 / rate targets are scripts/bench-api's, not the guide's.",
    ]
    return "\n".join(lines)


def plot(rows: list[dict], meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["endpoint"] for r in rows]
    xs = range(len(rows))
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(12, 5))
    width = 0.27
    for offset, key, label in ((-width, "p50_ms", "p50"), (0, "p95_ms", "p95"), (width, "p99_ms", "p99")):
        lat.bar([x + offset for x in xs], [r[key] for r in rows], width, label=label)
    for x, r in zip(xs, rows, strict=True):
        if r["endpoint"] in TARGETS:
            limit = TARGETS[r["endpoint"]][0]
            lat.hlines(limit, x - 1.5 * width, x + 1.5 * width, colors="red", linestyles="dashed")
    lat.set_xticks(list(xs), names)
    lat.set_yscale("log")
    lat.set_ylabel("latency, ms (log scale)")
    lat.set_title("latency percentiles (red dashes: p95 targets)")
    lat.legend()

    statuses = (("ok", "2xx"), ("limited_edge", "429 nginx"), ("limited_api", "429 API"), ("other", "other"))
    shown = [(key, label) for key, label in statuses if any(r[key] for r in rows)]
    width = 0.8 / max(len(shown), 1)
    for i, (key, label) in enumerate(shown):
        offset = (i - (len(shown) - 1) / 2) * width
        thr.bar([x + offset for x in xs], [r[key] / r["seconds"] for r in rows], width, label=label)
    thr.set_xticks(list(xs), names)
    thr.set_yscale("log")
    thr.set_ylabel("answers per second (log scale)")
    thr.set_title("throughput by status")
    thr.legend()

    subtitle = meta.get("title", "STET bench")
    if "loadavg" in meta:
        subtitle += f"  |  load average {meta['loadavg']}, {meta.get('cores', '?')} cores"
    fig.suptitle(subtitle)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--meta", type=Path, help="JSON merged into results.json (site.yml timings, load...)")
    parser.add_argument("--out", type=Path, help="directory for results.txt, results.json (and .png)")
    parser.add_argument("--png", action="store_true", help="also plot DIR/results.png (needs matplotlib)")
    args = parser.parse_args(argv)

    rows = read_results(args.results)
    meta = json.loads(args.meta.read_text()) if args.meta else {}
    # Lines the calling script wants in the printed report too (site.yml timings, load).
    text = "\n".join([*meta.get("header_lines", []), table(rows)])
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        written = [args.out / "results.txt", args.out / "results.json"]
        written[0].write_text(text + "\n")
        written[1].write_text(json.dumps({**meta, "endpoints": rows}, indent=2) + "\n")
        if args.png:
            written.append(args.out / "results.png")
            plot(rows, meta, written[-1])
        print()
        for path in written:
            print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
