"""benchmarks/vs_etcd.py runs and prints its table: --help, a tiny eraftd-only run with no etcd
on PATH, and (when etcd is installed) a tiny run of both.  Nothing here asserts a speed."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eraftd.testing import processes

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "vs_etcd.py"
TINY = ["--seconds", "1", "--concurrency", "1", "--paths", "native", "--rounds", "1",
        "--keys", "50"]


def run(args: list[str], tmp_path: Path, env: dict | None = None,
        timeout: float = 300) -> tuple[subprocess.CompletedProcess, list[int]]:
    """The script with --keep under tmp_path, so that every process it starts (their command
    lines name that directory) can be found and killed here, whatever happens to it; and the
    pids of those it left running (killed now)."""
    keep = ["--keep", str(tmp_path / "run")] if args != ["--help"] else []
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args, *keep], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)      # it stops its clusters on SIGTERM
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = processes(str(tmp_path))
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), left


def table(stdout: str) -> list[dict[str, str]]:
    """The markdown table's rows as {column: cell}."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    head, rows = cells[0], cells[2:]
    return [dict(zip(head, r)) for r in rows]


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_help_documents_every_option(tmp_path):
    r, _ = run(["--help"], tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    for option in ("--seconds", "--concurrency", "--rounds", "--paths", "--ops", "--etcd"):
        assert option in r.stdout
    assert "apt-get install etcd-server" in r.stdout


def test_without_etcd_it_says_how_to_get_it_and_measures_eraftd_alone(tmp_path):
    empty = tmp_path / "bin"                  # a PATH with no etcd on it
    empty.mkdir()
    r, left = run(TINY, tmp_path, env={**os.environ, "PATH": str(empty)})
    assert r.returncode == 0, r.stderr
    hint = [ln for ln in r.stdout.splitlines() if "etcd" in ln and "apt-get install etcd-server" in ln]
    assert len(hint) == 1 and hint[0].startswith("no etcd on PATH"), r.stdout
    rows = table(r.stdout)
    assert [(x["path"], x["op"], x["conc"]) for x in rows] == [("native", "put", "1"),
                                                                ("native", "get", "1")]
    for x in rows:
        assert not any(k.startswith("etcd") for k in x), x
        assert number(x["eraftd ops/s"]) > 0
        assert number(x["eraftd p99 ms"]) >= number(x["eraftd p50 ms"]) > 0
        assert number(x["eraftd server CPU s"]) >= 0 and number(x["eraftd client CPU s"]) >= 0
    assert not left, "processes left running"


@pytest.mark.skipif(shutil.which("etcd") is None,
                    reason="etcd is not installed (apt-get install etcd-server)")
def test_with_etcd_the_table_has_the_ratio(tmp_path):
    r, left = run(TINY, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no etcd" not in r.stdout
    rows = table(r.stdout)
    assert len(rows) == 2
    for x in rows:
        assert number(x["etcd ops/s"]) > 0 and number(x["eraftd ops/s"]) > 0
        assert number(x["eraftd/etcd"]) > 0
        assert number(x["etcd p99 ms"]) >= number(x["etcd p50 ms"]) > 0
        assert number(x["etcd server CPU s"]) >= 0 and number(x["etcd client CPU s"]) >= 0
    assert not left, "processes left running"
