"""The README's quick start and its "Add a replica" and "Replace a machine" walk-throughs, run
literally by bash: the same blocks, the same commands, in the same order; only the addresses
differ (every 127.0.0.1:6001..7004 of the README is mapped to a free port, in the blocks and in
the files they write).  The nodes they start in the background are killed at the end, even when
the test fails.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eraftd.testing import free_port, processes, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ADDRS = [f"127.0.0.1:{p}" for p in (6001, 6002, 6003, 7001, 7002, 7003, 7004)]


def sh_blocks(heading: str) -> list[str]:
    """The ```sh blocks of the README section that starts with `heading`."""
    part = README.split(heading + "\n", 1)[1]
    part = re.split(r"\n#{2,3} ", part, maxsplit=1)[0]
    return re.findall(r"```sh\n(.*?)```", part, re.S)


class Walk:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.map = {a: f"127.0.0.1:{free_port()}" for a in ADDRS}
        self.groups: list[int] = []          # process groups of the backgrounded nodes
        bindir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
        self.env.pop("ERAFT_CONTROLLERS", None)

    def sub(self, text: str) -> str:
        for a, b in self.map.items():
            text = text.replace(a, b)
        return text

    def fix_files(self) -> None:
        for f in (self.base / "mycluster").glob("*.toml"):
            f.write_text(self.sub(f.read_text()))

    def bash(self, script: str, timeout: float = 180, fails: bool = False) -> str:
        """Run `script` in bash in the walk's directory, as one terminal would; each runs in a
        session of its own (the nodes it backgrounds too), killed at the end.  Its output goes
        to a file: a backgrounded node keeps writing there after the script ends."""
        self.runs = getattr(self, "runs", 0) + 1
        log = self.base / f"bash{self.runs}.out"
        with open(log, "w") as f:
            p = subprocess.Popen(["bash", "-e", "-c", script], cwd=self.base, env=self.env,
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            self.groups.append(p.pid)
            rc = p.wait(timeout=timeout)
        out = log.read_text()
        assert (rc != 0) if fails else (rc == 0), f"exit {rc}:\n{script}\n---\n{out}"
        return out

    def kill_all(self) -> None:
        for pg in self.groups:
            try:
                os.killpg(pg, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def walk(tmp_path):
    w = Walk(tmp_path)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    try:
        yield w
    finally:
        w.kill_all()


def serving(w: Walk, addr: str, tls=None) -> bool:
    from eraftd._pb import admin_pb2 as apb
    from eraftd._pb import admin_pb2_grpc as apb_grpc
    from eraftd.tls import sync_channel
    import grpc
    with sync_channel(addr, tls) as ch:
        try:
            apb_grpc.NodeAdminStub(ch).Status(apb.StatusRequest(), timeout=1)
            return True
        except grpc.RpcError:
            return False


def test_quick_start_then_add_a_replica_then_replace_a_machine(walk):
    w = walk
    quick, commands = sh_blocks("## Quick start by hand")[:2]
    # the quick start: write the files (then point them at our ports), start the six nodes
    write, start = quick.rsplit("\n", 2)[0], quick.rstrip("\n").rsplit("\n", 1)[1]
    w.bash(write)
    w.fix_files()
    w.bash(start)
    for a in ADDRS[:6]:
        wait_for(lambda a=a: serving(w, w.map[a]), 60, f"quick-start node {a}")
    lines = [ln for ln in w.sub(commands).splitlines() if not ln.startswith("eraftd shell")]
    out = w.bash("\n".join(lines))
    assert "hello world" in out, out
    # "from another terminal" where ERAFT_CONTROLLERS was exported: the walk-throughs run there
    export = next(ln for ln in lines if ln.startswith("export ERAFT_CONTROLLERS="))
    w.env["ERAFT_CONTROLLERS"] = export.split("=", 1)[1]

    # Add a replica
    [add] = sh_blocks("### Add a replica")
    out = w.bash(w.sub(add))
    assert f"{w.map['127.0.0.1:7004']} is a voter of group 101" in out, out
    assert out.count("voter") >= 4, out            # member list: 4 voters before the remove
    assert f"removed {w.map['127.0.0.1:7001']}" in out, out
    out = w.bash("eraftd get greeting")
    assert out.startswith("hello world"), out

    # Replace a machine: "stop n6, then rm -rf mycluster/data/n6" (n6 is 127.0.0.1:7003)
    n6 = w.map["127.0.0.1:7003"]
    pids = processes("mycluster/n6.toml", cwd=w.base)
    assert pids, "n6 is not running"
    for p in pids:
        os.kill(p, signal.SIGKILL)
    wait_for(lambda: not serving(w, n6), 30, "n6 to stop")
    shutil.rmtree(w.base / "mycluster" / "data" / "n6")
    [replace] = sh_blocks("### Replace a machine")
    script = w.sub(replace)
    # `eraftd status` is the README's way to see the refusal; it may take a moment to show
    start, rest = script.split("\n", 1)
    w.bash(start)
    wait_for(lambda: "came back with an empty disk" in w.bash("eraftd status"), 60,
             "status to show the refusal")
    out = w.bash(rest)
    assert f"{n6} is a voter of group 101" in out, out
    assert w.bash("eraftd get greeting").startswith("hello world")


def test_quick_start_with_tls(walk):
    """"Running with TLS": the quick start's files, the certificate block, the quick start's
    start line, then the client lines one by one (a line commented "refused" must fail, with
    the words it shows)."""
    import shlex
    from eraftd.tls import TlsFiles
    w = walk
    quick = sh_blocks("## Quick start by hand")[0]
    write, start = quick.rsplit("\n", 2)[0], quick.rstrip("\n").rsplit("\n", 1)[1]
    w.bash(write)
    w.fix_files()
    certs, clients = sh_blocks("## Running with TLS")
    out = w.bash(w.sub(certs))
    assert "client.app1.crt" in out, out
    w.bash(start)
    d = w.base / "mycluster" / "certs"
    ops = TlsFiles(str(d / "ca.crt"), str(d / "client.ops.crt"), str(d / "client.ops.key"))
    for a in ADDRS[:6]:
        wait_for(lambda a=a: serving(w, w.map[a], ops), 60, f"TLS node {a}")
    assert not serving(w, w.map[ADDRS[0]])            # a plaintext client is refused
    for line in w.sub(clients).splitlines():
        if line.startswith("export "):
            for assignment in shlex.split(line)[1:]:
                k, v = assignment.split("=", 1)
                w.env[k] = v
            continue
        command, _, comment = line.partition("#")
        refused = comment.strip().startswith("refused:")
        out = w.bash(command, fails=refused)
        if refused:
            words = comment.split("refused:", 1)[1].split("...")
            assert all(part.strip() in out for part in words if part.strip()), (line, out)
            assert "Traceback" not in out and "StatusCode" not in out, out
        elif comment.strip():
            assert out.startswith(comment.strip()), (line, out)
    out = w.bash("eraftd --json query")                            # the refused leave changed nothing
    assert '"101"' in out or '"gid": 101' in out or "101:" in out, out
