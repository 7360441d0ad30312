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

# every scenario on a plaintext cluster and on a TLS one (certificates made by eraftd.certs,
# the clients with an admin client certificate): issue 13's "a TLS cluster passes the suite"
pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("sharded", [False, True], ids=["plain", "tls"], indirect=True)]

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
    async with ControllerClient(ctrl, tls=c.tls) as ctl, Clerk(ctrl, tls=c.tls, total_timeout=30) as kv:
        await ctl.join({G1: c.addresses(G1)})
        await ctl.join({G2: c.addresses(G2)})
        expect = {k: f"v{i}" for i, k in enumerate(keys_per_shard(20))}
        await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
        await check_all(kv, expect)
        cfg = await ctl.query()
        await in_thread(wait_settled, c, {G1: cfg.shards_of(G1), G2: cfg.shards_of(G2)})

        for n in c.group(G2):
            await in_thread(n.kill)
        async with Clerk(ctrl, tls=c.tls, total_timeout=2) as short:
            got = await asyncio.gather(*(short.get(k) for k in expect), return_exceptions=True)
        for (k, want), v in zip(expect.items(), got):
            if cfg.shards[ord(k[0]) % NSHARDS] == G1:
                assert v == want.encode(), k
            else:
                assert isinstance(v, ShardKVUnavailable), (k, v)
                assert f"group {G2}" in str(v) and "2s" in str(v)
        assert sum(isinstance(v, Exception) for v in got) == 10
        # a scan needs every shard: each page has total_timeout, then it says which it missed
        async with Clerk(ctrl, tls=c.tls, total_timeout=2) as short:
            with pytest.raises(ShardKVUnavailable, match=rf"scan of shard \d got no answer "
                                                         rf"within 2s; last: group {G2}: "):
                [pair async for pair in short.scan()]
            mine = key_in(cfg.shards_of(G1)[0]).decode()[0]       # a prefix in one shard
            assert [k async for k, _ in short.scan(mine)] == sorted(
                k.encode() for k in expect if k.startswith(mine))

        await in_thread(c.start, [G2], False)
        await check_all(kv, expect)

        # refused at once, by the clerk (its limits) or by the group (the node's limits)
        with pytest.raises(ShardKVError, match=r"put kkkk.*key of 5000 bytes is longer"):
            await asyncio.wait_for(kv.put("k" * 5000, "v"), 0.1)
        async with Clerk(ctrl, tls=c.tls, limits=Limits(1 << 20, 1 << 30)) as lax:
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
    async with ControllerClient(ctrl, tls=c.tls) as ctl, Clerk(ctrl, tls=c.tls) as kv:
        await ctl.join({G1: c.addresses(G1)})
        expect = {k: rng.randbytes(10_000).hex() for k in keys_per_shard(100)}   # ~2 MB
        big = {key_in(BIG, f"big{i}").decode(): rng.randbytes(20_000).hex() for i in range(50)}
        expect.update(big)                         # 2 MB more in one shard: pulled in chunks
        await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
        for _ in range(25):                        # enough entries for the log to compact
            await kv.put("x", "y")
        expect["x"] = "y"
        await check_all(kv, expect)
        # every replica holds the data (a follower may still be catching up on a loaded machine:
        # the reads above were the leader's)
        def holding():
            sizes = {n.name: skv_status(n).storage_size for n in c.group(G1)}
            return sizes if min(sizes.values()) > 4_000_000 else None
        loaded = await in_thread(wait_for, holding, 60, "every replica of G1 to hold the ~4 MB")

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
    async with ControllerClient(ctrl, tls=c.tls) as ctl, Clerk(ctrl, tls=c.tls) as kv:
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
    async with Clerk(ctrl, tls=c.tls) as kv:
        await check_all(kv, expect)
        await append_all(kv, expect, rng)
        await check_all(kv, expect)


async def test_a_group_that_misses_configuration_changes(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2, G3), controllers=1).start()
    ctrl = c.controller_addresses()
    rng = random.Random(3)
    expect = {k: "" for k in keys_per_shard(20)}
    async with ControllerClient(ctrl, tls=c.tls) as ctl, Clerk(ctrl, tls=c.tls) as kv:
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
    async with ControllerClient(ctrl, tls=c.tls) as ctl, Clerk(ctrl, tls=c.tls) as kv:
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
        async with Clerk(ctrl, tls=c.tls, total_timeout=5) as short:
            for k in on_g2:
                await short.append(k, "b")
                on_g2[k] += "b"
            await check_all(short, on_g2)


async def test_partially_migrated_shards_serve(sharded):  # noqa: F811
    """A shard that has arrived serves at once, while others of the same configuration are
    still to come."""
    c = sharded(gids=(G1, G2, G3), controllers=1).start()
    ctrl = c.controller_addresses()
    async with ControllerClient(ctrl, tls=c.tls) as ctl, Clerk(ctrl, tls=c.tls) as kv:
        await ctl.join({G1: c.addresses(G1), G2: c.addresses(G2), G3: c.addresses(G3)})
        expect = {k: "a" for k in keys_per_shard(30)}
        await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
        cfg = await ctl.query()
        await in_thread(wait_settled, c, {g: cfg.shards_of(g) for g in (G1, G2, G3)})
        for n in c.group(G1):
            await in_thread(n.kill)
        await ctl.leave([G1, G2])                   # everything to G3; G1's shards are stuck
        live = {k: v for k, v in expect.items() if cfg.shards[ord(k[0]) % NSHARDS] != G1}
        async with Clerk(ctrl, tls=c.tls, total_timeout=10) as short:
            for k in live:
                await short.append(k, "b")
                live[k] += "b"
            await check_all(short, live)
        shards = group_shards(c, G3)
        assert {s for s, st in shards.items() if st == "Pulling"} == set(cfg.shards_of(G1))


