"""Two more of issue 11's scenarios, with real `eraftd` one-shots against a live cluster: a
leave of the last group serving shards is refused (it would delete every value), and a gid
that left is refused back with other servers (they would replay its history and wedge its
shards) while a re-join with its own servers works.  Each refusal: exit 1, one line, no new
configuration.  (`cluster` is module-scoped: this module has a cluster of its own, as these
tests change which groups there are.)
"""
from __future__ import annotations

import json

import pytest
from repl_support import G100, ShellCluster, cluster, eraftd  # noqa: F401

pytestmark = pytest.mark.e2e

OTHER = 103


def run(c: ShellCluster, *args: str):
    return eraftd("--controllers", c.controllers, *args)


def latest(c: ShellCluster) -> dict:
    r = run(c, "query", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def one_refusal(r, *words: str) -> None:
    assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("eraftd: refused"), r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_leave_of_the_last_group_and_a_rejoin_with_other_servers_are_refused(cluster):  # noqa: F811
    c = cluster
    assert run(c, "put", "k", "v").returncode == 0
    before = latest(c)
    one_refusal(run(c, "leave", str(G100)), f"leave: gid {G100} would leave no group to serve the "
                "shards", "join another group first")
    assert latest(c) == before
    assert run(c, "get", "k").stdout == "v\n"
    # another group (forced: nobody runs it), then gid 100 may leave; back with other servers:
    assert run(c, "join", f"{OTHER}=127.0.0.1:9", "--force").returncode == 0
    assert run(c, "leave", str(G100)).returncode == 0
    before = latest(c)
    one_refusal(run(c, "join", f"{G100}=127.0.0.1:8"),
                f"gid {G100} was served by other servers before ({', '.join(c.addresses)})",
                "eraftd member")
    assert latest(c) == before
    # with its own servers (any order) the gid comes back
    r = run(c, "join", f"{G100}=" + ",".join(reversed(c.addresses)))
    assert r.returncode == 0 and r.stdout.startswith("OK, configuration"), (r.stdout, r.stderr)
    assert G100 in [int(g) for g in latest(c)["groups"]]
