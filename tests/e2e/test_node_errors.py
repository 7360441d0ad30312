"""`eraftd run` refuses clearly, exits non-zero and leaves data alone when it cannot start."""
from __future__ import annotations

import hashlib
import resource
import socket
import struct
import subprocess

import grpc
import pytest
from rocksdict import Options, Rdict

from eraftd._pb import admin_pb2 as apb
from eraftd.config import dump_toml
from eraftd.testing import Cluster, Node, eraftd_command, free_port, wait_for

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


def digests(path) -> dict[str, str]:
    """Every file under path and its content's sha256: byte-for-byte equality."""
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def stopped_node_with_log(tmp_path, commands: int = 60) -> Node:
    """A one-peer controller group (the register machine) that committed `commands`, stopped."""
    c = Cluster(tmp_path, n=1)
    try:
        c.start()
        for i in range(commands):
            c.propose(0, [b"k%d=%s" % (i, b"v" * 500)])
        assert c.nodes[0].stop() == 0
    finally:
        c.close()
    return c.nodes[0]


def run_node_to_exit(node: Node) -> subprocess.CompletedProcess:
    return subprocess.run(eraftd_command() + ["run", "--config", str(node.toml)] + node.extra_args,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          cwd=node.dir)


def test_a_log_that_lost_its_tail_is_refused_and_left_untouched(tmp_path):
    """The hard state says more was committed than the log holds (issue 17: a lost WAL tail
    started silently with a shorter log): one line with the numbers and what to do."""
    node = stopped_node_with_log(tmp_path)
    data = node.dir / "data"
    db = Rdict(str(data), Options(raw_mode=True))        # the damage: the log's tail is gone
    gp = b"g" + struct.pack(">I", 0)
    commit = struct.unpack(">QqQ", db.get(gp + b"h"))[2]
    assert commit > 40
    db.delete_range(gp + b"l" + struct.pack(">Q", 31), gp + b"m")
    db.close()
    before = digests(data)
    r = run_node_to_exit(node)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"eraftd: data_dir {data}: group 0: the log ends at 30 but this node had "
                        f"committed {commit}: its disk lost data (nothing was changed); start this "
                        f"node with a fresh data_dir, then replace it with `eraftd member replace "
                        f"ctrl {node.address}`\n")
    assert digests(data) == before


def test_an_sst_flipped_mid_file_is_one_line_and_nothing_is_rewritten(tmp_path):
    node = stopped_node_with_log(tmp_path)
    data = node.dir / "data"
    db = Rdict(str(data), Options(raw_mode=True))
    db.flush()                                            # every record in an SST file
    db.close()
    sst = max(data.glob("*.sst"), key=lambda p: p.stat().st_size)
    raw = bytearray(sst.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    sst.write_bytes(bytes(raw))
    before = digests(data)
    r = run_node_to_exit(node)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"eraftd: data_dir {data} ")
    assert "Corruption" in r.stderr and "Traceback" not in r.stderr
    assert digests(data) == before


def test_a_disk_that_refuses_writes_stops_the_node_with_one_critical_line(tmp_path):
    """ENOSPC and a read-only remount need root to provoke; a file size limit (RLIMIT_FSIZE:
    Python ignores SIGXFSZ, so the write fails with EFBIG) takes the same path: RocksDB's write
    fails, the driver stops, the node exits 1 with one CRITICAL line and no traceback."""
    addr = f"127.0.0.1:{free_port()}"
    cfg = one_node_config(addr)
    cfg["node"]["testing"] = True                 # the test state machine's Propose
    node = Node("n0", tmp_path, cfg, ["--test-state-machine", "register"])

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
    # output to a pipe (a pipe has no size limit; the node writes a few lines)
    node.proc = subprocess.Popen(eraftd_command() + ["run", "--config", str(node.toml)] + node.extra_args,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 stdin=subprocess.DEVNULL, cwd=node.dir, preexec_fn=small_files,
                                 start_new_session=True)
    try:
        wait_for(lambda: node.group_status(0, timeout=0.5).role == "Leader", 60, "a leader")
        for i in range(200):                    # 100 kB each: the 2 MiB WAL fills within ~20
            try:
                node.admin().Propose(apb.ProposeRequest(group=0, commands=[b"k%d=%s" % (i, b"v" * 100_000)]),
                                     timeout=10)
            except grpc.RpcError:
                break
        out, _ = node.proc.communicate(timeout=60)
    finally:
        node.kill()
    assert node.proc.returncode == 1, out
    critical = [line for line in out.splitlines() if " CRITICAL " in line]
    assert len(critical) == 1 and "write failed" in critical[0] and "File too large" in critical[0], out
    assert "check the disk (space, permissions) and restart" in critical[0]
    assert "Traceback" not in out and "Exception ignored" not in out and " ERROR " not in out, out

