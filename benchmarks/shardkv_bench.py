"""Put and get throughput and latency of one 3-replica shardkv group (fsync on), on loopback.

    python benchmarks/shardkv_bench.py [--seconds 5] [--concurrency 1,64,256] [--size 64]
                                       [--keys 10000] [--paths native,unary] [--client-procs 1]
                                       [--no-fsync]

Starts a controller and one group of three `eraftd run` processes, joins the group, then for
each path and concurrency runs that many operations at a time for --seconds (each worker
issues one operation, waits for it, issues the next), puts first, then gets of the keys put:

* native: the Clerk (eraftd/shardkv/clerk.py) -> KVBatch: concurrent operations are batched
  into one call per group, a batch of writes is one log entry, reads share one ReadIndex;
* unary: eRaft's ShardKVService.Command, one call per operation (each worker is its own
  eRaft client id, one command in flight, as eRaft's clerks are).

Gets are linearizable (ReadIndex) on both paths.  With --client-procs N the load comes from N
client processes (the concurrency is split between them), to tell the server's limit from
this process's.  Figures: operations/s and per-operation latency p50 / p99.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eraftd.controller.client import ControllerClient  # noqa: E402
from eraftd.shardkv.clerk import Clerk  # noqa: E402
from eraftd.shardkv.unary import UnaryClerk  # noqa: E402
from eraftd.testing import ShardedCluster  # noqa: E402

GID = 100
# etcd's defaults too (benchmarks/vs_etcd.py runs etcd with them)
HEARTBEAT_MS, ELECTION_MS = 100, 1000


def workload(n_keys: int, size: int) -> tuple[list[str], str]:
    """The keys every point picks from (uniformly) and the one value every put writes."""
    return [f"key{i:08d}" for i in range(n_keys)], os.urandom(size).hex()[:size]


async def prefill(kv, keys: list[str], value: str) -> None:
    """Put every key (1,000 at a time), so that every get finds a value."""
    for i in range(0, len(keys), 1000):
        await asyncio.gather(*(kv.put(k, value) for k in keys[i:i + 1000]))


async def run_workers(kv_for_worker, op: str, conc: int, seconds: float, keys: list[str],
                      value: str) -> list[float]:
    """conc workers, each with kv_for_worker(), one operation at a time until `seconds` pass;
    the latency of every operation."""
    lat: list[float] = []
    stop_at = time.monotonic() + seconds

    async def worker(w: int) -> None:
        rng = random.Random(w)
        kv = kv_for_worker()
        clock = time.monotonic
        while clock() < stop_at:
            k = keys[rng.randrange(len(keys))]
            t0 = clock()
            await (kv.put(k, value) if op == "put" else kv.get(k))
            lat.append(clock() - t0)
    await asyncio.gather(*(worker(w) for w in range(conc)))
    return lat


async def _native(ctrl: list[str], op: str, conc: int, seconds: float, keys: list[str],
                  value: str, tls=None) -> tuple[int, list[float]]:
    async with Clerk(ctrl, total_timeout=60, tls=tls) as kv:
        await kv.get(keys[0])                       # config and leader found
        lat = await run_workers(lambda: kv, op, conc, seconds, keys, value)
    return len(lat), lat


async def _unary(ctrl: list[str], op: str, conc: int, seconds: float, keys: list[str],
                 value: str, tls=None) -> tuple[int, list[float]]:
    channels: dict[str, grpc.aio.Channel] = {}
    async with ControllerClient(ctrl, tls=tls) as ctl:
        cfg = await ctl.query()
        try:                                        # one eRaft client id per worker
            lat = await run_workers(lambda: UnaryClerk(ctl, channels, timeout=30, config=cfg, tls=tls),
                                 op, conc, seconds, keys, value)
        finally:
            for ch in channels.values():
                await ch.close()
    return len(lat), lat


def _client(args: tuple) -> tuple[int, list[float]]:
    path, ctrl, op, conc, seconds, keys, value, tls = args
    if path == "native":
        return asyncio.run(_native(ctrl, op, conc, seconds, keys, value, tls))
    return asyncio.run(_unary(ctrl, op, conc, seconds, keys, value, tls))


def measure(pool, procs: int, path: str, ctrl: list[str], op: str, conc: int,
            seconds: float, keys: list[str], value: str, tls=None) -> tuple[float, float, float]:
    """One point; tls: the clients' eraftd.tls.TlsFiles for a TLS group (None: plaintext)."""
    split = [conc // procs + (1 if i < conc % procs else 0) for i in range(procs)]
    jobs = [(path, ctrl, op, n, seconds, keys, value, tls) for n in split if n]
    return timed(lambda: pool.map(_client, jobs) if pool else [_client(j) for j in jobs], seconds)


def timed(run: Callable[[], list[tuple[int, list[float]]]],
          seconds: float) -> tuple[float, float, float]:
    """Run one point (run(): each client's operation count and latencies) -> ops/s, p50 ms,
    p99 ms."""
    t0 = time.monotonic()
    results = run()
    elapsed = time.monotonic() - t0
    n = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    p = (lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1000) if lat else (lambda q: 0.0)
    return n / min(elapsed, seconds + 0.5), p(0.5), p(0.99)


@contextmanager
def eraftd_group(base: Path, keys: list[str], value: str,
                 fsync: bool = True, tls: bool = False) -> Iterator[ShardedCluster]:
    """A controller and group GID of three replicas on loopback, joined, every key put; every
    process killed on the way out.  tls: every node with [tls] (the clients then need c.tls)."""
    raft = {"fsync": fsync, "heartbeat_ms": HEARTBEAT_MS, "election_ms": ELECTION_MS}
    with ShardedCluster(Path(base), gids=(GID,), controllers=1, raft=raft, log_level="warning",
                        tls=tls) as c:
        c.start()
        ctrl = c.controller_addresses()

        async def setup() -> None:
            async with ControllerClient(ctrl, tls=c.tls) as ctl:
                await ctl.join({GID: c.addresses(GID)})
            async with Clerk(ctrl, tls=c.tls) as kv:
                await prefill(kv, keys, value)
        asyncio.run(setup())
        c.wait_leader(GID)
        yield c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--concurrency", default="1,64,256")
    ap.add_argument("--size", type=int, default=64, help="value bytes")
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--paths", default="native,unary")
    ap.add_argument("--client-procs", type=int, default=1)
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="run in DIR and keep the nodes' logs")
    ns = ap.parse_args()
    concs = [int(x) for x in ns.concurrency.split(",")]
    keys, value = workload(ns.keys, ns.size)
    base = ns.keep or tempfile.mkdtemp(prefix="shardkv-bench-")
    pool = multiprocessing.get_context("spawn").Pool(ns.client_procs) if ns.client_procs > 1 else None
    print(f"# {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"# one group of 3 replicas + 1 controller on loopback, fsync {'off' if ns.no_fsync else 'on'}, "
          f"{ns.size} B values, {ns.keys} keys, {ns.seconds:g} s per point, "
          f"{ns.client_procs} client process(es), {os.cpu_count()} cores")
    with eraftd_group(Path(base), keys, value, fsync=not ns.no_fsync) as c:
        ctrl = c.controller_addresses()
        print(f"{'path':<7} {'op':<4} {'conc':>5} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for path in ns.paths.split(","):
            for op in ("put", "get"):
                for conc in concs:
                    rate, p50, p99 = measure(pool, ns.client_procs, path, ctrl, op, conc,
                                             ns.seconds, keys, value)
                    print(f"{path:<7} {op:<4} {conc:>5} {rate:>10,.0f} {p50:>8.1f} {p99:>8.1f}",
                          flush=True)
    if pool:
        pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
