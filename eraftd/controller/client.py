"""ControllerClient: the async client of the shard controller (used by shardkv, the shell, tests).

    async with ControllerClient(["127.0.0.1:7001", "127.0.0.1:7002"]) as ctl:
        await ctl.join({100: ["127.0.0.1:7101"]})
        cfg = await ctl.query()

Finds the leader (following the "leader" hint a follower sends) and caches it; retries
ErrWrongLeader, ErrTimeout and unreachable peers with back-off, within `total_timeout` per
call, then raises ControllerUnavailable naming the addresses it tried.  A command the
controller refuses (bad input) raises ControllerError with the controller's message.  Like
eRaft's clerk it has its own random client id and numbers its commands, one in flight at a
time, so a retried command is applied once.
"""
from __future__ import annotations

import asyncio
import itertools
import random
from typing import Iterable, Mapping, Sequence

import grpc

from .._pb import shardctrler_pb2 as pb
from .._pb import shardctrler_pb2_grpc as pb_grpc
from ..errors import Refused, Unavailable
from .machine import (ERR_TIMEOUT, ERR_WRONG_LEADER, LEADER_METADATA_KEY, command_to_pb,
                      config_from_pb)
from .state import OK, Command, Config, Join, Leave, Move, Op

_RETRYABLE = (ERR_WRONG_LEADER, ERR_TIMEOUT)


class ControllerError(Refused):
    """The controller refused the command; the message is its answer."""


class ControllerUnavailable(Unavailable):
    """No controller leader answered within the time allowed."""


class ControllerClient:
    def __init__(self, addresses: Sequence[str], total_timeout: float = 30.0,
                 call_timeout: float = 3.0, client_id: int | None = None,
                 backoff: tuple[float, float] = (0.02, 0.5)) -> None:
        if not addresses:
            raise ValueError("ControllerClient needs at least one controller address")
        self.addresses = list(dict.fromkeys(addresses))
        self.total_timeout = total_timeout
        self.call_timeout = call_timeout
        self.client_id = client_id or random.SystemRandom().randrange(1, 1 << 63)
        self._ids = itertools.count(1)
        self._backoff = backoff
        self._leader: str | None = None
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.ShardCtrlerServiceStub]] = {}
        self._lock = asyncio.Lock()          # one command in flight per client id

    async def __aenter__(self) -> "ControllerClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        stubs, self._stubs = self._stubs, {}
        for ch, _ in stubs.values():
            await ch.close()

    @property
    def leader(self) -> str | None:
        """The address believed to lead, if any."""
        return self._leader

    # ---------------------------------------------------------------- the API
    async def join(self, groups: Mapping[int, Iterable[str]]) -> Config:
        """Add groups (gid -> servers); the latest configuration once it applied."""
        return await self._command(Join({g: tuple(s) for g, s in groups.items()}))

    async def leave(self, gids: Iterable[int]) -> Config:
        return await self._command(Leave(tuple(gids)))

    async def move(self, shard: int, gid: int) -> Config:
        return await self._command(Move(shard, gid))

    async def query(self, num: int = -1) -> Config:
        """Configuration `num` (-1: the latest), read linearizably from the leader."""
        resp = await self._call(pb.CommandRequest(op=pb.QUERY, num=num))
        return config_from_pb(resp.config)

    async def status(self, address: str, timeout: float | None = None) -> pb.GetStatusResponse:
        """One peer's GetStatus (no retries)."""
        return await self._stub(address).GetStatus(pb.GetStatusRequest(),
                                                   timeout=timeout or self.call_timeout)

    # ---------------------------------------------------------------- plumbing
    async def _command(self, op: Op) -> Config:
        async with self._lock:
            cmd = Command(op, self.client_id, next(self._ids))
            resp = await self._call(command_to_pb(cmd))
        return config_from_pb(resp.config)

    def _stub(self, addr: str) -> pb_grpc.ShardCtrlerServiceStub:
        entry = self._stubs.get(addr)
        if entry is None:
            ch = grpc.aio.insecure_channel(addr)
            entry = self._stubs[addr] = (ch, pb_grpc.ShardCtrlerServiceStub(ch))
        return entry[1]

    async def _call(self, req: pb.CommandRequest) -> pb.CommandResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        delay, max_delay = self._backoff
        # the cached leader first, then every address in turn
        first = self.addresses.index(self._leader) if self._leader in self.addresses else 0
        rotation = itertools.cycle(self.addresses[first:] + self.addresses[:first])
        addr = self._leader if self._leader and self._leader not in self.addresses else next(rotation)
        tried: list[str] = []
        last = "no answer"
        followed_hint = False
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ControllerUnavailable(
                    f"no controller leader answered within {self.total_timeout:g}s; tried "
                    f"{', '.join(tried)} (last: {last})")
            if addr not in tried:
                tried.append(addr)
            hint = ""
            try:
                call = self._stub(addr).Command(req, timeout=min(self.call_timeout, remaining))
                resp = await call
                if resp.err == ERR_WRONG_LEADER:
                    hint = dict(await call.trailing_metadata() or ()).get(LEADER_METADATA_KEY, "")
            except grpc.aio.AioRpcError as e:
                last = f"{addr}: {e.code().name}"
            else:
                if resp.err not in _RETRYABLE:
                    self._leader = addr
                    if resp.err != OK:
                        raise ControllerError(resp.err)
                    return resp
                last = f"{addr}: {resp.err}" + (f" (leader: {hint})" if hint else "")
            if self._leader == addr:
                self._leader = None
            if hint and hint != addr and not followed_hint:
                addr, followed_hint = hint, True     # straight to the leader it named
                continue
            # no usable hint (or hints going round in circles): back off, then the next one
            followed_hint = False
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, max_delay)
            addr = hint if hint and hint != addr else next(rotation)
