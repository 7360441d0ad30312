"""The eRaft wire contract: a client written against eRaft's ShardKVService (and
ShardCtrlerService), using only the generated stubs and eRaft's clerk loop, works unchanged."""
from __future__ import annotations

import asyncio
import random
import time

import grpc
import pytest
from skv_support import sharded  # noqa: F401

from eraftd._pb import shardctrler_pb2 as cpb
from eraftd._pb import shardctrler_pb2_grpc as cpb_grpc
from eraftd._pb import shardkv_pb2 as pb
from eraftd._pb import shardkv_pb2_grpc as pb_grpc
from eraftd.controller.client import ControllerClient
from eraftd.shardkv.clerk import ShardKVError
from eraftd.shardkv.unary import UnaryClerk

pytestmark = pytest.mark.e2e


class ERaftClerk:
    """eRaft's shardkv/client.go: query the configuration, route by key2shard, try the group's
    servers in turn; OK/ErrNoKey ends a command, ErrWrongGroup (or a full round of failures)
    sleeps 100 ms and re-queries.  command_id starts at 0 and counts every command."""

    def __init__(self, controllers: list[str], deadline_s: float = 60) -> None:
        self.controllers = controllers
        self.client_id = random.randrange(1, 1 << 62)
        self.command_id = 0
        self.deadline_s = deadline_s
        self.channels: dict[str, grpc.Channel] = {}
        self.leader: dict[int, int] = {}
        self.config = self.query()

    def channel(self, addr: str) -> grpc.Channel:
        if addr not in self.channels:
            self.channels[addr] = grpc.insecure_channel(addr)
        return self.channels[addr]

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()

    def query(self) -> cpb.Config:
        end = time.monotonic() + self.deadline_s
        while time.monotonic() < end:
            for addr in self.controllers:
                try:
                    r = cpb_grpc.ShardCtrlerServiceStub(self.channel(addr)).Command(
                        cpb.CommandRequest(op=cpb.QUERY, num=-1), timeout=1)
                except grpc.RpcError:
                    continue
                if r.err == "OK":
                    return r.config
            time.sleep(0.1)
        raise AssertionError("no controller answered")

    def command(self, op: int, key: str, value: str = "") -> pb.CommandResponse:
        req = pb.CommandRequest(key=key, value=value, op=op, client_id=self.client_id,
                                command_id=self.command_id)
        end = time.monotonic() + self.deadline_s
        while time.monotonic() < end:
            shard = (key.encode()[0] if key else 0) % 10
            gid = self.config.shards[shard]
            if gid in self.config.groups:
                servers = list(self.config.groups[gid].servers)
                old = new = self.leader.get(gid, 0)
                while True:
                    try:
                        resp = pb_grpc.ShardKVServiceStub(self.channel(servers[new])).Command(req, timeout=2)
                    except grpc.RpcError:
                        resp = None
                    if resp is not None and resp.err in ("OK", "ErrNoKey"):
                        self.leader[gid] = new
                        self.command_id += 1
                        return resp
                    if resp is not None and resp.err == "ErrWrongGroup":
                        break
                    if resp is not None and resp.err not in ("ErrWrongLeader", "ErrTimeout"):
                        return resp           # a refusal: eRaft's clerk would retry forever
                    new = (new + 1) % len(servers)
                    if new == old:
                        break
            time.sleep(0.1)
            self.config = self.query()
        raise AssertionError(f"command {req} got no answer")

    def get(self, key: str) -> str:
        return self.command(pb.GET, key).value

    def put(self, key: str, value: str) -> None:
        assert self.command(pb.PUT, key, value).err == "OK"

    def append(self, key: str, value: str) -> None:
        assert self.command(pb.APPEND, key, value).err == "OK"


def join(controllers: list[str], gid: int, servers: list[str]) -> None:
    for _ in range(300):
        for addr in controllers:
            with grpc.insecure_channel(addr) as ch:
                try:
                    r = cpb_grpc.ShardCtrlerServiceStub(ch).Command(cpb.CommandRequest(
                        op=cpb.JOIN, servers={gid: cpb.Servers(servers=servers)},
                        client_id=gid, command_id=1), timeout=2)
                except grpc.RpcError:
                    continue
                if r.err == "OK":
                    return
        time.sleep(0.1)
    raise AssertionError("join failed")


