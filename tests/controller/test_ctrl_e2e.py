"""The controller end to end: three real `eraftd run` peers and ControllerClient.

eRaft's classic scenarios (basic and multi-group join/leave, historical queries while each
peer in turn is down, move, concurrent clients, minimal transfers); recovery when every peer
restarts, with logs compacted by snapshots and a peer caught up from one; and kill -9 of the
leader in the middle of a stream of commands from several clients, checked against the
configuration history: no acknowledged command lost, none applied twice.

No shardkv server runs here (the groups' servers are names like "x:1"), so every join passes
force=True: it skips the controller's question to the new group's servers (precheck.py),
which tests/repl and tests/shardkv cover.
"""
from __future__ import annotations

import asyncio
import re

import pytest
from ctrl_support import CTRL, addresses, check_config, cluster, stored_state  # noqa: F401

from eraftd.controller.client import ControllerClient, ControllerError
from eraftd.controller.state import NSHARDS, Config, Join, Leave, Move, Op, check, next_config
from eraftd.testing import Cluster, wait_for

pytestmark = pytest.mark.e2e


async def run(ctl: ControllerClient, op: Op) -> Config:
    if isinstance(op, Join):
        return await ctl.join(op.groups, force=True)
    if isinstance(op, Leave):
        return await ctl.leave(op.gids)
    return await ctl.move(op.shard, op.gid)


async def history(ctl: ControllerClient) -> list[Config]:
    latest = await ctl.query()
    out = [await ctl.query(n) for n in range(latest.num)] + [latest]
    assert [c.num for c in out] == list(range(latest.num + 1))
    return out


def old_groups_only_lose(before: Config, after: Config, old) -> None:
    for s in range(NSHARDS):
        if after.shards[s] in old:
            assert before.shards[s] == after.shards[s], f"shard {s} moved between old groups"


def old_groups_keep(before: Config, after: Config, old) -> None:
    for s in range(NSHARDS):
        if before.shards[s] in old:
            assert after.shards[s] == before.shards[s], f"shard {s} left an old group"


async def test_basic(cluster):
    c = cluster(n=3).start()
    addrs = addresses(c)
    async with ControllerClient(addrs, total_timeout=60) as ck:
        cfa = [await ck.query()]
        check_config(cfa[0], [])
        await ck.join({1: ["x:1", "y:1", "z:1"]}, force=True)
        check_config(await ck.query(), [1])
        cfa.append(await ck.query())
        await ck.join({2: ["a:1", "b:1", "c:1"]}, force=True)
        check_config(await ck.query(), [1, 2])
        cfa.append(await ck.query())
        cfx = await ck.query()
        assert cfx.groups[1] == ("x:1", "y:1", "z:1") and cfx.groups[2] == ("a:1", "b:1", "c:1")
        await ck.leave([1])
        check_config(await ck.query(), [2])
        cfa.append(await ck.query())
        with pytest.raises(ControllerError, match="would leave no group to serve the shards"):
            await ck.leave([2])                  # the last group: refused, nothing changes
        assert await ck.query() == cfa[-1]
        assert [x.num for x in cfa] == [0, 1, 2, 3]

        # historical queries, each peer in turn down (kill -9) and back
        for n in c.nodes:
            await asyncio.to_thread(n.kill)
            for want in cfa:
                assert await ck.query(want.num) == want
            await asyncio.to_thread(lambda: n.start().wait_serving())

        # move
        await ck.join({503: ["3a:1", "3b:1", "3c:1"]}, force=True)
        await ck.join({504: ["4a:1", "4b:1", "4c:1"]}, force=True)
        for i in range(NSHARDS):
            cf = await ck.query()
            gid = 503 if i < NSHARDS // 2 else 504
            await ck.move(i, gid)
            if cf.shards[i] != gid:
                assert (await ck.query()).num > cf.num, "a move should create a configuration"
        cf2 = await ck.query()
        assert cf2.shards == (503,) * 5 + (504,) * 5
        await ck.leave([503])
        await ck.leave([504])

        # concurrent leave/join from ten clients
        gids = [100 + 10 * i for i in range(10)]

        async def one(gid: int) -> None:
            async with ControllerClient(addrs, total_timeout=60) as cl:
                await cl.join({gid + 1000: [f"s{gid}a:1"]}, force=True)
                await cl.join({gid: [f"s{gid}b:1"]}, force=True)
                await cl.leave([gid + 1000])
        await asyncio.gather(*(one(g) for g in gids))
        await ck.leave([2])                      # no longer the last group
        check_config(await ck.query(), gids)

        # minimal transfers after joins, then after leaves
        c1 = await ck.query()
        for gid in range(11, 16):
            await ck.join({gid: [f"{gid}a:1", f"{gid}b:1", f"{gid}b:1"]}, force=True)
        c2 = await ck.query()
        check_config(c2, gids + list(range(11, 16)))
        old_groups_only_lose(c1, c2, gids)
        for gid in range(11, 16):
            await ck.leave([gid])
        c3 = await ck.query()
        check_config(c3, gids)
        old_groups_keep(c2, c3, gids)


