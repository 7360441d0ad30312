"""ControllerClient: the async client of the shard controller (used by shardkv, the shell, tests).

    async with ControllerClient(["127.0.0.1:7001", "127.0.0.1:7002"]) as ctl:
        await ctl.join({100: ["127.0.0.1:7101"]})
        cfg = await ctl.query()
        cfg = await ctl.latest(cfg.num)     # routing: the cached latest, or one shared query

Finds the leader (following the "leader" hint a follower sends) and caches it; retries
ErrWrongLeader, ErrTimeout and unreachable peers with back-off, within `total_timeout` per
call (or the `timeout` given to the call), then raises ControllerUnavailable naming the
addresses it tried.  Every call ends within its time: each RPC's deadline is
min(call_timeout, what remains), the back-off sleeps are cut at the deadline, and the wait
for the one-command-at-a-time lock counts too.  A command the controller refuses (bad
input) raises ControllerError with the controller's message.  Like eRaft's clerk it has its
own random client id and numbers its commands, one in flight at a time, so a retried
command is applied once.

An address that answers "unimplemented" is not a controller (a shardkv-only node, or some
other gRPC server): it is asked what it is (ShardKVService.GetStatus gives its gid) and
skipped; once every address has answered like that the call raises NotAController at once,
e.g. "127.0.0.1:7001 is not a controller (it serves group 101 only): give the controller
addresses".

`dial` (optional) maps the address to connect to from the one advertised (a node's
[node.dial] table, config.NodeConfig.dial_address); messages name the advertised address.
"""
from __future__ import annotations

import asyncio
import itertools
import random
from typing import Callable, Iterable, Mapping, Sequence

import grpc

from .._pb import shardctrler_pb2 as pb
from .._pb import shardctrler_pb2_grpc as pb_grpc
from .._pb import shardkv_pb2 as skvpb
from .._pb import shardkv_pb2_grpc as skvpb_grpc
from ..errors import Denied, Refused, Unavailable, denied, rpc_problem
from ..node.transport import channel_options
from ..tls import TlsFiles, channel
from .machine import (ERR_TIMEOUT, ERR_WRONG_LEADER, LEADER_METADATA_KEY, command_to_pb,
                      config_from_pb)
from .state import OK, Abandon, Command, Config, Join, Leave, Move, Op, SetServers

_RETRYABLE = (ERR_WRONG_LEADER, ERR_TIMEOUT)
PROBE_TIMEOUT_S = 1.0          # asking a non-controller what it is

# eRaft's error strings as the clients' messages say them (gRPC statuses: errors.rpc_problem)
_ERR_WORDS = {ERR_WRONG_LEADER: "not the leader", ERR_TIMEOUT: "no result in time",
              "ErrWrongGroup": "does not serve that shard", "ErrNotReady": "not ready",
              "ErrOutDated": "out of date"}


def err_words(err: str) -> str:
    """An eRaft error string ("ErrWrongLeader", ...) in plain words; other text as it is."""
    return _ERR_WORDS.get(err, err)


class ControllerError(Refused):
    """The controller refused the command; the message is its answer."""


class ControllerUnavailable(Unavailable):
    """No controller leader answered within the time allowed."""


class NotAController(ControllerUnavailable):
    """Every address given answered, but none is a controller; the message says what each is."""


def _retrieved(t: asyncio.Task) -> None:
    if not t.cancelled():
        t.exception()


