"""The asyncio driver: one loop per process runs every Raft group the node hosts.

A round:  inputs (ticks, peer messages, proposals, reads) have been stepped into the cores;
then for every group with a Ready, stage its snapshot, new entries, hard state and the
state machine's writes for the committed entries, with the applied index, in ONE WriteBatch
shared by all groups; send the messages that promise nothing (a leader's appends go out while
its own disk works) and answer the proposers of the committed entries (durable on a majority
already); write the batch (one fsync); send the messages that wait for it (votes,
acknowledgements); serve readers; advance the cores.  Many proposals and reads that arrive
while a round runs are taken together by the next one: one propose() call and one ReadIndex
per group per round.

The fsync runs in a thread (rocksdict holds the GIL through a synced write, but not through
flush_wal), so the loop keeps accepting calls and peer messages meanwhile.  Nothing is stepped
into a core between its ready() and advance(): ticks, peer messages and reports that arrive
while a round waits for its fsync are held and stepped when the round ends.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from ..raft.messages import Message, MsgType, Ready, Role
from ..raft.options import RaftOptions
from ..raft.rawnode import ProposalDropped, RawNode
from .. import metrics

log = logging.getLogger("eraftd.raft")

COALESCE_TURNS = 32  # at most this many extra event-loop turns to gather a round's inputs


class NotLeader(Exception):
    """This node is not the group's leader; `hint` is the leader's address when known."""

    def __init__(self, hint: str = "") -> None:
        super().__init__(f"not the leader (leader: {hint or 'unknown'})")
        self.hint = hint


class ProposalLost(NotLeader):
    """The entry was overwritten or leadership was lost before it applied: outcome unknown."""


@dataclass
class GroupSpec:
    gid: int                    # 0 = controller group, > 0 = shardkv group
    peers: tuple[str, ...]      # advertise addresses; our id is our position
    me: int
    make_state_machine: Callable[[Any], Any]   # GroupStore -> state machine


@dataclass
class _ReadBatch:
    index: int
    futures: list[asyncio.Future] = field(default_factory=list)


class Group:
    def __init__(self, spec: GroupSpec, store: Any, opts: RaftOptions, rng: random.Random,
                 snapshot_entries: int) -> None:
        self.gid = spec.gid
        self.peers = spec.peers
        self.me = spec.me
        self.store = store
        self.sm = spec.make_state_machine(store)
        self.node = RawNode(opts, store, rng)
        self.snapshot_entries = snapshot_entries
        self.name = "controller" if self.gid == 0 else f"group {self.gid}"
        # proposals waiting for the next round, and proposals in the log waiting to apply
        self.proposals: list[tuple[bytes, asyncio.Future]] = []
        self.waiters: dict[int, tuple[int, asyncio.Future]] = {}  # index -> (term, future)
        # reads: waiting for the next round -> waiting for their read index -> waiting to apply
        self.reads: list[asyncio.Future] = []
        self.reads_inflight: dict[bytes, list[asyncio.Future]] = {}
        self.reads_ready: list[_ReadBatch] = []
        # read ids start at a random point, so an answer meant for an earlier run of this
        # process (before a restart) can never match a request of this one
        self.read_seq = random.SystemRandom().getrandbits(62)
        self.restoring = False
        self.leader_changes = 0
        # counters for eraftd/metrics.py: bumped once per round with the batch's size
        self.proposed = 0
        self.entries_appended = 0
        self.entries_applied = 0
        self.elections = 0
        self.snapshots = 0

    @property
    def leader_address(self) -> str:
        lead = self.node.lead
        return self.peers[lead] if 0 <= lead < len(self.peers) else ""

    def is_leader(self) -> bool:
        return self.node.role == Role.LEADER

    # -- inputs taken at the start of a round --
    def flush_inputs(self) -> None:
        if self.proposals:
            props, self.proposals = self.proposals, []
            live = [(d, f) for d, f in props if not f.done()]
            if live:
                try:
                    first = self.node.propose([d for d, _ in live])
                except ProposalDropped:
                    err = NotLeader(self.leader_address)
                    for _, f in live:
                        f.set_exception(err)
                else:
                    term = self.node.term
                    self.proposed += len(live)
                    for i, (_, f) in enumerate(live):
                        self.waiters[first + i] = (term, f)
        if self.reads:
            futs = [f for f in self.reads if not f.done()]
            self.reads = []
            if futs:
                if not self.is_leader():
                    err = NotLeader(self.leader_address)
                    for f in futs:
                        f.set_exception(err)
                else:
                    self.read_seq += 1
                    ctx = self.read_seq.to_bytes(8, "big")
                    self.reads_inflight[ctx] = futs
                    self.node.read_index(ctx)

    # -- after the round's write --
    def finish(self, rd: Ready, results: list[Any]) -> None:
        for e, res in zip(rd.committed, results):
            w = self.waiters.pop(e.index, None)
            if w is None:
                continue
            term, fut = w
            if fut.done():
                continue
            if e.term == term:
                fut.set_result(res)
            else:
                fut.set_exception(ProposalLost(self.leader_address))
        for rs in rd.read_states:
            futs = self.reads_inflight.pop(rs.context, None)
            if futs:
                self.reads_ready.append(_ReadBatch(rs.index, futs))
        if rd.soft_state is not None:
            self._on_soft_state(rd)

    def after_advance(self) -> None:
        if self.reads_ready:
            applied = self.node.applied
            keep = []
            for rb in self.reads_ready:
                if rb.index <= applied:
                    for f in rb.futures:
                        if not f.done():
                            f.set_result(rb.index)
                else:
                    keep.append(rb)
            self.reads_ready = keep

    def _on_soft_state(self, rd: Ready) -> None:
        ss = rd.soft_state
        self.leader_changes += 1
        if ss.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            self.elections += 1
        if ss.role == Role.LEADER:
            log.info("%s: became leader at term %d", self.name, self.node.term)
        elif ss.leader >= 0:
            log.info("%s: leader is %s (id %d) at term %d", self.name, self.leader_address,
                     ss.leader, self.node.term)
        else:
            log.info("%s: %s at term %d, no leader known", self.name, ss.role.wire_name.lower(),
                     self.node.term)
        if ss.role != Role.LEADER:
            self.fail_pending(ProposalLost(self.leader_address))

    def fail_pending(self, err: Exception) -> None:
        for _, f in self.waiters.values():
            if not f.done():
                f.set_exception(err)
        self.waiters.clear()
        for futs in self.reads_inflight.values():
            for f in futs:
                if not f.done():
                    f.set_exception(err)
        self.reads_inflight.clear()
        for rb in self.reads_ready:
            for f in rb.futures:
                if not f.done():
                    f.set_exception(err)
        self.reads_ready.clear()
        for _, f in self.proposals:
            if not f.done():
                f.set_exception(err)
        self.proposals.clear()

    def compaction_point(self) -> int:
        """Index to compact the log to this round, or 0: keep a tail for slow followers."""
        applied = self.node.applied
        snap = self.store.snapshot().index
        if applied - snap < self.snapshot_entries:
            return 0
        keep = min(1000, self.snapshot_entries // 10)
        return applied - keep


class Driver:
    def __init__(self, store: Any, transport: Any, heartbeat_ms: int) -> None:
        self.store = store
        self.transport = transport
        self.heartbeat_s = heartbeat_ms / 1000.0
        self.groups: dict[int, Group] = {}
        self.wake = asyncio.Event()
        self.stopping = False
        self.rounds = 0
        self._tasks: set[asyncio.Task] = set()
        # while a round waits for its fsync, core inputs wait here (see the module docstring)
        self._syncing = False
        self._held_msgs: list[tuple[int, Message]] = []
        self._held_ticks = 0
        self._held_calls: list[Callable[[], None]] = []     # rare inputs: reports, snapshots
        self._syncer: ThreadPoolExecutor | None = None

    def add_group(self, spec: GroupSpec, opts: RaftOptions, rng: random.Random,
                  snapshot_entries: int) -> Group:
        g = Group(spec, self.store.group(spec.gid), opts, rng, snapshot_entries)
        self.groups[spec.gid] = g
        return g

    # ---------------------------------------------------------------- API for services
    def group(self, gid: int) -> Group:
        return self.groups[gid]

    def _enqueue(self, gid: int, datas: list[bytes]) -> list[asyncio.Future]:
        g = self.groups[gid]
        if not g.is_leader():
            raise NotLeader(g.leader_address)
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in datas]
        g.proposals.extend(zip(datas, futs))
        self.wake.set()
        return futs

    async def propose(self, gid: int, data: bytes) -> Any:
        """Append `data` to the group's log; the state machine's result once it applied.

        Raises NotLeader at once on a follower; ProposalLost when the outcome is unknown.
        The caller bounds the wait (asyncio.wait_for)."""
        return await self._enqueue(gid, [data])[0]

    async def propose_many(self, gid: int, datas: list[bytes]) -> list[Any]:
        """Like propose, for many commands taken by one round."""
        return list(await asyncio.gather(*self._enqueue(gid, datas)))

    async def read_barrier(self, gid: int) -> int:
        """Wait until a linearizable read may be served locally (ReadIndex); returns the index."""
        g = self.groups[gid]
        if not g.is_leader():
            raise NotLeader(g.leader_address)
        fut = asyncio.get_running_loop().create_future()
        g.reads.append(fut)
        self.wake.set()
        return await fut

    # ---------------------------------------------------------------- transport callbacks
    def on_messages(self, batch: list[tuple[int, Message]]) -> None:
        if self._syncing:
            self._held_msgs.extend(batch)
            return
        groups = self.groups
        for gid, m in batch:
            g = groups.get(gid)
            if g is not None and m.to == g.me:
                g.node.step(m)
        self.wake.set()

    async def on_snapshot(self, gid: int, msg: Message, chunks: Any) -> bool:
        g = self.groups.get(gid)
        if g is None or g.restoring:
            return False
        g.restoring = True
        restore = g.store.begin_restore()
        taken = False
        try:
            async for chunk in chunks:
                restore.add_chunk(chunk)
            msg.snapshot_data = restore

            def step() -> bool:
                g.node.step(msg)
                return g.node.raft.log.unstable.snapshot_data is restore
            taken = await self._when_stepping(step)
            if taken:
                log.info("%s: received snapshot at index %d from %s", g.name, msg.snapshot.index,
                         g.peers[msg.frm] if 0 <= msg.frm < len(g.peers) else msg.frm)
            self.wake.set()
            return True
        finally:
            if not taken:
                restore.abort()
            g.restoring = False

    def on_unreachable(self, addr: str) -> None:
        if self._syncing:
            self._held_calls.append(lambda: self.on_unreachable(addr))
            return
        for g in self.groups.values():
            if addr in g.peers:
                g.node.report_unreachable(g.peers.index(addr))
        self.wake.set()

    # ---------------------------------------------------------------- the loop
    async def run(self) -> None:
        ticker = asyncio.create_task(self._ticker())
        try:
            while not self.stopping:
                await self.wake.wait()
                await self._coalesce()
                while await self._round():
                    pass
                # let the transport and the services run before the next round
                await asyncio.sleep(0)
        finally:
            ticker.cancel()
            for t in list(self._tasks):
                t.cancel()
            if self._syncer is not None:
                self._syncer.shutdown(wait=True)
                self._syncer = None

    async def _coalesce(self) -> None:
        """Inputs arrive one per event-loop turn (grpc.aio accepts one new call per turn, the
        transport hands over one batch per turn): while they keep arriving, give them a few
        more turns, so that one round -- one fsync -- serves them all.  An input that arrives
        alone costs one extra turn."""
        for _ in range(COALESCE_TURNS):
            self.wake.clear()
            await asyncio.sleep(0)
            if not self.wake.is_set():
                break
        self.wake.clear()

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.heartbeat_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if self._syncing:
                self._held_ticks += 1
            else:
                for g in self.groups.values():
                    g.node.tick()
            self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def _round(self) -> bool:
        readies: list[tuple[Group, Ready]] = []
        for g in self.groups.values():
            g.flush_inputs()
            if g.node.has_ready():
                readies.append((g, g.node.ready()))
        if not readies:
            return False
        self.rounds += 1
        batch = self.store.new_batch()
        results: list[list[Any]] = []
        for g, rd in readies:
            gs = g.store
            if rd.snapshot is not None and not gs.stage_install_snapshot(batch, rd.snapshot_data,
                                                                         rd.snapshot):
                # the core only hands over snapshots newer than its commit index, which is never
                # behind the stored snapshot: this would be a bug, and must not pass silently
                rd.snapshot_data.abort()
                raise AssertionError(f"{g.name}: storage refused snapshot {rd.snapshot} "
                                     f"(stored {gs.snapshot()})")
            if rd.entries:
                gs.stage_append(batch, rd.entries)
                g.entries_appended += len(rd.entries)
            if rd.hard_state is not None:
                gs.stage_hard_state(batch, rd.hard_state)
            res: list[Any] = []
            if rd.committed:
                res = g.sm.apply(rd.committed, batch)
                gs.stage_applied(batch, rd.committed[-1].index)
                g.entries_applied += len(rd.committed)
            results.append(res)
        for (g, rd), res in zip(readies, results):
            self._send(g, rd.messages)   # they promise nothing: out while the disk works
            # committed entries are durable on a majority already: their proposers may have
            # their answers now (they are sent while the disk works; the batch is written,
            # unsynced, before any other task runs)
            g.finish(rd, res)
        t0 = time.perf_counter()
        # durable (fsync) before anything that depends on it leaves.  Not in a thread: a round
        # that writes nothing (heartbeats, read confirmations), and one that installs a
        # snapshot (no loop turn between the write and the state machine's restore)
        if (self.store.fsync and len(batch)
                and not any(rd.snapshot is not None for _, rd in readies)):
            await self._write_and_sync(batch)
        else:
            self.store.write(batch)
        metrics.observe_fsync(time.perf_counter() - t0)
        for g, rd in readies:
            if rd.snapshot is not None:
                g.sm.restored()
                g.snapshots += 1
                log.info("%s: installed snapshot at index %d", g.name, rd.snapshot.index)
            self._send(g, rd.persisted_messages)
            g.node.advance(rd)
            g.after_advance()
        self._step_held()
        self._compact(readies)
        return True

    async def _write_and_sync(self, batch: Any) -> None:
        """Write the batch unsynced, then fsync in the syncer thread; the loop runs meanwhile
        and the inputs for the cores that arrive are held (see _step_held)."""
        self.store.write(batch, sync=False)
        if self._syncer is None:
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="eraftd-fsync")
        self._syncing = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._syncer, self.store.sync_wal)
        finally:
            self._syncing = False

    async def _when_stepping(self, fn: Callable[[], Any]) -> Any:
        """fn() (which steps a core) now, or when the round waiting for its fsync ends: never
        later than that, however busy the rounds that follow are."""
        if not self._syncing:
            return fn()
        fut = asyncio.get_running_loop().create_future()

        def call() -> None:
            if fut.cancelled():        # the caller is gone (and has undone its part)
                return
            try:
                fut.set_result(fn())
            except Exception as e:     # noqa: BLE001 - the waiting caller gets it
                fut.set_exception(e)
        self._held_calls.append(call)
        return await fut

    def _step_held(self) -> None:
        """Step into the cores what arrived while the round waited for its fsync: messages
        first (a leader's heartbeats count before the ticks that would time it out)."""
        if self._held_msgs:
            msgs, self._held_msgs = self._held_msgs, []
            self.on_messages(msgs)
        if self._held_calls:
            calls, self._held_calls = self._held_calls, []
            for call in calls:
                call()
        if self._held_ticks:
            ticks, self._held_ticks = self._held_ticks, 0
            for _ in range(ticks):
                for g in self.groups.values():
                    g.node.tick()
            self.wake.set()

    def _compact(self, readies: list[tuple[Group, Ready]]) -> None:
        batch = None
        for g, _ in readies:
            point = g.compaction_point()
            if point:
                if batch is None:
                    batch = self.store.new_batch()
                g.store.stage_compact(batch, point)
                log.info("%s: compacted log through index %d", g.name, point)
        if batch is not None:
            self.store.write(batch)

    def _send(self, g: Group, msgs: list[Message]) -> None:
        if not msgs:
            return
        by_peer: dict[int, list[Message]] = {}
        for m in msgs:
            if m.type == MsgType.SNAP:
                self._spawn(self._send_snapshot(g, m))
            else:
                by_peer.setdefault(m.to, []).append(m)
        for to, ms in by_peer.items():
            self.transport.send(g.peers[to], g.gid, ms)

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _send_snapshot(self, g: Group, m: Message) -> None:
        meta, chunks = g.store.snapshot_chunks()
        m.snapshot = meta
        addr = g.peers[m.to]
        log.info("%s: sending snapshot at index %d to %s", g.name, meta.index, addr)
        ok = False
        try:
            ok = await self.transport.send_snapshot(addr, g.gid, m, chunks)
        except Exception as e:  # the peer went away mid-stream: report and retry later
            log.warning("%s: snapshot to %s failed: %s", g.name, addr, e)
        await self._when_stepping(lambda: g.node.report_snapshot(m.to, ok))
        g.snapshots += ok
        self.wake.set()
