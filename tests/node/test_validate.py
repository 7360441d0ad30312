"""The peer-message validation (eraftd/node/validate.py) refuses nothing a correct peer sends:
every message of seeded chaos simulations of the Raft core (elections, appends, snapshots,
membership changes, transfers, reads, crashes and partitions), taken through the codec as it
would cross the wire, passes problem() / snapshot_problem() and, just before it is stepped,
step_problem().  And a few messages it must refuse, with the reason in words."""
from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from eraftd.node import validate
from eraftd.node.codec import decode_batch, decode_message, encode_batch, encode_message
from eraftd.node.members import ChangeContext
from eraftd.raft.messages import ConfChange, ConfChangeOp, Entry, EntryType, Message, MsgType

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import sim.sim as sim_module  # noqa: E402
from sim.chaos import Chaos  # noqa: E402
from sim.sim import Cluster  # noqa: E402

SEEDS = range(24)          # membership, snapshots and transfers all occur among them
STEPS = 3000


def test_no_message_of_a_correct_peer_is_refused(monkeypatch):
    checked = {"n": 0, "snap": 0}
    real = Cluster._deliver

    def deliver(self, m: Message, frm: int, frm_epoch: int, to_epoch: int) -> None:
        if m.type == MsgType.SNAP:
            _, wire = decode_message(encode_message(1, m))
            why = validate.snapshot_problem(wire)
            checked["snap"] += 1
        else:
            [(_, wire)] = decode_batch(encode_batch([(1, m)]))
            why = validate.problem(wire)
        dst = self.nodes[m.to]
        if not why and dst.up:
            why = validate.step_problem(dst.raw.raft, wire)
        assert not why, f"{m!r} refused: {why}"
        checked["n"] += 1
        real(self, m, frm, frm_epoch, to_epoch)
    monkeypatch.setattr(Cluster, "_deliver", deliver)
    # the sim's membership changes carry a context of their own; the driver's describe the
    # new member (its address and uid): give the sim's those
    monkeypatch.setattr(sim_module, "ConfChange", DriverConfChange)
    for seed in SEEDS:
        Chaos(seed).run(STEPS)
    assert checked["n"] > 10_000 and checked["snap"] > 0, checked


class DriverConfChange(ConfChange):
    def __new__(cls, op, node_id, context=b""):
        ctx = ChangeContext(f"127.0.0.1:{7000 + node_id}", node_id + 1).encode()
        return ConfChange.__new__(ConfChange, op, node_id, ctx)

    decode = staticmethod(ConfChange.decode)


def test_what_no_correct_peer_sends_is_refused_in_words():
    app = Message(MsgType.APP, to=1, frm=0, term=3, log_term=3, index=10, commit=10,
                  entries=(Entry(3, 11, b"x"), Entry(3, 12, b"y")))
    assert validate.problem(app) == ""
    cases = {
        "HUP is not a message a peer sends": Message(MsgType.HUP, to=1, frm=0, term=3),
        "type 99 is not a message a peer sends": Message(99, to=1, frm=0, term=3),
        "a SNAP message on the message stream": Message(MsgType.SNAP, to=1, frm=0, term=3),
        "not consecutive": Message(MsgType.APP, to=1, frm=0, term=3, log_term=3, index=10,
                                   entries=(Entry(3, 11), Entry(3, 13))),
        "entry 11 of unknown type 7": Message(MsgType.APP, to=1, frm=0, term=3, index=10,
                                              log_term=3, entries=(Entry(3, 11, b"", 7),)),
        "entry 11 of term 4": Message(MsgType.APP, to=1, frm=0, term=3, index=10, log_term=3,
                                      entries=(Entry(4, 11),)),
        "a damaged membership change": Message(
            MsgType.APP, to=1, frm=0, term=3, index=10, log_term=3,
            entries=(Entry(3, 11, b"\x09\x00\x00\x00\x01", EntryType.CONF_CHANGE),)),
        "new member is not described": Message(
            MsgType.APP, to=1, frm=0, term=3, index=10, log_term=3,
            entries=(Entry(3, 11, ConfChange(ConfChangeOp.ADD_LEARNER, 3, b"[1]").encode(),
                           EntryType.CONF_CHANGE),)),
        "term 9223372036854775807 is outside": Message(MsgType.HEARTBEAT, to=1, frm=0,
                                                       term=(1 << 63) - 1),
        "term -1 is outside": Message(MsgType.HEARTBEAT, to=1, frm=0, term=-1),
        "HEARTBEAT without a term": Message(MsgType.HEARTBEAT, to=1, frm=0),
        "member ids -1 -> 1": Message(MsgType.VOTE, to=1, frm=-1, term=3),
        "a context of 5000 bytes": Message(MsgType.HEARTBEAT, to=1, frm=0, term=3,
                                           context=b"x" * 5000),
    }
    for want, m in cases.items():
        assert want in validate.problem(m), (want, validate.problem(m))


def test_a_term_far_ahead_and_an_ack_past_the_log_are_refused_against_the_state():
    class Log:
        def last_index(self):
            return 50

    class Raft:
        term = 7
        log = Log()
    far = Message(MsgType.HEARTBEAT, to=1, frm=0, term=7 + (1 << 32) + 1)
    assert "implausibly far ahead of this node's term 7" in validate.step_problem(Raft, far)
    assert validate.step_problem(Raft, Message(MsgType.HEARTBEAT, to=1, frm=0, term=8)) == ""
    ack = Message(MsgType.APP_RESP, to=0, frm=1, term=7, index=51)
    assert "past this leader's last index 50" in validate.step_problem(Raft, ack)
    assert validate.step_problem(Raft, Message(MsgType.APP_RESP, to=0, frm=1, term=7, index=50)) == ""


small = st.integers(-2, 12)
entries = st.lists(st.builds(Entry, small, small, st.just(b""), st.sampled_from([0, 0, 0, 1, 5])),
                   max_size=4)


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(st.builds(Message, st.sampled_from([int(t) for t in MsgType]), small, small, small, small,
                 small, entries, small, st.booleans(), small))
def test_the_fast_path_takes_only_what_the_detailed_check_takes(m):
    if validate.problem(m) == "":
        assert validate._problem(m) == "", m
