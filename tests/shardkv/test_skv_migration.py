"""The migration's waits when a group is slow (a loaded machine) or a controller was down.

The Migrator of a new owner pulls from, and garbage-collects at, an old owner served by the
real gRPC services; each group is one replica whose real machine (over a NodeStore) applies a
proposal `latency` seconds after it is made, whether or not the proposer still waits (as a
Raft log does)."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc

from eraftd.node.members import Members
import pytest
from skv_support import (Harness, check_all, config, fill_shard, in_thread, key_in,  # noqa: F401
                         sharded, wait_settled)

from eraftd._pb import kvbatch_pb2 as kvpb
from eraftd._pb import shardctrler_pb2 as cpb
from eraftd._pb import shardctrler_pb2_grpc as cpb_grpc
from eraftd._pb import shardkv_pb2 as pb
from eraftd._pb import shardkv_pb2_grpc as pb_grpc
from eraftd._pb import shardmigration_pb2_grpc as migpb_grpc
from eraftd.controller.client import ControllerClient, ControllerUnavailable
from eraftd.controller.machine import config_to_pb
from eraftd.node.transport import MAX_MESSAGE_BYTES
from eraftd.shardkv.machine import (ENTRY_BATCH, ENTRY_DELETE, ENTRY_INSERT, encode_config,
                                    shard_prefix)
from eraftd.shardkv.clerk import Clerk
from eraftd.shardkv.migration import CHUNK_BYTES, Migrator, Peers
from eraftd.shardkv.service import ShardMigrationService, add_services
from eraftd.shardkv.state import BEPULLING, OK, PULLING, Limits, key2shard
from eraftd.testing import FaultyProxy, free_port

G1, G2 = 100, 101
MOVING = [5, 6, 7, 8, 9]


class Replica(Harness):
    """A one-replica group with the driver's surface the services and the Migrator use."""

    def __init__(self, path: Path, gid: int, latency: float = 0.0) -> None:
        super().__init__(path, gid)
        self.sm = self.m
        self.latency = latency
        self.proposed: list[bytes] = []          # the kind byte of every proposal
        self.outcomes: list[tuple[bytes, object]] = []   # (kind, result) of every commit
        self.groups = {gid: self}
        self.leader_address = ""
        self.server: grpc.aio.Server | None = None
        self.address = ""
        self.members = Members()                 # (no Raft membership here)

    def is_leader(self) -> bool:
        return True

    async def propose(self, gid: int, data: bytes):
        self.proposed.append(data[:1])
        fut = asyncio.get_running_loop().create_future()

        def commit() -> None:                    # commits even if nobody waits any more
            res = self.apply(data)[0]
            self.outcomes.append((data[:1], res))
            if not fut.done():
                fut.set_result(res)
        asyncio.get_running_loop().call_later(self.latency, commit)
        return await fut

    async def serve(self, pull_s_per_byte: float = 0.0) -> "Replica":
        """pull_s_per_byte: PullShard first waits this long per byte asked for (a loaded
        machine reads and sends a big chunk slowly).  self.pulls: the PullShard service,
        which records the serialized size of every answer (`sizes`)."""
        self.server = grpc.aio.server()
        add_services(self.server, self, self.gid, Limits(), "")
        self.pulls = _SlowPull(self, self.gid, 2.0, pull_s_per_byte)
        migpb_grpc.add_ShardMigrationServicer_to_server(self.pulls, self.server)  # last: it answers
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        await self.server.start()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
        super().close()


class _SlowPull(ShardMigrationService):
    def __init__(self, driver, gid: int, timeout: float, s_per_byte: float) -> None:
        super().__init__(driver, gid, timeout)
        self.s_per_byte = s_per_byte
        self.asked: list[int] = []
        self.sizes: list[int] = []

    async def PullShard(self, req, context):
        self.asked.append(req.max_bytes)
        if self.s_per_byte:
            await asyncio.sleep(req.max_bytes * self.s_per_byte)
        resp = await super().PullShard(req, context)
        self.sizes.append(resp.ByteSize())
        return resp


class FixedController:
    def __init__(self, cfg) -> None:
        self.cfg = cfg

    async def query(self, num: int = -1):
        return self.cfg


def put_batch(kvs: dict[bytes, bytes]) -> bytes:
    return ENTRY_BATCH + kvpb.BatchRequest(ops=[kvpb.PUT] * len(kvs), keys=list(kvs),
                                           values=list(kvs.values())).SerializeToString()


