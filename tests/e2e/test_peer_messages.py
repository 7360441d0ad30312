"""Malformed peer messages (issue 17, items 4 and 5) with real processes.

Each message is sent over the peer stream directly (RaftTransport.Send with a hand-made
MessageBatch, x-eraftd-from = the leader's address) to a follower and to the leader while a
write load runs (so that many arrive while a round waits for its fsync and are stepped later,
from the held queue).  Nothing may stop a node: every one is dropped with one log line per peer
per minute, the group keeps its leader and commits, the replicas converge; a heartbeat at term
2^63-1 changes no term, and a restart after it is fine."""
from __future__ import annotations

import threading

import grpc
import pytest

from eraftd._pb import admin_pb2 as apb
from eraftd._pb import raft_pb2 as rpb
from eraftd._pb import raft_pb2_grpc as rpb_grpc
from eraftd.raft.messages import ConfChange, ConfChangeOp, MsgType as T
from eraftd.testing import Cluster, wait_for

pytestmark = pytest.mark.e2e

CTRL = 0


def send(target, sender: str, msgs: list[rpb.RaftMessage], copies: int = 20) -> None:
    """`msgs` as `copies` batches on one Send stream from `sender` to `target`."""
    batch = rpb.MessageBatch(from_addr=sender, msgs=msgs)
    with grpc.insecure_channel(target.address) as ch:
        rpb_grpc.RaftTransportStub(ch).Send(iter([batch] * copies),
                                           metadata=(("x-eraftd-from", sender),), timeout=30)


def install(target, sender: str, msg: rpb.RaftMessage, data: bytes = b"") -> rpb.SnapshotAck:
    chunks = [rpb.SnapshotChunk(header=rpb.SnapshotHeader(from_addr=sender, msg=msg))]
    if data:
        chunks.append(rpb.SnapshotChunk(data=data))
    with grpc.insecure_channel(target.address) as ch:
        return rpb_grpc.RaftTransportStub(ch).InstallSnapshot(
            iter(chunks), metadata=(("x-eraftd-from", sender),), timeout=30)


def malformed(term: int, commit: int, frm: int, to: int) -> dict[str, rpb.RaftMessage]:
    """The bad messages, by name: each from member `frm` to member `to` of the controller group."""
    def m(**kw) -> rpb.RaftMessage:
        kw = {"term": term, "to": to, "frm": frm, **kw}
        return rpb.RaftMessage(group=CTRL, **kw)
    e = rpb.Entry
    bad_add = ConfChange(ConfChangeOp.ADD_LEARNER, 7, b"{not json").encode()
    return {
        "SNAP without data": m(type=T.SNAP, has_snapshot=True, snapshot_index=commit + 50,
                               snapshot_term=term),
        "SNAP without a snapshot": m(type=T.SNAP),
        "HUP": m(type=T.HUP),
        "BEAT": m(type=T.BEAT, term=0),
        "CHECK_QUORUM": m(type=T.CHECK_QUORUM),
        "UNREACHABLE": m(type=T.UNREACHABLE, term=0),
        "not a type": m(type=99),
        "append below commit": m(type=T.APP, index=max(0, commit - 3), log_term=term,
                                 commit=commit + 1000,
                                 entries=[e(term=term, index=1, data=b"x")]),
        "append with a gap": m(type=T.APP, index=commit, log_term=term,
                               entries=[e(term=term, index=commit + 1), e(term=term, index=commit + 9)]),
        "append of an unknown entry type": m(type=T.APP, index=commit, log_term=term,
                                             entries=[e(term=term, index=commit + 1, type=7)]),
        "append of a damaged membership change": m(type=T.APP, index=commit, log_term=term,
                                                   entries=[e(term=term, index=commit + 1, type=1,
                                                              data=bad_add)]),
        "append with entries past its term": m(type=T.APP, index=commit, log_term=term,
                                               entries=[e(term=term + 5, index=commit + 1)]),
        "negative term": m(type=T.HEARTBEAT, term=-5),
        "negative index": m(type=T.APP, index=-10, log_term=term),
        "negative ids": m(type=T.VOTE, frm=-3, index=1 << 40, log_term=term),
        "APP without a term": m(type=T.APP, term=0, index=commit, log_term=0),
        "heartbeat with entries": m(type=T.HEARTBEAT, entries=[e(term=term, index=1)]),
        "a huge context": m(type=T.HEARTBEAT, context=b"x" * 100_000),
        "heartbeat at term 2^63-1": m(type=T.HEARTBEAT, term=(1 << 63) - 1, commit=commit),
        "heartbeat 2^40 terms ahead": m(type=T.HEARTBEAT, term=term + (1 << 40), commit=commit),
        "vote 2^40 terms ahead": m(type=T.VOTE, term=term + (1 << 40), index=1 << 40,
                                   log_term=term + (1 << 40)),
        "forged acknowledgement": m(type=T.APP_RESP, index=1 << 50),
        "a group not hosted": rpb.RaftMessage(group=4242, type=T.HEARTBEAT, to=to, frm=frm, term=term),
    }


