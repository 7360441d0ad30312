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

Writes are exactly-once: the clerk is one session, numbers its writes and sends with each
batch the lowest number it has no answer for yet (see state.Session).
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import random
from typing import Sequence

import grpc

from .._pb import kvbatch_pb2 as kvpb
from .._pb import kvbatch_pb2_grpc as kvpb_grpc
from ..controller.client import ControllerClient
from ..controller.state import Config
from ..errors import Refused, Unavailable
from ..node.transport import MAX_MESSAGE_BYTES
from .state import APPEND, ERR_WRONG_LEADER, GET, PUT, Limits, key2shard

_OP_NAMES = {PUT: "put", APPEND: "append", GET: "get"}


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
    __slots__ = ("kind", "key", "value", "seq", "fut", "deadline", "size")

    def __init__(self, kind: int, key: bytes, value: bytes, seq: int, deadline: float) -> None:
        self.kind = kind
        self.key = key
        self.value = value
        self.seq = seq
        self.deadline = deadline
        self.size = len(key) + len(value) + 16
        self.fut: asyncio.Future = asyncio.get_running_loop().create_future()


class _Lane:
    """One group: its queue of operations and the batches in flight to it."""

    def __init__(self, clerk: "Clerk", gid: int, servers: Sequence[str]) -> None:
        self.clerk = clerk
        self.gid = gid
        self.servers = list(servers)
        self.leader = 0
        self.queue: collections.deque[_Op] = collections.deque()
        self.inflight = 0
        self.delay = clerk.backoff[0]
        self.notes: dict[str, str] = {}          # server -> what it last said
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

    async def _send(self, ops: list[_Op]) -> None:
        c = self.clerk
        addr = self.servers[self.leader % len(self.servers)]
        req = kvpb.BatchRequest(session=c.session, floor=c.floor(),
                                ops=[o.kind for o in ops], keys=[o.key for o in ops],
                                values=[o.value for o in ops], seqs=[o.seq for o in ops])
        hint = ""
        try:
            resp = await c.stub(addr).Batch(req, timeout=c.call_timeout)
            err = resp.err
            hint = resp.leader
        except grpc.aio.AioRpcError as e:
            err = e.code().name
        finally:
            self.inflight -= 1
        self.notes[addr] = err or "OK"
        if not err:
            self.delay = c.backoff[0]
            msgs = resp.messages
            for i, op in enumerate(ops):
                if not op.fut.done():
                    op.fut.set_result((resp.codes[i], resp.values[i], msgs.get(i, "")))
            self.pump()
            return
        # the whole batch failed: to the named leader at once, else the next replica after a pause
        if err == ERR_WRONG_LEADER and hint in self.servers and hint != addr:
            self.leader = self.servers.index(hint)
        else:
            if self.servers[self.leader % len(self.servers)] == addr:
                self.leader += 1
            await asyncio.sleep(self.delay * random.uniform(0.5, 1.0))
            self.delay = min(self.delay * 2, c.backoff[1])
        self.queue.extendleft(reversed(ops))
        self.pump()

    def describe(self) -> str:
        return ", ".join(f"{s} ({self.notes[s]})" if s in self.notes else f"{s} (not tried)"
                         for s in self.servers)


class Clerk:
    def __init__(self, controllers: Sequence[str], total_timeout: float = 30.0,
                 call_timeout: float = 3.0, limits: Limits = Limits(),
                 max_batch_ops: int = 512, max_batch_bytes: int = 1 << 20, max_inflight: int = 4,
                 backoff: tuple[float, float] = (0.02, 0.5)) -> None:
        self.total_timeout = total_timeout
        self.call_timeout = call_timeout
        self.limits = limits
        self.max_batch_ops = max_batch_ops
        self.max_batch_bytes = max_batch_bytes
        self.max_inflight = max_inflight
        self.backoff = backoff
        self.session = random.SystemRandom().randrange(1, 1 << 63)
        self._seqs = itertools.count(1)
        self._unacked: set[int] = set()
        self._ctl = ControllerClient(controllers, total_timeout=total_timeout,
                                     call_timeout=call_timeout)
        self._config: Config | None = None
        self._refreshing: asyncio.Task | None = None
        self._lanes: dict[int, _Lane] = {}
        self._tasks: set[asyncio.Task] = set()
        self._channels: dict[str, tuple[grpc.aio.Channel, kvpb_grpc.KVBatchStub]] = {}

    async def __aenter__(self) -> "Clerk":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        tasks = list(self._tasks) + ([self._refreshing] if self._refreshing else [])
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
            ch = grpc.aio.insecure_channel(addr, options=_channel_options())
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
        wait = self.backoff[0]
        last = "no group asked yet"
        try:
            while True:
                cfg = self._config or await self._refresh(-1, deadline)
                gid = cfg.shards[shard]
                lane = self._lane(gid, cfg) if gid in cfg.groups else None
                if lane is None:
                    last = f"configuration {cfg.num} gives shard {shard} to no group"
                else:
                    op = _Op(kind, key, value, seq, deadline)
                    lane.submit(op)
                    res = await op.fut
                    if res is None:
                        last = f"group {gid}: {lane.describe()}"
                    else:
                        code, val, msg = res
                        if code in (kvpb.OK, kvpb.NO_KEY):
                            return code, val
                        if code == kvpb.REFUSED:
                            raise ShardKVError(f"{_OP_NAMES[kind]} {_show(key)}: {msg}")
                        last = f"group {gid} does not serve shard {shard} yet (configuration {cfg.num})"
                if loop.time() >= deadline:
                    raise ShardKVUnavailable(
                        f"{_OP_NAMES[kind]} {_show(key)} (shard {shard}) got no answer within "
                        f"{self.total_timeout:g}s; last: {last}")
                before = cfg.num
                cfg = await self._refresh(cfg.num, deadline)
                if cfg.num == before:         # nothing new: the shard is on its way, wait a bit
                    await asyncio.sleep(min(wait, max(0.0, deadline - loop.time())))
                    wait = min(wait * 2, self.backoff[1])
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

    async def _refresh(self, seen: int, deadline: float) -> Config:
        """A configuration newer than `seen` if the controllers have one (one query at a time)."""
        if self._config is not None and self._config.num > seen:
            return self._config
        loop = asyncio.get_running_loop()
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = loop.create_task(self._ctl.query())
        try:
            cfg = await asyncio.wait_for(asyncio.shield(self._refreshing),
                                         max(0.001, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise ShardKVUnavailable(f"no configuration from the controllers "
                                     f"({', '.join(self._ctl.addresses)}) in time") from None
        except Exception as e:
            raise ShardKVUnavailable(f"cannot get the configuration: {e}") from None
        if self._config is None or cfg.num > self._config.num:
            self._config = cfg
        return self._config


def _show(key: bytes) -> str:
    text = repr(key[:40])
    return text + ("..." if len(key) > 40 else "")