async def moving_cluster(tmp_path: Path, old_latency: float, new_latency: float, keys: int,
                         pull_s_per_byte: float = 0.0):
    """Old owner G1 at configuration 2 (shards 5-9 BePulling, `keys` keys each), new owner G2
    at configuration 2 (shards 5-9 Pulling)."""
    old = await Replica(tmp_path / "g1", G1).serve(pull_s_per_byte)
    new = await Replica(tmp_path / "g2", G2).serve()
    groups = {G1: (old.address,), G2: (new.address,)}
    c1 = config(1, [G1] * 10, {G1: groups[G1]})
    c2 = config(2, [G1] * 5 + [G2] * 5, groups)
    data = {key_in(s, f"k{i:04d}"): b"v%d-" % i * 20 for s in MOVING for i in range(keys)}
    old.apply(encode_config(c1), put_batch(data), encode_config(c2))
    new.apply(encode_config(c1), encode_config(c2))
    assert [old.sm.state.shards[s].status for s in MOVING] == [BEPULLING] * 5
    assert [new.sm.state.shards[s].status for s in MOVING] == [PULLING] * 5
    old.latency, new.latency = old_latency, new_latency
    return old, new, c2, data


async def settle(old: Replica, new: Replica, cfg, timeout: float = 30, **kw) -> None:
    """Run the new owner's Migrator until both groups have every shard Serving."""
    peers = Peers()
    task = asyncio.create_task(Migrator(new, G2, FixedController(cfg), peers, poll_s=0.05,
                                        **kw).run())
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not (new.sm.state.settled() and old.sm.state.settled()):
            assert loop.time() < end, (
                f"not settled in {timeout:g}s: new owner "
                f"{[new.sm.state.shards[s].status for s in MOVING]}, old owner "
                f"{[old.sm.state.shards[s].status for s in MOVING]}, old owner proposed "
                f"{old.proposed.count(ENTRY_DELETE)} deletions")
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await peers.close()


async def test_garbage_collection_ends_when_the_old_owner_commits_slower_than_the_call_deadline(tmp_path):
    """The old owner's deletion takes longer to commit than the new owner waits for its
    answer.  Every retry used to propose the deletion again and wait for that commit too, so
    the handshake went round for ever (both groups stuck short of Serving, neither able to
    take the next configuration); a retry after the deletion applied is now answered at once."""
    old, new, cfg, data = await moving_cluster(tmp_path, old_latency=1.0, new_latency=0.0, keys=3)
    try:
        await settle(old, new, cfg, gc_call_s=0.4)
        assert all(new.sm.get(k) == v for k, v in data.items())
        assert all(old.sm.state.shards[s].keys == 0 for s in MOVING)
        # and a deletion asked again is answered without a new commit
        before = len(old.proposed)
        async with grpc.aio.insecure_channel(old.address) as ch:
            resp = await pb_grpc.ShardKVServiceStub(ch).DeleteShardsData(
                pb.ShardOperationRequest(config_num=2, shard_ids=MOVING), timeout=10)
        assert resp.err == "OK" and len(old.proposed) == before
    finally:
        await old.close()
        await new.close()


async def test_a_slow_commit_of_a_pulled_chunk_is_waited_for_not_pulled_and_proposed_again(tmp_path):
    """The new owner's own commits take longer than its calls' deadlines: each chunk is still
    pulled once and proposed once (a proposal given up on while it would still commit used
    to be pulled and proposed again, applying as ErrOutDated: twice the log, under load)."""
    old, new, cfg, data = await moving_cluster(tmp_path, old_latency=0.0, new_latency=0.6, keys=30)
    try:
        await settle(old, new, cfg, pull_call_s=0.3, gc_call_s=0.3, chunk_bytes=1000)
        assert all(new.sm.get(k) == v for k, v in data.items())
        inserts = [res for kind, res in new.outcomes if kind == ENTRY_INSERT]
        assert len(inserts) >= 10 and set(inserts) == {OK}, inserts   # chunks, each once
    finally:
        await old.close()
        await new.close()


async def test_a_chunk_too_big_to_arrive_in_time_is_asked_for_in_halves(tmp_path):
    """The old owner takes longer to read and send a full chunk than the new owner waits:
    every retry used to ask for the same chunk and fail the same way; a pull without an
    answer now asks for half as much (and doubles back after an answer)."""
    old, new, cfg, data = await moving_cluster(tmp_path, 0.0, 0.0, keys=1000,
                                               pull_s_per_byte=1.0 / (64 << 10))   # 64 KB: 1 s
    try:
        await settle(old, new, cfg, timeout=30, pull_call_s=0.6, chunk_bytes=64 << 10)
        assert all(new.sm.get(k) == v for k, v in data.items())
        inserts = [res for kind, res in new.outcomes if kind == ENTRY_INSERT]
        assert len(inserts) >= 10 and set(inserts) == {OK}, inserts   # several 32 KB chunks
    finally:
        await old.close()
        await new.close()


