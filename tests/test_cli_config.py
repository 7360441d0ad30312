"""The real `eraftd` executable on configuration: exit codes, one stderr line, nothing created."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import eraftd
from eraftd import cli
from eraftd.config import dump_toml

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).with_name("eraftd")
PEERS = ["127.0.0.1:6001", "127.0.0.1:6002", "127.0.0.1:6003"]
GOOD = {
    "node": {"listen": "127.0.0.1:6001", "data_dir": "data/n1"},
    "controller": {"peers": PEERS},
    "shardkv": {"gid": 100, "peers": PEERS},
}


def eraftd_cmd(*args: str, how: str = "module", cwd: Path | None = None) -> subprocess.CompletedProcess:
    argv = {"module": [sys.executable, "-m", "eraftd"], "cli": [sys.executable, "-m", "eraftd.cli"],
            "script": [str(CONSOLE_SCRIPT)]}[how]
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("how", ["module", "cli", "script"])
def test_version(how):
    if how == "script" and not CONSOLE_SCRIPT.exists():
        pytest.skip("console script not installed next to this interpreter")
    r = eraftd_cmd("--version", how=how)
    assert r.returncode == 0
    assert r.stdout.startswith(f"eraftd {eraftd.__version__} (protobuf upb, python ")   # the backend too
    assert eraftd.__version__ == "0.1.0"


@pytest.mark.parametrize("gid", [0, 1 << 31, 1 << 40])     # 1 << 40: was a traceback, a data_dir
@pytest.mark.parametrize("subcommand", ["run", "check-config"])
def test_bad_config_exits_2_with_one_line_and_creates_nothing(tmp_path, subcommand, gid):
    (tmp_path / "nodes").mkdir()
    path = tmp_path / "nodes" / "n1.toml"
    path.write_text(dump_toml({**GOOD, "shardkv": {"gid": gid, "peers": PEERS}}))
    r = eraftd_cmd(subcommand, "--config", "nodes/n1.toml", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == (f"eraftd: config error: nodes/n1.toml: [shardkv] gid: must be "
                        f"1..2147483647 (a group id), got {gid}\n")
    assert r.stdout == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["n1.toml", "nodes"]


def test_run_with_unknown_key_via_console_script(tmp_path):
    if not CONSOLE_SCRIPT.exists():
        pytest.skip("console script not installed next to this interpreter")
    path = tmp_path / "n1.toml"
    path.write_text(dump_toml({**GOOD, "raft": {"heartbeat": 100}}))
    r = subprocess.run([str(CONSOLE_SCRIPT), "run", "--config", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and str(path) in r.stderr and "[raft] heartbeat: unknown key" in r.stderr
    assert not (tmp_path / "data").exists()


def test_missing_file_and_syntax_error(tmp_path):
    r = eraftd_cmd("run", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and r.stderr.startswith(f"eraftd: config error: {tmp_path / 'nope.toml'}: cannot read")
    (tmp_path / "bad.toml").write_text("[node\n")
    r = eraftd_cmd("check-config", "--config", str(tmp_path / "bad.toml"))
    assert r.returncode == 2 and "TOML syntax" in r.stderr and r.stderr.count("\n") == 1


def test_check_config_ok_prints_a_summary(tmp_path):
    path = tmp_path / "n2.toml"
    path.write_text(dump_toml({**GOOD, "node": {"listen": "127.0.0.1:6002", "data_dir": "d"}}))
    r = eraftd_cmd("check-config", "--config", str(path))
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == (f"eraftd: config ok: {path}: advertise 127.0.0.1:6002, controller id 1 of 3, "
                        f"shardkv gid 100 id 1 of 3, data_dir {tmp_path / 'd'}\n")
    assert not (tmp_path / "d").exists()


def test_check_config_summary_of_a_joining_node(tmp_path):
    path = tmp_path / "n4.toml"
    path.write_text(dump_toml({"node": {"listen": "127.0.0.1:6004", "data_dir": "d"},
                               "controller": {"peers": PEERS, "join": True},
                               "shardkv": {"gid": 100, "peers": PEERS[:1], "join": True}}))
    r = eraftd_cmd("check-config", "--config", str(path))
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == (f"eraftd: config ok: {path}: advertise 127.0.0.1:6004, controller joining via 3 "
                        f"existing peers, shardkv gid 100 joining via 1 existing peer, data_dir {tmp_path / 'd'}\n")
    # (a joining node runs and waits to be added: tests/e2e/test_membership_processes.py)


def test_check_config_accepts_the_example():
    r = eraftd_cmd("check-config", "--config", str(ROOT / "eraft.toml.example"))
    assert r.returncode == 0, r.stderr
    assert not (ROOT / "data").exists()


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["run"], ["run", "-c", "x", "--log-level", "loud"]])
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: eraftd" in capsys.readouterr().err


def test_run_hands_the_config_to_serve(tmp_path, monkeypatch):
    """`run` validates, sets up logging (the --log-level override wins) and returns serve()'s code."""
    import types

    served = []
    fake = types.ModuleType("eraftd.node.server")
    fake.serve = lambda cfg, test_machine=None: served.append(cfg) or 7
    monkeypatch.setitem(sys.modules, "eraftd.node.server", fake)
    setups = []
    monkeypatch.setattr(cli.logs, "setup", lambda level, file: setups.append((level, file)))
    path = tmp_path / "n1.toml"
    path.write_text(dump_toml({**GOOD, "log": {"level": "warning", "file": "n1.log"}}))
    assert cli.main(["run", "--config", str(path), "--log-level", "debug"]) == 7
    assert setups == [("debug", str(tmp_path / "n1.log"))]
    assert served[0].log.level == "debug" and served[0].controller.id == 0


