"""The controller refuses what would wedge shards, and `shard abandon` is the way out when a
group is lost for good: real `eraftd` one-shot commands against a live cluster (issue 11).

The scenario of the issue: a mistyped join (servers nobody runs) is refused; forced, its
shards go to the phantom group and a leave leaves them BePulling at the real group; `shard
abandon` makes them serve again, empty (the keys that were on them are gone, which is the
point), and new writes work.
"""
from __future__ import annotations

import json

import pytest
from repl_support import G100, cluster, eraftd  # noqa: F401

from eraftd.shardkv.state import key2shard
from eraftd.testing import wait_for

pytestmark = pytest.mark.e2e

PHANTOM = 102
PHANTOM_SERVERS = "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"      # the mistyped join
G101 = 101


def ctl(cluster) -> list[str]:  # noqa: F811
    return ["--controllers", cluster.controllers]


def query(cluster) -> dict:  # noqa: F811
    r = eraftd(*ctl(cluster), "query", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def key_of(shard: int, name: str) -> str:
    k = next(f"{c}{name}" for c in "0123456789" if key2shard(f"{c}{name}".encode()) == shard)
    assert key2shard(k.encode()) == shard
    return k


def refused(r, line: str) -> None:
    """Exit 1, nothing on stdout, exactly this one line on stderr."""
    assert (r.returncode, r.stdout, r.stderr) == (1, "", f"eraftd: {line}\n")


def test_a_mistyped_join_is_refused_in_one_line_and_makes_no_configuration(cluster):  # noqa: F811
    before = query(cluster)
    r = eraftd(*ctl(cluster), "join", f"{PHANTOM}={PHANTOM_SERVERS}")
    refused(r, f"refused by the controller: join: no server of gid {PHANTOM} answers as a replica "
               f"of gid {PHANTOM} (127.0.0.1:1 does not answer, 127.0.0.1:2 does not answer, "
               f"127.0.0.1:3 does not answer); start the group's servers first, or pass --force "
               f"to join anyway")
    assert query(cluster) == before
    # a server that answers, but as another group, does not make the group real either
    r = eraftd(*ctl(cluster), "join", f"{PHANTOM}={cluster.addresses[0]}")
    refused(r, f"refused by the controller: join: no server of gid {PHANTOM} answers as a replica "
               f"of gid {PHANTOM} ({cluster.addresses[0]} answers as gid {G100}); start the "
               f"group's servers first, or pass --force to join anyway")
    assert query(cluster) == before


def test_a_forced_phantom_join_then_leave_wedges_shards_and_abandon_serves_them_empty(cluster):  # noqa: F811
    c = ctl(cluster)
    keys = {s: key_of(s, "-before") for s in range(10)}
    for s, k in keys.items():
        assert eraftd(*c, "put", k, f"v{s}").returncode == 0
    r = eraftd(*c, "join", f"{PHANTOM}={PHANTOM_SERVERS}", "--force")
    assert r.returncode == 0 and r.stdout.startswith("OK, configuration"), r.stderr
    lost = [s for s, g in enumerate(query(cluster)["shards"]) if g == PHANTOM]
    assert len(lost) == 5
    assert eraftd(*c, "leave", str(PHANTOM)).returncode == 0
    left = query(cluster)
    assert set(left["shards"]) == {G100} and "abandoned" not in left

    def stuck():
        r = eraftd(*c, "status", "--json")
        rows = json.loads(r.stdout)["shards"] if r.returncode == 0 else []
        return [x["shard"] for x in rows if x["status"] == "BePulling"] == lost
    wait_for(stuck, 60, f"shards {lost} BePulling at group {G100}")

    # without --yes-lose-data: refused, nothing proposed
    args = ["shard", "abandon", *map(str, lost)]
    r = eraftd(*c, *args)
    listed = ", ".join(map(str, lost))
    refused(r, f"shard abandon: not done: it gives up every value of shards {listed} for good "
               f"(their owner serves them empty); if the group that held them is lost for good, "
               f"run it again with --yes-lose-data")
    assert query(cluster) == left
    # a shard that never moved between groups has no lost data to give up
    kept = min(set(range(10)) - set(lost))
    r = eraftd(*c, "shard", "abandon", str(kept), "--yes-lose-data")
    refused(r, f"refused by the controller: shard abandon: shard {kept} never moved between "
               f"groups (gid {G100} has had it from the start): there is no lost group's data "
               f"to give up")
    assert query(cluster) == left

    r = eraftd(*c, *args, "--yes-lose-data", "--wait", "--timeout", "60s")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"OK, configuration {left['num'] + 1}: shards {listed} abandoned, "
                        f"served empty\n")
    after = query(cluster)
    assert after["abandoned"] == {str(s): left["num"] + 1 for s in lost}
    assert after["shards"] == left["shards"] and after["groups"] == left["groups"]
    text = eraftd(*c, "query").stdout
    line = "abandoned (data given up): " + ", ".join(
        f"shard {s} at configuration {left['num'] + 1}" for s in lost)
    assert text.rstrip("\n").endswith("\n\n" + line)
    status = eraftd(*c, "status")
    assert status.returncode == 0 and status.stdout.rstrip("\n").endswith("\n\n" + line)
    rows = json.loads(eraftd(*c, "status", "--json").stdout)["shards"]
    assert [x["status"] for x in rows] == ["Serving"] * 10

    # the abandoned shards serve empty; the others kept their values; new writes work
    for s, k in keys.items():
        r = eraftd(*c, "get", k)
        assert (r.returncode, r.stdout) == (0, "" if s in lost else f"v{s}\n"), (s, r.stderr)
    for s in lost:
        assert eraftd(*c, "put", keys[s], "new").returncode == 0
        assert eraftd(*c, "get", keys[s]).stdout == "new\n"


def test_abandon_is_refused_while_the_previous_owner_still_answers(cluster):  # noqa: F811
    c = ctl(cluster)
    [addr] = cluster.add_group(G101, replicas=1)
    assert eraftd(*c, "join", f"{G101}={addr}", "--wait", "--timeout", "60s").returncode == 0
    moved = next(s for s, g in enumerate(query(cluster)["shards"]) if g == G101)
    before = query(cluster)
    r = eraftd(*c, "shard", "abandon", str(moved), "--yes-lose-data")
    refused(r, f"refused by the controller: shard abandon: shard {moved}'s previous owner, gid "
               f"{G100}, still answers ({', '.join(cluster.addresses)}): its data is not lost; "
               f"let the move finish (see status), or stop that group for good first")
    assert query(cluster) == before
