"""Hostile input to a running shardkv group (issue 17), on real processes: an append that
would make a value longer than max_value_bytes is refused when it applies (native path,
eRaft's unary path, the shell), and eRaft command ids below 0 are refused (shardkv and
controller) instead of being answered OK and never applied."""
from __future__ import annotations

import asyncio
import os
import subprocess

import pytest
from skv_support import key_in, sharded, skv_status  # noqa: F401

from eraftd._pb import shardctrler_pb2 as cpb
from eraftd._pb import shardctrler_pb2_grpc as cpb_grpc
from eraftd._pb import shardkv_pb2 as pb
from eraftd._pb import shardkv_pb2_grpc as pb_grpc
from eraftd.controller.client import ControllerClient
from eraftd.shardkv.clerk import Clerk, ShardKVError
from eraftd.testing import eraftd_command, wait_for

pytestmark = pytest.mark.e2e

G = 100
LIMIT = 64


def shard_bytes(node, shard: int) -> tuple[int, int]:
    info = {s.shard_id: s for s in skv_status(node).shards}[shard]
    return info.keys, info.bytes


def unary(c, req: pb.CommandRequest) -> pb.CommandResponse:
    """One Command at the group's leader, again while it is not (yet) the leader."""
    def attempt():
        r = pb_grpc.ShardKVServiceStub(c.wait_leader(G).channel()).Command(req, timeout=5)
        return r if r.err not in ("ErrWrongLeader", "ErrTimeout", "ErrWrongGroup") else None
    return wait_for(attempt, 60, f"an answer to {req.op} {req.key}")


async def test_an_append_past_max_value_bytes_is_refused_on_every_path(sharded):  # noqa: F811
    c = sharded(gids=(G,), controllers=1, shardkv={"max_value_bytes": LIMIT}).start()
    ctl_addrs = c.controller_addresses()
    async with ControllerClient(ctl_addrs, total_timeout=60) as ctl:
        await ctl.join({G: c.addresses(G)})
    k = key_in(3, "big")
    async with Clerk(ctl_addrs, total_timeout=60) as kv:
        await kv.put(k, b"x" * 60)
        with pytest.raises(ShardKVError) as e:                       # the native batch path
            await kv.append(k, b"y" * 10)
        assert str(e.value) == (f"append {k.decode()}: the value would grow to 70 bytes (60 held "
                                f"+ 10 appended), longer than the limit of {LIMIT} bytes "
                                f"(max_value_bytes); nothing stored")
        await kv.append(k, b"y" * 4)                                 # exactly at the bound
        assert await kv.get(k) == b"x" * 60 + b"y" * 4

    # eRaft's unary Command: the same refusal, as its err string; nothing stored
    r = unary(c, pb.CommandRequest(key=k.decode(), value="z", op=pb.APPEND, client_id=5,
                                   command_id=0))
    assert r.err.startswith("the value would grow to 65 bytes") and "\n" not in r.err

    # the shell: one plain line, exit 1
    p = await asyncio.to_thread(shell, ctl_addrs, "append", k.decode(), "more")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == (f"eraftd: append {k.decode()}: the value would grow to 68 bytes (64 held "
                        f"+ 4 appended), longer than the limit of {LIMIT} bytes (max_value_bytes); "
                        f"nothing stored\n")

    # every replica applied the same: one key of len(k) + 64 bytes
    want = (1, len(k) + 64)
    wait_for(lambda: all(shard_bytes(n, 3) == want for n in c.group(G)), 60,
             "every replica to hold the same shard 3")


async def test_command_ids_below_zero_are_refused_and_zero_is_erafts_first(sharded):  # noqa: F811
    c = sharded(gids=(G,), controllers=1).start()
    ctl_addrs = c.controller_addresses()
    async with ControllerClient(ctl_addrs, total_timeout=60) as ctl:
        await ctl.join({G: c.addresses(G)})
    k = key_in(4, "ids").decode()

    def cmd(op: int, cid: int, value: str = "", client: int = 77) -> pb.CommandResponse:
        return unary(c, pb.CommandRequest(key=k, value=value, op=op, client_id=client,
                                          command_id=cid))
    for cid in (-1, -2):               # was: both OK, the second never applied
        r = cmd(pb.PUT, cid, f"v{cid}")
        assert r.err == (f"command id {cid} is below 0: number a client's commands 0, 1, 2, ... "
                         f"(as eRaft's clerk does); nothing changed")
    assert cmd(pb.GET, 0).err == "ErrNoKey"
    # eRaft's clerk starts at 0: applied once, however often it is sent again
    for _ in range(3):
        assert cmd(pb.APPEND, 0, "a").err == "OK"
    assert cmd(pb.APPEND, 1, "b").err == "OK"
    assert (cmd(pb.GET, 2).err, cmd(pb.GET, 2).value) == ("OK", "ab")

    # the controller's Command: the same rule
    leader = c.wait_leader(0)
    stub = cpb_grpc.ShardCtrlerServiceStub(leader.channel())
    join = cpb.CommandRequest(op=cpb.JOIN, servers={7: cpb.Servers(servers=["127.0.0.1:1"])},
                              client_id=9, command_id=-1, force=True)
    r = stub.Command(join, timeout=10)
    assert r.err == ("command id -1 is below 0: number a client's commands 0, 1, 2, ... "
                     "(as eRaft's clerk does); nothing changed")
    r = stub.Command(cpb.CommandRequest(op=cpb.QUERY, num=-1), timeout=10)
    assert r.err == "OK" and 7 not in r.config.groups

    # a join of a server that is not HOST:PORT (item 10), from the shell: one plain line, exit 1
    p = await asyncio.to_thread(shell, ctl_addrs, "join", "7=not an address at all")
    assert p.returncode == 1 and p.stderr == (
        "eraftd: refused by the controller: join: gid 7: server 'not an address at all' is not an address: give HOST:PORT "
        "with a port in 1-65535, at most 261 characters\n")


def shell(controllers: list[str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ERAFT_CONTROLLERS": ",".join(controllers)}
    return subprocess.run(eraftd_command() + list(args), capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)
