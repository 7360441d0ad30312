"""Sessions expire on real processes: a 3-replica group with a short session_ttl_ms drops the
same sessions on every replica (their session tables, read from each data_dir once they
applied the same index, are equal); an expired native session's retry is answered
SESSION_EXPIRED and never applied twice; an idle clerk goes on in a new session."""
from __future__ import annotations

import asyncio

import grpc
from skv_support import in_thread, key_in, sharded, skv_status  # noqa: F401

from eraftd import config as cfgmod
from eraftd._pb import kvbatch_pb2 as kvpb
from eraftd._pb import kvbatch_pb2_grpc as kvpb_grpc
from eraftd.controller.client import ControllerClient
from eraftd.node.storage import NodeStore
from eraftd.shardkv.clerk import Clerk
from eraftd.shardkv.machine import load_state
from eraftd.shardkv.state import APPEND, PUT
from eraftd.testing import wait_for

G = 100
TTL_MS = 1000


async def _raw(c, req: kvpb.BatchRequest, deadline: float) -> kvpb.BatchResponse:
    """One Batch call to the group's leader (a client that numbers its own writes)."""
    loop = asyncio.get_running_loop()
    while True:
        leader = await in_thread(c.wait_leader, G)
        async with grpc.aio.insecure_channel(leader.address) as ch:
            resp = await kvpb_grpc.KVBatchStub(ch).Batch(req, timeout=10)
        if not resp.err:
            return resp
        assert loop.time() < deadline, f"no answer to the batch: {resp.err}"
        await asyncio.sleep(0.1)


def _sessions(c, shard: int) -> list[int]:
    """The session count of `shard` at each replica, with its applied index."""
    return [(s.last_applied, {x.shard_id: x.sessions for x in s.shards}.get(shard))
            for s in (skv_status(n, timeout=5) for n in c.group(G))]


async def test_sessions_expire_alike_on_every_replica_and_an_expired_retry_is_refused(sharded):  # noqa: F811
    c = sharded(gids=(G,), controllers=1, shardkv={"session_ttl_ms": TTL_MS}).start()
    ctrl = c.controller_addresses()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    k, ticker = key_in(3, "k"), key_in(4, "tick")
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl) as idle, Clerk(ctrl) as busy:
        await ctl.join({G: c.addresses(G)})
        await idle.put(key_in(3, "idle"), b"1")
        old_session = idle.session
        # a client whose seq 2 was applied but (say) its answer lost
        req = kvpb.BatchRequest(session=77, floor=1, ops=[PUT, APPEND], keys=[k, k],
                                values=[b"x", b"y"], seqs=[1, 2])
        assert list((await _raw(c, req, deadline)).codes) == [kvpb.OK, kvpb.OK]
        # time goes by only as stamps apply: another client writes until the two are gone
        n = 0
        async def left() -> int:
            st = await in_thread(skv_status, await in_thread(c.wait_leader, G))
            return {s.shard_id: s.sessions for s in st.shards}[3]
        while await left():
            assert loop.time() < deadline, "the idle sessions never expired"
            n += 1
            await busy.put(ticker, b"%d" % n)
            await asyncio.sleep(0.05)           # pacing: one write per 50 ms until they expire
        assert n > 5                            # they lived a while (the ttl is 1 s)
        # the retry of seq 2 comes now: SESSION_EXPIRED, not applied again
        retry = kvpb.BatchRequest(session=77, floor=2, ops=[APPEND], keys=[k], values=[b"y"],
                                  seqs=[2], opened=[True])
        assert list((await _raw(c, retry, deadline)).codes) == [kvpb.SESSION_EXPIRED]
        assert await busy.get(k) == b"xy"
        # the idle clerk's next write: its session was gone, it goes on in a new one
        await idle.append(key_in(3, "idle"), b"2")
        assert idle.session != old_session and await busy.get(key_in(3, "idle")) == b"12"

    # every replica applies the same index, then each one's tables are read from its disk
    def same_index():
        got = _sessions(c, 3)
        return len({a for a, _ in got}) == 1 and got
    await in_thread(wait_for, same_index, 60, "the replicas to apply the same index")
    for node in c.group(G):
        await in_thread(node.stop)
    states = []
    for node in c.group(G):
        cfg = cfgmod.load(str(node.toml))
        store = NodeStore.open(str(node.dir / "data"), cfg.identity(), fsync=False)
        try:
            g = store.group(G)
            st = load_state(g, G)
            states.append((g.applied_index(), st.clock,
                           [dict(sh.sessions) for sh in st.shards],
                           [(sh.keys, sh.bytes) for sh in st.shards]))
        finally:
            store.close()
    assert states[0] == states[1] == states[2]
    _, clock, tables, _ = states[0]
    assert 77 not in tables[3] and old_session not in tables[3] and clock.now > clock.epoch


