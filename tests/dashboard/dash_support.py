"""Helpers of the dashboard tests: a sharded cluster whose nodes serve HTTP, the dashboard
process, and small HTTP getters (urllib, bounded)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from eraftd.config import dump_toml
from eraftd.testing import ShardedCluster, eraftd_command, free_port, wait_for


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body); (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def with_http(c: ShardedCluster) -> dict[str, str]:
    """Give every node of `c` an [node] http address (before it starts): node name -> address."""
    out = {}
    for n in c.nodes:
        addr = f"127.0.0.1:{free_port()}"
        n.config["node"]["http"] = addr
        n.toml.write_text(dump_toml(n.config))
        out[n.name] = addr
    return out


@pytest.fixture
def cluster(tmp_path):
    """make(**kw) -> a ShardedCluster with HTTP on every node; every process killed at the end."""
    made: list[ShardedCluster] = []

    def make(**kw) -> ShardedCluster:
        c = ShardedCluster(tmp_path / f"s{len(made)}", **kw)
        c.http = with_http(c)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


class Dashboard:
    """`eraftd dashboard` as a process (killed by close(), also on failure)."""

    def __init__(self, base: Path, controllers: list[str], interval: str = "500ms") -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.address}"
        self.log = base / "dashboard.log"
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(
                eraftd_command() + ["dashboard", "--controllers", ",".join(controllers),
                                    "--listen", self.address, "--interval", interval],
                stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)

    def api(self) -> dict | None:
        status, body = http_get(self.url + "/api/cluster")
        return json.loads(body) if status == 200 else None

    def series(self) -> dict:
        status, body = http_get(self.url + "/api/series")
        return json.loads(body) if status == 200 else {"points": [], "markers": []}

    def wait(self, cond, timeout: float = 60, what: str = "the dashboard") -> dict:
        def check():
            assert self.proc.poll() is None, self.log.read_text()
            d = self.api()
            return d if d and d.get("ready") and cond(d) else None
        return wait_for(check, timeout, what)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def dashboard(tmp_path):
    made: list[Dashboard] = []

    def make(controllers: list[str], interval: str = "500ms") -> Dashboard:
        d = Dashboard(tmp_path, controllers, interval)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()