async def test_multi(cluster):
    c = cluster(n=3).start()
    addrs = addresses(c)
    async with ControllerClient(addrs, total_timeout=60) as ck:
        check_config(await ck.query(), [])
        await ck.join({1: ["x:1", "y:1", "z:1"], 2: ["a:1", "b:1", "c:1"]}, force=True)
        check_config(await ck.query(), [1, 2])
        await ck.join({3: ["j:1", "k:1", "l:1"]}, force=True)
        check_config(await ck.query(), [1, 2, 3])
        cfx = await ck.query()
        assert cfx.groups == {1: ("x:1", "y:1", "z:1"), 2: ("a:1", "b:1", "c:1"), 3: ("j:1", "k:1", "l:1")}
        await ck.leave([1, 3])
        check_config(await ck.query(), [2])
        assert (await ck.query()).groups == {2: ("a:1", "b:1", "c:1")}
        with pytest.raises(ControllerError, match="would leave no group"):
            await ck.leave([2])                  # the last group: refused

        gids = [1000 + i for i in range(10)]

        async def one(gid: int) -> None:
            async with ControllerClient(addrs, total_timeout=60) as cl:
                await cl.join({gid: [f"{gid}a:1", f"{gid}b:1", f"{gid}c:1"],
                               gid + 1000: [f"{gid + 1000}a:1"], gid + 2000: [f"{gid + 2000}a:1"]}, force=True)
                await cl.leave([gid + 1000, gid + 2000])
        await asyncio.gather(*(one(g) for g in gids))
        await ck.leave([2])                      # no longer the last group
        check_config(await ck.query(), gids)

        c1 = await ck.query()
        await ck.join({gid: [f"{gid}a:1", f"{gid}b:1"] for gid in range(11, 16)}, force=True)
        c2 = await ck.query()
        check_config(c2, gids + list(range(11, 16)))
        old_groups_only_lose(c1, c2, gids)
        await ck.leave(list(range(11, 16)))
        c3 = await ck.query()
        check_config(c3, gids)
        old_groups_keep(c2, c3, gids)
        assert (await history(ck))[-1] == c3


def wait_all_applied(c: Cluster, timeout: float = 60) -> None:
    """Every live node applied everything the leader has committed."""
    def caught_up():
        st = [n.group_status(CTRL) for n in c.live()]
        commit = max(s.commit_index for s in st)
        return all(s.last_applied == commit for s in st)
    wait_for(caught_up, timeout, "every live peer to apply the committed log")


async def test_every_peer_restarts_with_compacted_logs(cluster):
    c = cluster(n=3, raft={"snapshot_entries": 20}).start()
    addrs = addresses(c)
    async with ControllerClient(addrs, total_timeout=60) as ck:
        await ck.join({1: ["s1:1"]}, force=True)
        leader = await asyncio.to_thread(c.wait_leader)
        lagging = next(n for n in c.nodes if n is not leader)
        await asyncio.to_thread(lagging.kill)
        for gid in range(2, 30):
            await ck.join({gid: [f"s{gid}:1"]}, force=True)
        for gid in range(2, 20, 3):
            await ck.leave([gid])
        await asyncio.to_thread(lambda: wait_for(
            lambda: all(n.group_status(CTRL).first_index > 10 for n in c.live()), 60,
            "the live peers to compact their logs"))

        # the lagging peer is behind the compacted logs: it catches up from a snapshot
        await asyncio.to_thread(lambda: lagging.start().wait_serving())
        await asyncio.to_thread(lambda: wait_for(
            lambda: lagging.group_status(CTRL).snapshot_index > 0, 60, "a snapshot install"))
        assert re.search(r"installed snapshot at index \d+", lagging.log_text())
        for shard in range(NSHARDS):               # applied on top of the restored state
            await ck.move(shard, 20 + shard)
        before = await history(ck)
        await asyncio.to_thread(wait_all_applied, c)

        # kill -9 every peer; all start again with every configuration
        for n in c.nodes:
            await asyncio.to_thread(n.kill)
        await asyncio.to_thread(c.start)
        assert await history(ck) == before
        await ck.join({100: ["s100:1"]}, force=True)
        after = await history(ck)
        assert after[:-1] == before and 100 in after[-1].groups
        await asyncio.to_thread(wait_all_applied, c)

    for n in c.nodes:                              # every replica stored the same history
        assert n.stop() == 0
        assert stored_state(n).configs == after, n.name


