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

Sessions expire on the servers ([shardkv] session_ttl_ms, an hour by default: eraftd/sessions.py).
Each write says whether the clerk has had an answer to a write of its session on its shard
(BatchRequest.opened); such a write that finds its session gone is answered SESSION_EXPIRED,
not applied.  The clerk then opens a new session (a new id; the ops in flight in the old one
go on in it, each batch is of one session) and: a write whose every earlier attempt was answered (so none can have applied) is sent again
in the new session with a new seq, unseen by the caller; a write of which an earlier attempt
went unanswered (it may have applied before the session was forgotten) raises
ShardKVSessionExpired: its outcome is unknown, and it is not applied again behind the caller's
back.  A session-opening write (no answer yet on the shard) whose first attempt went
unanswered may have opened the session itself, which may have expired before a retry; so
a retry that may be proposed more than half the ttl after the write was first sent (its send
time + call_timeout; `Clerk.stale_before`: the ttl every answer carries,
BatchResponse.session_ttl_ms, the smallest seen; before any answer the config's floor of
1 s) is sent with opened set too, and a missing session is answered
SESSION_EXPIRED (if that answer shows the write was young after all under the ttl it
brings, the write goes again as before).  No keepalive: a clerk that stays idle past the
ttl just opens a new session at its next write (that write was never sent before, so it
goes through).

