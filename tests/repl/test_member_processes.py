"""`eraftd member ...` one-shots against real `eraftd run` processes: the README's "Add a
replica" and "Replace a machine" walk-throughs, literally (a 3-peer controller group; a fourth
node started with `[controller] join = true`; a follower whose disk was wiped).

Every wait is a condition with a generous timeout; every process is killed by the fixture.
"""
from __future__ import annotations

import json
import shutil

import pytest
from repl_support import G100, RAFT, ShellCluster, eraftd

from eraftd.config import dump_toml
from eraftd.testing import Cluster, Node, free_port, leader_of, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def ctrl(tmp_path):
    c = Cluster(tmp_path, n=3, test_machine=None, raft=RAFT)
    try:
        yield c.start()
    finally:
        c.close()
    for n in c.nodes:
        text = n.log_text()
        assert "Traceback" not in text, f"{n.name}:\n{text[-3000:]}"


def status_saying(controllers: str, text: str) -> str:
    """`eraftd status` once it says `text` (polled, 60 s at most): its output."""
    def said() -> str | None:
        r = eraftd("--controllers", controllers, "status", timeout=60)
        return r.stdout if text in r.stdout else None
    return wait_for(said, 60, f"status to say {text!r}")


def members(controllers: str) -> dict:
    r = eraftd("--controllers", controllers, "member", "list", "ctrl", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_add_a_replica_then_remove_it(ctrl, tmp_path):
    c = ctrl
    controllers = ",".join(n.address for n in c.nodes)
    c.wait_leader()
    # the new machine: join = true, peers = the members it asks to be added
    new = f"127.0.0.1:{free_port()}"
    n3 = Node("n3", tmp_path, {"node": {"listen": new, "data_dir": "data"},
                               "controller": {"peers": [n.address for n in c.nodes], "join": True},
                               "raft": RAFT})
    c.nodes.append(n3)                           # killed by the fixture with the others
    n3.start().wait_serving(60)
    # first as a learner: status marks it
    r = eraftd("--controllers", controllers, "member", "add", "ctrl", new, "--learner")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"added {new} to the controller group as a learner (member 3)\n"
    r = eraftd("--controllers", controllers, "status")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if new in line)
    assert row.split()[0] == "ctrl" and "learner" in row, r.stdout
    # then promoted (it waits until the learner has caught up)
    r = eraftd("--controllers", controllers, "member", "promote", "ctrl", new)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"{new} is a voter of the controller group (member 3)"
    ms = members(controllers)
    assert sorted(m["address"] for m in ms["members"] if m["role"] == "voter") == sorted(
        n.address for n in c.nodes)
    # remove it again: three voters
    r = eraftd("--controllers", controllers, "member", "remove", "ctrl", new)
    assert (r.returncode, r.stdout) == (0, f"removed {new} (member 3) from the controller group\n"), r.stderr
    ms = members(controllers)
    assert [m["role"] for m in ms["members"]] == ["voter"] * 3 and new not in json.dumps(ms)
    # and once more in one step: add waits for the catch-up and promotes
    n3.kill()
    shutil.rmtree(n3.dir / "data")
    n3.start().wait_serving(60)
    r = eraftd("--controllers", controllers, "member", "add", "ctrl", new)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"{new} is a voter of the controller group (member 4)"
    assert sum(m["role"] == "voter" for m in members(controllers)["members"]) == 4


def test_replace_a_machine_whose_disk_was_wiped(ctrl):
    c = ctrl
    controllers = ",".join(n.address for n in c.nodes)
    ld = c.wait_leader()
    f = next(n for n in c.nodes if n is not ld)
    f.kill()
    shutil.rmtree(f.dir / "data")
    f.start().wait_serving(60)
    # status says what happened and what to do
    line = f"{f.address} came back with an empty disk"

    out = status_saying(controllers, line)
    assert f"eraftd member replace ctrl {f.address}" in out
    old = next(m["id"] for m in members(controllers)["members"] if m["address"] == f.address)
    r = eraftd("--controllers", controllers, "member", "replace", "ctrl", f.address)
    assert r.returncode == 0, r.stderr
    steps = r.stdout.splitlines()
    assert steps[0] == f"removed {f.address} (member {old}) from the controller group (its old disk)"
    assert steps[1].startswith(f"added {f.address} to the controller group as a learner (member ")
    assert steps[-1].startswith(f"{f.address} is a voter of the controller group (member ")
    ms = members(controllers)
    assert sorted(m["address"] for m in ms["members"] if m["role"] == "voter") == sorted(
        n.address for n in c.nodes)
    assert old not in [m["id"] for m in ms["members"]]
    wait_for(lambda: f.group_status(0).problem == "", 60, "the replaced node's problem to clear")


