"""`eraftd dashboard` against a live cluster: /api/cluster discovers it from the controllers,
shows every node with its role, the shards with their owners and keys, rates from counters,
and a killed node as down."""
from __future__ import annotations

import asyncio
import shutil

import pytest
from dash_support import cluster, dashboard, http_get  # noqa: F401

from eraftd.controller.client import ControllerClient
from eraftd.shardkv.clerk import Clerk
from eraftd.testing import change_member

pytestmark = pytest.mark.e2e
G1, G2 = 100, 101


async def test_api_cluster(cluster, dashboard):  # noqa: F811
    c = cluster(gids=(G1, G2), controllers=1, replicas=3).start()
    ctrl = c.controller_addresses()
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl, total_timeout=30) as kv:
        await ctl.join({G1: c.addresses(G1)})
        await ctl.join({G2: c.addresses(G2)})
        d = dashboard(ctrl)
        await asyncio.gather(*(kv.put(f"{i % 10}key{i}", "v" * 10) for i in range(40)))

        def settled(s):
            return (s["config"]["num"] == 2 and all(m["up"] for m in s["replicas"])
                    and all(r["status"] == "Serving" and r["keys"] for r in s["shards"]))
        s = await asyncio.to_thread(d.wait, settled, 60, "every shard Serving with keys")

    assert [m["address"] for m in s["controllers"]] == ctrl
    assert s["controllers"][0]["role"] == "Leader"
    assert sorted(m["address"] for m in s["replicas"]) == sorted(c.addresses(G1) + c.addresses(G2))
    for gid in (G1, G2):
        roles = sorted(m["role"] for m in s["replicas"] if m["gid"] == gid)
        assert roles == ["Follower", "Follower", "Leader"], (gid, roles)
    assert {r["gid"] for r in s["shards"]} == {G1, G2}
    assert sum(r["keys"] for r in s["shards"]) == 40
    m = s["metrics"]
    assert (m["nodes_total"], m["nodes_healthy"], m["config_num"]) == (7, 7, 2)
    assert m["storage_bytes_total"] > 0 and len(m["storage_bytes"]) == 7
    assert m["recent_leader_changes"] == []          # the first look is no change
    assert s["alerts"] == []

    # a rate appears once two polls saw the counters
    async with Clerk(ctrl, total_timeout=30) as kv:
        await asyncio.gather(*(kv.put(f"{i % 10}more{i}", "x") for i in range(20)))
    s = await asyncio.to_thread(d.wait, lambda s: s["metrics"]["ops_per_s_avg"] is not None, 30, "a rate")
    assert set(s["metrics"]["ops_per_s_by_group"]) == {str(G1), str(G2)}

    # a killed leader is shown as down, with the reason, as an alert, and its successor as
    # a leader change old -> new
    victim = next(n for n in c.group(G2)
                  if any(m["address"] == n.address and m["role"] == "Leader" for m in s["replicas"]))
    await asyncio.to_thread(victim.kill)
    s = await asyncio.to_thread(
        d.wait, lambda s: any(m["address"] == victim.address and m["role"] == "down"
                              for m in s["replicas"]) and any(
            e["gid"] == G2 for e in s["metrics"]["recent_leader_changes"]),
        30, "the killed leader shown as down, and its successor")
    down = next(m for m in s["replicas"] if m["address"] == victim.address)
    assert down["problem"] and not down["up"]
    assert s["metrics"]["nodes_healthy"] == 6
    change = next(e for e in s["metrics"]["recent_leader_changes"] if e["gid"] == G2)
    assert change["previous"] == victim.address and change["leader"] in c.addresses(G2)
    assert change["leader"] != victim.address
    assert [(a["kind"], a["target"]) for a in s["alerts"]] == [("node", victim.address)]
    assert "eraftd run --config" in s["alerts"][0]["fix"]

    # membership: a learner is marked; a replica back with an empty disk is a problem shown
    n = c.add_replica(G1)
    await asyncio.to_thread(lambda: n.start().wait_serving())
    await asyncio.to_thread(change_member, lambda: c.group(G1), G1, "add", n.address)
    s = await asyncio.to_thread(
        d.wait, lambda s: any(m["address"] == n.address and m["learner"] for m in s["replicas"]),
        30, "the learner shown")
    wiped = c.group(G1)[0]
    await asyncio.to_thread(wiped.kill)
    shutil.rmtree(wiped.dir / "data")
    await asyncio.to_thread(lambda: wiped.start().wait_serving())
    s = await asyncio.to_thread(
        d.wait, lambda s: any(f"{wiped.address} came back with an empty disk" in p
                              for p in s["problems"]), 60, "the refused replica shown")
    refused = [a for a in s["alerts"] if a["kind"] == "refused"]
    assert [a["fix"] for a in refused] == [f"eraftd member replace {G1} {wiped.address}"], refused

    # the page and its files come from the package
    for path, needle in (("/", "<title>eraftd dashboard</title>"), ("/app.js", "/api/cluster"),
                         ("/style.css", ".role-down")):
        status, body = http_get(d.url + path)
        assert status == 200 and needle in body, path
