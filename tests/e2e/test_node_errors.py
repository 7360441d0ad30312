"""`eraftd run` refuses clearly, exits non-zero and leaves data alone when it cannot start."""
from __future__ import annotations

import socket
import subprocess

import pytest

from eraftd.config import dump_toml
from eraftd.testing import Node, eraftd_command, free_port

pytestmark = pytest.mark.e2e


def one_node_config(addr: str, **extra) -> dict:
    cfg = {"node": {"listen": addr, "data_dir": "data"}, "controller": {"peers": [addr]},
           "raft": {"heartbeat_ms": 50, "election_ms": 500}}
    cfg.update(extra)
    return cfg


def run_to_exit(toml, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(eraftd_command() + ["run", "--config", str(toml)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def tree(path):
    return sorted((p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in path.rglob("*") if p.is_file())


def test_identity_mismatch_is_refused_and_data_untouched(tmp_path):
    addr = f"127.0.0.1:{free_port()}"
    node = Node("n0", tmp_path, one_node_config(addr))
    try:
        node.start().wait_serving()
        assert node.stop() == 0
    finally:
        node.kill()
    data = node.dir / "data"
    before = tree(data)
    other = f"127.0.0.1:{free_port()}"
    cfg = one_node_config(other)
    cfg["node"]["data_dir"] = str(data)
    bad = tmp_path / "other.toml"
    bad.write_text(dump_toml(cfg))
    r = run_to_exit(bad)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(data) in lines[0] and "advertise" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert tree(data) == before


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        addr = f"127.0.0.1:{s.getsockname()[1]}"
        toml = tmp_path / "n.toml"
        toml.write_text(dump_toml(one_node_config(addr)))
        r = run_to_exit(toml)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and f"cannot listen on {addr}" in r.stderr, r.stderr


def test_ready_line_names_address_roles_and_data_dir(tmp_path):
    addr = f"127.0.0.1:{free_port()}"
    node = Node("n0", tmp_path, one_node_config(addr))
    try:
        node.start().wait_serving()
        text = node.log_text()
        ready = [line for line in text.splitlines() if " ready: " in line and "eraftd.node" not in line]
        assert ready, text
        assert addr in ready[0] and "controller" in ready[0] and str(node.dir / "data") in ready[0]
        assert node.stop() == 0
    finally:
        node.kill()


def test_a_second_node_on_a_taken_address_exits_with_one_line_and_writes_nothing(tmp_path):
    """gRPC's SO_REUSEPORT let a second process bind a running node's address and take half
    its connections (issue 17): it must fail to bind, before its data_dir exists."""
    addr = f"127.0.0.1:{free_port()}"
    first = Node("n0", tmp_path, one_node_config(addr))
    try:
        first.start().wait_serving()
        second = tmp_path / "second"
        second.mkdir()
        toml = second / "n.toml"
        toml.write_text(dump_toml(one_node_config(addr)))
        r = run_to_exit(toml)
        assert r.returncode == 1
        assert r.stderr == (f"eraftd: cannot listen on {addr}: the address is in use or not local; "
                            f"free the port or change [node] listen in {toml}\n")
        assert not (second / "data").exists()
        assert first.running() and first.status().groups
    finally:
        first.kill()


def test_a_listen_address_that_is_not_local_writes_nothing(tmp_path):
    toml = tmp_path / "n.toml"
    toml.write_text(dump_toml(one_node_config("192.0.2.1:7001")))      # TEST-NET-1: not ours
    r = run_to_exit(toml)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "cannot listen on 192.0.2.1:7001: the address is in use or not local" in r.stderr
    assert not (tmp_path / "data").exists()