@pytest.fixture
def eraft_shape(tmp_path):
    """eRaft's shape: 3 nodes, each a controller peer and a replica of group 100, 20 keys."""
    c = ShellCluster(tmp_path)
    try:
        c.start()
        for i in range(20):
            assert eraftd("--controllers", c.controllers, "put", f"k{i}", f"v{i}").returncode == 0
        yield c
    finally:
        c.close()


def test_add_a_replica_to_a_shardkv_group_then_remove_it(eraft_shape, tmp_path):
    c = eraft_shape
    cs = ["--controllers", c.controllers]
    new = f"127.0.0.1:{free_port()}"
    n = Node("g100-new", tmp_path, {"node": {"listen": new, "data_dir": "data"},
                                    "shardkv": {"gid": G100, "peers": c.addresses,
                                                "controllers": c.addresses, "join": True},
                                    "raft": RAFT})
    c.extra[G100] = [n]                          # killed with the others
    n.start().wait_serving(60)
    r = eraftd(*cs, "member", "add", str(G100), new)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == (
        f"{new} is a voter of group {G100} (member 3)"), r.stderr
    ms = json.loads(eraftd(*cs, "member", "list", str(G100), "--json").stdout)
    assert [m["role"] for m in ms["members"]] == ["voter"] * 4
    r = eraftd(*cs, "member", "remove", str(G100), c.addresses[0])   # a founding one
    assert (r.returncode, r.stdout.splitlines()[0]) == (
        0, f"removed {c.addresses[0]} (member 0) from group {G100}"), r.stderr
    ms = json.loads(eraftd(*cs, "member", "list", str(G100), "--json").stdout)
    assert sorted(m["address"] for m in ms["members"]) == sorted(c.addresses[1:] + [new])
    for i in range(20):
        assert eraftd(*cs, "get", f"k{i}").stdout == f"v{i}\n"


def test_replace_a_wiped_node_of_both_groups(eraft_shape):
    """A node that is a controller peer and a replica of group 100 loses its disk: both groups
    refuse it, status says so, and `member replace` of each group brings it back."""
    c = eraft_shape
    cs = ["--controllers", c.controllers]
    ld = leader_of(c.nodes, 0)
    f = next(x for x in c.nodes if x is not ld)
    f.kill()
    shutil.rmtree(f.dir / "data")
    # the new machine at its address: the same TOML with join = true in both sections
    f.config = {**f.config, "controller": {**f.config["controller"], "join": True},
                "shardkv": {**f.config["shardkv"], "join": True}}
    f.toml.write_text(dump_toml(f.config))
    f.start().wait_serving(60)

    status_saying(c.controllers, f"{f.address} came back with an empty disk")
    for g in ("ctrl", str(G100)):
        r = eraftd(*cs, "member", "replace", g, f.address, "--timeout", "20s")
        assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith(
            f"{f.address} is a voter of "), (g, r.stdout, r.stderr)
    wait_for(lambda: all(s.problem == "" for s in f.status().groups), 60,
             "the replaced node's problems to clear")
    for i in range(20):
        assert eraftd(*cs, "get", f"k{i}").stdout == f"v{i}\n"


def test_replace_a_wiped_replica_of_a_shardkv_group(eraft_shape):
    """README "Replace a machine": a replica of group 101 (a shardkv-only node) loses its disk
    and is started again with its TOML; status names the replace command; after it every key
    reads back and the node serves with no problem."""
    c = eraft_shape
    cs = ["--controllers", c.controllers]
    peers = c.add_group(101, replicas=3)
    r = eraftd(*cs, "join", "101=" + ",".join(peers), "--wait")
    assert r.returncode == 0, r.stderr
    for i in range(20, 40):
        assert eraftd(*cs, "put", f"k{i}", f"v{i}").returncode == 0
    ld = leader_of(c.extra[101], 101)
    f = next(n for n in c.extra[101] if n is not ld)
    f.kill()
    shutil.rmtree(f.dir / "data")
    f.start().wait_serving(60)

    status_saying(c.controllers, f"eraftd member replace 101 {f.address}")
    r = eraftd(*cs, "member", "replace", "101", f.address)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith(
        f"{f.address} is a voter of group 101 (member "), (r.stdout, r.stderr)
    wait_for(lambda: f.group_status(101).problem == "", 60, "the replaced node's problem to clear")
    for i in range(40):
        assert eraftd(*cs, "get", f"k{i}").stdout == f"v{i}\n"