def test_unopenable_log_file_is_a_config_error(tmp_path, capsys):
    (tmp_path / "blocker").write_text("")
    path = tmp_path / "n1.toml"
    path.write_text(dump_toml({**GOOD, "log": {"file": "blocker/n1.log"}}))
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eraftd: config error: {path}: [log] file: cannot open") and err.count("\n") == 1


def test_log_format_is_one_line_per_event(tmp_path):
    import logging
    import re

    from eraftd import logs

    log_file = tmp_path / "sub" / "n1.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("info", str(log_file))
        logging.getLogger("eraftd.raft").info("elected\nleader")
        logging.getLogger("eraftd.raft").debug("hidden")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("eraftd.node").exception("failed")
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], root.level = saved
    lines = log_file.read_text().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} INFO eraftd\.raft: elected\\nleader", lines[0])
    assert " ERROR eraftd.node: failed\\nTraceback" in lines[1] and "RuntimeError: boom" in lines[1]
    with pytest.raises(ValueError, match="unknown log level"):
        logs.setup("loud")


def test_an_answer_to_a_client_that_left_is_one_info_line(tmp_path):
    """grpc.aio logs ExecuteBatchError with a traceback at ERROR when a client went away before
    its answer was sent (seen after a SIGSTOP pause in the nemesis): nothing failed here."""
    import logging

    from eraftd import logs

    class ExecuteBatchError(Exception):          # grpc._cython.cygrpc's, by name
        pass

    log_file = tmp_path / "n1.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("info", str(log_file))
        grpc_log = logging.getLogger("grpc._cython.cygrpc")
        try:
            raise ExecuteBatchError('Failed "execute_batch"')
        except ExecuteBatchError:
            grpc_log.exception("ExecuteBatchError raised in core by servicer method [%s]",
                               "/eraftkvpb.KVBatch/Batch")
        try:
            raise RuntimeError("a real one")
        except RuntimeError:
            grpc_log.exception("Unexpected error")
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], root.level = saved
    first, second = log_file.read_text().splitlines()
    assert first.endswith(" INFO grpc._cython.cygrpc: a client went away before its answer to "
                          "[/eraftkvpb.KVBatch/Batch] could be sent")
    assert " ERROR " in second and "Traceback" in second        # anything else stays an error
