"""Clerk: the async client of the shardkv groups (used by the shell, the benchmark and tests).

    async with Clerk(["127.0.0.1:7001"]) as kv:
        await kv.put(b"k", b"v"); await kv.append(b"k", b"w")
        assert await kv.get(b"k") == b"vw"          # None when the key is absent

It caches the latest configuration (from the controllers) and routes each key by key2shard
to its group.  Per group, operations from every caller queue in one lane; the lane sends
whatever has queued as one KVBatch call (several calls in flight), to the group's leader
as far as it knows, so many concurrent operations share channels and pipeline.  A whole
batch that fails (ErrWrongLeader, ErrTimeout, the server unreachable) is resent, to the
leader named in the answer or else to the next replica after a back-off; an op answered
WRONG_GROUP makes the clerk refresh the configuration and route it again.  All within
`total_timeout` per operation, then ShardKVUnavailable says what was tried.  Keys and values
over the limits raise ShardKVError at once, before anything is sent.

Following the cluster: a group that does not answer (a failed call: unreachable, no answer
in time, not the leader without a usable hint, ...; or a call still unanswered after
`check_after` seconds, as when the group's processes are stopped or its machines switched
off) makes the clerk re-read the configuration in the background.  When the configuration
has changed, every queued or in-flight operation whose shard the new one gives to another
group (or to none) goes back to its caller's routing loop and is sent to the shard's
current owner; a lane whose group left is dropped.  The controllers are not hammered: one
query in flight, shared by every caller, spaced out while the answers bring nothing new
(ControllerClient.latest).

Deadlines hold: every operation ends within `total_timeout` (a timer at its deadline, each
call's deadline min(call_timeout, what remains), back-off sleeps cut at the deadline, a
configuration query no longer than the operation's time).

Writes are exactly-once: the clerk is one session, numbers its writes and sends with each
batch the lowest number it has no answer for yet (see state.Session).  A write that moves
to another group keeps its number, and resending it there is safe although the old group
may still hold it (in flight, or in a stopped process): a shard is served by one group at a
time, and its session table travels with its data.  If the old group applied the write
before it let the shard go, the write and its number are in what the new owner pulls, so
the new owner answers the resent write as a duplicate; if it had not, the old group refuses
it from then on (it no longer serves the shard), so the write lands once, at the new owner.

`dial` (optional) maps each advertised address (of a group's servers, of the controllers)
to the address to connect to ([node.dial], config.NodeConfig.dial_address); messages name
the advertised address.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import random
from typing import Callable, Sequence

import grpc

from .._pb import kvbatch_pb2 as kvpb
from .._pb import kvbatch_pb2_grpc as kvpb_grpc
from ..controller.client import ControllerClient, ControllerUnavailable, err_words, rpc_problem
from ..controller.state import Config
from ..errors import Refused, Unavailable
from ..node.transport import MAX_MESSAGE_BYTES
from .state import APPEND, ERR_WRONG_LEADER, GET, PUT, Limits, key2shard

_OP_NAMES = {PUT: "put", APPEND: "append", GET: "get"}
CHECK_AFTER_S = 0.5        # a call unanswered this long makes the clerk check the configuration


class ShardKVError(Refused):
    """The operation was refused (bad input); the message says why.  Nothing was stored."""


class ShardKVUnavailable(Unavailable):
    """No group answered the operation within the time allowed; the message says what was
    tried.  A write's outcome is then unknown."""


def _channel_options() -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_retries", 0)]


class _Op:
    __slots__ = ("kind", "key", "value", "seq", "fut", "deadline", "size", "shard")

    def __init__(self, kind: int, key: bytes, value: bytes, seq: int, deadline: float,
                 shard: int) -> None:
        self.kind = kind
        self.key = key
        self.value = value
        self.seq = seq
        self.deadline = deadline
        self.shard = shard
        self.size = len(key) + len(value) + 16
        self.fut: asyncio.Future = asyncio.get_running_loop().create_future()

    def settle(self, result: object) -> None:
        if not self.fut.done():
            self.fut.set_result(result)


_MOVED = object()          # an op's result: the configuration moved its shard, route it again


