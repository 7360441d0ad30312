"""The dashboard page in Debian's headless Chromium: the topology and the shard table show the
live cluster, and a killed node is shown as down.  Skips when /usr/bin/chromium is absent
(.ci/run installs it)."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from dash_support import cluster, dashboard  # noqa: F401

from eraftd.controller.client import ControllerClient
from eraftd.shardkv.clerk import Clerk

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
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


def rows(dom: str, cls: str) -> list[dict[str, str]]:
    """The data-* attributes of every <tr class="cls ..."> in the dumped DOM."""
    out = []
    for m in re.finditer(r'<tr class="' + cls + r'[^"]*"([^>]*)>', dom):
        out.append(dict(re.findall(r'data-([a-z]+)="([^"]*)"', m.group(1))))
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
async def test_page_in_headless_chromium(cluster, dashboard):  # noqa: F811
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

    dom = await asyncio.to_thread(chromium, d.url + "/", "--dump-dom")
    members = rows(dom, "member")
    assert {m["address"] for m in members} == set(ctrl + c.addresses(G1) + c.addresses(G2)), dom[-3000:]
    assert all(m["role"] in ("leader", "follower") for m in members)
    assert sum(m["role"] == "leader" for m in members) == 3       # the controller and both groups
    shards = rows(dom, "shard")
    assert [int(s["shard"]) for s in shards] == list(range(10))
    assert {int(s["gid"]) for s in shards} == {G1, G2}
    assert all(s["status"] == "Serving" for s in shards)
    assert 'id="config-num">2<' in dom

    victim = c.group(G1)[0]
    await asyncio.to_thread(victim.kill)
    await asyncio.to_thread(d.wait, lambda s: any(
        m["address"] == victim.address and not m["up"] for m in s["replicas"]), 30, "the victim down")
    dom = await asyncio.to_thread(chromium, d.url + "/", "--dump-dom")
    roles = {m["address"]: m["role"] for m in rows(dom, "member")}
    assert roles[victim.address] == "down", roles
    assert sum(r == "down" for r in roles.values()) == 1
    assert re.search(r'id="nodes-healthy">6<', dom)

    # the README's picture (only when asked: ERAFTD_SCREENSHOT=path)
    if shot := os.environ.get("ERAFTD_SCREENSHOT"):
        await asyncio.to_thread(chromium, d.url + "/", f"--screenshot={Path(shot).resolve()}",
                                "--window-size=1280,900", "--hide-scrollbars")