async def scan_all(kv: Clerk, prefix: str = "", limit: int | None = None) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) async for k, v in kv.scan(prefix.encode(), limit)]


async def test_delete_exists_cas_and_scan_through_the_clerk(sharded):  # noqa: F811
    """The operations beyond eRaft's, end to end; a scan of many keys in small pages; a
    deleted key stays deleted at the new owner after its shard moves, counters right."""
    c = sharded(gids=(G1, G2), controllers=1).start()
    ctrl = c.controller_addresses()
    async with ControllerClient(ctrl, tls=c.tls) as ctl, Clerk(ctrl, tls=c.tls, scan_page_keys=7) as kv:
        await ctl.join({G1: c.addresses(G1), G2: c.addresses(G2)})
        expect = {k: f"v{i}" for i, k in enumerate(keys_per_shard(400))}
        await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
        k0, k1 = key_in(BIG, "cas").decode(), key_in(BIG, "gone").decode()
        assert await kv.exists(k1) is False and await kv.delete(k1) is False
        assert await kv.cas(k0, b"x", b"y") == (False, None)           # absent
        assert await kv.cas(k0, b"", b"y") == (False, None)            # absent is not ""
        assert await kv.cas(k0, None, b"first") == (True, None)        # create-if-missing
        assert await kv.cas(k0, None, b"second") == (False, b"first")
        assert await kv.cas(k0, b"nope", b"second") == (False, b"first")
        assert await kv.cas(k0, b"first", b"second") == (True, None)
        assert await kv.get(k0) == b"second" and await kv.exists(k0)
        await kv.put(k1, "soon gone")
        assert await kv.exists(k1) and await kv.delete(k1) is True
        assert await kv.get(k1) is None and not await kv.exists(k1)
        assert await kv.delete(k1) is False
        expect[k0] = "second"
        gone = keys_per_shard(400)[BIG::NSHARDS][:5]                # some of BIG's keys too
        assert all(await asyncio.gather(*(kv.delete(k) for k in gone)))
        for k in gone:
            del expect[k]

        # 400 keys over every shard, 7 per page: key order, each key once
        assert await scan_all(kv) == sorted(expect.items())
        assert await scan_all(kv, limit=10) == sorted(expect.items())[:10]
        pre = key_in(3, "k1").decode()
        assert await scan_all(kv, pre) == sorted((k, v) for k, v in expect.items() if k.startswith(pre))
        assert await scan_all(kv, "no such prefix") == [] and await scan_all(kv, limit=0) == []
        with pytest.raises(ShardKVError, match="limit -1 is below 0"):
            kv.scan(b"", -1)

        cfg = await ctl.query()
        owner = cfg.shards[BIG]
        other = G2 if owner == G1 else G1
        await ctl.move(BIG, other)
        cfg = await ctl.query()
        await in_thread(wait_settled, c, {G1: cfg.shards_of(G1), G2: cfg.shards_of(G2)})
        assert [await kv.get(k) for k in gone + [k1]] == [None] * 6
        assert not any(await asyncio.gather(*(kv.exists(k) for k in gone)))
        assert await kv.cas(k0, b"second", b"third") == (True, None)
        expect[k0] = "third"
        leader = c.leader(other)
        info = {s.shard_id: s for s in skv_status(leader).shards}[BIG]
        mine = {k: v for k, v in expect.items() if ord(k[0]) % NSHARDS == BIG}
        assert (info.keys, info.bytes) == (len(mine), sum(len(k) + len(v) for k, v in mine.items()))
        await check_all(kv, expect)
        assert await scan_all(kv) == sorted(expect.items())


class _CountingStub:
    """A KVBatch stub that counts the Scan pages answered WRONG_GROUP."""

    def __init__(self, real, counts) -> None:
        self.real, self.counts, self.Batch = real, counts, real.Batch

    async def Scan(self, req, timeout=None):
        resp = await self.real.Scan(req, timeout=timeout)
        if not resp.err and resp.code != 0:
            self.counts["wrong_group"] += 1
        return resp


async def test_a_scan_while_shards_migrate_sees_every_key_once(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2), controllers=1).start()
    ctrl = c.controller_addresses()
    counts = {"wrong_group": 0, "moves": 0, "scans": 0}
    async with ControllerClient(ctrl, tls=c.tls) as ctl, Clerk(ctrl, tls=c.tls, scan_page_keys=3) as kv:
        real_stub = kv.stub
        kv.stub = lambda addr: _CountingStub(real_stub(addr), counts)
        await ctl.join({G1: c.addresses(G1), G2: c.addresses(G2)})
        expect = {k: f"v{i}" * 20 for i, k in enumerate(keys_per_shard(300))}
        await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
        want = sorted(expect.items())
        stop = asyncio.Event()

        async def mover():
            shard = 0
            while not stop.is_set():
                cfg = await ctl.query()
                await ctl.move(shard, G2 if cfg.shards[shard] == G1 else G1)
                counts["moves"] += 1
                shard = (shard + 3) % NSHARDS
                await asyncio.sleep(0.3)

        task = asyncio.create_task(mover())
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 120
            while counts["wrong_group"] == 0 or counts["scans"] < 2:
                assert loop.time() < end, f"no scan page met a migration in 120 s: {counts}"
                assert await scan_all(kv) == want
                counts["scans"] += 1
        finally:
            stop.set()
            await task
        print(counts)
