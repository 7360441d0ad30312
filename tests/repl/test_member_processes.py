"""`eraftd member ...` one-shots against real `eraftd run` processes: the README's "Add a
replica" and "Replace a machine" walk-throughs, literally (a 3-peer controller group; a fourth
node started with `[controller] join = true`; a follower whose disk was wiped).

Every wait is a condition with a generous timeout; every process is killed by the fixture.
"""
from __future__ import annotations

import json
import shutil

import pytest
from repl_support import RAFT, eraftd

from eraftd.testing import Cluster, Node, free_port, wait_for

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

    def said() -> str | None:
        r = eraftd("--controllers", controllers, "status", timeout=60)
        return r.stdout if line in r.stdout else None
    out = wait_for(said, 60, "status to show the refused node")
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
