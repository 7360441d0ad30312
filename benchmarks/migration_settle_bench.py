"""How long a shard migration takes: from a `join` / `leave` to every moved shard serving at
its new owner, and to the whole migration settled (the old owner told to delete, every shard
Serving again), on loopback with real `eraftd run` processes (fsync on).

    python benchmarks/migration_settle_bench.py [--keys 20,10000] [--repeats 5] [--size 100]
                                                [--load K] [--keep DIR] [--log-level info]

For each --keys figure: a fresh cluster (1 controller, groups 100 and 101 of 3 replicas each,
the tests' timing: heartbeat 50 ms, election timeout 500 ms), group 100 joins, the keys are
put spread over the 10 shards, then --repeats moves alternate: `join 101` (shards 5-9 move
100 -> 101) and `leave 101` (they move back).  The clock starts just before the controller
command is sent and stops

* serving: when every key of every moved shard reads (KVBatch get, at the new owner's leader,
  linearizable) with the value it was put with: each moved shard is probed with one of its
  keys every 20 ms, and once that answers, all its keys are read (and read again until all
  answer);
* settled: when both groups' leaders hold exactly their shards of the new configuration, all
  Serving (the new owner has told the old one to delete, and recorded that it did).

--load K runs K busy-looping processes beside the cluster for the whole run (killed at the
end), as on a loaded CI machine (the kernel favours the nodes, which sleep most of the time:
for a harsher load run the benchmark itself under `nice -n 12` beside busy loops).  --keep DIR
runs in DIR and keeps the nodes' logs (DIR/keys<N>/<node>/node.log); otherwise the temporary
directory is removed.  Each move is printed as it ends (the controller command's own time,
serving, settled), then the median and max per kind of move, in seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eraftd._pb import kvbatch_pb2 as kvpb  # noqa: E402
from eraftd._pb import kvbatch_pb2_grpc as kvpb_grpc  # noqa: E402
from eraftd._pb import shardkv_pb2 as pb  # noqa: E402
from eraftd._pb import shardkv_pb2_grpc as pb_grpc  # noqa: E402
from eraftd.controller.client import ControllerClient  # noqa: E402
from eraftd.controller.state import NSHARDS  # noqa: E402
from eraftd.shardkv.clerk import Clerk  # noqa: E402
from eraftd.shardkv.state import key2shard  # noqa: E402
from eraftd.testing import ShardedCluster  # noqa: E402

G1, G2 = 100, 101
POLL_S = 0.02
MOVE_TIMEOUT_S = 300
READ_BATCH = 1000


def key_in(shard: int, suffix: str) -> bytes:
    """A key of `shard` (key2shard = first byte mod NSHARDS), as tests/shardkv/skv_support.py."""
    return bytes([ord("0") + (shard - ord("0")) % NSHARDS]) + suffix.encode()


class Group:
    """A group's replicas over grpc.aio."""

    def __init__(self, addrs: list[str]) -> None:
        self.channels = [grpc.aio.insecure_channel(a) for a in addrs]

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()

    async def leader(self) -> tuple[grpc.aio.Channel, pb.GetStatusResponse] | None:
        """The replica that says it leads at the highest term, and what it said; or None.
        All are asked at once, so that one that does not answer delays a poll by a second."""
        async def status(ch: grpc.aio.Channel) -> pb.GetStatusResponse | None:
            try:
                return await pb_grpc.ShardKVServiceStub(ch).GetStatus(pb.GetStatusRequest(), timeout=1)
            except grpc.aio.AioRpcError:
                return None
        said = await asyncio.gather(*(status(ch) for ch in self.channels))
        leaders = [(st.term, i) for i, st in enumerate(said) if st is not None and st.state == "Leader"]
        if not leaders:
            return None
        i = max(leaders)[1]
        return self.channels[i], said[i]

    async def read(self, keys: list[bytes]) -> list[tuple[int, bytes]] | None:
        """(code, value) per key from the leader, or None when it did not answer them."""
        found = await self.leader()
        if found is None:
            return None
        try:
            resp = await kvpb_grpc.KVBatchStub(found[0]).Batch(
                kvpb.BatchRequest(ops=[kvpb.GET] * len(keys), keys=keys), timeout=5)
        except grpc.aio.AioRpcError:
            return None
        return None if resp.err else list(zip(resp.codes, resp.values))

    async def shards(self) -> dict[int, str] | None:
        """shard -> status held at the leader, or None."""
        found = await self.leader()
        return None if found is None else {s.shard_id: s.status for s in found[1].shards}


async def wait_serving(group: Group, moved: dict[int, dict[bytes, bytes]], t0: float) -> float:
    """Seconds from t0 until every key of every moved shard reads right at `group`."""
    pending = dict(moved)
    deadline = t0 + MOVE_TIMEOUT_S
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"shards {sorted(pending)} not serving after {MOVE_TIMEOUT_S} s")
        probes = {s: next(iter(kv)) for s, kv in pending.items()}
        got = await group.read(list(probes.values()))
        ready = [s for (s, _), r in zip(probes.items(), got or []) if r[0] == kvpb.OK]
        for s in ready:
            items = list(pending[s].items())
            ok = True
            for i in range(0, len(items), READ_BATCH):
                part = items[i:i + READ_BATCH]
                res = await group.read([k for k, _ in part])
                if res is None or any(r != (kvpb.OK, v) for r, (_, v) in zip(res, part)):
                    ok = False
                    break
            if ok:
                del pending[s]
        if pending:
            await asyncio.sleep(POLL_S)
    return time.monotonic() - t0


