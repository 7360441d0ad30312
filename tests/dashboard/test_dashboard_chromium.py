"""The dashboard page in Debian's headless Chromium: the topology and the shard table show the
live cluster, the charts draw non-zero series under load, a killed node is shown as down, a
killed group raises its alert, a migration shows its progress.  Skips when /usr/bin/chromium is
absent (.ci/run installs it).

ERAFTD_SCREENSHOT=DIR also writes the README's pictures of each state into DIR (docs/):
dashboard.png (under load), dashboard-alert.png (a group down), dashboard-migration.png (shards
moving, with more data and smaller chunks than without it, so that the picture catches them)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from dash_support import cluster, dashboard, http_get  # noqa: F401

from eraftd.controller.client import ControllerClient
from eraftd.shardkv.clerk import Clerk

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")),
                                 reason="Debian's chromium is not installed (apt-get install chromium)")]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
G1, G2 = 100, 101


def chromium(url: str, *extra: str, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran (virtual time lets fetch() and timers settle)."""
    with tempfile.TemporaryDirectory(prefix="eraftd-chromium-") as profile:
        p = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
             *extra, url],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


async def dom_of(url: str) -> str:
    return await asyncio.to_thread(chromium, url + "/", "--dump-dom")


async def screenshot(url: str, name: str) -> None:
    """docs/<name> when ERAFTD_SCREENSHOT names a directory (the README's pictures)."""
    if shot := os.environ.get("ERAFTD_SCREENSHOT"):
        path = Path(shot).resolve() / name
        await asyncio.to_thread(chromium, url + "/", f"--screenshot={path}",
                                "--window-size=1280,1400", "--hide-scrollbars")


def elements(dom: str, tag: str, cls: str) -> list[dict[str, str]]:
    """The data-* attributes of every <tag class="cls ..."> in the dumped DOM."""
    out = []
    for m in re.finditer(r'<' + tag + r'\b([^>]*)>', dom):
        attrs = m.group(1)
        c = re.search(r'\bclass="([^"]*)"', attrs)
        if c and cls in c.group(1).split():
            out.append(dict(re.findall(r'data-([a-z-]+)="([^"]*)"', attrs)))
    return out


def rows(dom: str, cls: str) -> list[dict[str, str]]:
    return elements(dom, "tr", cls)


@contextlib.asynccontextmanager
async def load(ctrl: list[str], workers: int = 6):
    """Client puts in a loop (a small bench) until the block ends."""
    stop = asyncio.Event()

    async def worker(kv: Clerk, w: int) -> None:
        i = 0
        while not stop.is_set():
            await kv.put(f"{i % 10}load{w}-{i}", "v" * 32)
            i += 1
    async with Clerk(ctrl, total_timeout=30) as kv:
        tasks = [asyncio.create_task(worker(kv, w)) for w in range(workers)]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_page_under_load_a_node_down_and_a_group_down(cluster, dashboard):  # noqa: F811
    c = cluster(gids=(G1, G2), controllers=1, replicas=3).start()
    ctrl = c.controller_addresses()
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl, total_timeout=30) as kv:
        await ctl.join({G1: c.addresses(G1)})
        await ctl.join({G2: c.addresses(G2)})
        await asyncio.gather(*(kv.put(f"{i % 10}key{i}", "v" * 10) for i in range(30)))
    d = dashboard(ctrl)
    await asyncio.to_thread(d.wait, lambda s: s["config"]["num"] == 2 and all(
        r["status"] == "Serving" for r in s["shards"]) and all(m["up"] for m in s["replicas"]),
        60, "the dashboard to see the settled cluster")

    def charted(series):
        last = series["points"][-1] if series["points"] else {}
        return (last.get("ops_total") or 0) > 0 and all(
            (last.get("p99_ms") or {}).get(str(g)) for g in (G1, G2))
    async with load(ctrl):
        await asyncio.to_thread(d.wait, lambda s: charted(d.series()), 60, "ops/s and p99 of both groups")
        dom = await dom_of(d.url)
        await screenshot(d.url, "dashboard.png")
    members = rows(dom, "member")
    assert {m["address"] for m in members} == set(ctrl + c.addresses(G1) + c.addresses(G2)), dom[-3000:]
    assert all(m["role"] in ("leader", "follower") for m in members)
    assert sum(m["role"] == "leader" for m in members) == 3       # the controller and both groups
    shards = rows(dom, "shard")
    assert [int(s["shard"]) for s in shards] == list(range(10))
    assert {int(s["gid"]) for s in shards} == {G1, G2}
    assert all(s["status"] == "Serving" for s in shards)
    assert 'id="config-num">2<' in dom
    series = {p["series"]: p for p in elements(dom, "path", "series")}
    for name in ("total", f"group {G1}", f"group {G2}", f"group {G1} p99", f"group {G2} p99",
                 f"group {G1} p50"):
        assert float(series[name]["max"]) > 0 and int(series[name]["points"]) > 0, (name, series)
    nodes = {n["address"]: n for n in rows(dom, "node")}
    assert len(nodes) == 7 and all(n["up"] == "1" for n in nodes.values())
    assert all(int(n["rss"]) > 0 and int(n["files"]) > 0 and n["cpu"] != "–" for n in nodes.values())
    assert 'class="all-good"' in dom and not elements(dom, "div", "alert")

    victim = c.group(G1)[0]
    await asyncio.to_thread(victim.kill)
    await asyncio.to_thread(d.wait, lambda s: any(
        m["address"] == victim.address and not m["up"] for m in s["replicas"]), 30, "the victim down")
    dom = await dom_of(d.url)
    roles = {m["address"]: m["role"] for m in rows(dom, "member")}
    assert roles[victim.address] == "down", roles
    assert sum(r == "down" for r in roles.values()) == 1
    assert re.search(r'id="nodes-healthy">6<', dom)
    assert [(a["kind"], a["target"]) for a in elements(dom, "div", "alert")] == [("node", victim.address)]

    # every replica of one group killed: its alert names it, first, with what to run
    for n in c.group(G2):
        await asyncio.to_thread(n.kill)
    await asyncio.to_thread(d.wait, lambda s: any(
        a["kind"] == "quorum" and a["target"] == f"group {G2}" for a in s["alerts"]), 30, "the group's alert")
    dom = await dom_of(d.url)
    alerts = elements(dom, "div", "alert")
    critical = elements(dom, "div", "alert-critical")
    assert {"kind": "quorum", "target": f"group {G2}"} in critical, alerts
    assert alerts[:len(critical)] == critical                    # the worst first
    assert f"group {G2} has lost its quorum: 0/3 replicas up" in dom
    assert "eraftd run --config" in dom
    assert ("node", victim.address) in [(a["kind"], a["target"]) for a in alerts]
    await screenshot(d.url, "dashboard-alert.png")


