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

Unlike eRaft's clerk it does not wait for a round of time-outs to notice that a group has
left: a call still unanswered after `check_after` seconds makes it look at the latest
configuration (ControllerClient.latest: one query in flight, shared, spaced out), and when
that gives the shard to another group (or the group other servers) the call is abandoned and
the command, with the same ids, goes to the shard's current owner.  That is safe for the
reason the Clerk's docstring gives: the shard's session table travels with its data, so the
command is applied once, by whichever group serves the shard when it arrives.

Every operation ends within `timeout`: each call's deadline is min(call_timeout, what
remains), pauses are cut at the deadline, configuration queries get what remains.  Keys and
values over the limits raise ShardKVError before anything is sent (eRaft's clerk would retry
them forever); other refusals raise it with the server's message.  Channels come from the
caller's dict (advertised address -> channel, opened to `dial(address)`), so many UnaryClerks
share one channel per server; the caller closes them.
"""
from __future__ import annotations

import asyncio
import random
from typing import Callable

import grpc

from .._pb import shardkv_pb2 as pb
from .._pb import shardkv_pb2_grpc as pb_grpc
from ..controller.client import ControllerClient, ControllerUnavailable, err_words
from ..controller.state import Config
from ..errors import rpc_problem
from ..tls import TlsFiles, channel
from .clerk import (_OP_NAMES, CHECK_AFTER_S, ShardKVError, ShardKVUnavailable, _channel_options,
                    _show)
from .state import (APPEND, ERR_NO_KEY, ERR_TIMEOUT, ERR_WRONG_GROUP, ERR_WRONG_LEADER, GET, OK,
                    PUT, Limits, key2shard)

RETRY_PAUSE_S = 0.05          # between two rounds over a group's servers, as eRaft's clerk


class UnaryClerk:
    def __init__(self, ctl: ControllerClient, channels: dict[str, grpc.aio.Channel],
                 timeout: float = 30.0, call_timeout: float = 3.0, config: Config | None = None,
                 limits: Limits = Limits(), dial: Callable[[str], str] | None = None,
                 check_after: float = CHECK_AFTER_S, tls: TlsFiles | None = None) -> None:
        self.ctl = ctl
        self.channels = channels
        self.timeout = timeout
        self.call_timeout = call_timeout
        self.limits = limits
        self.dial = dial or (lambda a: a)
        self.tls = tls
        self.check_after = check_after
        self.client_id = random.SystemRandom().randrange(1, 1 << 62)
        self.command_id = 0
        self.config = config
        self.leaders: dict[int, int] = {}
        self._one = asyncio.Lock()
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.ShardKVServiceStub]] = {}

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
            ch = self.channels[addr] = channel(self.dial(addr), self.tls, _channel_options(),
                                               name=addr)
        known = self._stubs.get(addr)
        if known is None or known[0] is not ch:      # (the caller may replace a channel)
            known = self._stubs[addr] = (ch, pb_grpc.ShardKVServiceStub(ch))
        return known[1]

    async def _latest(self, seen: int, deadline: float) -> Config:
        loop = asyncio.get_running_loop()
        try:
            cfg = await self.ctl.latest(seen, timeout=max(0.0, deadline - loop.time()))
        except ControllerUnavailable as e:
            raise ShardKVUnavailable(f"cannot get the configuration: {e}") from None
        if self.config is None or cfg.num > self.config.num:
            self.config = cfg
        return self.config

    async def _call(self, addr: str, req: pb.CommandRequest, deadline: float, cfg: Config,
                    gid: int, shard: int) -> pb.CommandResponse | None:
        """One Command call; None when, while it was slow, the configuration moved the shard
        away from `gid` or changed gid's servers (the call is then abandoned)."""
        loop = asyncio.get_running_loop()
        # no task around the call, no asyncio.wait: a timer starts the check only for a call
        # that is slow (a lone operation's client side is most of its cost)
        call = self._stub(addr).Command(
            req, timeout=max(0.001, min(self.call_timeout, deadline - loop.time())))
        check: asyncio.Task | None = None
        moved = False

        def judge(t: asyncio.Task) -> None:
            nonlocal moved
            if t.cancelled() or t.exception() is not None or call.done():
                return
            new = t.result()
            if new.shards[shard] != gid or new.groups.get(gid) != cfg.groups.get(gid):
                moved = True
                call.cancel()

        def suspect() -> None:
            nonlocal check
            check = asyncio.ensure_future(self._latest(cfg.num, deadline))
            check.add_done_callback(judge)
        timer = loop.call_later(self.check_after, suspect)
        try:
            return await call
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if moved and not (me is not None and me.cancelling()):
                return None
            raise
        finally:
            timer.cancel()
            if not call.done():
                call.cancel()
            if check is not None and not check.done():
                check.cancel()

    async def _do(self, op: int, key: str, value: str) -> tuple[str, str]:
        # one command at a time, as eRaft's clerk: a second command sent while one is out would
        # move this client id's session past it, and the group would then answer the first
        # OK (a duplicate by its id) without applying it
        async with self._one:
            return await self._command(op, key, value)

    async def _command(self, op: int, key: str, value: str) -> tuple[str, str]:
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

        def gave_up() -> ShardKVUnavailable:
            return ShardKVUnavailable(f"{_OP_NAMES[op]} {_show(key.encode())} (shard {shard}) "
                                      f"got no answer within {self.timeout:g}s; last: {last}")
        cfg = self.config or await self._latest(-1, deadline)
        while True:
            gid = cfg.shards[shard]
            servers = cfg.groups.get(gid, ())
            if not servers:
                last = f"configuration {cfg.num} gives shard {shard} to no group"
            first = self.leaders.get(gid, 0)
            for i in range(len(servers)):
                idx = (first + i) % len(servers)
                if deadline - loop.time() <= 0:
                    break
                try:
                    r = await self._call(servers[idx], req, deadline, cfg, gid, shard)
                except grpc.aio.AioRpcError as e:
                    last = f"group {gid}: {servers[idx]}: {rpc_problem(e, self.tls is not None)}"
                    continue
                if r is None:
                    last = f"group {gid}: {servers[idx]}: no answer in time (the shard moved)"
                    break
                if r.err in (OK, ERR_NO_KEY):
                    self.leaders[gid] = idx
                    return r.err, r.value
                last = f"group {gid}: {servers[idx]}: {err_words(r.err)}"
                if r.err == ERR_WRONG_GROUP:
                    break
                if r.err not in (ERR_WRONG_LEADER, ERR_TIMEOUT):
                    raise ShardKVError(f"{_OP_NAMES[op]} {_show(key.encode())}: {r.err}")
            if loop.time() >= deadline:
                raise gave_up()
            await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - loop.time())))
            # eRaft's clerk: ask for the latest configuration and go again
            try:
                cfg = await self._latest(cfg.num, deadline)
            except ShardKVUnavailable:
                if loop.time() < deadline:
                    raise
                raise gave_up() from None
