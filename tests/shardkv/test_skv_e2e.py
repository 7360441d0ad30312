"""Sharded KV end to end: real `eraftd run` processes (controller + shardkv groups) and the
Clerk.  The classic sharded-KV scenarios: static shards, join/leave keeping every value with
deletion after migration, snapshots and restarts, a group that misses configuration changes,
unaffected shards serving during a migration, partially migrated shards serving."""
from __future__ import annotations

import asyncio
import random
import re

import pytest
from skv_support import (check_all, group_shards, in_thread, key_in, sharded,  # noqa: F401
                         skv_status, wait_settled)

from eraftd.controller.client import ControllerClient
from eraftd.controller.state import NSHARDS
from eraftd.shardkv.clerk import Clerk, ShardKVError, ShardKVUnavailable
from eraftd.shardkv.state import Limits
from eraftd.testing import wait_for

pytestmark = pytest.mark.e2e

G1, G2, G3 = 100, 101, 102
BIG = 7          # a shard that moves from G1 to G2 on the first join


def keys_per_shard(n: int) -> list[str]:
    """n keys spread over every shard."""
    return [key_in(i % NSHARDS, f"k{i}").decode() for i in range(n)]


async def append_all(kv: Clerk, expect: dict[str, str], rng: random.Random) -> None:
    adds = {k: f"<{rng.randrange(1 << 30)}>" for k in expect}
    await asyncio.gather(*(kv.append(k, v) for k, v in adds.items()))
    for k, v in adds.items():
        expect[k] += v


async def test_static_shards(sharded):  # noqa: F811
    """A group that is down makes only its own shards unavailable."""
    c = sharded(gids=(G1, G2), controllers=1).start()
    ctrl = c.controller_addresses()
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl, total_timeout=30) as kv:
        await ctl.join({G1: c.addresses(G1)})
        await ctl.join({G2: c.addresses(G2)})
        expect = {k: f"v{i}" for i, k in enumerate(keys_per_shard(20))}
        await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
        await check_all(kv, expect)
        cfg = await ctl.query()
        await in_thread(wait_settled, c, {G1: cfg.shards_of(G1), G2: cfg.shards_of(G2)})

        for n in c.group(G2):
            await in_thread(n.kill)
        async with Clerk(ctrl, total_timeout=2) as short:
            got = await asyncio.gather(*(short.get(k) for k in expect), return_exceptions=True)
        for (k, want), v in zip(expect.items(), got):
            if cfg.shards[ord(k[0]) % NSHARDS] == G1:
                assert v == want.encode(), k
            else:
                assert isinstance(v, ShardKVUnavailable), (k, v)
                assert f"group {G2}" in str(v) and "2s" in str(v)
        assert sum(isinstance(v, Exception) for v in got) == 10

        await in_thread(c.start, [G2], False)
        await check_all(kv, expect)

        # refused at once, by the clerk (its limits) or by the group (the node's limits)
        with pytest.raises(ShardKVError, match=r"put kkkk.*key of 5000 bytes is longer"):
            await asyncio.wait_for(kv.put("k" * 5000, "v"), 0.1)
        async with Clerk(ctrl, limits=Limits(1 << 20, 1 << 30)) as lax:
            with pytest.raises(ShardKVError, match=r"value of 1048577 bytes is longer than the "
                                                   r"limit of 1048576 bytes \(max_value_bytes\)"):
                await lax.append("big", "v" * ((1 << 20) + 1))
        assert await kv.get("big") is None

    # an idle cluster's logs do not grow: configuration polls and heartbeats append nothing
    await in_thread(wait_settled, c, {G1: cfg.shards_of(G1), G2: cfg.shards_of(G2)})

    def last_indexes():
        return {(n.name, g.group): g.last_index for n in c.nodes for g in n.status().groups}
    before = await in_thread(last_indexes)
    await asyncio.sleep(1.5)          # an observation window: ~15 polls by each group leader
    assert await in_thread(last_indexes) == before