async def test_migration_progress(cluster, dashboard):  # noqa: F811
    # small chunks: each moving shard takes several (for the picture, many more: it is taken
    # while they move)
    shot = bool(os.environ.get("ERAFTD_SCREENSHOT"))
    keys, chunk = (2000, 2048) if shot else (400, 8192)
    per_shard = keys // 10
    c = cluster(gids=(G1, G2), controllers=1, replicas=3,
                shardkv={"migration_chunk_bytes": chunk}).start()
    ctrl = c.controller_addresses()
    d = dashboard(ctrl)
    value = "x" * 1000
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl, total_timeout=60) as kv:
        await ctl.join({G1: c.addresses(G1)})
        for i in range(0, keys, 50):
            await asyncio.gather(*(kv.put(f"{j % 10}mig{j}", value) for j in range(i, i + 50)))
        await ctl.join({G2: c.addresses(G2)})
        if shot:
            await asyncio.to_thread(d.wait, lambda s: any(
                m["state"] == "pulling" and m["keys"] for m in s["migrations"]), 60, "a pull under way")
            await screenshot(d.url, "dashboard-migration.png")
        s = await asyncio.to_thread(d.wait, lambda s: s["config"]["num"] == 2 and all(
            r["status"] == "Serving" for r in s["shards"]) and s["migrations"] and all(
            m["state"] == "done" for m in s["migrations"]), 60, "the moved shards in")
    moved = {m["shard"]: m for m in s["migrations"]}
    to_g2 = {r["shard"] for r in s["shards"] if r["gid"] == G2}
    assert set(moved) == to_g2 and len(to_g2) == 5, (moved, to_g2)
    for shard, m in moved.items():
        assert (m["from"], m["to"]) == (G1, G2)
        assert m["keys"] == m["total_keys"] == per_shard, m      # over 10 shards
        assert m["bytes"] == m["total_bytes"] > per_shard * 1000, m
        assert m["chunks"] >= 3 and m["bytes_per_s"] > 0, m

    dom = await dom_of(d.url)
    shown = {int(r["shard"]): r for r in rows(dom, "migration")}
    assert set(shown) == to_g2
    assert all(r["state"] == "done" and r["keys"] == r["total-keys"] == str(per_shard)
               for r in shown.values())
    assert f"{per_shard} of {per_shard} (100 %)" in dom

    # the same counts on /metrics: in at the new owner's leader, out at the old owner's
    def counted(gid: int, direction: str) -> float:
        total = 0.0
        for n in c.group(gid):
            _, text = http_get(f"http://{c.http[n.name]}/metrics")
            total += sum(float(v) for v in re.findall(
                rf'^eraft_migration_keys_total\{{[^}}]*direction="{direction}"[^}}]*\}} (\S+)$', text, re.M))
        return total
    # (a chunk whose leader lost its lead before hearing it applied is counted by nobody)
    assert 0 < counted(G2, "in") <= keys // 2
    assert counted(G1, "out") >= keys // 2                # every chunk sent at least once