class _Lane:
    """One group: its queue of operations and the batches in flight to it."""

    def __init__(self, clerk: "Clerk", gid: int, servers: Sequence[str]) -> None:
        self.clerk = clerk
        self.gid = gid
        self.servers = list(servers)
        self.leader = 0
        self.queue: collections.deque[_Op] = collections.deque()
        self.flying: set[_Op] = set()            # ops of the batches in flight
        self.inflight = 0
        self.delay = clerk.backoff[0]
        self.notes: dict[str, str] = {}          # server -> what it last said
        self.asking: collections.Counter[str] = collections.Counter()   # calls in flight
        self.scheduled = False

    def submit(self, op: _Op) -> None:
        """Queue op; the lane sends once the callers woken in this loop iteration have queued
        theirs too (so that they share a batch)."""
        self.queue.append(op)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self.scheduled = False
        self.pump()

    def pump(self) -> None:
        """Send what has queued: one batch at a time, more only while full batches wait (the
        group does one Raft round per call, so fewer, bigger batches go faster)."""
        c = self.clerk
        loop = asyncio.get_running_loop()
        while self.queue and (self.inflight == 0 or (
                self.inflight < c.max_inflight and len(self.queue) >= c.max_batch_ops)):
            ops: list[_Op] = []
            size = 0
            now = loop.time()
            while self.queue and len(ops) < c.max_batch_ops:
                op = self.queue[0]
                if op.fut.done():
                    self.queue.popleft()
                    continue
                if now >= op.deadline:
                    self.queue.popleft()
                    op.fut.set_result(None)          # out of time: the caller explains
                    continue
                if ops and size + op.size > c.max_batch_bytes:
                    break
                self.queue.popleft()
                ops.append(op)
                size += op.size
            if not ops:
                return
            self.inflight += 1
            t = loop.create_task(self._send(ops))
            self.clerk._tasks.add(t)              # the loop only keeps weak references
            t.add_done_callback(self.clerk._tasks.discard)

    def withdraw(self, cfg: Config) -> None:
        """Give back to their callers the ops whose shard `cfg` gives to another group."""
        gid, shards = self.gid, cfg.shards
        for op in itertools.chain(self.queue, self.flying):
            if shards[op.shard] != gid:
                op.settle(_MOVED)

    async def _send(self, ops: list[_Op]) -> None:
        c = self.clerk
        loop = asyncio.get_running_loop()
        addr = self.servers[self.leader % len(self.servers)]
        req = kvpb.BatchRequest(session=c.session, floor=c.floor(),
                                ops=[o.kind for o in ops], keys=[o.key for o in ops],
                                values=[o.value for o in ops], seqs=[o.seq for o in ops])
        until = max(o.deadline for o in ops)
        self.flying.update(ops)
        self.asking[addr] += 1
        slow = loop.call_later(c.check_after, c.suspect, until)   # unanswered for long: check
        hint = ""
        try:
            resp = await c.stub(addr).Batch(
                req, timeout=max(0.001, min(c.call_timeout, until - loop.time())))
            err = resp.err
            hint = resp.leader
        except grpc.aio.AioRpcError as e:
            err, problem = e.code().name, rpc_problem(e)
        else:
            problem = err_words(err)
        finally:
            slow.cancel()
            self.asking[addr] -= 1
            self.inflight -= 1
        self.notes[addr] = problem or "OK"
        if not err:
            self.flying.difference_update(ops)
            self.delay = c.backoff[0]
            msgs = resp.messages
            for i, op in enumerate(ops):
                if not op.fut.done():
                    op.fut.set_result((resp.codes[i], resp.values[i], msgs.get(i, "")))
            self.pump()
            return
        # the whole batch failed: to the named leader at once, else the next replica after a
        # pause; and has the configuration moved on (the group left, its servers changed)?
        if err == ERR_WRONG_LEADER and hint in self.servers and hint != addr:
            self.leader = self.servers.index(hint)
        else:
            c.suspect(until)
            if self.servers[self.leader % len(self.servers)] == addr:
                self.leader += 1
            await asyncio.sleep(min(self.delay * random.uniform(0.5, 1.0),
                                    max(0.0, until - loop.time())))
            self.delay = min(self.delay * 2, c.backoff[1])
        self.flying.difference_update(ops)      # withdraw() sees them until they are queued
        if c._lanes.get(self.gid) is not self:  # the group left while we paused
            for op in ops:
                op.settle(_MOVED)
            return
        self.queue.extendleft(reversed(ops))
        self.pump()

    def describe(self) -> str:
        def said(s: str) -> str:
            return ("no answer in time" if self.asking[s] > 0 else
                    self.notes.get(s, "not tried"))
        return ", ".join(f"{s} ({said(s)})" for s in self.servers)


