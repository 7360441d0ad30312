"""UnaryClerk: eRaft's clerk protocol, one ShardKVService.Command call per operation.

    async with ControllerClient(controllers) as ctl:
        kv = UnaryClerk(ctl, channels={})
        await kv.put("k", "v"); assert await kv.get("k") == "v"

It behaves as eRaft's own clerk does: one client id, one command in flight (so the server's
"highest applied command id per client" dedup rule is exact), route by key2shard with the
controllers' latest configuration, try the group's servers in turn starting with the one that
answered last, ask for the latest configuration again after ErrWrongGroup or a full round of
failures, all within `timeout`.  It exists to measure and exercise the eRaft-compatible path
(`bench --unary`, benchmarks/shardkv_bench.py); our own pipelining path is the Clerk.

Keys and values over the limits raise ShardKVError before anything is sent (eRaft's clerk
would retry them forever); other refusals raise it with the server's message.  Channels come
from the caller's dict (address -> channel), so many UnaryClerks share one channel per server;
the caller closes them.
"""
from __future__ import annotations

import asyncio
import random

import grpc

from .._pb import shardkv_pb2 as pb
from .._pb import shardkv_pb2_grpc as pb_grpc
from ..controller.client import ControllerClient, ControllerUnavailable
from ..controller.state import Config
from .clerk import _OP_NAMES, ShardKVError, ShardKVUnavailable, _channel_options, _show
from .state import (APPEND, ERR_NO_KEY, ERR_TIMEOUT, ERR_WRONG_GROUP, ERR_WRONG_LEADER, GET, OK,
                    PUT, Limits, key2shard)

RETRY_PAUSE_S = 0.05          # between two rounds over a group's servers, as eRaft's clerk


class UnaryClerk:
    def __init__(self, ctl: ControllerClient, channels: dict[str, grpc.aio.Channel],
                 timeout: float = 30.0, call_timeout: float = 3.0, config: Config | None = None,
                 limits: Limits = Limits()) -> None:
        self.ctl = ctl
        self.channels = channels
        self.timeout = timeout
        self.call_timeout = call_timeout
        self.limits = limits
        self.client_id = random.SystemRandom().randrange(1, 1 << 62)
        self.command_id = 0
        self.config = config
        self.leaders: dict[int, int] = {}

    async def get(self, key: str) -> str | None:
        """The value of key, or None when it has none (linearizable)."""
        err, value = await self._do(GET, key, "")
        return None if err == ERR_NO_KEY else value

    async def put(self, key: str, value: str) -> None:
        await self._do(PUT, key, value)

    async def append(self, key: str, value: str) -> None:
        await self._do(APPEND, key, value)

    def _stub(self, addr: str) -> pb_grpc.ShardKVServiceStub:
        ch = self.channels.get(addr)
        if ch is None:
            ch = self.channels[addr] = grpc.aio.insecure_channel(addr, options=_channel_options())
        return pb_grpc.ShardKVServiceStub(ch)

    async def _do(self, op: int, key: str, value: str) -> tuple[str, str]:
        problem = self.limits.refuse(op, key.encode(), value.encode())
        if problem:
            raise ShardKVError(f"{_OP_NAMES[op]} {_show(key.encode())}: {problem}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if op != GET:
            self.command_id += 1
        req = pb.CommandRequest(key=key, value=value, op=op, client_id=self.client_id,
                                command_id=self.command_id)
        shard = key2shard(key.encode())
        last = "no group asked yet"
        while True:
            try:
                cfg = self.config = self.config or await self.ctl.query()
            except ControllerUnavailable as e:
                raise ShardKVUnavailable(f"cannot get the configuration: {e}") from None
            gid = cfg.shards[shard]
            servers = cfg.groups.get(gid, ())
            if not servers:
                last = f"configuration {cfg.num} gives shard {shard} to no group"
            first = self.leaders.get(gid, 0)
            for i in range(len(servers)):
                idx = (first + i) % len(servers)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    r = await self._stub(servers[idx]).Command(
                        req, timeout=min(self.call_timeout, remaining))
                except grpc.aio.AioRpcError as e:
                    last = f"{servers[idx]}: {e.code().name}"
                    continue
                if r.err in (OK, ERR_NO_KEY):
                    self.leaders[gid] = idx
                    return r.err, r.value
                last = f"{servers[idx]}: {r.err}"
                if r.err == ERR_WRONG_GROUP:
                    break
                if r.err not in (ERR_WRONG_LEADER, ERR_TIMEOUT):
                    raise ShardKVError(f"{_OP_NAMES[op]} {_show(key.encode())}: {r.err}")
            if loop.time() >= deadline:
                raise ShardKVUnavailable(f"{_OP_NAMES[op]} {_show(key.encode())} (shard {shard}) "
                                         f"got no answer within {self.timeout:g}s; last: {last}")
            await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - loop.time())))
            self.config = None                  # eRaft's clerk: ask for the latest and go again
