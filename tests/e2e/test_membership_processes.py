"""Membership change with real `eraftd run` processes (register state machine, group 0):
add a replica that starts with `join = true`, promote it, remove members (the leader too), and
a follower whose disk was wiped: refused, then replaced, with every acknowledged write on it.

Every wait is a condition polled with a generous timeout; every process is killed by the
fixture, even on failure.
"""
from __future__ import annotations

import shutil
import urllib.error
import urllib.request

import pytest

from eraftd._pb import admin_pb2 as apb
from eraftd import testing
from eraftd.config import dump_toml
from eraftd.testing import Cluster, Node, change_member, free_port, wait_for

pytestmark = pytest.mark.e2e

CTRL = 0


def put_many(c: Cluster, prefix: str, n: int) -> int:
    last = 0
    for start in range(0, n, 50):
        cmds = [f"{prefix}{i}=v{i}".encode() for i in range(start, min(n, start + 50))]
        r = c.propose(CTRL, cmds)
        last = max(last, max(int(x) for x in r.results))
    return last


def local_value(node: Node, key: bytes) -> bytes | None:
    r = node.admin().Read(apb.ReadRequest(group=CTRL, key=key, local=True), timeout=5)
    assert r.err == "OK", r.err
    return r.value if r.found else None


def change(c: Cluster, op: str, address: str = "", node_id: int = -1) -> apb.ChangeMemberResponse:
    return change_member(c.live, CTRL, op, address, node_id)


