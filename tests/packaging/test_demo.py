"""`eraftd demo`: a whole cluster from one command, driven non-interactively (a script on stdin).

Every process a test starts is found by its command line (it names the demo's directory) and
killed at the end, even when the test fails; waits poll a condition with a deadline.
"""
from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eraftd.testing import processes, wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "eraftd"]


def processes_of(d: Path) -> list[int]:
    """Pids of the live processes whose command line names directory d (demo's nodes)."""
    return processes(str(d))


def kill_processes_of(d: Path) -> None:
    for pid in processes_of(d):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def demo_dir(tmp_path):
    d = tmp_path / "demo"
    yield d
    kill_processes_of(d)             # last resort: nothing outlives the test


def run_demo(d: Path, script: str, timeout: float = 120, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + ["demo", "--dir", str(d), *extra], input=script, text=True,
                          capture_output=True, timeout=timeout)


def controllers_line(out: str) -> str:
    m = re.search(r"^  controllers  (\S+)$", out, re.M)
    assert m, out
    return m.group(1)


def test_demo_runs_a_script_then_stops_and_a_rerun_reuses_its_files(demo_dir):
    r = run_demo(demo_dir, "put fruit apple\nappend fruit ' pie'\nget fruit\nstatus\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 nodes up (3 controller peers, 6 replicas), every shard served" in r.stdout
    assert re.search(r"^  group 100 ", r.stdout, re.M) and re.search(r"^  group 101 ", r.stdout, re.M)
    assert "OK\nOK\napple pie\n" in r.stdout
    assert r.stdout.count("Serving") == 10
    assert sorted(p.name for p in demo_dir.glob("*.toml")) == [f"n{i}.toml" for i in range(1, 7)]
    assert processes_of(demo_dir) == []          # demo stopped every node before it exited
    assert "Traceback" not in r.stderr
    first = controllers_line(r.stdout)

    # again: the same files, so the same ports and the same data
    r2 = run_demo(demo_dir, "get fruit\n")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "reusing 6 node files" in r2.stdout
    assert controllers_line(r2.stdout) == first
    assert r2.stdout.rstrip().endswith("apple pie")
    assert processes_of(demo_dir) == []

    # a port now taken: one clear line, exit 1, nothing started
    port = int(re.search(r'listen = "127\.0\.0\.1:(\d+)"', (demo_dir / "n5.toml").read_text()).group(1))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        r3 = run_demo(demo_dir, "get fruit\n", 60)
    assert r3.returncode == 1
    assert r3.stderr.count("\n") == 1, r3.stderr
    assert f"port 127.0.0.1:{port}" in r3.stderr and "taken" in r3.stderr
    assert processes_of(demo_dir) == []


def test_demo_from_a_folder_holding_a_directory_named_eraftd(tmp_path):
    """The nodes start independent of the cwd: `python -m eraftd` from here would import the
    empty ./eraftd (a namespace package) instead of the installed one."""
    entry = Path(sys.executable).parent / "eraftd"       # what `pip install -e .` put on PATH
    if not entry.exists():
        pytest.skip("no installed eraftd entry point beside this interpreter")
    work = tmp_path / "work"
    (work / "eraftd").mkdir(parents=True)
    d = work / "demo"
    try:
        r = subprocess.run([str(entry), "demo", "--dir", str(d), "--replicas", "1"],
                           input="put here 1\nget here\n", text=True, capture_output=True,
                           timeout=180, cwd=work)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "every shard served" in r.stdout and r.stdout.rstrip().endswith("OK\n1")
        assert "ImportError" not in r.stderr and "Traceback" not in r.stderr
        assert processes_of(d) == []
    finally:
        kill_processes_of(d)


def _read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """proc's stdout up to a line containing marker (bounded by timeout)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    text, deadline = "", time.monotonic() + timeout
    while marker not in text:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None and not sel.select(0):
            raise AssertionError(f"no {marker!r} from demo; got:\n{text}")
        if sel.select(left):
            chunk = os.read(proc.stdout.fileno(), 65536).decode(errors="replace")
            if not chunk:
                raise AssertionError(f"demo closed stdout before {marker!r}:\n{text}")
            text += chunk
    return text


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_demo_nodes_do_not_outlive_it(demo_dir, how):
    proc = subprocess.Popen(EXE + ["demo", "--dir", str(demo_dir), "--groups", "2", "--replicas", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        _read_until(proc, "the shell follows", 120)
        nodes = processes_of(demo_dir)
        assert len(nodes) >= 4, nodes            # 3 controller peers + 1 replica of group 101
        proc.send_signal(getattr(signal, how))
        proc.wait(timeout=60)
        if how == "SIGTERM":
            assert proc.returncode == 128 + signal.SIGTERM
        wait_for(lambda: processes_of(demo_dir) == [], 30, f"demo's nodes to die after {how}")
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdin.close()
        proc.stdout.close()


def _readme_first_command() -> str:
    """The first sh block of the README: install and start `eraftd demo`."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"```sh\n(.*?)```", text, re.S)
    assert m, "README.md has no sh block"
    cmd = " ".join(l.rstrip("\\").strip() for l in m.group(1).strip().splitlines())
    assert "eraftd demo" in cmd, cmd
    return cmd


@pytest.mark.slow
def test_readme_first_command_in_a_fresh_virtualenv(tmp_path):
    """Copy the checkout (as a fresh clone would be), run the README's first command there with a
    short script on stdin, check the demo's output.  ~10 s for the install (wheels cached)."""
    tree = tmp_path / "eraftd"
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "__pycache__", "*.egg-info", ".notes", "eraft-demo",
        ".pytest_cache", "data"))
    cmd = _readme_first_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    try:
        r = subprocess.run(["bash", "-c", cmd], cwd=tree, input="put k hello\nappend k ' world'\nget k\n",
                           text=True, capture_output=True, timeout=300, env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "every shard served" in r.stdout
        assert r.stdout.rstrip().endswith("OK\nOK\nhello world"), r.stdout[-2000:]
        assert (tree / "eraft-demo" / "n1.toml").exists()
        assert processes_of(tree) == []
    finally:
        kill_processes_of(tree)


def test_demo_on_a_terminal_opens_the_shell_and_ctrl_d_stops_everything(demo_dir, tmp_path):
    import pexpect
    env = {k: v for k, v in os.environ.items() if k not in ("ERAFT_CONTROLLERS", "ERAFT_HISTORY")}
    env.update(PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", ERAFT_HISTORY=str(tmp_path / "history"))
    p = pexpect.spawn(EXE[0], EXE[1:] + ["demo", "--dir", str(demo_dir), "--replicas", "1"],
                      env=env, dimensions=(40, 160), timeout=120, encoding="utf-8", cwd=str(tmp_path))
    try:
        p.expect("every shard served")
        p.expect("cfg")                                 # the prompt (drawn with escapes in between)
        p.send("put tty-key hello\r")
        p.expect("OK")
        p.expect("cfg")
        p.send("\x04")                                  # Ctrl-D: leave the shell, stop the cluster
        p.expect("stopped; the files and data stay in")
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 0
        assert processes_of(demo_dir) == []
    finally:
        if p.isalive():
            p.terminate(force=True)


# ---------------------------------------------------------------- demo --tls

def test_demo_tls_writes_certificates_and_a_tls_section_in_every_toml(tmp_path):
    from eraftd import config
    from eraftd.demo import Layout, banner, create_layout, load_layout
    d = tmp_path / "demo"
    layout = create_layout(d, groups=2, replicas=1, tls=True)
    certs = d / "certs"
    assert sorted(p.name for p in certs.iterdir()) == [
        "ca.crt", "ca.key", "client.ops.crt", "client.ops.key", "node.crt", "node.key"]
    tomls = sorted(d.glob("n*.toml"))
    assert len(tomls) == 4
    for toml in tomls:
        assert '\n[tls]\nca_file = "certs/ca.crt"\n' in toml.read_text()
        cfg = config.load(str(toml))
        assert cfg.tls.files.ca_file == str(certs / "ca.crt")
        assert cfg.tls.files.cert_file == str(certs / "node.crt")
        assert cfg.tls.require_client_auth and cfg.tls.admins == ("ops",)
    client = (str(certs / "ca.crt"), str(certs / "client.ops.crt"), str(certs / "client.ops.key"))
    assert (layout.tls.ca_file, layout.tls.cert_file, layout.tls.key_file) == client
    again = load_layout(d)                             # a later run: the TOML files say TLS
    assert again.tls == layout.tls and [n.address for n in again.nodes] == [n.address for n in layout.nodes]
    text = banner(again, 1.0)
    assert (f"  elsewhere    eraftd shell --controllers {','.join(again.controllers)} "
            f"--tls-ca {client[0]} --tls-cert {client[1]} --tls-key {client[2]}") in text

    plain = create_layout(tmp_path / "plain", groups=1, replicas=1)
    assert plain.tls is None and not (tmp_path / "plain" / "certs").exists()
    assert "[tls]" not in (tmp_path / "plain" / "n1.toml").read_text()
    assert "--tls" not in banner(plain, 1.0)
    assert isinstance(plain, Layout)


def test_demo_tls_on_a_plaintext_demo_directory_is_one_line(tmp_path):
    from eraftd.demo import create_layout
    d = tmp_path / "demo"
    create_layout(d, groups=1, replicas=1)
    r = run_demo(d, "", 60, "--tls")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (f"eraftd demo: {d} holds a plaintext demo (its TOML files have no [tls]); "
                        f"choose another --dir for --tls, or remove this one\n")
    assert not (d / "certs").exists()


def test_demo_tls_runs_a_script_and_refuses_a_plaintext_client(demo_dir):
    r = run_demo(demo_dir, "put fruit apple\nget fruit\nstatus\n", 180, "--tls", "--replicas", "1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"(TLS: certificates in {demo_dir / 'certs'})" in r.stdout
    assert "every shard served" in r.stdout and "OK\napple\n" in r.stdout
    assert r.stdout.count("Serving") == 10
    assert "Traceback" not in r.stderr
    m = re.search(r"^  elsewhere    eraftd shell (.*)$", r.stdout, re.M)
    assert m and "--tls-ca " in m.group(1), r.stdout
    elsewhere = m.group(1).split()
    assert processes_of(demo_dir) == []

    # again, with a client of its own: the banner's command works, a plaintext client is refused
    proc = subprocess.Popen(EXE + ["demo", "--dir", str(demo_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out = _read_until(proc, "the shell follows", 180)
        assert "reusing 4 node files" in out and "(TLS: certificates in" in out
        ok = subprocess.run(EXE + elsewhere + ["get", "fruit"], capture_output=True, text=True,
                            timeout=120)
        assert (ok.returncode, ok.stdout) == (0, "apple\n"), ok.stderr
        ctrl = elsewhere[elsewhere.index("--controllers") + 1]
        plain = subprocess.run(EXE + ["--controllers", ctrl, "--timeout", "5s", "get", "fruit"],
                               capture_output=True, text=True, timeout=120,
                               env={k: v for k, v in os.environ.items() if not k.startswith("ERAFT_")})
        assert plain.returncode != 0 and plain.stdout == ""
        assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr, plain.stderr
    finally:
        proc.stdin.close()                   # EOF: demo's shell ends, demo stops its nodes
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
    assert processes_of(demo_dir) == []


# ---------------------------------------------------------------- http ports and the dashboard

def test_demo_gives_every_node_an_http_port_and_prints_the_dashboard_command(tmp_path):
    from eraftd import config
    from eraftd.demo import banner, create_layout, prometheus_config
    layout = create_layout(tmp_path / "plain", groups=2, replicas=3)
    ports = [a for n in layout.nodes for a in (n.address, n.http)]
    assert all(n.http.startswith("127.0.0.1:") for n in layout.nodes)
    assert len(set(ports)) == len(ports) == 12
    for n in layout.nodes:
        assert config.load(str(n.toml)).node.http == n.http
    text = banner(layout, 1.0)
    assert ("  http         " + " ".join(f"{n.name}={n.http}" for n in layout.nodes)
            + f" (/metrics, /healthz, /readyz; Prometheus: {layout.dir / 'prometheus.yml'})") in text
    yml = prometheus_config(layout)
    assert [l.strip()[2:] for l in yml.splitlines() if l.strip().startswith("- 127.")] == [
        n.http for n in layout.nodes]
    assert "scheme" not in yml
    ctrl = ",".join(layout.controllers)
    assert f"  dashboard    eraftd dashboard --controllers {ctrl} --listen 127.0.0.1:8080\n" in text
    started = banner(layout, 1.0, dashboard="127.0.0.1:9999")
    assert f"  dashboard    http://127.0.0.1:9999/ (log: {layout.dir / 'dashboard.log'})" in started
    assert "eraftd dashboard --controllers" not in started

    # TLS: the dashboard dials and serves (HTTPS) with the nodes' certificate, which names 127.0.0.1
    tls = create_layout(tmp_path / "tls", groups=1, replicas=1, tls=True)
    certs = tmp_path / "tls" / "certs"
    assert (f"  dashboard    eraftd dashboard --controllers {','.join(tls.controllers)} --listen "
            f"127.0.0.1:8080 --tls-ca {certs / 'ca.crt'} --tls-cert {certs / 'node.crt'} "
            f"--tls-key {certs / 'node.key'}\n") in banner(tls, 1.0)
    assert banner(tls, 1.0, dashboard="127.0.0.1:9999").count("https://127.0.0.1:9999/") == 1
    yml = prometheus_config(tls)
    assert "    scheme: https\n" in yml and f'      cert_file: "{certs / "client.ops.crt"}"\n' in yml


def test_demo_dashboard_flag_starts_the_dashboard_and_stops_it_too(demo_dir):
    import json
    import urllib.request

    from eraftd.testing import free_port
    listen = f"127.0.0.1:{free_port()}"

    def get(url: str):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except OSError as e:
            return 0, str(e)

    proc = subprocess.Popen(EXE + ["demo", "--dir", str(demo_dir), "--replicas", "1",
                                   "--dashboard", listen],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = _read_until(proc, "the shell follows", 180)
        assert f"  dashboard    http://{listen}/ (log: {demo_dir / 'dashboard.log'})" in out, out
        http = dict(p.split("=") for p in re.search(r"^  http         (.*) \(/metrics", out, re.M)
                    .group(1).split())
        assert sorted(http) == ["n1", "n2", "n3", "n4"], http
        assert sorted(re.findall(r"- (127\.0\.0\.1:\d+)", (demo_dir / "prometheus.yml").read_text())
                      ) == sorted(http.values())
        for name, addr in http.items():
            status, text = get(f"http://{addr}/metrics")
            assert status == 200 and "eraft_build_info" in text, (name, status, text[:200])

        def dashboard_sees_every_node():
            status, body = get(f"http://{listen}/api/cluster")
            return status == 200 and json.loads(body).get("ready")
        wait_for(dashboard_sees_every_node, 60, "the dashboard's first poll")
        assert processes(f"--listen {listen}") != []
    finally:
        proc.stdin.close()                   # EOF: demo's shell ends, demo stops everything
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.wait(timeout=30)
            err = proc.stderr.read().decode()
            proc.stdout.close()
            proc.stderr.close()
            for pid in processes(f"--listen {listen}"):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert processes_of(demo_dir) == [] and processes(f"--listen {listen}") == []


def test_demo_dashboard_on_a_taken_port_is_one_line(demo_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = f"127.0.0.1:{s.getsockname()[1]}"
        r = run_demo(demo_dir, "", 60, "--replicas", "1", "--dashboard", taken)
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert r.stderr.count("\n") == 1 and f"port {taken} is taken" in r.stderr, r.stderr
    assert processes_of(demo_dir) == []
    r = run_demo(demo_dir, "", 60, "--dashboard", "nowhere")
    assert (r.returncode, r.stderr) == (2, "eraftd demo: --dashboard takes HOST:PORT, got 'nowhere'\n")
