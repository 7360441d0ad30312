"""Three real `eraftd run` processes on loopback running the register state machine.

Election, replication, failover after kill -9 of the leader, and a restarted node catching up
from the log and, once the log was compacted, from a snapshot.  Every wait is a condition
polled with a generous timeout; every process is killed by the fixture, even on failure.
"""
from __future__ import annotations

import re

import pytest

from eraftd._pb import admin_pb2 as apb
from eraftd.testing import Cluster, wait_for

pytestmark = pytest.mark.e2e

CTRL = 0


def local_value(node, key: bytes) -> bytes | None:
    r = node.admin().Read(apb.ReadRequest(group=CTRL, key=key, local=True), timeout=5)
    assert r.err == "OK", r.err
    return r.value if r.found else None


def put_many(c: Cluster, prefix: str, n: int, per_call: int = 50) -> int:
    """Write prefix0..prefix{n-1} = value; return the last acknowledged index."""
    last = 0
    for start in range(0, n, per_call):
        cmds = [f"{prefix}{i}=v{i}".encode() for i in range(start, min(n, start + per_call))]
        r = c.propose(CTRL, cmds)
        assert len(r.results) == len(cmds)
        last = max(last, max(int(x) for x in r.results))
    return last


def test_elect_replicate_failover_and_catch_up_from_log(cluster):
    c = cluster(n=3).start()
    leader = c.wait_leader()
    idx = put_many(c, "a", 100)
    c.wait_applied(CTRL, idx)
    for n in c.nodes:  # every replica applied every write
        assert local_value(n, b"a0") == b"v0" and local_value(n, b"a99") == b"v99"

    leader.kill()
    new = c.wait_leader(exclude=[leader])
    assert new is not leader
    idx = put_many(c, "b", 100)
    assert c.read(CTRL, b"b42").value == b"v42"   # linearizable read on the new leader

    leader.start().wait_serving()
    c.wait_applied(CTRL, idx, nodes=[leader])
    assert local_value(leader, b"b99") == b"v99"
    assert "raft driver" not in leader.log_text()


def test_restarted_node_catches_up_from_snapshot(cluster):
    c = cluster(n=3, raft={"snapshot_entries": 200}).start()
    c.wait_leader()
    put_many(c, "x", 20)
    leader = c.wait_leader()
    lagging = next(n for n in c.nodes if n is not leader)
    lagging.kill()
    idx = put_many(c, "y", 1000, per_call=100)
    # the leader compacted its log past what the lagging node has
    wait_for(lambda: leader.group_status(CTRL).first_index > 30, 60, "the leader to compact its log")

    lagging.start().wait_serving()
    c.wait_applied(CTRL, idx, nodes=[lagging])
    st = lagging.group_status(CTRL)
    assert st.snapshot_index > 0
    assert re.search(r"installed snapshot at index \d+", lagging.log_text())
    for key, want in ((b"x0", b"v0"), (b"y0", b"v0"), (b"y999", b"v999")):
        assert local_value(lagging, key) == want


def test_sigterm_stops_cleanly_and_restart_keeps_state(cluster):
    c = cluster(n=3).start()
    c.wait_leader()
    idx = put_many(c, "k", 10)
    c.wait_applied(CTRL, idx)
    uids = [n.status(timeout=5).node_uid for n in c.nodes]
    assert len(set(uids)) == 3 and 0 not in uids      # one random uid per data_dir
    for n in c.nodes:
        assert n.stop() == 0
    c.start()
    c.wait_leader()
    for n, uid in zip(c.nodes, uids):  # applied progress is recovered, not replayed from scratch
        wait_for(lambda: n.group_status(CTRL).last_applied >= idx, 60, f"{n.name} to recover")
        assert local_value(n, b"k9") == b"v9"
        assert n.status(timeout=5).node_uid == uid       # the uid is the data_dir's: kept
        ready = [line for line in n.log_text().splitlines() if " ready: listening on " in line]
        assert len(ready) >= 2 and all(f", node uid {uid:016x}, data_dir: " in r for r in ready)
