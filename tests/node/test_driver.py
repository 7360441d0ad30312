"""The driver's round with its fsync in a thread (a node that leads a group).

While a round waits for its fsync the event loop runs on, but nothing is stepped into a Raft
core between its ready() and advance(): peer messages and ticks that arrive meanwhile are held
and stepped when the round ends, and nothing the round produced is sent before the fsync.
A node that leads no group syncs in the loop's thread and acknowledges before it applies."""
from __future__ import annotations

import asyncio
import random
import threading

import pytest

from eraftd.node.driver import Driver, GroupSpec, ProposalLost
from eraftd.node.statemachine import NoopStateMachine
from eraftd.node.storage import NodeStore
from eraftd.raft.messages import Entry, Message, MsgType
from eraftd.raft.options import RaftOptions

GID = 1
TIMEOUT = 30.0


class Recorder:
    """A transport that records what the driver sends, in one event list with the fsyncs."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.sent: list[Message] = []

    def send(self, addr: str, gid: int, msgs: list[Message]) -> None:
        self.sent.extend(msgs)
        self.events.append("send")


def gated_store(tmp_path, gate: threading.Event, events: list[str]) -> NodeStore:
    """A NodeStore whose fsync (in the driver's syncer thread) waits for `gate`, then notes
    "fsync" in `events`."""
    store = NodeStore.open(str(tmp_path / "data"), {"test": "driver"}, fsync=True)
    real_sync = store.sync_wal

    def gated_sync() -> None:
        gate.wait(TIMEOUT)
        real_sync()
        events.append("fsync")

    store.sync_wal = gated_sync
    return store


async def until(cond, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_inputs_during_the_fsync_wait_are_held_until_the_round_ends(tmp_path):
    events: list[str] = []
    gate = threading.Event()
    gate.set()
    store = gated_store(tmp_path, gate, events)
    transport = Recorder(events)
    driver = Driver(store, transport, heartbeat_ms=3_600_000)      # no tick during the test
    g = driver.add_group(GroupSpec(GID, ("a", "b", "c"), 0, NoopStateMachine),
                         RaftOptions(id=0, peers=(0, 1, 2), election_tick=10),
                         random.Random(1), snapshot_entries=1 << 30)
    # the node leads another group (of one): its rounds fsync in the syncer thread (a node
    # that leads no group syncs in the loop's thread: see the next test)
    led = driver.add_group(GroupSpec(GID + 1, ("a",), 0, NoopStateMachine),
                           RaftOptions(id=0, peers=(0,), election_tick=10),
                           random.Random(1), snapshot_entries=1 << 30)
    run = asyncio.create_task(driver.run())
    try:
        led.node.campaign()
        driver.wake.set()
        await until(lambda: led.is_leader() and not driver._syncing, "the group of one to lead")
        gate.clear()
        events.clear()
        # the leader (1) sends an entry: the follower's round writes it and waits for the fsync
        driver.on_messages([(GID, Message(MsgType.APP, to=0, frm=1, term=1, log_term=0, index=0,
                                          entries=(Entry(1, 1, b"x"),)))])
        await until(lambda: driver._syncing, "the round to wait for its fsync")
        assert transport.sent == []           # the answer waits for the fsync

        # meanwhile the leader says the entry is committed: held, not stepped
        commit = Message(MsgType.APP, to=0, frm=1, term=1, log_term=1, index=1, commit=1)
        driver.on_messages([(GID, commit)])
        driver.on_unreachable("b")
        stepped = asyncio.ensure_future(driver._when_stepping(lambda: g.node.raft.log.committed))
        await asyncio.sleep(0.05)             # the loop runs; the core must not move
        assert driver._held_msgs == [(GID, commit, False, "")] and len(driver._held_calls) == 2
        assert g.node.raft.log.committed == 0 and not stepped.done()
        assert transport.sent == []

        gate.set()
        await until(lambda: g.node.raft.log.committed == 1 and not driver._held_msgs,
                    "the held message to be stepped after the round")
        assert await stepped == 1             # after the held message, in arrival order
        assert driver._held_calls == []
        await until(lambda: len(transport.sent) >= 2, "the answers to both appends")
        assert events[0] == "fsync", events   # nothing left before the entry was durable
        acks = [m for m in transport.sent if m.type == MsgType.APP_RESP]
        assert [(m.to, m.index, m.reject) for m in acks][:2] == [(1, 1, False), (1, 1, False)]
        assert g.store.last_index() == 1
    finally:
        gate.set()
        driver.stop()
        await asyncio.wait_for(run, TIMEOUT)
        store.close()


class ApplyRecorder(NoopStateMachine):
    """Notes "apply <index>" in `ApplyRecorder.events` for every entry it applies."""
    events: list[str] = []

    def apply(self, entries, batch):
        self.events.extend(f"apply {e.index}" for e in entries)
        return [None] * len(entries)


async def test_a_node_that_leads_no_group_acknowledges_before_it_applies(tmp_path):
    """A follower-only node: its round writes the new entries synced (in the loop's thread),
    sends its acknowledgement, and only then applies what the round commits, in a second,
    unsynced write (the leader's commit waits for the acknowledgement, not for our apply)."""
    events: list[str] = []
    store = NodeStore.open(str(tmp_path / "data"), {"test": "driver"}, fsync=True)
    real_write = store.write

    def write(batch, sync=True):
        events.append(f"write sync={sync}")
        real_write(batch, sync)
    store.write = write
    transport = Recorder(events)
    ApplyRecorder.events = events
    driver = Driver(store, transport, heartbeat_ms=3_600_000)      # no tick during the test
    g = driver.add_group(GroupSpec(GID, ("a", "b", "c"), 0, ApplyRecorder),
                         RaftOptions(id=0, peers=(0, 1, 2), election_tick=10),
                         random.Random(1), snapshot_entries=1 << 30)
    run = asyncio.create_task(driver.run())
    try:
        driver.on_messages([(GID, Message(MsgType.APP, to=0, frm=1, term=1, log_term=0, index=0,
                                          entries=(Entry(1, 1, b"x"),)))])
        await until(lambda: len(transport.sent) == 1, "the first acknowledgement")
        events.clear()
        # entry 2, and entry 1 is committed
        driver.on_messages([(GID, Message(MsgType.APP, to=0, frm=1, term=1, log_term=1, index=1,
                                          entries=(Entry(1, 2, b"y"),), commit=1))])
        await until(lambda: g.node.applied == 1, "entry 1 to apply")
        assert events == ["write sync=True", "send", "apply 1", "write sync=False"], events
        assert [(m.type, m.index) for m in transport.sent[1:]] == [(MsgType.APP_RESP, 2)]
        assert g.store.applied_index() == 1 and g.store.last_index() == 2
        assert not driver._syncing and driver._held_msgs == []
    finally:
        driver.stop()
        await asyncio.wait_for(run, TIMEOUT)
        store.close()


async def test_a_leader_answers_only_after_its_entry_is_durable_and_holds_its_ticks(tmp_path):
    """A one-node group: its entry commits only once its own write is durable, so the answer
    cannot leave before the fsync; the ticks that come meanwhile are held, then stepped."""
    events: list[str] = []
    gate = threading.Event()
    gate.set()
    store = gated_store(tmp_path, gate, events)
    driver = Driver(store, Recorder(events), heartbeat_ms=5)
    g = driver.add_group(GroupSpec(GID, ("a",), 0, NoopStateMachine),
                         RaftOptions(id=0, peers=(0,), election_tick=2),
                         random.Random(1), snapshot_entries=1 << 30)
    ticks = [0]
    real_tick = g.node.tick

    def counted_tick() -> None:
        ticks[0] += 1
        real_tick()

    g.node.tick = counted_tick
    run = asyncio.create_task(driver.run())
    try:
        await until(g.is_leader, "the one node to lead")
        await until(lambda: not driver._syncing, "the election's rounds to end")
        gate.clear()
        answer = asyncio.ensure_future(driver.propose(GID, b"x"))
        await until(lambda: driver._syncing, "the round to wait for its fsync")
        stepped = ticks[0]
        await until(lambda: driver._held_ticks >= 3, "ticks to be held")
        assert ticks[0] == stepped                          # not stepped while syncing
        assert not answer.done()                            # not committed: not durable here
        events.append("before release")
        gate.set()
        assert await asyncio.wait_for(answer, TIMEOUT) is None
        events.append("answered")
        released = events.index("before release")
        assert "fsync" in events[released:events.index("answered")], events
        await until(lambda: ticks[0] >= stepped + 3, "held ticks to be stepped")
    finally:
        gate.set()
        driver.stop()
        await asyncio.wait_for(run, TIMEOUT)
        store.close()


class JoinMachine(NoopStateMachine):
    """Records every entry it applies; a b"J" entry's result is one element per item."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.entries: list[bytes] = []

    def apply(self, entries, batch):
        self.entries.extend(e.data for e in entries if e.data)
        return [e.data[1:].split(b",") if e.data[:1] == b"J" else None for e in entries]


async def test_joined_proposals_of_a_round_share_one_entry_and_each_gets_its_result(tmp_path):
    """propose_joined: the items one round takes go to the log as one entry, join(items); each
    caller gets its own element of that entry's result; a caller gone before the round is left
    out; a result that is not one element per item fails every caller (outcome unknown)."""
    store = NodeStore.open(str(tmp_path / "data"), {"test": "driver"}, fsync=True)
    driver = Driver(store, Recorder([]), heartbeat_ms=5)
    g = driver.add_group(GroupSpec(GID, ("a",), 0, JoinMachine),
                         RaftOptions(id=0, peers=(0,), election_tick=2),
                         random.Random(1), snapshot_entries=1 << 30)

    def join(items: list[bytes]) -> bytes:
        return b"J" + b",".join(items)

    def bad_join(items: list[bytes]) -> bytes:
        return b"K" + b",".join(items)          # the machine answers None: not per item
    run = asyncio.create_task(driver.run())
    try:
        await until(g.is_leader, "the one node to lead")
        await until(lambda: not driver._syncing, "the election's rounds to end")
        gone = asyncio.ensure_future(driver.propose_joined(GID, b"gone", join))
        calls = [asyncio.ensure_future(driver.propose_joined(GID, x, join))
                 for x in (b"a", b"b", b"c")]
        bad = asyncio.ensure_future(driver.propose_joined(GID, b"z", bad_join))
        await asyncio.sleep(0)                  # they are queued; the first is then cancelled
        gone.cancel()
        assert await asyncio.wait_for(asyncio.gather(*calls), TIMEOUT) == [b"a", b"b", b"c"]
        with pytest.raises(ProposalLost):
            await asyncio.wait_for(bad, TIMEOUT)
        assert b"J" + b"a,b,c" in g.sm.entries and b"Kz" in g.sm.entries
        assert not any(b"gone" in e for e in g.sm.entries)
    finally:
        driver.stop()
        await asyncio.wait_for(run, TIMEOUT)
        store.close()


async def test_joined_reads_wait_for_the_readindex_in_flight_and_share_the_next(tmp_path):
    """read_barrier(joined=True) (eRaft's unary gets): while a ReadIndex of the group is out,
    the read waits and goes with the next one (or with the next round's other reads); with none
    out it goes at once; a leadership change (fail_pending) lets it go too."""
    store = NodeStore.open(str(tmp_path / "data"), {"test": "driver"}, fsync=True)
    driver = Driver(store, Recorder([]), heartbeat_ms=5)
    g = driver.add_group(GroupSpec(GID, ("a",), 0, NoopStateMachine),
                         RaftOptions(id=0, peers=(0,), election_tick=2),
                         random.Random(1), snapshot_entries=1 << 30)
    flushes = 0
    real_flush = g.flush_inputs

    def counted_flush() -> None:
        nonlocal flushes
        flushes += 1
        real_flush()
    g.flush_inputs = counted_flush
    run = asyncio.create_task(driver.run())
    try:
        await until(g.is_leader, "the one node to lead")
        await until(lambda: g.node.applied >= 1 and not driver._syncing, "the term's entry to apply")
        assert await asyncio.wait_for(driver.read_barrier(GID, joined=True), TIMEOUT) >= 1
        # a ReadIndex that never answers is out: joined reads wait while rounds go by
        loop = asyncio.get_running_loop()
        out = loop.create_future()
        g.reads_inflight[b"out"] = [out]
        held = asyncio.ensure_future(driver.read_barrier(GID, joined=True))
        seen = flushes
        await until(lambda: flushes >= seen + 3, "three rounds (ticks)")
        assert not held.done()
        # a plain read goes at once and takes the waiting one along
        assert await asyncio.wait_for(driver.read_barrier(GID), TIMEOUT) >= 1
        assert await asyncio.wait_for(held, TIMEOUT) >= 1
        # waiting again behind the one that is still out; the leadership change ends that one
        held = asyncio.ensure_future(driver.read_barrier(GID, joined=True))
        seen = flushes
        await until(lambda: flushes >= seen + 3, "three rounds (ticks)")
        assert not held.done()
        g.fail_pending(ProposalLost(""))
        assert isinstance(out.exception(), ProposalLost) and not g.reads_inflight
        driver.wake.set()
        assert await asyncio.wait_for(held, TIMEOUT) >= 1
    finally:
        driver.stop()
        await asyncio.wait_for(run, TIMEOUT)
        store.close()
