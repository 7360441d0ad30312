"""eraftd.config and eraftd.durations: valid shapes, defaults, and one clear line per problem."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
from pathlib import Path

import pytest

from eraftd import config
from eraftd.config import ConfigError, dump_toml, load, loads
from eraftd.durations import DurationError, parse_duration

ROOT = Path(__file__).resolve().parent.parent
CTRL = ["127.0.0.1:6001", "127.0.0.1:6002", "127.0.0.1:6003"]
GROUP101 = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]


def all_in_one(listen: str = "127.0.0.1:6002") -> dict:
    return {
        "node": {"listen": listen, "data_dir": "data/n2"},
        "controller": {"peers": list(CTRL)},
        "shardkv": {"gid": 100, "peers": list(CTRL)},
    }


def shardkv_only() -> dict:
    return {
        "node": {"listen": "127.0.0.1:7003", "data_dir": "data/n6"},
        "shardkv": {"gid": 101, "peers": list(GROUP101), "controllers": list(CTRL)},
    }


def write(tmp_path: Path, doc: dict | str, name: str = "n1.toml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else dump_toml(doc))
    return path


# ---------------------------------------------------------------- valid shapes

def test_all_in_one_ids_and_defaults(tmp_path):
    cfg = load(str(write(tmp_path, all_in_one())))
    assert cfg.path == str(tmp_path / "n1.toml")
    assert cfg.roles() == ["controller", "shardkv"]
    assert cfg.node.advertise == cfg.node.listen == "127.0.0.1:6002"
    assert cfg.node.data_dir == str(tmp_path / "data" / "n2")   # relative to the file, not the cwd
    assert cfg.node.http == "" and dict(cfg.node.dial) == {}
    assert cfg.controller == config.ControllerSection(peers=tuple(CTRL), id=1)
    assert cfg.shardkv == config.ShardKVSection(gid=100, peers=tuple(CTRL), id=1, controllers=tuple(CTRL),
                                                max_key_bytes=4096, max_value_bytes=1048576)
    assert cfg.raft == config.RaftSection(heartbeat_ms=100, election_ms=1000, fsync=True, snapshot_entries=10000,
                                          max_batch_bytes=1048576, max_inflight=256, pre_vote=True,
                                          check_quorum=True)
    assert cfg.log == config.LogSection(level="info", file="")
    assert not (tmp_path / "data").exists()                     # validation creates nothing
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.node.listen = "x"  # type: ignore[misc]


def test_session_ttl_defaults_to_an_hour_and_is_read(tmp_path):
    cfg = load(str(write(tmp_path, all_in_one())))
    assert cfg.shardkv.session_ttl_ms == cfg.controller.session_ttl_ms == 3_600_000
    cfg = load(str(write(tmp_path, with_(with_(all_in_one(), "shardkv", session_ttl_ms=5000),
                                         "controller", session_ttl_ms=7000))))
    assert (cfg.shardkv.session_ttl_ms, cfg.controller.session_ttl_ms) == (5000, 7000)


def test_shardkv_only_names_its_controllers(tmp_path):
    cfg = load(str(write(tmp_path, shardkv_only())))
    assert cfg.roles() == ["shardkv"] and cfg.controller is None
    assert (cfg.shardkv.gid, cfg.shardkv.id, cfg.shardkv.controllers) == (101, 2, tuple(CTRL))
    assert cfg.identity() == {"advertise": "127.0.0.1:7003", "roles": ["shardkv"], "controller_peers": None,
                              "gid": 101, "shardkv_peers": GROUP101}
    json.dumps(cfg.identity())


def test_controller_only_and_every_key_set(tmp_path):
    doc = {
        "node": {"listen": "0.0.0.0:6003", "advertise": "127.0.0.1:6003", "data_dir": str(tmp_path / "abs"),
                 "http": "127.0.0.1:9003", "dial": {"127.0.0.1:6001": "127.0.0.1:16001"}},
        "controller": {"peers": CTRL},
        "raft": {"heartbeat_ms": 50, "election_ms": 500, "fsync": False, "snapshot_entries": 7,
                 "max_batch_bytes": 1000, "max_inflight": 4, "pre_vote": False, "check_quorum": False},
        "log": {"level": "DEBUG", "file": "logs/n3.log"},
    }
    cfg = load(str(write(tmp_path, doc)))
    assert cfg.roles() == ["controller"] and cfg.shardkv is None and cfg.controller.id == 2
    assert cfg.node.data_dir == str(tmp_path / "abs")
    assert cfg.node.dial_address("127.0.0.1:6001") == "127.0.0.1:16001"
    assert cfg.node.dial_address("127.0.0.1:6002") == "127.0.0.1:6002"
    assert cfg.raft == config.RaftSection(50, 500, False, 7, 1000, 4, False, False)
    assert cfg.log == config.LogSection(level="debug", file=str(tmp_path / "logs" / "n3.log"))
    assert cfg.identity()["gid"] is None and cfg.identity()["controller_peers"] == CTRL


def test_loads_resolves_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = loads(dump_toml(all_in_one()))
    assert cfg.path == "<string>" and cfg.node.data_dir == str(tmp_path / "data" / "n2")


def test_example_file_is_valid():
    cfg = load(str(ROOT / "eraft.toml.example"))
    assert cfg.roles() == ["controller", "shardkv"]
    assert (cfg.controller.id, cfg.shardkv.gid, cfg.shardkv.id) == (0, 100, 0)
    assert cfg.raft == config.RaftSection() and cfg.log == config.LogSection()


def test_example_documents_every_key():
    text = (ROOT / "eraft.toml.example").read_text()
    for section, keys in config._SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            # [tls] is documented as a commented-out block: the example runs without certificates
            assert (f"\n{key} = " in text or f"[{section}.{key}]" in text
                    or (section == "tls" and f"\n# {key} = " in text)), key


def example_block(after: str) -> str:
    """The commented-out TOML of eraft.toml.example that follows `after`, up to the next block."""
    text = (ROOT / "eraft.toml.example").read_text()
    block = text.split(after, 1)[1].split("\n# ----", 1)[0]
    return "\n".join(line.removeprefix("# ").removeprefix("#") for line in block.splitlines())


def test_example_replica_only_block_is_valid(tmp_path):
    cfg = loads(example_block("must name the controllers."))
    assert cfg.roles() == ["shardkv"] and cfg.shardkv.gid == 101 and cfg.shardkv.id == 0
    assert not cfg.shardkv.join


def test_example_joining_block_is_valid(tmp_path):
    cfg = loads(example_block("until `eraftd member replace GID ADDR`."))
    assert cfg.roles() == ["shardkv"] and cfg.shardkv.join and cfg.shardkv.id is None
    assert cfg.node.advertise not in cfg.shardkv.peers


def test_join_defaults_false_and_parses(tmp_path):
    cfg = load(str(write(tmp_path, all_in_one())))
    assert not cfg.controller.join and not cfg.shardkv.join
    # a joining node: peers names the running group; its own address is not there; no id yet
    doc = with_(with_(all_in_one("127.0.0.1:6004"), "controller", join=True), "shardkv", join=True)
    cfg = load(str(write(tmp_path, doc)))
    assert cfg.controller == config.ControllerSection(peers=tuple(CTRL), id=None, join=True)
    assert (cfg.shardkv.join, cfg.shardkv.id, cfg.shardkv.peers) == (True, None, tuple(CTRL))
    # a replaced member at the same address joins too: its address is in peers, still no id
    cfg = load(str(write(tmp_path, with_(all_in_one(), "shardkv", join=True))))
    assert (cfg.shardkv.join, cfg.shardkv.id, cfg.controller.join, cfg.controller.id) == (True, None, False, 1)
    # join = false is the default spelled out
    cfg = load(str(write(tmp_path, with_(all_in_one(), "controller", join=False))))
    assert cfg.controller == config.ControllerSection(peers=tuple(CTRL), id=1, join=False)
    assert "join" not in cfg.identity()       # the data_dir belongs to the group, however it came in


# ---------------------------------------------------------------- errors: one line naming file and key

def with_(doc: dict, section: str, **keys) -> dict:
    doc.setdefault(section, {}).update(keys)
    return doc


def without(doc: dict, section: str, key: str | None = None) -> dict:
    if key is None:
        del doc[section]
    else:
        del doc[section][key]
    return doc


BAD = [
    # (document, key named in the message, words of the problem)
    (with_(all_in_one(), "shardkv", gid=0), "[shardkv] gid", "must be 1..2147483647 (a group id), got 0"),
    (with_(all_in_one(), "shardkv", gid=-3), "[shardkv] gid", "must be 1..2147483647 (a group id), got -3"),
    (with_(all_in_one(), "shardkv", gid=1 << 31), "[shardkv] gid", "must be 1..2147483647 (a group id), got 2147483648"),
    (with_(all_in_one(), "shardkv", gid=1 << 40), "[shardkv] gid", "got 1099511627776"),
    (with_(all_in_one(), "shardkv", gid=True), "[shardkv] gid", "must be an integer, got true"),
    (with_(all_in_one(), "shardkv", gid="100"), "[shardkv] gid", 'must be an integer, got "100"'),
    (with_(all_in_one(), "raft", fsync=1), "[raft] fsync", "must be a boolean"),
    (with_(all_in_one(), "node", listen="h" * 300 + ":1"), "[node] listen",
     "(at most 261 characters), got 'hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh'... (302 characters)"),
    (with_(all_in_one(), "raft", heartbeat_ms=1.5), "[raft] heartbeat_ms", "must be an integer, got 1.5"),
    (with_(all_in_one(), "raft", max_inflight=0), "[raft] max_inflight", "positive"),
    (with_(all_in_one(), "raft", snapshot_entries=-1), "[raft] snapshot_entries", "positive"),
    (with_(all_in_one(), "raft", max_batch_bytes=0), "[raft] max_batch_bytes", "positive"),
    (with_(all_in_one(), "shardkv", max_value_bytes=0), "[shardkv] max_value_bytes", "positive"),
    (with_(all_in_one(), "shardkv", max_value_bytes=(16 << 20) + 1), "[shardkv] max_value_bytes",
     "must be at most 16777216 (16 MiB: a value travels whole in one message), got 16777217"),
    (with_(all_in_one(), "shardkv", session_ttl_ms=999), "[shardkv] session_ttl_ms",
     "must be at least 1000 (1 s; keep it well above eRaft unary clients' timeouts, default 3600000 = 1 hour), got 999"),
    (with_(all_in_one(), "controller", session_ttl_ms=0), "[controller] session_ttl_ms", "at least 1000"),
    (with_(all_in_one(), "controller", session_ttl_ms="1h"), "[controller] session_ttl_ms",
     'must be an integer, got "1h"'),
    (with_(all_in_one(), "node", max_inflight_bytes=0), "[node] max_inflight_bytes", "positive"),
    (with_(all_in_one(), "node", max_connections=-1), "[node] max_connections", "must be 0 or more, got -1"),
    (with_(all_in_one(), "node", connection_idle_ms=0), "[node] connection_idle_ms", "positive"),
    (with_(all_in_one(), "node", max_inflight_bytes=1 << 20), "[node] max_inflight_bytes_per_connection",
     "must be at most max_inflight_bytes (1048576), got 25165824"),
    (with_(with_(all_in_one(), "shardkv", max_value_bytes=16 << 20), "node",
           max_inflight_bytes_per_connection=8 << 20), "[node] max_inflight_bytes_per_connection",
     "must be at least [shardkv] max_key_bytes + max_value_bytes + 65536 (16846848: a request with one key "
     "and one value at the limits), got 8388608"),
    (with_(all_in_one(), "raft", election_ms=100), "[raft] election_ms", "greater than heartbeat_ms (100)"),
    (with_(all_in_one(), "raft", heartbeat_ms=2000), "[raft] election_ms", "greater than heartbeat_ms (2000)"),
    (with_(all_in_one(), "raft", electon_ms=5000), "[raft] electon_ms", "unknown key"),
    (with_(all_in_one(), "node", gid=1), "[node] gid", "unknown key"),
    (with_(all_in_one(), "nodes", listen="x"), "[nodes]", "unknown section"),
    (without(all_in_one(), "node", "listen"), "[node] listen", "missing"),
    (without(all_in_one(), "node", "data_dir"), "[node] data_dir", "missing"),
    (with_(all_in_one(), "node", data_dir=""), "[node] data_dir", "must not be empty"),
    (without(all_in_one(), "shardkv", "gid"), "[shardkv] gid", "missing"),
    (without(all_in_one(), "controller", "peers"), "[controller] peers", "missing"),
    (without(all_in_one(), "node"), "[node]", "missing section"),
    (without(without(all_in_one(), "controller"), "shardkv"), "", "[controller] section, a [shardkv] section"),
    (with_(all_in_one(), "node", listen="127.0.0.1:6009"), "[controller] peers",
     'advertise address "127.0.0.1:6009"'),
    (with_(all_in_one(), "node", advertise="127.0.0.1:6009"), "[controller] peers", "127.0.0.1:6009"),
    (with_(all_in_one(), "shardkv", peers=GROUP101), "[shardkv] peers", "advertise address"),
    (with_(all_in_one(), "shardkv", peers=GROUP101), "[shardkv] peers",
     "(or set join = true in [shardkv] to join a running group)"),
    (with_(all_in_one(), "controller", join="yes"), "[controller] join",
     'must be a boolean (true or false), got "yes"'),
    (with_(all_in_one(), "shardkv", join=1), "[shardkv] join", "must be a boolean (true or false), got 1"),
    (with_(all_in_one(), "shardkv", join=True, peers=["127.0.0.1:6002"]), "[shardkv] peers",
     'with join = true, must name at least one existing member of the group other than this node '
     '"127.0.0.1:6002", got ["127.0.0.1:6002"]'),
    (with_(all_in_one(), "controller", join=True, peers=[]), "[controller] peers", "at least one"),
    (with_(all_in_one(), "controller", peers=CTRL + ["127.0.0.1:6001"]), "[controller] peers",
     'lists "127.0.0.1:6001" twice'),
    (with_(all_in_one(), "controller", peers=[]), "[controller] peers", "at least one"),
    (with_(all_in_one(), "controller", peers="127.0.0.1:6001"), "[controller] peers", "a list of strings"),
    (with_(all_in_one(), "controller", peers=["127.0.0.1:6002", 6001]), "[controller] peers", "a list of strings"),
    (with_(all_in_one(), "shardkv", controllers=["127.0.0.1"]), "[shardkv] controllers", "host:port"),
    (with_(all_in_one(), "node", listen="127.0.0.1"), "[node] listen", "must be host:port"),
    (with_(all_in_one(), "node", listen="127.0.0.1:0"), "[node] listen", "port in 1-65535"),
    (with_(all_in_one(), "node", listen="127.0.0.1:70000"), "[node] listen", "port in 1-65535"),
    (with_(all_in_one(), "node", listen="host name:1"), "[node] listen", "host:port"),
    (with_(all_in_one(), "node", advertise="nope"), "[node] advertise", "host:port"),
    (with_(all_in_one(), "node", listen="0.0.0.0:6002"), "[node] advertise", "wildcard"),
    (with_(all_in_one(), "node", http="127.0.0.1"), "[node] http", "host:port"),
    (with_(all_in_one(), "node", http="127.0.0.1:6002"), "[node] http", "must differ from [node] listen"),
    (with_(all_in_one(), "node", dial={"127.0.0.1:6001": "x"}), "[node] dial", 'entry "127.0.0.1:6001" = "x"'),
    (with_(all_in_one(), "node", dial={"x": "127.0.0.1:1"}), "[node] dial", "host:port"),
    (without(shardkv_only(), "shardkv", "controllers"), "[shardkv] controllers", "without a [controller]"),
    (with_(all_in_one(), "log", level="verbose"), "[log] level", 'one of debug, info, warning, error, critical, got "verbose"'),
    (with_(all_in_one(), "log", level=3), "[log] level", "must be a string"),
]


@pytest.mark.parametrize("doc,key,problem", BAD, ids=[f"{i}:{k}" for i, (_, k, _) in enumerate(BAD)])
def test_bad_value_names_file_and_key(tmp_path, doc, key, problem):
    path = write(tmp_path, doc, "n2.toml")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    line = str(info.value)
    assert line.startswith(f"eraftd: config error: {path}: {key}")
    assert problem in line and "\n" not in line
    assert (info.value.path, info.value.key) == (str(path), key)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("text,key,problem", [
    ("gid = 100\n" + dump_toml(all_in_one()), "gid", "unknown top-level key"),
    ("node = 5\n", "[node]", "must be a table, got 5"),
    ("[[node]]\nlisten = 'a:1'\n", "[node]", "must be a table, got an array of tables"),
    (dump_toml(all_in_one()) + "[raft.extra]\nx = 1\n", "[raft] extra", "unknown key"),
    (dump_toml(all_in_one()) + '[node.dial]\n"a:1" = 5\n', "[node] dial", "must be a table of strings"),
    (dump_toml(all_in_one()) + "[node]\nhttp = ''\n", "", "TOML syntax"),
    (dump_toml(all_in_one()).replace("[node]", "[node]\nhttp = 1979-05-27"), "[node] http",
     "must be a string, got 1979-05-27 (date)"),
    ("[node\n", "", "TOML syntax"),
])
def test_structural_errors(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value).startswith(f"eraftd: config error: {path}: ")
    assert info.value.key == key and problem in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"^eraftd: config error: .*missing\.toml: cannot read: No such file"):
        load(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path))                                  # a directory
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="latin1.toml: cannot read"):
        load(str(tmp_path / "latin1.toml"))


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "data").write_text("")
    doc = with_(all_in_one(), "node", data_dir="data")
    with pytest.raises(ConfigError, match=r"\[node\] data_dir: exists and is not a directory"):
        load(str(write(tmp_path, doc)))


def test_first_problem_is_reported_deterministically(tmp_path):
    doc = with_(with_(all_in_one(), "raft", fsync="yes"), "shardkv", gid=0)
    doc["raft"]["bogus"] = 1
    messages = {str(pytest.raises(ConfigError, load, str(write(tmp_path, doc))).value) for _ in range(3)}
    assert len(messages) == 1 and "[shardkv] gid" in messages.pop()


# ---------------------------------------------------------------- dump_toml

def test_dump_toml_round_trips():
    doc = {
        "node": {"listen": "127.0.0.1:1", "data_dir": 'we"ird\\path\n\ttab\x7f é 😀', "skip": None,
                 "dial": {"127.0.0.1:2": "127.0.0.1:3", "bare_key-1": "x"}},
        "raft": {"fsync": False, "heartbeat_ms": 10, "ratio": 0.5},
        "controller": {"peers": ["a:1", "b:2"], "empty": []},
        "only": {"nested": {"deep": {"x": 1}}},
    }
    text = dump_toml(doc)
    del doc["node"]["skip"]
    assert tomllib.loads(text) == doc
    assert '[node.dial]\n"127.0.0.1:2" = "127.0.0.1:3"\nbare_key-1 = "x"' in text
    assert "[only]" not in text and "[only.nested.deep]" in text
    with pytest.raises(TypeError):
        dump_toml({"t": {"x": object()}})


# ---------------------------------------------------------------- durations

@pytest.mark.parametrize("text,ms", [
    ("500ms", 500), ("5s", 5000), ("2m", 120_000), ("1.5s", 1500), ("0.25s", 250), (".5s", 500),
    ("1h", 3_600_000), ("1m30s", 90_000), ("0ms", 0), (" 10s ", 10_000), ("1.1s", 1100),
])
def test_parse_duration(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "5", "s", "-1s", "1.5.2s", "5 s", "1d", "1.5ms", "abc", "1s2", "0.0001s"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match=f"invalid duration {text!r}"):
        parse_duration(text)


def test_parse_duration_as_argparse_type(capsys):
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--interval", type=parse_duration, default="5s")
    assert parser.parse_args([]).interval == 5000
    assert parser.parse_args(["--interval", "250ms"]).interval == 250
    with pytest.raises(SystemExit):
        parser.parse_args(["--interval", "5"])
    assert "argument --interval: invalid duration '5': expected a number and a unit" in capsys.readouterr().err
    assert issubclass(DurationError, ValueError)


def test_no_files_left_behind_in_cwd():
    assert not os.path.exists(ROOT / "data")


def test_tls_section_resolves_paths_and_checks_files(tmp_path):
    from eraftd.certs import create_ca, create_node
    create_ca(str(tmp_path / "certs"))
    create_node(str(tmp_path / "certs"), ["127.0.0.1:7001"])
    base = ('[node]\nlisten = "127.0.0.1:7001"\ndata_dir = "d"\n[controller]\npeers = ["127.0.0.1:7001"]\n'
            '[tls]\nca_file = "certs/ca.crt"\ncert_file = "certs/node.crt"\nkey_file = "certs/node.key"\n')
    path = tmp_path / "n.toml"
    path.write_text(base + 'admins = ["ops"]\n')
    cfg = load(str(path))
    assert cfg.tls.files.ca_file == str(tmp_path / "certs" / "ca.crt")
    assert cfg.tls.require_client_auth and cfg.tls.admins == ("ops",)
    path.write_text(base + 'client_auth = "maybe"\n')
    with pytest.raises(config.ConfigError, match=r'\[tls\] client_auth: must be "require" or "none"'):
        load(str(path))
    path.write_text(base.replace("node.key", "missing.key"))
    with pytest.raises(config.ConfigError, match=r"\[tls\] key_file: no such file: .*missing.key"):
        load(str(path))