def test_malformed_peer_messages_are_dropped_and_the_group_goes_on(tmp_path):
    c = Cluster(tmp_path, n=3)
    stop = threading.Event()
    acked: list[bytes] = []
    try:
        c.start()
        leader = c.wait_leader()
        c.propose(CTRL, [b"before=1"])

        def load() -> None:
            i = 0
            while not stop.is_set():
                cmds = [f"k{i}-{j}=v{i}".encode() for j in range(20)]
                try:
                    c.propose(CTRL, cmds, timeout=30)
                    acked.extend(cmds)
                except (TimeoutError, grpc.RpcError):
                    pass
                i += 1
        writer = threading.Thread(target=load, daemon=True)
        writer.start()
        wait_for(lambda: len(acked) >= 100, 60, "the write load to start")

        st = leader.group_status(CTRL)
        term = st.term
        follower = next(n for n in c.nodes if n is not leader)
        fid = follower.group_status(CTRL).id
        for target, to, frm in ((follower, fid, st.id), (leader, st.id, fid)):
            sender = leader.address if target is follower else follower.address
            cases = malformed(term, target.group_status(CTRL).commit_index, frm, to)
            for name, msg in cases.items():
                send(target, sender, [msg])
                assert all(n.running() for n in c.nodes), f"a node exited after {name!r}"
            # a snapshot header must be a SNAP with a snapshot; a members record must decode
            for msg in (cases["HUP"], cases["SNAP without a snapshot"],
                        cases["heartbeat at term 2^63-1"]):
                ack = install(target, sender, msg)
                assert not ack.ok and ack.error, ack
            assert all(n.running() for n in c.nodes)

        n_before = len(acked)
        wait_for(lambda: len(acked) >= n_before + 100, 60, "the group to keep committing")
        stop.set()
        writer.join(60)
        # the same leader at the same term: nothing moved any term
        assert c.wait_leader() is leader
        assert leader.group_status(CTRL).term == term
        for n in c.nodes:
            assert n.group_status(CTRL).term == term
        # the replicas converge: every acknowledged write is on every node
        last = c.propose(CTRL, [b"after=1"]).index
        c.wait_applied(CTRL, last)
        stride = max(1, len(acked) // 500)        # 500 acknowledged writes a node, evenly spread
        for n in c.nodes:
            for key in acked[::stride] + acked[-1:]:
                k, v = key.split(b"=")
                r = n.admin().Read(apb.ReadRequest(group=CTRL, key=k, local=True), timeout=5)
                assert r.err == "OK" and r.found and r.value == v, (n.name, key, r)
        for n in c.nodes:
            text = n.log_text()
            assert "Traceback" not in text, text[-3000:]
            assert "raft driver failed" not in text
        # one line per peer per minute, naming what was dropped and why
        for target, sender in ((follower, leader.address), (leader, follower.address)):
            lines = [ln for ln in target.log_text().splitlines() if "dropped " in ln
                     and f" from {sender}: " in ln]
            assert len(lines) == 1, lines
            assert "this node ignores such messages" in lines[0]

        # a restart after all of it is fine (the huge term was never persisted)
        follower.stop()
        follower.start().wait_serving(60)
        last = c.propose(CTRL, [b"restarted=1"]).index
        c.wait_applied(CTRL, last)
        assert follower.group_status(CTRL).term == term
        assert c.wait_leader() is leader
    finally:
        stop.set()
        c.close()


def test_a_heartbeat_at_term_2_63_minus_1_is_dropped_and_the_group_keeps_its_leader(tmp_path):
    """Item 5: term + 1 of 2^63-1 overflows int64, for good once persisted; a term more than
    2^32 ahead is refused before any core sees it, and nothing of it reaches a disk."""
    far = ("heartbeat at term 2^63-1", "heartbeat 2^40 terms ahead", "vote 2^40 terms ahead")
    c = Cluster(tmp_path, n=3)
    try:
        c.start()
        leader = c.wait_leader()
        c.propose(CTRL, [b"before=1"])
        term = leader.group_status(CTRL).term
        for target in c.nodes:
            sender = next(n for n in c.nodes if n is not target)
            to, frm = target.group_status(CTRL).id, sender.group_status(CTRL).id
            cases = malformed(term, target.group_status(CTRL).commit_index, frm, to)
            send(target, sender.address, [cases[name] for name in far])
            assert not install(target, sender.address, cases[far[0]]).ok
        assert all(n.running() for n in c.nodes)
        assert c.wait_leader() is leader
        assert all(n.group_status(CTRL).term == term for n in c.nodes)
        c.propose(CTRL, [b"during=1"])
        # every node restarted: the terms on disk are the ones before
        for n in c.nodes:
            n.stop()
        for n in c.nodes:
            n.start()
        for n in c.nodes:
            n.wait_serving(60)
        last = c.propose(CTRL, [b"after=1"]).index
        c.wait_applied(CTRL, last)
        for n in c.nodes:
            st = n.group_status(CTRL)
            assert term <= st.term < term + 100, (n.name, st.term)
            assert "term 9223372036854775807 is outside" in n.log_text()
            assert "Traceback" not in n.log_text()
    finally:
        c.close()
