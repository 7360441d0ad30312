"""The long nemesis run: one command, a seed and a duration.

    .venv/bin/python -m tests.nemesis.long --seed 7 --duration 30m [--dir /tmp/nemesis-7]
        [--rounds-of 10m] [--clients 6] [--keys 6]

The faults run in rounds (default 10 minutes each, a fresh cluster per round, seed + round as
the round's seed), so each round's history stays small enough to check exhaustively; every
round checks the four pass criteria.  Prints each round's summary and a total: operations
checked, faults injected by kind, configuration changes, anomalies.  Exit code 0 when no
anomaly was found, 1 otherwise.  The processes' logs stay under --dir for a failed round."""
from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from eraftd.durations import parse_duration

from .nemesis import run_nemesis


def _seconds(text: str) -> float:
    return parse_duration(text) / 1000.0


async def main_async(args: argparse.Namespace) -> int:
    base = Path(args.dir or tempfile.mkdtemp(prefix=f"nemesis-{args.seed}-"))
    total, per = _seconds(args.duration), _seconds(args.rounds_of)
    ops: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    changes: Counter[str] = Counter()
    members: Counter[str] = Counter()
    anomalies: list[str] = []
    t0 = time.monotonic()
    rnd = 0
    while time.monotonic() - t0 < total:
        left = total - (time.monotonic() - t0)
        seed = args.seed * 1000 + rnd
        d = base / f"round{rnd}"
        try:
            rep = await run_nemesis(d, seed, max(10.0, min(per, left)), clients=args.clients,
                                    nkeys=args.keys, tls=args.tls)
        except Exception as e:                   # the round could not even run: an anomaly too
            anomalies.append(f"round {rnd} (seed {seed}): crashed: {e!r}")
            print(f"--- round {rnd} --- crashed: {e!r}", flush=True)
            rnd += 1
            continue
        print(f"--- round {rnd} ---\n{rep.summary()}", flush=True)
        ops.update(rep.ops)
        faults.update(rep.faults)
        changes.update(rep.config_changes)
        members.update(rep.member_changes)
        anomalies += [f"round {rnd} (seed {seed}): {a}" for a in rep.anomalies]
        if not rep.anomalies and not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        rnd += 1
    print(f"=== long run: seed {args.seed}, {time.monotonic() - t0:.0f}s, {rnd} rounds ===")
    print(f"operations checked: {dict(ops)}")
    print(f"faults injected by kind: {dict(sorted(faults.items()))} (total {sum(faults.values())})")
    print(f"configuration changes: {dict(changes)}")
    print(f"membership changes (disk wiped each time): {dict(members)}")
    print(f"anomalies: {len(anomalies)}")
    for a in anomalies:
        print(f"  - {a}")
    print(f"logs: {base}")
    return 1 if anomalies else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.nemesis.long", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--duration", required=True, help="e.g. 30m, 2h, 90s")
    ap.add_argument("--rounds-of", default="10m", help="length of one round (fresh cluster)")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--keys", type=int, default=6)
    ap.add_argument("--dir", help="where the clusters live (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the data of passed rounds too")
    ap.add_argument("--tls", action="store_true", help="every node and client with TLS certificates")
    return asyncio.run(main_async(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