async def test_join_leave_keeps_every_value_and_the_old_owner_gives_its_space_back(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2), controllers=1, raft={"snapshot_entries": 20})
    c.start()
    ctrl = c.controller_addresses()
    rng = random.Random(1)
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl) as kv:
        await ctl.join({G1: c.addresses(G1)})
        expect = {k: rng.randbytes(10_000).hex() for k in keys_per_shard(100)}   # ~2 MB
        big = {key_in(BIG, f"big{i}").decode(): rng.randbytes(20_000).hex() for i in range(50)}
        expect.update(big)                         # 2 MB more in one shard: pulled in chunks
        await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
        for _ in range(25):                        # enough entries for the log to compact
            await kv.put("x", "y")
        expect["x"] = "y"
        await check_all(kv, expect)
        loaded = {n.name: skv_status(n).storage_size for n in c.group(G1)}
        assert min(loaded.values()) > 4_000_000

        await ctl.join({G2: c.addresses(G2)})
        await append_all(kv, expect, rng)
        await check_all(kv, expect)
        cfg = await ctl.query()
        await in_thread(wait_settled, c, {G1: cfg.shards_of(G1), G2: cfg.shards_of(G2)})
        assert cfg.shards[BIG] == G2
        pulled = [int(m) for n in c.group(G2) for m in re.findall(
            rf"shard {BIG} \(config 2\) arrived from group {G1} \((\d+) chunks\)", n.log_text())]
        assert pulled and pulled[0] >= 4, pulled   # no message of more than about 512 KB

        await ctl.leave([G1])
        await append_all(kv, expect, rng)
        await check_all(kv, expect)
        await in_thread(wait_settled, c, {G1: [], G2: list(range(NSHARDS))})

        # every replica of the group that left deleted the shards and got the space back
        def shrunk():
            sizes = {n.name: skv_status(n) for n in c.group(G1)}
            return all(not s.shards and s.storage_size < loaded[name] // 10
                       for name, s in sizes.items())
        await in_thread(wait_for, shrunk, 30, "the old owner's storage to shrink")

        await ctl.join({G1: c.addresses(G1)})
        await append_all(kv, expect, rng)
        await check_all(kv, expect)


async def test_snapshots_and_restart_of_everything(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2, G3), controllers=1, raft={"snapshot_entries": 20}).start()
    ctrl = c.controller_addresses()
    rng = random.Random(2)
    expect = {k: "" for k in keys_per_shard(30)}
    lagging = c.group(G1)[2]
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl) as kv:
        await ctl.join({G1: c.addresses(G1)})
        await append_all(kv, expect, rng)
        await in_thread(lagging.kill)
        for step in ([G2], [G3], "leave", [G1]):
            if step == "leave":
                await ctl.leave([G1])
            else:
                await ctl.join({step[0]: c.addresses(step[0])})
            for _ in range(3):
                await append_all(kv, expect, rng)
            await check_all(kv, expect)
        for k in list(expect)[:25]:                # sequential: many log entries
            await kv.append(k, "s")
            expect[k] += "s"

        # the lagging replica catches up from a snapshot, then serves in a majority
        await in_thread(lambda: lagging.start().wait_serving())
        await in_thread(wait_for, lambda: re.search(r"installed snapshot", lagging.log_text()),
                        60, "the lagging replica to install a snapshot")
        await in_thread(c.group(G1)[0].kill)
        await append_all(kv, expect, rng)
        await check_all(kv, expect)

    # kill -9 every process; everything comes back from RocksDB
    await in_thread(c.close)
    await in_thread(c.start)
    async with Clerk(ctrl) as kv:
        await check_all(kv, expect)
        await append_all(kv, expect, rng)
        await check_all(kv, expect)


