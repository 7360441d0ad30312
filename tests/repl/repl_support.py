"""Shared helpers of the shell tests: a small real cluster per module, and running `eraftd`.

The cluster is eRaft's all-in-one shape: three `eraftd run` processes that are the controller
peers and the replicas of group 100 (one port each), group 100 joined and serving; a test that
needs another group adds a one-replica group.  Every process is killed when the module ends,
whatever happened, and no node may have logged an error.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from eraftd.controller.client import ControllerClient
from eraftd.shardkv.clerk import Clerk
from eraftd.testing import Node, eraftd_command, free_port

G100 = 100
RAFT = {"heartbeat_ms": 50, "election_ms": 500}


class ShellCluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.nodes = [Node(f"n{i}", base, {"node": {"listen": a, "data_dir": "data"},
                                           "controller": {"peers": self.addresses},
                                           "shardkv": {"gid": G100, "peers": self.addresses},
                                           "raft": RAFT})
                      for i, a in enumerate(self.addresses)]
        self.extra: dict[int, list[Node]] = {}

    @property
    def controllers(self) -> str:
        return ",".join(self.addresses)

    def all_nodes(self) -> list[Node]:
        return self.nodes + [n for ns in self.extra.values() for n in ns]

    def start(self) -> "ShellCluster":
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            n.wait_serving(60)
        asyncio.run(self._join_and_wait({G100: self.addresses}))
        return self

    def add_group(self, gid: int, replicas: int = 1) -> list[str]:
        """Start (not join) a group of `replicas` shardkv-only nodes; their addresses."""
        peers = [f"127.0.0.1:{free_port()}" for _ in range(replicas)]
        nodes = [Node(f"g{gid}-{i}", self.base, {"node": {"listen": a, "data_dir": "data"},
                                                  "shardkv": {"gid": gid, "peers": peers,
                                                              "controllers": self.addresses},
                                                  "raft": RAFT})
                 for i, a in enumerate(peers)]
        self.extra[gid] = nodes
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_serving(60)
        return peers

    async def _join_and_wait(self, groups: dict[int, list[str]]) -> None:
        async with ControllerClient(self.addresses, total_timeout=60) as ctl:
            await ctl.join(groups)
        async with Clerk(self.addresses, total_timeout=60) as kv:    # served once a write lands
            await kv.put("0warm-up", "x")

    def close(self) -> None:
        for n in self.all_nodes():
            n.kill()

    def check_logs(self) -> None:
        for n in self.all_nodes():
            text = n.log_text()
            assert "Traceback" not in text and " ERROR " not in text, f"{n.name}:\n{text[-3000:]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = ShellCluster(tmp_path_factory.mktemp("shell-cluster"))
    try:
        yield c.start()
    finally:
        c.close()
    c.check_logs()


def shell_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ERAFT_CONTROLLERS", "ERAFT_HISTORY")}
    env.update(PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", **extra)
    return env


# Every error line the shell's tests see (stderr of `eraftd`, the errors of in-process
# commands: conftest.py), checked by test_zz_error_lines.py after the other tests.
ERROR_LINES: list[tuple[str, str]] = []     # (where, the line)


def saw_errors(text: str, where: str) -> None:
    ERROR_LINES.extend((where, line) for line in text.splitlines() if line.strip())


def eraftd(*args: str, input: str | None = None, env: dict[str, str] | None = None,
           cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `eraftd` (stdin a pipe, or /dev/null without input) and wait for it."""
    r = subprocess.run(eraftd_command() + list(args), input=input, capture_output=True, text=True,
                       env=env or shell_env(), cwd=cwd, timeout=timeout,
                       stdin=None if input is not None else subprocess.DEVNULL)
    saw_errors(r.stderr, "eraftd " + " ".join(a[:40] for a in args))
    return r


async def until(cond: Callable[[], object], timeout: float = 30, what: str = "a condition") -> object:
    """Poll cond() on the event loop until it is truthy (an awaited condition, not a sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)