class _OneConfig(cpb_grpc.ShardCtrlerServiceServicer):
    async def Command(self, request, context):
        return cpb.CommandResponse(err="OK", config=config_to_pb(config(3, [G1] * 10)))


async def test_the_configuration_poll_reaches_a_controller_soon_after_it_comes_back():
    """A group's configuration poll (ControllerClient) asks a controller that is down for
    10 s, then comes back: the first answer comes within a couple of seconds.  (With gRPC's
    default reconnect back-off, 1 s growing 1.6x to 2 minutes, the channel's next attempt
    was 3-8 s after this outage, and 50 s after one of 70 s: configurations unseen all that
    time by a deployment with one controller.)  The bound asserted is the property itself:
    one back-off of at most about a second, plus one call."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    server = None
    async with ControllerClient([addr], total_timeout=0.5, call_timeout=0.25) as ctl:
        loop = asyncio.get_running_loop()
        down_until = loop.time() + 10
        while loop.time() < down_until:          # the outage: every poll fails
            with pytest.raises(ControllerUnavailable):
                await ctl.query(3)
            await asyncio.sleep(0.1)
        server = grpc.aio.server()
        cpb_grpc.add_ShardCtrlerServiceServicer_to_server(_OneConfig(), server)
        server.add_insecure_port(addr)
        await server.start()
        try:
            back = loop.time()
            while True:
                try:
                    cfg = await ctl.query(3)
                    break
                except ControllerUnavailable:
                    assert loop.time() - back < 2.5, "no answer 2.5 s after the controller came back"
                    await asyncio.sleep(0.1)
            assert cfg.num == 3
        finally:
            await server.stop(0)


class _Answers(pb_grpc.ShardKVServiceServicer):
    """DeleteShardsData answered `err` after `delay` seconds (None: never)."""

    def __init__(self, err: str, delay: float | None = 0.0) -> None:
        self.err, self.delay, self.asked = err, delay, 0

    async def DeleteShardsData(self, request, context):
        self.asked += 1
        if self.delay is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay)
        return pb.ShardOperationResponse(err=self.err)


async def ask_three(answers: list[_Answers], timeout: float):
    servers, addrs = [], []
    for a in answers:
        s = grpc.aio.server()
        pb_grpc.add_ShardKVServiceServicer_to_server(a, s)
        addrs.append(f"127.0.0.1:{s.add_insecure_port('127.0.0.1:0')}")
        await s.start()
        servers.append(s)
    peers = Peers(hedge_s=0.2)
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        resp, last = await peers.call(addrs, lambda ch: pb_grpc.ShardKVServiceStub(ch).DeleteShardsData,
                                      pb.ShardOperationRequest(config_num=2), timeout)
        return resp, last, loop.time() - t0, addrs
    finally:
        await peers.close()
        for s in servers:
            await s.stop(0)


async def test_a_replica_that_does_not_answer_costs_the_hedge_not_the_deadline():
    """The first replica asked (a stopped leader) never answers: the others are asked after
    hedge_s while it still is, and the one that can answer does, long before the deadline."""
    resp, last, took, addrs = await ask_three(
        [_Answers(OK, None), _Answers("ErrWrongLeader"), _Answers(OK)], timeout=30)
    assert resp is not None and resp.err == OK and last == f"{addrs[2]}: OK"
    assert took < 15, took          # without the hedge: the whole 30 s deadline first


async def test_a_slow_replicas_answer_still_counts_after_the_others_are_asked():
    """The only replica that can answer is slower than hedge_s: its answer is taken."""
    slow = _Answers(OK, 1.0)
    resp, last, _, addrs = await ask_three(
        [slow, _Answers("ErrWrongLeader"), _Answers("ErrWrongLeader")], timeout=30)
    assert resp is not None and last == f"{addrs[0]}: OK" and slow.asked == 1


@pytest.mark.e2e
async def test_a_migration_settles_while_the_old_owners_commits_outlast_every_call(sharded):  # noqa: F811
    """Real processes: everything the old owner's leader sends its followers arrives 2.2 s
    late (as on a loaded machine), so each of its commits takes longer than the 2 s the new
    owner used to wait for an answer.  The deletion handshake used to go round for ever
    (every retry proposed the deletion again and waited for that commit too); the shards now
    settle, and every value is there.  (Election timeout 4 s: the delayed heartbeats keep the
    old owner's leader in place.)"""
    c = sharded(gids=(G1, G2), controllers=1, proxied=True,
                raft={"heartbeat_ms": 100, "election_ms": 4000})
    proxies = {addr: await FaultyProxy(via, addr).start() for addr, via in c.proxies.items()}
    try:
        await in_thread(c.start)
        ctrl = c.controller_addresses()
        async with ControllerClient(ctrl, total_timeout=60) as ctl, Clerk(ctrl) as kv:
            await ctl.join({G1: c.addresses(G1)})
            expect = {key_in(i % 10, f"k{i}").decode(): f"v{i}" for i in range(20)}
            await asyncio.gather(*(kv.put(k, v) for k, v in expect.items()))
            leader = await in_thread(c.wait_leader, G1)
            for n in c.group(G1):
                if n is not leader:
                    proxies[n.address].delay = 2.2
            await ctl.join({G2: c.addresses(G2)})
            cfg = await ctl.query()
            await in_thread(wait_settled, c, {G1: cfg.shards_of(G1), G2: cfg.shards_of(G2)})
            assert await in_thread(c.leader, G1) is leader       # no election hid the delay
            # what moved reads right at the new owner (a read at the old owner waits for a
            # heartbeat round: longer than the 2 s a read is given there, whatever this test)
            await check_all(kv, {k: v for k, v in expect.items() if cfg.shards[key2shard(k.encode())] == G2})
    finally:
        for p in proxies.values():
            await p.close()


# MIGRATION_SESSIONS / MIGRATION_KEYS: the size of the shard below (the acceptance size by
# default; e.g. MIGRATION_SESSIONS=5000000 for a longer run).
BIG_SESSIONS = int(os.environ.get("MIGRATION_SESSIONS", 1_000_000))
BIG_KEYS = int(os.environ.get("MIGRATION_KEYS", 200_000))


@pytest.mark.slow
async def test_a_shard_with_a_million_sessions_migrates_in_chunks_under_the_bound(tmp_path):
    """A shard that a million one-shot clients wrote to (1,000,000 sessions, 200,000 keys)
    moves to a new owner through the real PullShard service: every answer is within the
    chunk bound (the sessions used to travel all in the first one: some 3.5 million of them
    reached the 64 MiB message cap, and the shard could never move again), and every session
    and key arrives."""
    shard = 5
    old = await Replica(tmp_path / "g1", G1).serve()
    new = await Replica(tmp_path / "g2", G2).serve()
    try:
        groups = {G1: (old.address,), G2: (new.address,)}
        c1 = config(1, [G1] * 10, {G1: groups[G1]})
        c2 = config(2, [G1] * 5 + [G2] + [G1] * 4, groups)
        old.apply(encode_config(c1))
        await in_thread(fill_shard, old, shard, BIG_SESSIONS, BIG_KEYS)
        want = old.sm.state.shards[shard]
        want_keys, want_bytes, want_sessions = want.keys, want.bytes, dict(want.sessions)
        old.apply(encode_config(c2))
        new.apply(encode_config(c1), encode_config(c2))
        assert new.sm.state.shards[shard].status == PULLING
        await settle(old, new, c2, timeout=120)
        sizes = old.pulls.sizes
        bound = CHUNK_BYTES + 1024        # the chunk's bytes, and its few fields' framing
        assert max(sizes) <= bound < MAX_MESSAGE_BYTES, (max(sizes), bound)
        assert len(sizes) >= (BIG_SESSIONS * 10 + BIG_KEYS * 24) // CHUNK_BYTES
        got = new.sm.state.shards[shard]
        assert (got.keys, got.bytes) == (want_keys, want_bytes)
        assert got.sessions == want_sessions
        assert new.sm.get(key_in(shard, "k%07d" % (BIG_KEYS - 1))) == b"v%07d" % (BIG_KEYS - 1)
        assert len(list(new.g.scan(shard_prefix(shard) + b"d"))) == BIG_SESSIONS  # persisted
    finally:
        await old.close()
        await new.close()


def test_a_session_cursor_answered_by_a_replica_from_before_is_not_used():
    """A replica from before chunked sessions reads a session cursor (b"d" + client, b"e")
    as a key and would answer with the wrong data: its answer is not used (migration._misread)."""
    from eraftd._pb import shardmigration_pb2 as migpb
    from eraftd.shardkv.migration import _misread
    old_server = migpb.PullShardResponse(err=OK, next=b"k1")
    new_server = migpb.PullShardResponse(err=OK, next=b"k1", chunked_sessions=True)
    for cursor in (b"d\x00\x00\x00\x00\x00\x00\x00\x07", b"e"):
        assert _misread(cursor, old_server) and not _misread(cursor, new_server)
    for cursor in (b"", b"kabc"):               # what every replica reads alike
        assert not _misread(cursor, old_server)
