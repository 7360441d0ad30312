"""Micro-benchmark of eraftd.node.storage: stage_append + write of Raft rounds.

    .venv/bin/python benchmarks/storage_bench.py [--rounds N] [--batch 100] [--size 100]

Prints entries/s with fsync on and off, and the cost of reading back through
the cache and from RocksDB.
"""
from __future__ import annotations

import argparse
import tempfile
import time

from eraftd.node.storage import NodeStore
from eraftd.raft.messages import Entry, HardState


def bench_append(fsync: bool, rounds: int, batch: int, size: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = NodeStore.open(d, {"bench": True}, fsync=fsync)
        g = store.group(1)
        data = b"x" * size
        idx = 1
        rounds_ents = []
        for _ in range(rounds):
            rounds_ents.append([Entry(1, i, data) for i in range(idx, idx + batch)])
            idx += batch
        t0 = time.perf_counter()
        for ents in rounds_ents:
            b = store.new_batch()
            g.stage_append(b, ents)
            g.stage_hard_state(b, HardState(1, 0, ents[-1].index))
            store.write(b)
        dt = time.perf_counter() - t0
        store.close()
        return rounds * batch / dt


def bench_reads(n: int, size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        store = NodeStore.open(d, {"bench": True}, fsync=False, cache_entries=4096)
        g = store.group(1)
        data = b"x" * size
        for lo in range(1, n + 1, 1000):
            b = store.new_batch()
            g.stage_append(b, [Entry(1, i, data) for i in range(lo, min(lo + 1000, n + 1))])
            store.write(b)
        last = g.last_index()
        t0 = time.perf_counter()
        got = 0
        for lo in range(last - 4000, last, 100):
            got += len(g.entries(lo, lo + 100, 1 << 30))
        cached = got / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = 0
        for lo in range(1, n - 5000, 100):
            got += len(g.entries(lo, lo + 100, 1 << 30))
        disk = got / (time.perf_counter() - t0)
        store.close()
        return cached, disk


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--size", type=int, default=100)
    a = ap.parse_args()
    for fsync in (False, True):
        rounds = a.rounds if not fsync else max(1, a.rounds // 4)
        rate = bench_append(fsync, rounds, a.batch, a.size)
        print(f"stage_append+write, {a.batch} x {a.size} B entries/round, fsync={fsync}: "
              f"{rate:,.0f} entries/s ({rate / a.batch:,.0f} rounds/s)")
    cached, disk = bench_reads(50_000, a.size)
    print(f"entries() reads: cache {cached:,.0f} entries/s, RocksDB {disk:,.0f} entries/s")


if __name__ == "__main__":
    main()