def test_an_erafts_client_works_unchanged(sharded):  # noqa: F811
    c = sharded(gids=(100, 101), controllers=1).start()
    ctrl = c.controller_addresses()
    join(ctrl, 100, c.addresses(100))
    ck = ERaftClerk(ctrl)
    try:
        keys = [f"{chr(ord('a') + i)}key" for i in range(10)]       # one key per shard
        assert ck.command(pb.GET, keys[0]).err == "ErrNoKey"
        assert ck.get(keys[0]) == ""
        for k in keys:
            ck.put(k, "v")
            ck.append(k, "+")
        assert [ck.get(k) for k in keys] == ["v+"] * 10

        # a retried command (same client and command id) is applied once
        req = pb.CommandRequest(key=keys[1], value="!", op=pb.APPEND, client_id=ck.client_id,
                                command_id=ck.command_id)
        leader = c.wait_leader(100)
        stub = pb_grpc.ShardKVServiceStub(leader.channel())
        for _ in range(3):
            assert stub.Command(req, timeout=5).err == "OK"
        ck.command_id += 1
        assert ck.get(keys[1]) == "v+!"

        # refused input: a clear one-line answer, nothing stored
        big = stub.Command(pb.CommandRequest(key="x" * 5000, value="v", op=pb.PUT,
                                             client_id=ck.client_id, command_id=ck.command_id), timeout=5)
        assert "key of 5000 bytes is longer than the limit of 4096 bytes" in big.err
        assert ck.get("x" * 40) == ""

        st = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
        assert (st.state, st.gid, st.address) == ("Leader", 100, leader.address)
        assert st.storage_size > 0 and st.commit_index >= st.last_applied > 0 and st.term >= 1
        assert [s.shard_id for s in st.shards] == list(range(10))
        shard_of_a = ord("a") % 10
        info = {s.shard_id: s for s in st.shards}[shard_of_a]
        assert (info.status, info.keys, info.bytes) == ("Serving", 1, len("akey") + len("v+"))

        # eRaft's shard RPCs answer: data of a configuration reached, not of a future one
        follower = next(n for n in c.group(100) if n is not leader)
        fstub = pb_grpc.ShardKVServiceStub(follower.channel())
        assert fstub.GetShardsData(pb.ShardOperationRequest(config_num=1, shard_ids=[1]),
                                   timeout=5).err == "ErrWrongLeader"
        assert stub.GetShardsData(pb.ShardOperationRequest(config_num=9, shard_ids=[1]),
                                  timeout=5).err == "ErrNotReady"
        r = stub.GetShardsData(pb.ShardOperationRequest(config_num=1, shard_ids=[shard_of_a]), timeout=5)
        assert r.err == "OK" and dict(r.shards[shard_of_a].kv) == {"akey": "v+"}
        assert r.last_operations[ck.client_id].last_response.err == "OK"
        assert stub.DeleteShardsData(pb.ShardOperationRequest(config_num=0, shard_ids=[shard_of_a]),
                                     timeout=5).err == "OK"      # an old configuration: done already
        assert ck.get("akey") == "v+"

        # a join moves half the shards; the eRaft client follows and finds every value
        join(ctrl, 101, c.addresses(101))
        for k in keys:
            ck.append(k, "#")
        assert [ck.get(k) for k in keys] == ["v+#", "v+!#"] + ["v+#"] * 8

        # our own eRaft-protocol clerk (bench --unary) sees the same data and refuses at once
        asyncio.run(unary_clerk_round(ctrl, keys))
    finally:
        ck.close()


async def unary_clerk_round(ctrl, keys):
    channels = {}
    async with ControllerClient(ctrl) as ctl:
        try:
            kv = UnaryClerk(ctl, channels, timeout=30)
            assert [await kv.get(k) for k in keys] == ["v+#", "v+!#"] + ["v+#"] * 8
            assert await kv.get("no such key") is None
            await kv.put(keys[0], "u")
            await kv.append(keys[0], "1")
            assert await kv.get(keys[0]) == "u1"
            sent = kv.command_id
            with pytest.raises(ShardKVError, match="key of 5000 bytes is longer than the limit"):
                await kv.put("k" * 5000, "v")
            assert kv.command_id == sent          # refused before a command id was spent
            # one clerk used by many coroutines at once: eRaft's one command in flight per
            # client id holds (it runs them one by one: a later id overtaking an earlier one
            # would make the group answer the earlier OK as a duplicate, unapplied)
            calls, out = kv._call, [0, 0]          # in flight now, most ever

            async def counted(*a, **kw):
                out[0] += 1
                out[1] = max(out)
                try:
                    return await calls(*a, **kw)
                finally:
                    out[0] -= 1
            kv._call = counted
            await asyncio.gather(*(kv.append(keys[1], f"<{i}>") for i in range(12)))
            got = await kv.get(keys[1])
            assert all(got.count(f"<{i}>") == 1 for i in range(12)), got
            assert out[1] == 1, f"{out[1]} commands of one client id were in flight at once"
        finally:
            for ch in channels.values():
                await ch.close()
