"""Typical times of three real `eraftd run` processes: first election, failover after kill -9
of the leader, and catch-up of a restarted node from the log and from a snapshot.

    python benchmarks/raft_failover_bench.py [--runs 3] [--heartbeat-ms 100] [--election-ms 1000]

Times are wall clock from the event (start, kill, restart) to the condition, polled every
20 ms, so they include process start-up where one is involved.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eraftd.testing import Cluster, wait_for  # noqa: E402


def timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def one_run(base: Path, hb: int, el: int) -> dict[str, float]:
    out = {}
    with Cluster(base, n=3, raft={"heartbeat_ms": hb, "election_ms": el, "snapshot_entries": 500},
                 log_level="warning") as c:
        t0 = time.monotonic()
        c.start()
        leader = c.wait_leader()
        out["start to leader"] = time.monotonic() - t0
        c.propose(0, [b"a=1"])
        lag = next(n for n in c.nodes if n is not leader)
        lag.kill()
        r = c.propose(0, [b"k%d=v" % i for i in range(100)])  # a short gap: catch up from the log
        t0 = time.monotonic()
        lag.start()
        c.wait_applied(0, int(r.results[-1]), nodes=[lag])
        out["restart to caught up (log)"] = time.monotonic() - t0

        out["kill -9 leader to new leader"] = timed(lambda: (leader.kill(), c.wait_leader(exclude=[leader])))
        leader.start().wait_serving()

        lag = next(n for n in c.nodes if n is not c.leader())
        lag.kill()
        for k in range(12):  # past snapshot_entries: the restarted node needs a snapshot
            r = c.propose(0, [b"s%d_%d=v" % (k, i) for i in range(100)])
        t0 = time.monotonic()
        lag.start()
        c.wait_applied(0, int(r.results[-1]), nodes=[lag])
        out["restart to caught up (snapshot)"] = time.monotonic() - t0
        assert lag.group_status(0).snapshot_index > 0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--heartbeat-ms", type=int, default=100)
    ap.add_argument("--election-ms", type=int, default=1000)
    ns = ap.parse_args()
    results: dict[str, list[float]] = {}
    for i in range(ns.runs):
        with tempfile.TemporaryDirectory() as tmp:
            for k, v in one_run(Path(tmp), ns.heartbeat_ms, ns.election_ms).items():
                results.setdefault(k, []).append(v)
    print(f"3 processes, heartbeat {ns.heartbeat_ms} ms, election timeout {ns.election_ms} ms, "
          f"{ns.runs} runs (median, min-max):")
    for k, vs in results.items():
        print(f"  {k:34s} {statistics.median(vs):6.2f} s  ({min(vs):.2f}-{max(vs):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