`dial` (optional) maps each advertised address (of a group's servers, of the controllers)
to the address to connect to ([node.dial], config.NodeConfig.dial_address); messages name
the advertised address.

Beyond eRaft's operations (the native path): delete(key) -> whether it existed; exists(key);
cas(key, expected, new) -> (swapped, the current value when not swapped, None if absent),
expected None = create-if-missing; their outcomes are exact even when retried (state.py).
scan(prefix, limit) -> an async iterator of (key, value) in key order over every shard: a
k-way merge (heapq) of one paged stream per shard (KVBatch.Scan pages of at most
scan_page_keys / scan_page_bytes, one page per shard held at a time).  Each page is
linearizable on its own (not the scan as a whole); a page that is not answered (WRONG_GROUP,
not the leader, unreachable) is asked again from the same cursor, at the group the latest
configuration names, so a scan during a migration yields every key once; each page gets
`total_timeout`.
"""
from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import random
from typing import AsyncIterator, Callable, Sequence

import grpc

from .._pb import kvbatch_pb2 as kvpb
from .._pb import kvbatch_pb2_grpc as kvpb_grpc
from ..controller.client import ControllerClient, ControllerUnavailable, err_words
from ..controller.state import NSHARDS, Config
from ..errors import Denied, Refused, Unavailable, denied, rpc_problem
from ..node.transport import MAX_MESSAGE_BYTES
from ..sessions import MIN_TTL_MS
from ..tls import TlsFiles, channel
from .state import (APPEND, CAS, CAS_ABSENT, DELETE, ERR_WRONG_LEADER, EXISTS, GET, OP_NAMES,
                    PUT, READ_KINDS, Limits, key2shard)

_OP_NAMES = OP_NAMES
_ANSWERED = (kvpb.OK, kvpb.NO_KEY, kvpb.MISMATCH)     # codes that answer an op
CHECK_AFTER_S = 0.5        # a call unanswered this long makes the clerk check the configuration


class ShardKVError(Refused):
    """The operation was refused (bad input); the message says why.  Nothing was stored."""


class ShardKVUnavailable(Unavailable):
    """No group answered the operation within the time allowed; the message says what was
    tried.  A write's outcome is then unknown."""


class ShardKVSessionExpired(ShardKVUnavailable):
    """A write was retried after its session expired on the server: its outcome is unknown
    (an earlier attempt may have applied); it was not applied again."""


def _channel_options() -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_retries", 0)]


class _Op:
    __slots__ = ("kind", "key", "value", "seq", "fut", "deadline", "size", "shard", "expected",
                 "session", "unsure", "first")

    def __init__(self, kind: int, key: bytes, value: bytes, seq: int, deadline: float,
                 shard: int, expected: bytes = b"", session: int = 0) -> None:
        self.session = session               # the session of its seq
        self.unsure = False                  # an attempt went unanswered: it may have applied
        self.first = 0.0                     # loop time at (or before) its seq's first send
        self.kind = kind
        self.key = key
        self.value = value
        self.seq = seq
        self.deadline = deadline
        self.shard = shard
        self.expected = expected             # CAS: what the value must be
        self.size = len(key) + len(value) + len(expected) + 16
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
                if ops and (size + op.size > c.max_batch_bytes or op.session != ops[0].session):
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
                op.unsure = op.unsure or op in self.flying
                op.settle(_MOVED)

    async def _send(self, ops: list[_Op]) -> None:
        c = self.clerk
        loop = asyncio.get_running_loop()
        addr = self.servers[self.leader % len(self.servers)]
        old = c.stale_before(loop.time())
        req = kvpb.BatchRequest(session=ops[0].session, floor=c.floor(),
                                ops=[o.kind for o in ops], keys=[o.key for o in ops],
                                values=[o.value for o in ops], seqs=[o.seq for o in ops],
                                expected=[o.expected for o in ops] if any(o.expected for o in ops) else (),
                                opened=[o.shard in c._opened.get(o.session, ())
                                        or (o.unsure and o.first < old) for o in ops])
        until = max(o.deadline for o in ops)
        self.flying.update(ops)
        self.asking[addr] += 1
        slow = loop.call_later(c.check_after, c.suspect, until)   # unanswered for long: check
        hint = ""
        why = None
        untried = False                         # the server says none of it was proposed
        try:
            resp = await c.stub(addr).Batch(
                req, timeout=max(0.001, min(c.call_timeout, until - loop.time())))
            err, hint, untried = resp.err, resp.leader, resp.untried
        except grpc.aio.AioRpcError as e:
            err, problem, why = e.code().name, rpc_problem(e, c.tls is not None), denied(e)
        else:
            problem = err_words(err)
            if resp.session_ttl_ms:
                c._ttl_ms = min(c._ttl_ms or resp.session_ttl_ms, resp.session_ttl_ms)
        finally:
            slow.cancel()
            self.asking[addr] -= 1
            self.inflight -= 1
        self.notes[addr] = problem or "OK"
        if why is not None:                     # the node refuses this client: no retry
            self.flying.difference_update(ops)
            for op in ops:
                if not op.fut.done():
                    op.fut.set_exception(Denied(why))
            self.pump()
            return
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
        if not untried:
            for op in ops:
                op.unsure = True
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
                 check_after: float = CHECK_AFTER_S, scan_page_keys: int = 1000,
                 scan_page_bytes: int = 1 << 20, tls: TlsFiles | None = None) -> None:
        self.total_timeout = total_timeout
        self.scan_page_keys = scan_page_keys
        self.scan_page_bytes = scan_page_bytes
        self.call_timeout = call_timeout
        self.limits = limits
        self.max_batch_ops = max_batch_ops
        self.max_batch_bytes = max_batch_bytes
        self.max_inflight = max_inflight
        self.backoff = backoff
        self.dial = dial or (lambda a: a)
        self.tls = tls                  # the TLS files of every channel (None: plaintext)
        self.check_after = check_after
        self.session = 0
        # session -> the shards where a write of it was answered (so the shard has it)
        self._opened: dict[int, set[int]] = {}
        self._ttl_ms = 0                # the smallest session_ttl_ms a server answered with
        self._renew()
        self._seqs = itertools.count(1)
        self._unacked: set[int] = set()
        self._ctl = ControllerClient(controllers, total_timeout=total_timeout,
                                     call_timeout=call_timeout, dial=dial, tls=tls)
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

    async def delete(self, key: bytes | str) -> bool:
        """Delete key; True if it existed (linearizable, exactly once)."""
        code, _ = await self._do(DELETE, key, b"")
        return code == kvpb.OK

    async def exists(self, key: bytes | str) -> bool:
        """Whether key has a value (linearizable; the value is not shipped)."""
        code, _ = await self._do(EXISTS, key, b"")
        return code == kvpb.OK

    async def cas(self, key: bytes | str, expected: bytes | str | None,
                  new: bytes | str) -> tuple[bool, bytes | None]:
        """Set key to new if its value is expected (None: if key is absent, i.e. create it
        if missing).  Returns (swapped, the current value when not swapped, None if absent);
        an absent key is not an empty value."""
        if expected is None:
            code, value = await self._do(CAS_ABSENT, key, new)
        else:
            code, value = await self._do(CAS, key, new, expected)
        if code == kvpb.OK:
            return True, None
        return False, value if code == kvpb.MISMATCH else None

    def scan(self, prefix: bytes | str = b"", limit: int | None = None) -> AsyncIterator[tuple[bytes, bytes]]:
        """(key, value) of every key that starts with prefix, in key order, over every shard
        (at most `limit` of them); see the module docstring for what it guarantees."""
        prefix = prefix.encode() if isinstance(prefix, str) else bytes(prefix)
        if limit is not None and limit < 0:
            raise ShardKVError(f"scan {_show(prefix)}: limit {limit} is below 0")
        if len(prefix) > self.limits.max_key_bytes:
            raise ShardKVError(f"scan {_show(prefix)}: prefix of {len(prefix)} bytes is longer "
                               f"than the limit of {self.limits.max_key_bytes} bytes (max_key_bytes)")
        return self._scan(prefix, limit)

    @property
    def config(self) -> Config | None:
        """The configuration the clerk routes by (None before the first operation)."""
        return self._config

    # ---------------------------------------------------------------- plumbing
    def _renew(self) -> None:
        """A new session (the old one expired on a server); seqs go on counting."""
        self.session = random.SystemRandom().randrange(1, 1 << 63)
        # the older sessions' entries stay: their ops still in flight say what they knew

    def stale_before(self, now: float) -> float:
        """A write first sent before this loop time, of which an attempt went unanswered, is sent
        (from `now`, for at most call_timeout) with opened set: its first attempt may have
        applied and opened the session, which may have expired since, and without opened it
        would apply again.

        Why ttl / 2 from its first send to the last moment this attempt can be proposed (now
        + call_timeout: a server proposes a call's writes when it comes, and never after its
        deadline, BatchResponse.untried) is safe
        (eraftd/sessions.py): if the first attempt applied, it applied with at least the
        applied clock of every entry committed before it was sent (it comes after them in
        the log), and so was the session's last use; this attempt applies after entries that
        were all proposed before it was, whose stamps are at most the highest stamp any
        leader had issued when the first was sent plus MAX_RATE (1.1) times the real time
        since (a leader's stamps run at most 1.1x real time; a new leader starts from its
        applied clock, never above the stamps before it).  So the session has been idle at
        most 0.55 ttl plus how far the stamps in flight were ahead of the committed ones
        when the write was first sent (a commit's latency, a stall of the leader; a leader
        cut off from its followers is replaced and its uncommitted stamps are dropped): the
        other 0.45 ttl, 450 ms at the config's 1 s floor, half an hour by default.  The ttl is
        the smallest one the servers answered with (their own [shardkv] session_ttl_ms, every
        replica of a group should have the same), before any answer the config's floor."""
        return now + self.call_timeout - (self._ttl_ms or MIN_TTL_MS) / 2000.0

    def floor(self) -> int:
        return min(self._unacked) if self._unacked else 1 << 62

    def stub(self, addr: str) -> kvpb_grpc.KVBatchStub:
        entry = self._channels.get(addr)
        if entry is None:
            ch = channel(self.dial(addr), self.tls, _channel_options(), name=addr)
            entry = self._channels[addr] = (ch, kvpb_grpc.KVBatchStub(ch))
        return entry[1]

    async def _do(self, kind: int, key: bytes | str, value: bytes | str,
                  expected: bytes | str = b"") -> tuple[int, bytes]:
        key = key.encode() if isinstance(key, str) else bytes(key)
        value = value.encode() if isinstance(value, str) else bytes(value)
        expected = expected.encode() if isinstance(expected, str) else bytes(expected)
        problem = self.limits.refuse(kind, key, value, expected)
        if problem:
            raise ShardKVError(f"{_OP_NAMES[kind]} {_show(key)}: {problem}")
        loop = asyncio.get_running_loop()
        first = loop.time()              # at or before the first send of this seq
        deadline = first + self.total_timeout
        seq = session = 0
        shard = key2shard(key)
        if kind not in READ_KINDS:
            seq = next(self._seqs)
            self._unacked.add(seq)
            session = self.session
        unsure = False                   # an attempt went unanswered: it may have applied
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
                    op = _Op(kind, key, value, seq, deadline, shard, expected, session)
                    op.unsure, op.first = unsure, first
                    timer = loop.call_at(deadline, op.settle, None)
                    lane.submit(op)
                    try:
                        res = await op.fut
                    finally:
                        timer.cancel()
                    unsure = unsure or op.unsure
                    if res is not None and res is not _MOVED and res[0] == kvpb.SESSION_EXPIRED:
                        if (unsure and shard not in self._opened.get(session, ())
                                and first >= self.stale_before(loop.time())):
                            # sent opened only while the clerk knew no ttl (the answer told
                            # it): young enough, so the session was never there; send it again
                            continue           # the same session and seq, not opened now
                        if session == self.session:
                            self._renew()
                        if unsure:
                            raise ShardKVSessionExpired(
                                f"{_OP_NAMES[kind]} {_show(key)} (shard {shard}): its session "
                                f"expired on group {gid} (idle longer than the servers' "
                                f"session_ttl_ms) while the write was being retried, so whether "
                                f"it was stored is unknown; it was not applied again (read the "
                                f"key to check); the clerk now uses a new session")
                        # never applied (every attempt answered): again, in the new session
                        self._unacked.discard(seq)
                        seq = next(self._seqs)
                        self._unacked.add(seq)
                        session, first = self.session, loop.time()
                        continue
                    if res is _MOVED:
                        continue               # the same seq, to the shard's current owner
                    if res is None:
                        if refused_by != gid:      # else: its "not yet" says more
                            last = f"group {gid}: {lane.describe()}"
                    else:
                        code, val, msg = res
                        if code in _ANSWERED:
                            if seq:                    # the shard has this session now
                                self._opened.setdefault(session, set()).add(shard)
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


    # ---------------------------------------------------------------- scan
    async def _scan(self, prefix: bytes, limit: int | None) -> AsyncIterator[tuple[bytes, bytes]]:
        if limit == 0:
            return
        # key2shard is the first byte: a prefix lives in one shard
        shards = [key2shard(prefix)] if prefix else list(range(NSHARDS))
        page = self.scan_page_keys if limit is None else min(self.scan_page_keys, limit)
        streams = [self._shard_pages(s, prefix, page) for s in shards]
        heap: list[tuple[bytes, int, bytes]] = []
        buffers: list[collections.deque] = []
        n = 0
        try:
            pages = await asyncio.gather(*(anext(st, None) for st in streams),
                                         return_exceptions=True)
            for p in pages:
                if isinstance(p, BaseException):
                    raise p
            for i, pairs in enumerate(pages):
                buffers.append(collections.deque(pairs or ()))
                if buffers[i]:
                    k, v = buffers[i].popleft()
                    heap.append((k, i, v))
            heapq.heapify(heap)
            while heap:
                k, i, v = heapq.heappop(heap)
                yield k, v
                n += 1
                if limit is not None and n >= limit:
                    return
                if not buffers[i]:
                    buffers[i].extend(await anext(streams[i], None) or ())
                if buffers[i]:
                    k, v = buffers[i].popleft()
                    heapq.heappush(heap, (k, i, v))
        finally:
            for st in streams:
                await st.aclose()

    async def _shard_pages(self, shard: int, prefix: bytes, page: int) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """One shard's pairs, page after page (each a non-empty list)."""
        cursor = b""
        while True:
            resp = await self._scan_page(shard, prefix, cursor, page)
            if resp.keys:
                yield list(zip(resp.keys, resp.values))
            if not resp.more:
                return
            cursor = resp.next

    async def _scan_page(self, shard: int, prefix: bytes, cursor: bytes, page: int) -> kvpb.ScanResponse:
        """One page of the shard from cursor, from the group the configuration gives it to:
        the lane's leader first, following hints, other replicas after a back-off, the
        configuration again after WRONG_GROUP or a whole round of failures."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        req = kvpb.ScanRequest(shard=shard, prefix=prefix, cursor=cursor, limit=page,
                               max_bytes=self.scan_page_bytes)
        last = "no group asked yet"

        def gave_up() -> ShardKVUnavailable:
            return ShardKVUnavailable(f"scan of shard {shard} got no answer within "
                                      f"{self.total_timeout:g}s; last: {last}")
        cfg = self._config or await self._refresh(-1, deadline, gave_up)
        while True:
            gid = cfg.shards[shard]
            lane = self._lane(gid, cfg) if gid in cfg.groups else None
            if lane is None:
                last = f"configuration {cfg.num} gives shard {shard} to no group"
            for _ in range(len(lane.servers) if lane else 0):
                addr = lane.servers[lane.leader % len(lane.servers)]
                timeout = min(self.call_timeout, deadline - loop.time())
                if timeout <= 0:
                    break
                try:
                    resp = await self.stub(addr).Scan(req, timeout=timeout)
                    err = resp.err
                except grpc.aio.AioRpcError as e:
                    resp, err = None, rpc_problem(e, self.tls is not None)
                lane.notes[addr] = err_words(err) if err else (
                    "OK" if resp.code == kvpb.OK else "does not serve that shard")
                if resp is not None and not err:
                    if resp.code == kvpb.OK:
                        return resp
                    if resp.code == kvpb.REFUSED:
                        raise ShardKVError(f"scan {_show(prefix)}: {resp.message}")
                    last = f"group {gid} does not serve shard {shard} yet (configuration {cfg.num})"
                    break
                last = f"group {gid}: {lane.describe()}"
                if err == ERR_WRONG_LEADER and resp.leader in lane.servers and resp.leader != addr:
                    lane.leader = lane.servers.index(resp.leader)
                else:
                    lane.leader += 1
            if loop.time() >= deadline:
                raise gave_up()
            # a newer configuration, or the same one after a pause (latest() spaces them out)
            cfg = await self._refresh(cfg.num, deadline, gave_up)


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
