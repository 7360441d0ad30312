"""The single-file binary: build it (packaging/build.py), then, from outside the repository and
with a bare environment (`env -i PATH=/usr/bin:/bin`), start a 3-node cluster with it from TOML
files, run a batch script through `eraftd shell`, check the output, stop the cluster.

Slow (~1 minute for the build): marked slow, run in CI (.ci/run installs the build extra).
Every process started is killed at the end, even on failure (each runs in its own process group).
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eraftd import __version__
from eraftd.config import dump_toml
from eraftd.testing import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
REPO = Path(__file__).resolve().parents[2]
BARE = ["env", "-i", "PATH=/usr/bin:/bin"]


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("PyInstaller is not installed (pip install -e '.[build]')")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(REPO / "packaging" / "build.py")], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"\nbuild: {time.monotonic() - t0:.1f} s; {r.stdout.strip()}")
    dist = REPO / "dist"
    name = f"eraftd-{__version__}-{platform.system().lower()}-{platform.machine()}"
    artefact = dist / name
    digest = (dist / f"{name}.sha256").read_text().split()
    assert digest == [hashlib.sha256(artefact.read_bytes()).hexdigest(), name]
    # run it from outside the repository, as a user who downloaded it would
    out = tmp_path_factory.mktemp("bin") / "eraftd"
    shutil.copy2(artefact, out)
    return out


def test_version_says_upb(binary, tmp_path):
    r = subprocess.run(BARE + [str(binary), "--version"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"eraftd {__version__} (protobuf upb, python ")
    assert r.stderr == ""


def test_binary_makes_certificates(binary, tmp_path):
    """`eraftd cert` needs cryptography's native bindings inside the binary."""
    def cert(*args: str) -> str:
        r = subprocess.run(BARE + [str(binary), "cert", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and r.stderr == "", r.stdout + r.stderr
        return r.stdout
    assert cert("create-ca", "certs").startswith("wrote certs/ca.crt ")
    assert "[tls]" in cert("create-node", "certs", "127.0.0.1:7001")
    cert("create-client", "certs", "ops")
    out = cert("show", "certs/node.crt")
    assert "127.0.0.1" in out and "signed by certs/ca.crt  yes" in out
    assert (tmp_path / "certs" / "node.key").stat().st_mode & 0o777 == 0o600


def test_binary_runs_a_cluster_and_the_shell(binary, tmp_path):
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    procs: list[subprocess.Popen] = []
    outs: list[Path] = []
    try:
        t0 = time.monotonic()
        for i, a in enumerate(addrs, 1):
            toml = tmp_path / f"n{i}.toml"
            toml.write_text(dump_toml({"node": {"listen": a, "data_dir": f"data/n{i}"},
                                       "controller": {"peers": addrs},
                                       "shardkv": {"gid": 100, "peers": addrs}}))
            outs.append(tmp_path / f"n{i}.out")
            with open(outs[-1], "wb") as f:
                procs.append(subprocess.Popen(BARE + [str(binary), "run", "--config", toml.name],
                                              cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=f,
                                              stderr=subprocess.STDOUT, start_new_session=True))

        def all_ready():
            for p, o in zip(procs, outs):
                assert p.poll() is None, o.read_text()
            return all(" ready: listening on " in o.read_text() for o in outs)
        wait_for(all_ready, 60, "the three nodes' ready lines")
        print(f"\nthree binary nodes to their ready lines: {time.monotonic() - t0:.2f} s")

        script = (f"join 100={','.join(addrs)}\n"
                  "put fruit apple\n"
                  "append fruit ' pie'\n"
                  "get fruit\n"
                  "query\n"
                  "status\n")
        r = subprocess.run(BARE + [str(binary), "shell", "--config", "n1.toml", "--timeout", "30s"],
                           cwd=tmp_path, input=script, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("OK, configuration 1\nOK\nOK\napple pie\n"), r.stdout
        assert r.stdout.count("Serving") == 10, r.stdout
        assert "Traceback" not in r.stderr

        for p in procs:                      # a clean stop: SIGTERM -> exit 0
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            assert p.wait(timeout=30) == 0
        for o in outs:
            assert "Traceback" not in o.read_text()
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(timeout=30)