async def test_a_group_that_misses_configuration_changes(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2, G3), controllers=1).start()
    ctrl = c.controller_addresses()
    rng = random.Random(3)
    expect = {k: "" for k in keys_per_shard(20)}
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl) as kv:
        await ctl.join({G1: c.addresses(G1)})
        await append_all(kv, expect, rng)
        await ctl.join({G2: c.addresses(G2)})
        # one replica of each group misses the next changes
        for gid in (G1, G2, G3):
            await in_thread(c.group(gid)[0].kill)
        await ctl.join({G3: c.addresses(G3)})
        await ctl.leave([G1])
        await append_all(kv, expect, rng)
        await check_all(kv, expect)
        for gid in (G1, G2, G3):
            await in_thread(lambda n=c.group(gid)[0]: n.start().wait_serving())
            await in_thread(c.group(gid)[1].kill)
        await ctl.join({G1: c.addresses(G1)})
        await append_all(kv, expect, rng)
        await check_all(kv, expect)
        for gid in (G1, G2, G3):
            await in_thread(lambda n=c.group(gid)[1]: n.start().wait_serving())

        # a whole group down while the configuration moves shards to and from it
        for n in c.group(G3):
            await in_thread(n.kill)
        await ctl.leave([G2])
        await ctl.move(0, G3)
        await ctl.leave([G1])
        await ctl.join({G1: c.addresses(G1), G2: c.addresses(G2)})
        await in_thread(c.start, [G3], False)       # it takes the configurations one by one
        await append_all(kv, expect, rng)
        await check_all(kv, expect)
        cfg = await ctl.query()
        await in_thread(wait_settled, c, {g: cfg.shards_of(g) for g in (G1, G2, G3)})


async def test_unaffected_shards_serve_during_a_migration(sharded):  # noqa: F811
    """Shards that a reconfiguration does not touch keep serving while it is stuck."""
    c = sharded(gids=(G1, G2), controllers=1).start()
    ctrl = c.controller_addresses()
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl) as kv:
        await ctl.join({G1: c.addresses(G1)})
        expect = {k: "a" for k in keys_per_shard(20)}
        await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
        await ctl.join({G2: c.addresses(G2)})
        cfg = await ctl.query()
        await in_thread(wait_settled, c, {G1: cfg.shards_of(G1), G2: cfg.shards_of(G2)})
        on_g2 = {k: v for k, v in expect.items() if cfg.shards[ord(k[0]) % NSHARDS] == G2}

        for n in c.group(G1):                       # G1's shards cannot move: it is down
            await in_thread(n.kill)
        await ctl.leave([G1])
        await in_thread(wait_for, lambda: "Pulling" in (group_shards(c, G2) or {}).values(),
                        30, f"group {G2} to start pulling")
        async with Clerk(ctrl, total_timeout=5) as short:
            for k in on_g2:
                await short.append(k, "b")
                on_g2[k] += "b"
            await check_all(short, on_g2)


async def test_partially_migrated_shards_serve(sharded):  # noqa: F811
    """A shard that has arrived serves at once, while others of the same configuration are
    still to come."""
    c = sharded(gids=(G1, G2, G3), controllers=1).start()
    ctrl = c.controller_addresses()
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl) as kv:
        await ctl.join({G1: c.addresses(G1), G2: c.addresses(G2), G3: c.addresses(G3)})
        expect = {k: "a" for k in keys_per_shard(30)}
        await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
        cfg = await ctl.query()
        await in_thread(wait_settled, c, {g: cfg.shards_of(g) for g in (G1, G2, G3)})
        for n in c.group(G1):
            await in_thread(n.kill)
        await ctl.leave([G1, G2])                   # everything to G3; G1's shards are stuck
        live = {k: v for k, v in expect.items() if cfg.shards[ord(k[0]) % NSHARDS] != G1}
        async with Clerk(ctrl, total_timeout=10) as short:
            for k in live:
                await short.append(k, "b")
                live[k] += "b"
            await check_all(short, live)
        shards = group_shards(c, G3)
        assert {s for s, st in shards.items() if st == "Pulling"} == set(cfg.shards_of(G1))
