"""Committed proposals per second through a simulated 3-node cluster, in one process.

No faults, no I/O: the Raft core (eraftd/raft) plus the simulation driver of tests/sim, which
persists to MemoryStorage, delivers messages through the event queue and applies to a hashing
state machine.  The leader keeps `window` batches of `batch` proposals in flight.  Reported
twice: with the harness's invariant checks off (the core's cost + a minimal driver) and on;
per wall-clock second and per CPU second (steadier on a shared machine).

    .venv/bin/python benchmarks/sim_bench.py [--total 200000] [--batch 100] [--window 8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sim.sim import Cluster, SimConfig  # noqa: E402


def run(total: int, batch: int, window: int, check: bool,
        seed: int = 1) -> tuple[float, float, int]:
    """-> (proposals per wall second, proposals per CPU second, simulation steps)"""
    c = Cluster(SimConfig(n=3, check=check, trace_len=1, delay_min=1, delay_max=3), seed)
    assert c.run_until(lambda: c.stable_leader() is not None, 100 * c.eto)
    ld = c.leader()
    raw = c.nodes[ld].raw
    start_commit = raw.commit
    target = start_commit + total
    last = raw.commit
    seq = 0
    steps0 = c.steps
    t0 = time.perf_counter()
    c0 = time.process_time()
    while raw.commit < target:
        while last - raw.commit < window * batch and last < target:
            k = min(batch, target - last)
            datas = [b"v%09d" % (seq + j) for j in range(k)]
            seq += k
            idx = c.propose(ld, datas)
            assert idx is not None, "leadership lost in a fault-free run"
            last = idx + k - 1
        if not c.step():
            break
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert c.run_until(lambda: c.n_applied(target) == 3, 100 * c.eto)
    return total / dt, total / cpu, c.steps - steps0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total", type=int, default=200_000, help="proposals to commit")
    ap.add_argument("--batch", type=int, default=100, help="proposals per propose() call")
    ap.add_argument("--window", type=int, default=8, help="batches in flight")
    a = ap.parse_args()
    print(f"sim bench: 3 nodes, {a.total} proposals in batches of {a.batch}, "
          f"{a.window} batches in flight")
    for check in (False, True):
        rate, cpu_rate, steps = run(a.total, a.batch, a.window, check)
        print(f"  invariants {'on ' if check else 'off'}: {rate:,.0f} committed proposals/s "
              f"({cpu_rate:,.0f} per CPU second; {steps} simulation steps)")
    print(f"command: .venv/bin/python benchmarks/sim_bench.py --total {a.total} "
          f"--batch {a.batch} --window {a.window}")


if __name__ == "__main__":
    main()