def readyz(http: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{http}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def members(node: Node) -> apb.MembersResponse:
    return node.admin().Members(apb.MembersRequest(group=CTRL), timeout=5)


def joiner(c: Cluster, base, name: str, address: str | None = None) -> Node:
    """A node that joins the running group: join = true, peers = the existing members."""
    addr = address or f"127.0.0.1:{free_port()}"
    cfg = {"node": {"listen": addr, "data_dir": "data", "testing": True},
           "controller": {"peers": [n.address for n in c.nodes], "join": True},
           "raft": {"heartbeat_ms": 50, "election_ms": 500}, "log": {"level": "info"}}
    n = Node(name, base, cfg, ["--test-state-machine", "register"])
    c.nodes.append(n)   # the fixture kills it with the others
    return n


def wait_caught_up(c: Cluster, address: str) -> None:
    testing.wait_caught_up(c.live, CTRL, address)


def test_add_a_replica_promote_it_and_remove_one(cluster, tmp_path):
    c = cluster(n=3).start()
    c.wait_leader()
    idx = put_many(c, "a", 300)
    n3 = joiner(c, tmp_path, "n3").start().wait_serving()
    st = n3.group_status(CTRL)
    assert "waiting to be added to the group" in st.problem
    r = change(c, "add", n3.address)
    new_id = r.node_id
    assert new_id == 3
    wait_caught_up(c, n3.address)
    change(c, "promote", node_id=new_id)
    ld = c.wait_leader()
    roles = {m.address: m.role for m in members(ld).members}
    assert roles == {n.address: "voter" for n in c.nodes}
    assert local_value(n3, b"a0") == b"v0" and local_value(n3, b"a299") == b"v299"
    assert n3.group_status(CTRL).problem == ""
    # four voters: one down still commits; the new one counts
    victim = next(n for n in c.nodes[:3] if n is not ld)
    victim.kill()
    idx = put_many(c, "b", 50)
    c.wait_applied(CTRL, idx, [n3])
    # remove the dead one: three voters again, and it is gone from the list
    change(c, "remove", victim.address)
    ld = c.wait_leader()
    assert sorted(m.address for m in members(ld).members) == sorted(
        n.address for n in c.nodes if n is not victim)
    # the new replica survives a restart as a member (its id found by its uid)
    n3.stop()
    n3.start().wait_serving()
    idx = put_many(c, "c", 20)
    c.wait_applied(CTRL, idx, [n3])
    assert n3.group_status(CTRL).id == new_id


def test_adding_a_node_that_does_not_host_the_group_is_refused(cluster, tmp_path):
    c = cluster(n=3).start()
    ld = c.wait_leader()
    before = sorted(m.address for m in members(ld).members)
    addr = f"127.0.0.1:{free_port()}"
    stranger = Node("stranger", tmp_path, {   # a node of group 7 only
        "node": {"listen": addr, "data_dir": "data", "testing": True},
        "shardkv": {"gid": 7, "peers": [addr], "controllers": [c.nodes[0].address]},
        "raft": {"heartbeat_ms": 50, "election_ms": 500}}, ["--test-state-machine", "register"])
    c.nodes.append(stranger)            # killed by the fixture with the others
    stranger.start().wait_serving()
    r = change_member_raw(ld, "add", addr)
    assert r.err == (f"{addr} does not host the controller group (it hosts group 7): start it "
                     f"with [controller] peers = [...] and join = true in its TOML"), r.err
    r = change_member_raw(ld, "add", "127.0.0.1:1")
    assert r.err.startswith("127.0.0.1:1 does not answer; start the new node first"), r.err
    r = ld.admin().ChangeMember(apb.ChangeMemberRequest(group=5, op="add", address=addr),
                                timeout=15)
    assert r.err == "this node hosts no group 5"
    assert sorted(m.address for m in members(ld).members) == before      # nothing changed


def change_member_raw(node: Node, op: str, address: str) -> apb.ChangeMemberResponse:
    return node.admin().ChangeMember(apb.ChangeMemberRequest(group=CTRL, op=op, address=address),
                                     timeout=15)


def test_remove_the_leader_and_the_rest_carry_on(cluster):
    c = cluster(n=3).start()
    ld = c.wait_leader()
    put_many(c, "a", 20)
    change(c, "remove", ld.address)
    new = c.wait_leader(exclude=[ld])
    # the new leader may have the removal in its log without knowing yet that it committed (a
    # follower learns a commit index with the next append or heartbeat): it lists the old
    # leader until it commits an entry of its own term and applies the removal
    wait_for(lambda: ld.address not in [m.address for m in members(new).members], 60,
             "the new leader to apply the removal")
    idx = put_many(c, "b", 20)
    c.wait_applied(CTRL, idx, [n for n in c.nodes if n is not ld])
    # the old leader steps down once a member answers its heartbeats with the newer term
    wait_for(lambda: ld.group_status(CTRL).role != "Leader", 60, "the removed leader to step down")


@pytest.mark.parametrize("which", ["follower", "leader"])
def test_wiped_disk_is_refused_then_replaced_with_every_write(cluster, which):
    c = cluster(n=3).start()
    ld = c.wait_leader()
    idx = put_many(c, "a", 200)
    f = ld if which == "leader" else next(n for n in c.nodes if n is not ld)
    c.wait_applied(CTRL, idx, [f])
    f.kill()
    shutil.rmtree(f.dir / "data")
    http = f"127.0.0.1:{free_port()}"
    f.config["node"]["http"] = http
    f.toml.write_text(dump_toml(f.config))
    f.start().wait_serving()
    # it came back with an empty disk under a member's address: refused, and it says so
    wait_for(lambda: "came back with an empty disk" in f.group_status(CTRL).problem, 60,
             "the wiped node to be told it is refused")
    problem = f.group_status(CTRL).problem
    assert f"member replace ctrl {f.address}" in problem
    code, text = readyz(http)
    assert code == 503 and "came back with an empty disk" in text and f.address in text
    wait_for(lambda: any("came back with an empty disk" in x
                         for x in (c.leader(CTRL) or ld).group_status(CTRL).refused), 60,
             "the leader to list the refused member")
    # the group goes on without it
    idx = put_many(c, "b", 50)
    assert local_value(f, b"a0") is None
    # replace: remove the old member, add the same address as a new one, promote
    old_id = next(m.id for m in members(c.wait_leader()).members if m.address == f.address)
    change(c, "remove", node_id=old_id)
    r = change(c, "add", f.address)
    assert r.node_id != old_id
    wait_caught_up(c, f.address)
    change(c, "promote", node_id=r.node_id)
    c.wait_applied(CTRL, idx, [f])
    assert local_value(f, b"a0") == b"v0" and local_value(f, b"a199") == b"v199"
    assert local_value(f, b"b49") == b"v49"
    wait_for(lambda: f.group_status(CTRL).problem == "", 30, "the replaced node's problem to clear")
    wait_for(lambda: readyz(http)[0] == 200, 30, "the replaced node to be ready")