class Clerk:
    def __init__(self, controllers: Sequence[str], total_timeout: float = 30.0,
                 call_timeout: float = 3.0, limits: Limits = Limits(),
                 max_batch_ops: int = 512, max_batch_bytes: int = 1 << 20, max_inflight: int = 4,
                 backoff: tuple[float, float] = (0.02, 0.5),
                 dial: Callable[[str], str] | None = None,
                 check_after: float = CHECK_AFTER_S) -> None:
        self.total_timeout = total_timeout
        self.call_timeout = call_timeout
        self.limits = limits
        self.max_batch_ops = max_batch_ops
        self.max_batch_bytes = max_batch_bytes
        self.max_inflight = max_inflight
        self.backoff = backoff
        self.dial = dial or (lambda a: a)
        self.check_after = check_after
        self.session = random.SystemRandom().randrange(1, 1 << 63)
        self._seqs = itertools.count(1)
        self._unacked: set[int] = set()
        self._ctl = ControllerClient(controllers, total_timeout=total_timeout,
                                     call_timeout=call_timeout, dial=dial)
        self._config: Config | None = None
        self._checking: asyncio.Task | None = None
        self._lanes: dict[int, _Lane] = {}
        self._tasks: set[asyncio.Task] = set()
        self._channels: dict[str, tuple[grpc.aio.Channel, kvpb_grpc.KVBatchStub]] = {}

    async def __aenter__(self) -> "Clerk":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        tasks = list(self._tasks) + ([self._checking] if self._checking else [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        chans, self._channels = self._channels, {}
        for ch, _ in chans.values():
            await ch.close()
        await self._ctl.close()

    # ---------------------------------------------------------------- the API
    async def get(self, key: bytes | str) -> bytes | None:
        """The value of key, or None when it has none (linearizable)."""
        code, value = await self._do(GET, key, b"")
        return value if code == kvpb.OK else None

    async def put(self, key: bytes | str, value: bytes | str) -> None:
        await self._do(PUT, key, value)

    async def append(self, key: bytes | str, value: bytes | str) -> None:
        await self._do(APPEND, key, value)

    @property
    def config(self) -> Config | None:
        """The configuration the clerk routes by (None before the first operation)."""
        return self._config

    # ---------------------------------------------------------------- plumbing
    def floor(self) -> int:
        return min(self._unacked) if self._unacked else 1 << 62

    def stub(self, addr: str) -> kvpb_grpc.KVBatchStub:
        entry = self._channels.get(addr)
        if entry is None:
            ch = grpc.aio.insecure_channel(self.dial(addr), options=_channel_options())
            entry = self._channels[addr] = (ch, kvpb_grpc.KVBatchStub(ch))
        return entry[1]

    async def _do(self, kind: int, key: bytes | str, value: bytes | str) -> tuple[int, bytes]:
        key = key.encode() if isinstance(key, str) else bytes(key)
        value = value.encode() if isinstance(value, str) else bytes(value)
        problem = self.limits.refuse(kind, key, value)
        if problem:
            raise ShardKVError(f"{_OP_NAMES[kind]} {_show(key)}: {problem}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        seq = 0
        if kind != GET:
            seq = next(self._seqs)
            self._unacked.add(seq)
        shard = key2shard(key)
        last = "no group asked yet"
        refused_by = -1                  # the group that last answered WRONG_GROUP

        def gave_up() -> ShardKVUnavailable:
            return ShardKVUnavailable(
                f"{_OP_NAMES[kind]} {_show(key)} (shard {shard}) got no answer within "
                f"{self.total_timeout:g}s; last: {last}")
        try:
            while True:
                cfg = self._config or await self._refresh(-1, deadline, gave_up)
                gid = cfg.shards[shard]
                lane = self._lane(gid, cfg) if gid in cfg.groups else None
                if lane is None:
                    last = f"configuration {cfg.num} gives shard {shard} to no group"
                else:
                    op = _Op(kind, key, value, seq, deadline, shard)
                    timer = loop.call_at(deadline, op.settle, None)
                    lane.submit(op)
                    try:
                        res = await op.fut
                    finally:
                        timer.cancel()
                    if res is _MOVED:
                        continue               # the same seq, to the shard's current owner
                    if res is None:
                        if refused_by != gid:      # else: its "not yet" says more
                            last = f"group {gid}: {lane.describe()}"
                    else:
                        code, val, msg = res
                        if code in (kvpb.OK, kvpb.NO_KEY):
                            return code, val
                        if code == kvpb.REFUSED:
                            raise ShardKVError(f"{_OP_NAMES[kind]} {_show(key)}: {msg}")
                        last = f"group {gid} does not serve shard {shard} yet (configuration {cfg.num})"
                        refused_by = gid
                if loop.time() >= deadline:
                    raise gave_up()
                # a newer configuration, or (the shard is on its way) the same one after a
                # pause: ControllerClient.latest spaces its queries out while nothing changes
                await self._refresh(cfg.num, deadline, gave_up)
        finally:
            self._unacked.discard(seq)

    def _lane(self, gid: int, cfg: Config) -> _Lane:
        lane = self._lanes.get(gid)
        servers = list(cfg.groups[gid])
        if lane is None:
            lane = self._lanes[gid] = _Lane(self, gid, servers)
        elif lane.servers != servers:
            lane.servers, lane.leader = servers, 0
        return lane

    def _adopt(self, cfg: Config) -> Config:
        """Route by cfg if it is newer: ops that it sends elsewhere go back to their callers;
        the lanes of groups that left are dropped, the others learn their servers."""
        if self._config is not None and cfg.num <= self._config.num:
            return self._config
        self._config = cfg
        for gid, lane in list(self._lanes.items()):
            if gid not in cfg.groups:
                del self._lanes[gid]
            else:
                self._lane(gid, cfg)
            lane.withdraw(cfg)
        return cfg

    async def _refresh(self, seen: int, deadline: float,
                       gave_up: Callable[[], Exception]) -> Config:
        """A configuration newer than `seen` if the controllers have one, by `deadline`."""
        loop = asyncio.get_running_loop()
        try:
            cfg = await self._ctl.latest(seen, timeout=max(0.0, deadline - loop.time()))
        except ControllerUnavailable as e:
            if loop.time() >= deadline and self._config is not None:
                raise gave_up() from None
            raise ShardKVUnavailable(f"cannot get the configuration: {e}") from None
        return self._adopt(cfg)

    def suspect(self, until: float) -> None:
        """A group is slow or failing: has the configuration moved on?  One check at a time,
        in the background, by `until` (the latest deadline of the ops that asked)."""
        if self._config is None or (self._checking is not None and not self._checking.done()):
            return
        self._checking = asyncio.get_running_loop().create_task(self._check(until))

    async def _check(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._adopt(await self._ctl.latest(self._config.num,
                                               timeout=max(0.0, until - loop.time())))
        except ControllerUnavailable:
            pass              # the lanes go on retrying; each op ends at its deadline


def _show(key: bytes, limit: int = 40) -> str:
    """A key as the user typed it: its text when it is printable UTF-8, else every byte that
    is not printable ASCII as \\xNN; cut after `limit` characters."""
    if not key:
        return "''"
    try:
        text = key.decode()
    except UnicodeDecodeError:
        text = None
    if text is None or not text.isprintable():
        text = "".join(chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02x}" for b in key)
    return text[:limit] + ("..." if len(text) > limit else "")
