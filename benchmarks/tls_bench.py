"""Throughput and latency with TLS against without, in the same run (issue 13).

    python benchmarks/tls_bench.py [--seconds 4] [--concurrency 1,64,256] [--rounds 2]
                                   [--paths native,unary]

One group of three replicas and one controller on loopback (fsync on), as benchmarks/
shardkv_bench.py starts it, first plaintext, then with [tls] on every node (mutual TLS between
peers, client certificates required: eraftd.certs makes them), one cluster at a time, the two in
turns for --rounds rounds.  The same workload (64-byte values, 10,000 keys, puts then gets, each
worker one operation at a time) on the native path (Clerk -> KVBatch) and eRaft's unary
ShardKVService.Command.  Prints per point the plaintext and TLS ops/s (lowest-highest over the
rounds), the ratio TLS/plaintext per round, and p50 for both.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shardkv_bench as skb  # noqa: E402


def span(xs: list[float], fmt: str = "{:,.0f}") -> str:
    lo, hi = min(xs), max(xs)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--concurrency", default="1,64,256")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--paths", default="native,unary")
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=64, help="value bytes")
    ns = ap.parse_args()
    concs = [int(x) for x in ns.concurrency.split(",")]
    keys, value = skb.workload(ns.keys, ns.size)
    points = [(p, op, c) for p in ns.paths.split(",") for op in ("put", "get") for c in concs]
    got: dict[tuple, dict[bool, list[tuple[float, float]]]] = {pt: {False: [], True: []} for pt in points}
    print(f"# {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"# one group of 3 replicas + 1 controller on loopback, fsync on, {ns.size} B values, "
          f"{ns.keys} keys, {ns.seconds:g} s per point, {ns.rounds} round(s) of plaintext then TLS, "
          f"{os.cpu_count()} cores, load {open('/proc/loadavg').read().split()[0]} at start")
    with tempfile.TemporaryDirectory(prefix="tls-bench-") as base:
        for r in range(ns.rounds):
            for tls in (False, True):
                where = Path(base) / f"r{r}-{'tls' if tls else 'plain'}"
                print(f"# round {r + 1}: {'TLS' if tls else 'plaintext'}", file=sys.stderr, flush=True)
                with skb.eraftd_group(where, keys, value, tls=tls) as c:
                    ctrl = c.controller_addresses()
                    for pt in points:
                        path, op, conc = pt
                        rate, p50, _ = skb.measure(None, 1, path, ctrl, op, conc, ns.seconds,
                                                   keys, value, tls=c.tls)
                        got[pt][tls].append((rate, p50))
    print(f"# load {open('/proc/loadavg').read().split()[0]} at the end")
    print("| path | op | conc | plaintext ops/s | TLS ops/s | TLS/plaintext | plaintext p50 ms | TLS p50 ms |")
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for pt in points:
        plain, tls = got[pt][False], got[pt][True]
        ratios = [t[0] / p[0] for p, t in zip(plain, tls) if p[0]]
        print(f"| {pt[0]} | {pt[1]} | {pt[2]} | {span([x[0] for x in plain])} | {span([x[0] for x in tls])} "
              f"| {span(ratios, '{:.2f}')} | {span([x[1] for x in plain], '{:.1f}')} "
              f"| {span([x[1] for x in tls], '{:.1f}')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
