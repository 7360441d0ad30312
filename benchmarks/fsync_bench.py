"""How a RocksDB fsync meets the GIL: the figures behind the driver's fsync thread.

    python benchmarks/fsync_bench.py [--writes 2000] [--seconds 2]

1. Latency of one durable write of 100 B, three ways: a synced write; an unsynced write then
   flush_wal(True) in the same thread; the same with flush_wal run in a one-thread executor
   from asyncio (what eraftd's driver does).
2. What a second thread doing durable writes costs the main thread: the share of a spinning
   loop's speed it keeps, beside synced writes and beside unsynced write + flush_wal.  A share
   near 1 means the GIL is released while the disk works.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from rocksdict import Options, Rdict, WriteBatch, WriteOptions


def open_db() -> Rdict:
    return Rdict(tempfile.mkdtemp(prefix="fsync-bench-"), Options(raw_mode=True))


def write(db: Rdict, opts: WriteOptions, i: int) -> None:
    wb = WriteBatch(raw_mode=True)
    wb.put(b"k%d" % i, b"v" * 100)
    db.write(wb, opts)


def latency(n: int) -> dict[str, float]:
    db = open_db()
    synced, unsynced = WriteOptions(), WriteOptions()
    synced.sync, unsynced.sync = True, False
    out = {}

    def timed(fn) -> float:
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i)
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples) * 1e6

    out["synced write"] = timed(lambda i: write(db, synced, i))
    out["write + flush_wal"] = timed(lambda i: (write(db, unsynced, i), db.flush_wal(True)))
    ex = ThreadPoolExecutor(1)

    async def in_thread() -> float:
        loop = asyncio.get_running_loop()
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            write(db, unsynced, i)
            await loop.run_in_executor(ex, db.flush_wal, True)
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples) * 1e6
    out["write + flush_wal in a thread"] = asyncio.run(in_thread())
    ex.shutdown()
    db.close()
    return out


def kept_share(mode: str, seconds: float) -> tuple[float, float]:
    """(share of its speed a spinning thread keeps, durable writes/s of the other thread)."""
    db = open_db()
    opts = WriteOptions()
    opts.sync = mode == "synced"
    stop = threading.Event()
    count = [0]

    def writer() -> None:
        while not stop.is_set():
            write(db, opts, count[0])
            if mode != "synced":
                db.flush_wal(True)
            count[0] += 1

    def spin() -> int:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            n += 1
        return n
    alone = spin()
    t = threading.Thread(target=writer)
    t.start()
    beside = spin()
    stop.set()
    t.join()
    db.close()
    return beside / alone, count[0] / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ns = ap.parse_args()
    sys.setswitchinterval(1e-4)     # so the writer gets the GIL back at once (measures the disk)
    print(f"# {' '.join([sys.executable.rsplit('/', 1)[-1]] + sys.argv)}")
    for name, us in latency(ns.writes).items():
        print(f"{name:<32} median {us:7.0f} us")
    for mode in ("synced", "flush_wal"):
        share, rate = kept_share(mode, ns.seconds)
        print(f"spinning thread beside {mode:<10} writes keeps {share:5.0%} of its speed "
              f"({rate:,.0f} durable writes/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