class LosingProxy(kvpb_grpc.KVBatchServicer):
    """Between a clerk and the group (its `dial` maps the group's addresses here): every call
    goes on to the leader as it is, except the first call that appends to `key`: that one
    is applied at the leader, then held until `release` is set, then answered ErrTimeout
    (the answer lost)."""

    def __init__(self, c) -> None:
        self.c = c
        self.key = b""
        self.applied = asyncio.Event()
        self.release = asyncio.Event()
        self.server = grpc.aio.server()
        kvpb_grpc.add_KVBatchServicer_to_server(self, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    def lose(self, key: bytes) -> None:
        self.key = key
        self.applied.clear()
        self.release.clear()

    async def Batch(self, req, context):
        if self.key and APPEND in req.ops and self.key in req.keys:
            self.key = b""
            resp = await _raw(self.c, req, asyncio.get_running_loop().time() + 60)
            self.applied.set()
            if list(resp.codes) != [kvpb.OK]:
                return resp                       # not applied: the test fails, and says why
            await self.release.wait()
            return kvpb.BatchResponse(err="ErrTimeout")
        leader = await in_thread(self.c.wait_leader, G)
        async with grpc.aio.insecure_channel(leader.address) as ch:
            return await kvpb_grpc.KVBatchStub(ch).Batch(req, timeout=10)


async def test_a_session_opening_write_retried_after_its_session_expired_is_not_applied_twice(sharded):  # noqa: F811
    """A clerk's first write on a shard applies but its answer is lost; its session expires
    (1 s ttl) before the retry arrives.  A clerk that retries without `opened` (as before)
    appends twice; this clerk sends the retry opened and gets ShardKVSessionExpired (outcome
    unknown): the value holds the append once."""
    from eraftd.shardkv.clerk import ShardKVSessionExpired
    c = sharded(gids=(G,), controllers=1, shardkv={"session_ttl_ms": TTL_MS}).start()
    ctrl = c.controller_addresses()
    loop = asyncio.get_running_loop()
    proxy = LosingProxy(c)
    await proxy.server.start()
    group = set(c.addresses(G))
    try:
        async with ControllerClient(ctrl) as ctl, Clerk(ctrl) as busy:
            await ctl.join({G: c.addresses(G)})
            assert await busy.get(key_in(3, "k")) is None      # once the group serves shard 3

            async def run(key: bytes, before_the_fix: bool):
                proxy.lose(key)
                victim = Clerk(ctrl, call_timeout=60, total_timeout=90,
                               dial=lambda a: proxy.address if a in group else a)
                if before_the_fix:               # its retries never say opened (the old clerk)
                    victim.stale_before = lambda now: float("-inf")
                async with victim:
                    task = asyncio.ensure_future(victim.append(key, b"b"))
                    await asyncio.wait_for(proxy.applied.wait(), 60)
                    n, deadline = 0, loop.time() + 60
                    while True:                  # stamps go on until shard 3 has no session
                        st = await in_thread(skv_status, await in_thread(c.wait_leader, G))
                        if not {s.shard_id: s.sessions for s in st.shards}.get(3):
                            break
                        assert loop.time() < deadline, "the session never expired"
                        n += 1
                        await busy.put(key_in(4, "tick"), b"%d" % n)
                        await asyncio.sleep(0.05)    # pacing: one write per 50 ms
                    proxy.release.set()
                    return await asyncio.gather(task, return_exceptions=True)
            k1, k2 = key_in(3, "before"), key_in(3, "after")
            assert await run(k1, before_the_fix=True) == [None]
            assert await busy.get(k1) == b"bb"                 # the hole: applied twice
            [err] = await run(k2, before_the_fix=False)
            assert isinstance(err, ShardKVSessionExpired), err
            assert "whether it was stored is unknown" in str(err)
            assert await busy.get(k2) == b"b"                  # applied once
    finally:
        await proxy.server.stop(None)