async def test_leader_killed_mid_stream_loses_nothing_and_applies_nothing_twice(cluster):
    c = cluster(n=3).start()
    addrs = addresses(c)
    acked: list[tuple[int, int, Op, Config]] = []    # client, its command number, op, answer
    changed = asyncio.Event()
    stop = asyncio.Event()

    async def client(i: int) -> None:
        """Rounds of: join a new gid, move a shard to it, leave the previous gid."""
        async with ControllerClient(addrs, total_timeout=60) as ctl:
            seq = 0

            async def do(op: Op) -> None:
                nonlocal seq
                acked.append((i, seq, op, await run(ctl, op)))
                seq += 1
                changed.set()
            prev = None
            for k in range(500):
                if stop.is_set():
                    break
                gid = 100 * (i + 1) + k
                await do(Join({gid: (f"g{gid}a:1", f"g{gid}b:1")}))
                await do(Move((i + k) % NSHARDS, gid))
                if prev is not None:
                    await do(Leave((prev,)))
                prev = gid
            else:
                raise AssertionError("the stream did not stop")
            await do(Leave((prev,)))

    async def acked_at_least(n: int) -> None:
        while len(acked) < n:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 60)

    async def chaos() -> int:
        await acked_at_least(40)
        leader = await asyncio.to_thread(c.wait_leader)
        await asyncio.to_thread(leader.kill)       # clients have commands in flight
        killed_at = len(acked)
        await acked_at_least(killed_at + 40)       # progress under the new leader
        await asyncio.to_thread(lambda: leader.start().wait_serving())
        await acked_at_least(len(acked) + 30)
        stop.set()
        return killed_at

    async with ControllerClient(addrs, total_timeout=60) as ctl:
        await ctl.join({1: ("base:1",)}, force=True)   # configuration 1: the clients' leaves are never the last
    clients = [asyncio.create_task(client(i)) for i in range(4)]
    try:
        killed_at = await chaos()
        await asyncio.gather(*clients)
    finally:
        for t in clients:
            t.cancel()
    assert 0 < killed_at < len(acked)

    async with ControllerClient(addrs, total_timeout=60) as ctl:
        hist = await history(ctl)
    claims: dict[int, tuple[int, int, Op]] = {}
    last_num: dict[int, int] = {}
    for i, seq, op, cfg in acked:
        n = cfg.num
        assert hist[n] == cfg, f"client {i} command {seq} {op}: answer differs from history"
        if n > 1 and check(hist[n - 1], op) is None and next_config(hist[n - 1], op) == hist[n]:
            assert n not in claims, f"configuration {n} claimed by {claims[n]} and {(i, seq, op)}"
            claims[n] = (i, seq, op)
        else:                                      # only a move can change nothing
            assert isinstance(op, Move) and hist[n].shards[op.shard] == op.gid, \
                f"client {i} command {seq} {op} acknowledged but not in configuration {n}"
        assert n >= last_num.get(i, 0), f"client {i}'s commands applied out of order"
        last_num[i] = n
    # every configuration came from exactly one acknowledged command: none applied twice
    assert sorted(claims) == list(range(2, len(hist)))
    assert hist[-1].groups == {1: ("base:1",)}       # every client left its last gid

    await asyncio.to_thread(wait_all_applied, c)
    for n in c.nodes:
        assert n.stop() == 0
        assert stored_state(n).configs == hist, n.name
