"""Crash durability: with fsync = true, kill -9 every replica of a group (all at once) in the
middle of a write burst, restart them, and find every acknowledged write: each acknowledged
append exactly once, nothing unacknowledged more than once, and the whole history
linearizable.  Twice, on a fixed seed."""
from __future__ import annotations

import asyncio
import time

import pytest

from eraftd.controller.client import ControllerClient
from eraftd.testing import ShardedCluster

from .history import APPEND, History
from .linearizability import check
from .workload import Workload, durability_problems, keys_over_shards

pytestmark = pytest.mark.e2e

G = 100


async def _until(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


async def test_kill_every_replica_mid_burst(tmp_path):
    c = ShardedCluster(tmp_path, gids=(G,), raft={"fsync": True, "snapshot_entries": 300})
    try:
        await asyncio.to_thread(c.start)
        async with ControllerClient(c.controller_addresses(), total_timeout=60) as ctl:
            await ctl.join({G: c.addresses(G)})
        history = History()
        work = Workload(c.controller_addresses(), history, keys_over_shards(8, "d"), clients=8,
                        seed=5, max_unknown_per_key=8, total_timeout=4.0, mix=(0.1, 0.9, 0.0))
        work.start()
        kills: list[float] = []
        for round_ in range(2):
            target = work.acked + 400
            await _until(lambda: work.acked >= target, 60, "the burst to get going")
            # every replica at once, in the middle of the burst
            kills.append(history.now())
            await asyncio.gather(*(asyncio.to_thread(n.kill) for n in c.group(G)))
            await asyncio.sleep(0.5)             # the group stays down for a moment (the fault)
            for n in c.group(G):
                n.start()
            await asyncio.gather(*(asyncio.to_thread(n.wait_serving) for n in c.group(G)))
        target = work.acked + 200
        await _until(lambda: work.acked >= target, 60, "writes after the last restart")
        await work.finish(timeout=15)
        final = await work.final_reads(60)

        acked_appends = [o for o in history.ops if o.kind == APPEND and o.ok]
        counts = history.counts()
        print(f"crash durability: {counts}, sessions {work.sessions}")
        assert len(acked_appends) > 800
        spanning = [o for o in history.ops if any(o.call < k < o.ret for k in kills)]
        print(f"operations in flight across a kill: {len(spanning)}")
        assert spanning, "no operation was in flight when the group was killed"
        problems = durability_problems(history, final)
        # every acknowledged append, anywhere, is in the final value exactly once (no puts here)
        for o in acked_appends:
            if final[o.key].count(o.value) != 1:
                problems.append(f"acknowledged {o} is in the final value "
                                f"{final[o.key].count(o.value)} times")
        for o in history.ops:
            if o.kind == APPEND and o.unknown and final[o.key].count(o.value) > 1:
                problems.append(f"unacknowledged {o} applied more than once")
        assert not problems, "\n".join(problems[:20])
        results = check(history.by_key())
        bad = [r for r in results if not (r.ok and r.decided)]
        assert not bad, "\n".join(f"{r.key}: {r.detail}" for r in bad)
        for n in c.nodes:
            assert n.running(), f"{n.name} exited with {n.exit_code()}"
            assert "Traceback" not in n.log_text(), n.name
    finally:
        c.close()
