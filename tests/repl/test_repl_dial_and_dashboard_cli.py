"""--config's [node.dial] map reaches every address the shell's own code dials (the probe's and
the dashboard's channels), and `eraftd dashboard` finds the controllers as every command does."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest
from repl_support import G100, cluster, eraftd, shell_env  # noqa: F401

from eraftd.config import dump_toml
from eraftd.controller.client import ControllerClient
from eraftd.controller.state import Config
from eraftd.dashboard.server import Poller
from eraftd.testing import eraftd_command, free_port
from repl.probe import Probe

pytestmark = pytest.mark.e2e

NOWHERE = "10.255.255.1:9"       # advertised, never reachable: only the dial map makes it work


def test_the_probe_and_the_dashboard_dial_through_the_map(cluster):  # noqa: F811
    real = cluster.addresses[0]

    def dial(a: str) -> str:
        return real if a == NOWHERE else a

    async def go():
        async with ControllerClient(cluster.addresses) as ctl:
            cfg = Config(1, (G100,) * 10, {G100: (NOWHERE,)})
            probe = Probe(ctl, timeout=5, dial=dial)
            try:
                st = await probe.status(cfg)
            finally:
                await probe.close()
            assert [(m.address, m.up) for m in st.replicas] == [(NOWHERE, True)]
        poller = Poller(cluster.addresses, 1.0, timeout_s=5, dial=dial)
        try:
            assert (await poller._admin(NOWHERE)).roles
        finally:
            await poller.close()
    asyncio.run(go())


def _dashboard(*args: str, env: dict[str, str]) -> str:
    """Start `eraftd dashboard ARGS`, return its first line, kill it."""
    listen = f"127.0.0.1:{free_port()}"
    p = subprocess.Popen(eraftd_command() + list(args[:1]) + ["dashboard", "--listen", listen,
                                                              "--interval", "1s"] + list(args[1:]),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        return p.stdout.readline()          # bounded: it prints at once, or exits
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)
        p.stdout.close()


def test_dashboard_finds_the_controllers_as_every_command(cluster, tmp_path):  # noqa: F811
    want = f"(controllers {', '.join(cluster.addresses)}, "
    assert want in _dashboard("--controllers=" + cluster.controllers, env=shell_env())   # top-level
    assert want in _dashboard("--json", "--controllers", cluster.controllers, env=shell_env())
    assert want in _dashboard("--json", env=shell_env(ERAFT_CONTROLLERS=cluster.controllers))
    toml = tmp_path / "node.toml"
    me = f"127.0.0.1:{free_port()}"
    toml.write_text(dump_toml({"node": {"listen": me, "data_dir": "d"},
                               "shardkv": {"gid": 7, "peers": [me], "controllers": cluster.addresses}}))
    assert want in _dashboard("--json", "--config", str(toml), env=shell_env())
    r = eraftd("dashboard")
    assert r.returncode == 2 and r.stderr.startswith("eraftd: no controller addresses: give --controllers")