class ControllerClient:
    def __init__(self, addresses: Sequence[str], total_timeout: float = 30.0,
                 call_timeout: float = 3.0, client_id: int | None = None,
                 backoff: tuple[float, float] = (0.02, 0.5),
                 dial: Callable[[str], str] | None = None, tls: TlsFiles | None = None) -> None:
        if not addresses:
            raise ValueError("ControllerClient needs at least one controller address")
        self.addresses = list(dict.fromkeys(addresses))
        self.total_timeout = total_timeout
        self.call_timeout = call_timeout
        self.client_id = client_id or random.SystemRandom().randrange(1, 1 << 63)
        self.dial = dial or (lambda a: a)
        self.tls = tls                  # the TLS files of every channel (None: plaintext)
        self._last_problem = ""         # the last failed call's answer, in words
        self._ids = itertools.count(1)
        self._backoff = backoff
        self.cluster_id = 0                  # the cluster id the controllers answered with (0: none yet)
        self._leader: str | None = None
        self._channels: dict[str, tuple[grpc.aio.Channel, pb_grpc.ShardCtrlerServiceStub]] = {}
        self._lock = asyncio.Lock()          # one command in flight per client id
        self._strangers: dict[str, str] = {}  # address -> what it is instead of a controller
        # latest(): the newest configuration seen, the one query in flight, its spacing
        self._latest: Config | None = None
        self._query: asyncio.Task | None = None
        self._query_deadline = 0.0
        self._gap = backoff[0]
        self._next_query = 0.0

    async def __aenter__(self) -> "ControllerClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._query is not None:
            self._query.cancel()
            await asyncio.gather(self._query, return_exceptions=True)
        chans, self._channels = self._channels, {}
        for ch, _ in chans.values():
            await ch.close()

    @property
    def leader(self) -> str | None:
        """The address believed to lead, if any."""
        return self._leader

    @property
    def cached(self) -> Config | None:
        """The newest configuration this client has seen (None before the first)."""
        return self._latest

    # ---------------------------------------------------------------- the API
    async def join(self, groups: Mapping[int, Iterable[str]], timeout: float | None = None,
                   force: bool = False) -> Config:
        """Add groups (gid -> servers); the latest configuration once it applied.  The
        controller first asks each new group's servers whether they answer as that gid and
        refuses when none does (ControllerError); `force` skips that."""
        return await self._command(Join({g: tuple(s) for g, s in groups.items()}), timeout, force)

    async def leave(self, gids: Iterable[int], timeout: float | None = None) -> Config:
        return await self._command(Leave(tuple(gids)), timeout)

    async def move(self, shard: int, gid: int, timeout: float | None = None) -> Config:
        return await self._command(Move(shard, gid), timeout)

    async def set_servers(self, gid: int, servers: Iterable[str], timeout: float | None = None) -> Config:
        """Give present gid `gid` the server list `servers`, its shards unchanged (after its
        replica group changed members); the latest configuration once it applied.  A
        controller older than the command refuses it as an unknown op (ControllerError)."""
        return await self._command(SetServers(gid, tuple(servers)), timeout)

    async def abandon(self, shards: Iterable[int], timeout: float | None = None) -> Config:
        """Give up the data of shards whose previous owner is lost for good: their owner serves
        them empty (refused while that previous owner still answers)."""
        return await self._command(Abandon(tuple(shards)), timeout)

    async def query(self, num: int = -1, timeout: float | None = None) -> Config:
        """Configuration `num` (-1: the latest), read linearizably from the leader."""
        resp = await self._call(pb.CommandRequest(op=pb.QUERY, num=num), self._deadline(timeout),
                                self._said(timeout))
        cfg = config_from_pb(resp.config)
        return self._saw(cfg) if num == -1 else cfg

    async def latest(self, newer_than: int = -1, timeout: float | None = None) -> Config:
        """For routing: the newest configuration seen if its number is above `newer_than`,
        else the controllers' latest (which may be no newer).  Every caller shares one query
        in flight; while the answers bring nothing new, queries are spaced out (back-off up
        to backoff[1]): a caller in the gap waits for its end, so a caller that loops on
        latest() is paced by it.  Ends within `timeout` (default total_timeout), with the
        cached configuration if time runs out in the gap."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline(timeout)
        while True:
            cached = self._latest
            if cached is not None and cached.num > newer_than:
                return cached
            if self._query is None:
                gap = self._next_query - loop.time()
                if cached is not None and gap > 0:      # asked a moment ago: wait, then ask
                    remaining = deadline - loop.time()
                    await asyncio.sleep(max(0.0, min(gap, remaining)))
                    if gap >= remaining:
                        return cached                    # out of time: what we have
                    continue                             # someone may have asked meanwhile
                self._query_deadline = deadline
                self._query = loop.create_task(self._query_latest(deadline, self._said(timeout)))
                # its waiters may all have given up (their own deadlines) before it fails:
                # its outcome is theirs to see, never asyncio's "exception never retrieved"
                self._query.add_done_callback(_retrieved)
            task, task_deadline = self._query, self._query_deadline
            try:
                return await asyncio.wait_for(asyncio.shield(task),
                                              max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise ControllerUnavailable(
                    f"no controller leader answered within {self._said(timeout):g}s; asked "
                    f"{', '.join(self.addresses)}"
                    + (f" (last: {self._last_problem})" if self._last_problem else "")) from None
            except ControllerUnavailable as e:
                # the shared query ran out of its starter's time: go on if ours remains
                if isinstance(e, NotAController) or task_deadline >= deadline - 1e-3:
                    raise

    async def status(self, address: str, timeout: float | None = None) -> pb.GetStatusResponse:
        """One peer's GetStatus (no retries)."""
        return await self._stub(address).GetStatus(pb.GetStatusRequest(),
                                                   timeout=timeout or self.call_timeout)

    # ---------------------------------------------------------------- plumbing
    def _said(self, timeout: float | None) -> float:
        return self.total_timeout if timeout is None else timeout

    def _deadline(self, timeout: float | None) -> float:
        return asyncio.get_running_loop().time() + self._said(timeout)

    def _saw(self, cfg: Config) -> Config:
        if self._latest is None or cfg.num > self._latest.num:
            self._latest = cfg
        return cfg

    async def _query_latest(self, deadline: float, said: float) -> Config:
        loop = asyncio.get_running_loop()
        try:
            before = self._latest.num if self._latest is not None else -1
            resp = await self._call(pb.CommandRequest(op=pb.QUERY, num=-1), deadline, said)
            cfg = self._saw(config_from_pb(resp.config))
            # nothing new: ask less often; something new: ask freely again
            self._gap = self._backoff[0] if cfg.num > before else min(self._gap * 2, self._backoff[1])
            self._next_query = loop.time() + self._gap
            return self._latest
        finally:
            self._query = None

    async def _command(self, op: Op, timeout: float | None, force: bool = False) -> Config:
        deadline = self._deadline(timeout)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(self._lock.acquire(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise ControllerUnavailable(
                f"no controller leader answered within {self._said(timeout):g}s (another command of "
                f"this client was still waiting for its answer)") from None
        try:
            cmd = Command(op, self.client_id, next(self._ids))
            req = command_to_pb(cmd)
            req.force = force
            resp = await self._call(req, deadline, self._said(timeout))
        finally:
            self._lock.release()
        return self._saw(config_from_pb(resp.config))

    def _channel(self, addr: str) -> tuple[grpc.aio.Channel, pb_grpc.ShardCtrlerServiceStub]:
        entry = self._channels.get(addr)
        if entry is None:
            # a bounded reconnect back-off: with gRPC's default (up to 2 minutes), a controller
            # back after a minute down went unseen for 50 s more (a shardkv group's poll too)
            ch = channel(self.dial(addr), self.tls, channel_options(), name=addr)
            entry = self._channels[addr] = (ch, pb_grpc.ShardCtrlerServiceStub(ch))
        return entry

    def _stub(self, addr: str) -> pb_grpc.ShardCtrlerServiceStub:
        return self._channel(addr)[1]

    async def _what_is(self, addr: str, deadline: float) -> str:
        """What an address that does not serve the controller service is, in words."""
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            st = await skvpb_grpc.ShardKVServiceStub(self._channel(addr)[0]).GetStatus(
                skvpb.GetStatusRequest(), timeout=max(0.01, min(PROBE_TIMEOUT_S, remaining)))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                return "it answers gRPC but is not an eraftd node"
            return "it does not offer the controller service"
        return f"it serves group {st.gid} only"

    async def _call(self, req: pb.CommandRequest, deadline: float,
                    said: float) -> pb.CommandResponse:
        """Send req until a leader answers, by `deadline`; `said` is the timeout to name."""
        loop = asyncio.get_running_loop()
        delay, max_delay = self._backoff
        # the cached leader first, then every address in turn (skipping known non-controllers)
        first = self.addresses.index(self._leader) if self._leader in self.addresses else 0
        order = self.addresses[first:] + self.addresses[:first]
        position = itertools.count()

        def next_addr() -> str:
            for _ in range(len(order)):
                a = order[next(position) % len(order)]
                if a not in self._strangers:
                    return a
            return order[0]
        addr = self._leader if self._leader and self._leader not in self.addresses else next_addr()
        tried: list[str] = []
        last = "no answer"
        followed_hint = False
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ControllerUnavailable(
                    f"no controller leader answered within {said:g}s; tried "
                    f"{', '.join(tried) or 'nothing'} (last: {last})")
            if addr not in tried:
                tried.append(addr)
            hint = ""
            try:
                call = self._stub(addr).Command(req, timeout=min(self.call_timeout, remaining))
                resp = await call
                if resp.err == ERR_WRONG_LEADER:
                    hint = dict(await call.trailing_metadata() or ()).get(LEADER_METADATA_KEY, "")
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self._strangers[addr] = await self._what_is(addr, deadline)
                    if all(a in self._strangers for a in self.addresses):
                        found, self._strangers = self._strangers, {}    # the next call asks again
                        raise NotAController(
                            "; ".join(f"{a} is not a controller ({found[a]})"
                                      for a in self.addresses) + ": give the controller addresses")
                    addr = next_addr()                   # skip it, at once
                    continue
                if (why := denied(e)) is not None:
                    raise Denied(why) from None
                last = f"{addr}: {rpc_problem(e, self.tls is not None)}"
            else:
                if resp.err not in _RETRYABLE:
                    self._leader = addr
                    if resp.cluster_id:
                        self.cluster_id = resp.cluster_id     # eraftd/node/cluster.py
                    if resp.err != OK:
                        raise ControllerError(resp.err)
                    return resp
                last = f"{addr}: {err_words(resp.err)}" + (f" (leader: {hint})" if hint else "")
            self._last_problem = last           # for a caller that gives up before this ends
            if self._leader == addr:
                self._leader = None
            if hint and hint != addr and not followed_hint:
                addr, followed_hint = hint, True     # straight to the leader it named
                continue
            # no usable hint (or hints going round in circles): back off, then the next one
            followed_hint = False
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, max_delay)
            addr = hint if hint and hint != addr else next_addr()
