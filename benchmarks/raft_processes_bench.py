"""Committed proposals per second through three real `eraftd run` processes (fsync on).

    python benchmarks/raft_processes_bench.py [--seconds 10] [--clients 8] [--batch 100] [--size 64]
                                              [--machine noop|register] [--no-fsync]

Each client sends NodeAdmin.Propose calls of --batch commands to the leader and waits for
them to apply; the figure is committed (applied on the leader) commands per second.  The
nodes run the no-op state machine by default, behind the benchmark-only
`--test-state-machine` flag, so this measures the Raft path: batching, replication, fsync.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eraftd._pb import admin_pb2 as apb  # noqa: E402
from eraftd._pb import admin_pb2_grpc as apb_grpc  # noqa: E402
from eraftd.testing import Cluster  # noqa: E402


async def load(addr: str, seconds: float, clients: int, batch: int, size: int) -> tuple[int, list]:
    done = 0
    lat: list[float] = []
    payload = [(b"k%d=" % i) + os.urandom(size // 2).hex().encode()[:size] for i in range(batch)]
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = apb_grpc.NodeAdminStub(ch)
        stop_at = time.monotonic() + seconds

        async def client():
            nonlocal done
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                r = await stub.Propose(apb.ProposeRequest(group=0, commands=payload), timeout=30)
                if r.err != "OK":
                    raise RuntimeError(f"propose failed: {r.err}")
                lat.append(time.monotonic() - t0)
                done += batch
        await asyncio.gather(*(client() for _ in range(clients)))
    return done, lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--size", type=int, default=64, help="bytes per command")
    ap.add_argument("--machine", default="noop", choices=("noop", "register"))
    ap.add_argument("--no-fsync", action="store_true")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            Cluster(Path(tmp), n=3, test_machine=ns.machine,
                    raft={"fsync": not ns.no_fsync, "heartbeat_ms": 100, "election_ms": 1000},
                    log_level="warning") as c:
        c.start()
        leader = c.wait_leader()
        c.propose(0, [b"warm=up"])
        t0 = time.monotonic()
        n, lat = asyncio.run(load(leader.address, ns.seconds, ns.clients, ns.batch, ns.size))
        elapsed = time.monotonic() - t0
        lat.sort()
        p50 = lat[len(lat) // 2] * 1000 if lat else 0
        p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else 0
        print(f"3 processes, fsync={'off' if ns.no_fsync else 'on'}, {ns.machine} machine, "
              f"{ns.clients} clients x {ns.batch} commands of {ns.size} B: "
              f"{n / elapsed:,.0f} committed proposals/s "
              f"(call latency p50 {p50:.1f} ms, p99 {p99:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