async def wait_settled(groups: dict[int, Group], owners: dict[int, list[int]], t0: float) -> float:
    deadline = t0 + MOVE_TIMEOUT_S
    while True:
        got = {gid: await groups[gid].shards() for gid in owners}
        if all(got[gid] == {s: "Serving" for s in shards} for gid, shards in owners.items()):
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise TimeoutError(f"not settled after {MOVE_TIMEOUT_S} s: {got}")
        await asyncio.sleep(POLL_S)


async def run_size(c: ShardedCluster, nkeys: int, size: int, repeats: int) -> list[dict]:
    ctrl = c.controller_addresses()
    expect = {key_in(i % NSHARDS, f"k{i:07d}"): os.urandom(size // 2 + 1).hex()[:size].encode()
              for i in range(nkeys)}
    groups = {gid: Group(c.addresses(gid)) for gid in (G1, G2)}
    moves: list[dict] = []
    try:
        async with ControllerClient(ctrl, total_timeout=60) as ctl:
            await ctl.join({G1: c.addresses(G1)})
            async with Clerk(ctrl, total_timeout=60) as kv:
                items = list(expect.items())
                for i in range(0, len(items), 1000):
                    await asyncio.gather(*(kv.put(k, v) for k, v in items[i:i + 1000]))
            await wait_settled(groups, {G1: list(range(NSHARDS))}, time.monotonic())
            for r in range(repeats):
                kind = "join" if r % 2 == 0 else "leave"
                before = await ctl.query()
                t0 = time.monotonic()
                cfg = await (ctl.join({G2: c.addresses(G2)}) if kind == "join" else ctl.leave([G2]))
                t_cmd = time.monotonic() - t0
                shards = [s for s in range(NSHARDS) if cfg.shards[s] != before.shards[s]]
                new = cfg.shards[shards[0]]
                moved = {s: {k: v for k, v in expect.items() if key2shard(k) == s} for s in shards}
                t_serving = await wait_serving(groups[new], moved, t0)
                t_settled = await wait_settled(
                    groups, {g: cfg.shards_of(g) for g in (G1, G2)}, t0)
                moves.append({"kind": kind, "shards": shards, "command": t_cmd,
                              "serving": t_serving, "settled": t_settled})
                print(f"  {nkeys} keys, {kind:<5} shards {shards[0]}-{shards[-1]} -> {new}: "
                      f"command {t_cmd:.2f} s, serving {t_serving:.2f} s, settled {t_settled:.2f} s",
                      flush=True)
    finally:
        for g in groups.values():
            await g.close()
    return moves


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", default="20,10000", help="comma-separated: one cluster each")
    ap.add_argument("--repeats", type=int, default=5, help="moves per cluster (join, leave, ...)")
    ap.add_argument("--size", type=int, default=100, help="value bytes")
    ap.add_argument("--load", type=int, default=0, metavar="K", help="K busy processes beside")
    ap.add_argument("--keep", metavar="DIR", help="run in DIR and keep the nodes' logs")
    ap.add_argument("--log-level", default="info", help="the nodes' log level")
    ap.add_argument("--heartbeat-ms", type=int, default=50)
    ap.add_argument("--election-ms", type=int, default=500)
    ns = ap.parse_args()
    base = Path(ns.keep or tempfile.mkdtemp(prefix="migration-bench-"))
    raft = {"heartbeat_ms": ns.heartbeat_ms, "election_ms": ns.election_ms}
    print(f"# {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"# 1 controller + groups {G1}, {G2} of 3 replicas on loopback, fsync on, {ns.size} B "
          f"values, heartbeat {ns.heartbeat_ms} ms, election {ns.election_ms} ms, "
          f"{ns.load} busy processes, {os.cpu_count()} cores"
          + (f"; logs in {base}" if ns.keep else ""))
    burners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(ns.load)]
    results: dict[int, list[dict]] = {}
    try:
        for nkeys in (int(x) for x in ns.keys.split(",")):
            with ShardedCluster(base / f"keys{nkeys}", gids=(G1, G2), controllers=1, raft=raft,
                                log_level=ns.log_level) as c:
                c.start()
                results[nkeys] = asyncio.run(run_size(c, nkeys, ns.size, ns.repeats))
    finally:
        for p in burners:
            p.kill()
        for p in burners:
            p.wait()
        if not ns.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{'keys':>6} {'move':<5} {'n':>3} {'serving median':>15} {'max':>7} "
          f"{'settled median':>15} {'max':>7}")
    for nkeys, moves in results.items():
        for kind in ("join", "leave"):
            ms = [m for m in moves if m["kind"] == kind]
            if not ms:
                continue
            sv, st = [m["serving"] for m in ms], [m["settled"] for m in ms]
            print(f"{nkeys:>6} {kind:<5} {len(ms):>3} {statistics.median(sv):>13.2f} s "
                  f"{max(sv):>5.2f} s {statistics.median(st):>13.2f} s {max(st):>5.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
