"""Fuzz of the peer-message boundary (issue 17): random MessageBatch field values, through the
wire (serialized and parsed), the codec, the driver's entry points (validation) and its rounds
(the Raft core, the WriteBatch, the state machine), in-process on a real NodeStore.

Whatever arrives, the driver never raises, nothing the validation let through makes the core
raise (the driver's last guard is never needed), the log's invariants hold and every number it
persists stays inside its storage type.  Bounded: hypothesis max_examples, derandomized."""
from __future__ import annotations

import asyncio
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eraftd._pb import raft_pb2 as pb
from eraftd.node import validate
from eraftd.node.codec import decode_batch, decode_message
from eraftd.node.driver import Driver, GroupSpec
from eraftd.node.members import ChangeContext
from eraftd.node.statemachine import RegisterStateMachine
from eraftd.node.storage import NodeStore
from eraftd.raft.messages import ConfChange, MsgType
from eraftd.raft.options import RaftOptions

GID = 5
PEERS = ("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003")
INT64 = (-(1 << 63), (1 << 63) - 1)

small = st.integers(0, 12)
number = st.one_of(small, small, st.sampled_from([-1, 1 << 32, (1 << 62) + 1, INT64[1], INT64[0]]),
                   st.integers(*INT64))
ident = st.one_of(st.sampled_from([0, 1, 2, 1, 2]), st.integers(-(1 << 31), (1 << 31) - 1))
mtype = st.one_of(st.sampled_from([int(t) for t in MsgType]), st.integers(0, (1 << 32) - 1))
conf_data = st.one_of(
    st.binary(max_size=12),
    st.builds(lambda op, nid, addr, uid: ConfChange(op, nid, ChangeContext(addr, uid).encode()).encode(),
              st.integers(0, 4), st.integers(0, (1 << 32) - 1),
              st.sampled_from(["127.0.0.1:7004", "not an address", ""]), st.integers(0, 1 << 64)))
entry = st.builds(pb.Entry, term=number, index=number,
                  type=st.one_of(st.sampled_from([0, 0, 1]), st.integers(0, (1 << 32) - 1)),
                  data=st.one_of(st.binary(max_size=8), conf_data))
context = st.one_of(st.just(b""), st.sampled_from([b"transfer", b"need-snapshot"]),
                    st.binary(max_size=16))
message = st.builds(
    pb.RaftMessage, group=st.sampled_from([GID, GID, GID, 0, 4242]), type=mtype, to=ident,
    frm=ident, term=number, log_term=number, index=number,
    entries=st.lists(entry, max_size=4), commit=number, reject=st.booleans(),
    reject_hint=number, has_snapshot=st.booleans(), snapshot_index=number,
    snapshot_term=number, context=context)


def test_random_peer_messages_never_break_the_driver(tmp_path):
    store = NodeStore.open(str(tmp_path / "data"), {"test": "fuzz"}, fsync=False)
    transport = Sink()
    driver = Driver(store, transport, heartbeat_ms=3_600_000)
    g = driver.add_group(GroupSpec(GID, PEERS, 0, RegisterStateMachine, PEERS[0]),
                         RaftOptions(id=0, peers=(0, 1, 2), election_tick=4, pre_vote=False),
                         random.Random(7), snapshot_entries=1 << 30)
    drops: list[str] = []
    real_drop = driver.drops.drop

    def drop(peer: str, what: str, why: str) -> None:
        drops.append(why)
        real_drop(peer, what, why)
    driver.drops.drop = drop
    loop = asyncio.new_event_loop()

    async def rounds() -> None:
        for _ in range(50):
            if not await driver._round():
                return

    @settings(max_examples=400, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(msgs=st.lists(message, min_size=1, max_size=6), ticks=st.integers(0, 5),
           win=st.booleans(), snap=st.one_of(st.none(), message))
    def one(msgs, ticks, win, snap):
        if win and not g.is_leader():     # make the node lead now and then (another role's code)
            g.node.campaign()
            g.node.step(pb_vote_grant(g))
        wire = pb.MessageBatch.FromString(
            pb.MessageBatch(from_addr=PEERS[1], msgs=msgs).SerializeToString())
        driver.on_messages(decode_batch(wire), PEERS[1], False)
        for _ in range(ticks):
            g.node.tick()
        loop.run_until_complete(rounds())
        if snap is not None:
            gid, m = decode_message(snap)
            loop.run_until_complete(driver.on_snapshot(gid, m, no_chunks(), PEERS[1]))
            loop.run_until_complete(rounds())
        r = g.node.raft
        assert r.log.applied <= r.log.committed <= r.log.last_index()
        assert 0 <= r.term <= validate.MAX_NUMBER + (1 << 20)
        hs = store.group(GID).hard_state()
        assert 0 <= hs.term <= validate.MAX_NUMBER + (1 << 20) and hs.commit <= validate.MAX_NUMBER
        raised = [w for w in drops if w.startswith("the Raft core could not take it")]
        assert not raised, raised[0]
    try:
        one()
    finally:
        loop.close()
        store.close()
    assert drops          # (the fuzz did send invalid messages)


def pb_vote_grant(g):
    from eraftd.raft.messages import Message
    return Message(MsgType.VOTE_RESP, to=0, frm=1, term=g.node.term)


async def no_chunks():
    return
    yield b""


class Sink:
    """A transport that takes everything and sends nothing; snapshots fail."""

    def send(self, addr, gid, msgs) -> None:
        pass

    async def send_snapshot(self, addr, gid, msg, chunks) -> bool:
        return False
