"""Restore and backup throughput (MB/s of keys and values) on loopback.

    python benchmarks/backup_bench.py [--mb 1024] [--value 1024] [--groups 2] [--replicas 3]

Writes a backup directory of --mb of pairs (--value-byte values, keys spread over every shard)
as `eraftd backup` would, starts a controller and --groups groups of --replicas `eraftd run`
processes (fsync on), then times `eraftd restore` of it (through the Clerk: batched writes, one
log entry per batch) and `eraftd backup` of the result (ShardBackup.ReadShard, chunked reads of
one pinned view per shard), and checks the backup holds every key.

Measured 2026-12-01 (2 shared cores, loaded; 1 KB values, 2 groups of 3 replicas, fsync on):
1 GB restored in 168 s (6.1 MB/s, 6,200 keys/s), backed up in 8.6 s (119 MB/s).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eraftd.backup import ShardFile, write_manifest  # noqa: E402
from eraftd.controller.client import ControllerClient  # noqa: E402
from eraftd.controller.state import NSHARDS, Config  # noqa: E402
from eraftd.node.storage import encode_chunk  # noqa: E402
from eraftd.testing import ShardedCluster, eraftd_command  # noqa: E402


def make_backup(out: Path, mb: int, value: int) -> tuple[int, int]:
    out.mkdir()
    n = (mb << 20) // (value + 16)
    per = -(-n // NSHARDS)
    shards, size = [], 0
    for s in range(NSHARDS):
        f = ShardFile(out, s)
        lead = bytes([ord("0") + (s - ord("0")) % NSHARDS])
        for lo in range(0, per, 1000):
            pairs = [(lead + b"key%014d" % i, (b"%016d" % i) * (value // 16))
                     for i in range(lo, min(lo + 1000, per))]
            size += sum(len(k) + len(v) for k, v in pairs)
            f.add(encode_chunk(pairs))
        f.close()
        shards.append(f.record(100, 1, 1, 1))
    write_manifest(out, Config(1, (100,) * NSHARDS, {100: ("x:1",)}), shards)
    return per * NSHARDS, size


def timed(*args: str) -> float:
    t0 = time.monotonic()
    r = subprocess.run(eraftd_command() + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"eraftd {args[0]} failed: {r.stderr.strip()}")
    print("  " + r.stdout.strip())
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--value", type=int, default=1024)
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        keys, size = make_backup(base / "in", a.mb, a.value)
        gids = tuple(range(100, 100 + a.groups))
        with ShardedCluster(base / "c", gids=gids, replicas=a.replicas, controllers=1) as c:
            c.start()
            ctrl = ",".join(c.controller_addresses())

            async def join() -> None:
                async with ControllerClient(c.controller_addresses(), total_timeout=60) as ctl:
                    for g in gids:
                        await ctl.join({g: c.addresses(g)})
            asyncio.run(join())
            mb = size / (1 << 20)
            print(f"{keys:,} keys, {mb:.0f} MB, {a.groups} groups of {a.replicas} replicas")
            dt = timed("restore", str(base / "in"), "--controllers", ctrl)
            print(f"restore: {dt:.1f}s, {mb / dt:.1f} MB/s")
            dt = timed("backup", "--out", str(base / "out"), "--controllers", ctrl)
            print(f"backup:  {dt:.1f}s, {mb / dt:.1f} MB/s")
            m = json.loads((base / "out" / "manifest.json").read_text())
            assert sum(s["keys"] for s in m["shards"]) == keys


if __name__ == "__main__":
    main()
