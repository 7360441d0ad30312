"""One-shot commands of the real `eraftd` executable against a live cluster: output contract,
exit codes, where the controller addresses come from, status with a node down, bench --json."""
from __future__ import annotations

import json
import re

import pytest
from repl_support import G100, cluster, eraftd, shell_env  # noqa: F401

from eraftd.config import dump_toml
from eraftd.testing import free_port

pytestmark = pytest.mark.e2e


def test_put_get_append_print_the_contract(cluster):  # noqa: F811
    c = ["--controllers", cluster.controllers]
    r = eraftd(*c, "put", "one", "-5")                     # a value may start with '-'
    assert (r.returncode, r.stdout, r.stderr) == (0, "OK\n", "")
    assert eraftd(*c, "append", "one", "a b").stdout == "OK\n"
    r = eraftd(*c, "get", "one")
    assert (r.returncode, r.stdout, r.stderr) == (0, "-5a b\n", "")
    r = eraftd(*c, "get", "never-written")                 # missing: nothing at all, still ok
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert json.loads(eraftd(*c, "get", "never-written", "--json").stdout) == {"key": "never-written",
                                                                              "value": None}
    r = eraftd(*c, "put", "--", "--json", "--controllers")   # after --, every word is a word
    assert r.returncode == 0 and eraftd(*c, "get", "--", "--json").stdout == "--controllers\n"
    # options after the command word, as etcdctl
    r = eraftd(*c, "get", "one", "--timeout", "5s", "--json")
    assert (r.returncode, json.loads(r.stdout)) == (0, {"key": "one", "value": "-5a b"})


def test_help_needs_no_cluster_and_is_never_data(cluster):  # noqa: F811
    for args in (["help"], ["help", "put"], ["put", "-h", "x"], ["get", "--help"], ["status", "-h"]):
        r = eraftd(*args)                                  # no controllers anywhere
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
        assert r.stdout.startswith("commands:" if args == ["help"] else "usage: "), r.stdout
    c = ["--controllers", cluster.controllers]
    assert eraftd(*c, "get", "-h").stdout.startswith("usage: get KEY")   # -h was not stored
    r = eraftd(*c, "put", "--", "-h", "dash key")          # ... but a key "-h" is possible
    assert r.returncode == 0 and eraftd(*c, "get", "--", "-h").stdout == "dash key\n"
    r = eraftd("help", "nosuch")
    assert r.returncode == 2 and r.stderr.startswith("eraftd: help: no command 'nosuch'")


def test_values_from_a_file_and_stdin_and_hex(cluster, tmp_path):  # noqa: F811
    c = ["--controllers", cluster.controllers]
    big = tmp_path / "big"
    big.write_bytes(b"v" * 200_000)                        # too long for an argument list
    r = eraftd(*c, "put", "big", "--file", str(big))
    assert (r.returncode, r.stdout) == (0, "OK\n"), r.stderr
    assert eraftd(*c, "get", "big").stdout == "v" * 200_000 + "\n"
    r = eraftd(*c, "put", "piped", "-", input="from stdin")
    assert (r.returncode, r.stdout) == (0, "OK\n"), r.stderr
    assert eraftd(*c, "get", "piped").stdout == "from stdin\n"
    assert eraftd(*c, "put", "--hex", "00ff", "0a00").returncode == 0
    assert eraftd(*c, "get", "00ff", "--hex").stdout == "0a00\n"


def test_where_the_controller_addresses_come_from(cluster, tmp_path):  # noqa: F811
    eraftd("--controllers", cluster.controllers, "put", "from", "flag")
    # $ERAFT_CONTROLLERS
    r = eraftd("get", "from", env=shell_env(ERAFT_CONTROLLERS=cluster.controllers))
    assert (r.returncode, r.stdout) == (0, "flag\n")
    # a node's TOML file (here a replica-only node's: its [shardkv] controllers)
    toml = tmp_path / "node.toml"
    me = f"127.0.0.1:{free_port()}"
    toml.write_text(dump_toml({"node": {"listen": me, "data_dir": "d"},
                               "shardkv": {"gid": 7, "peers": [me], "controllers": cluster.addresses}}))
    r = eraftd("--config", str(toml), "get", "from")
    assert (r.returncode, r.stdout) == (0, "flag\n")
    r = eraftd("--config", str(cluster.nodes[0].toml), "get", "from")    # a controller peer's file
    assert (r.returncode, r.stdout) == (0, "flag\n")
    # none of them: a clear message, usage error
    r = eraftd("get", "from")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == ("eraftd: no controller addresses: give --controllers HOST:PORT,HOST:PORT,..., "
                        "or --config FILE (a node's TOML file), or set ERAFT_CONTROLLERS\n")
    # a bad config file: its one-line error, exit 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    r = eraftd("--config", str(bad), "get", "from")
    assert r.returncode == 2 and "config error" in r.stderr and r.stderr.count("\n") == 1
    r = eraftd("--controllers", "nonsense", "get", "from")
    assert r.returncode == 2 and "expected HOST:PORT" in r.stderr


def test_exit_codes_of_failures_and_usage_errors(cluster):  # noqa: F811
    c = ["--controllers", cluster.controllers]
    r = eraftd(*c, "put", "k" * 5000, "v")                 # refused input: 1, nothing sent
    assert r.returncode == 1 and r.stdout == ""
    assert "key of 5000 bytes is longer than the limit of 4096" in r.stderr and r.stderr.count("\n") == 1
    r = eraftd(*c, "move", "3", "999")                      # refused by the controller: 1
    assert r.returncode == 1 and r.stderr == "eraftd: refused by the controller: move: gid 999 is not in configuration 1\n"
    r = eraftd(*c, "move", "3", "999", "--json")            # --json: the failure is an object too
    assert r.returncode == 1 and "error" in json.loads(r.stdout)
    r = eraftd(*c, "move", "12", "100")                     # wrong arguments: 2
    assert (r.returncode, r.stderr) == (2, "eraftd: move: the shard must be 0..9, got 12; usage: move SHARD GID [--wait]\n")
    r = eraftd(*c, "put", "onlykey")
    assert r.returncode == 2 and "usage: put KEY VALUE" in r.stderr
    r = eraftd(*c, "move", "0", str(G100))                  # already its owner: nothing proposed
    assert (r.returncode, r.stdout) == (0, f"no change: shard 0 is already served by group {G100} "
                                           f"(configuration 1)\n")
    r = eraftd(*c, "frobnicate")                            # not a command at all: argparse's 2
    assert r.returncode == 2
    # nobody listening: 1, one line naming the addresses tried, no traceback
    dead = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    r = eraftd("--controllers", dead, "--timeout", "1s", "get", "k")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert all(a in r.stderr for a in dead.split(","))
    assert "Traceback" not in r.stderr
    r = eraftd("--controllers", dead, "--timeout", "1s", "status")
    assert r.returncode == 1 and "no controller leader answered within 1s" in r.stderr


def test_query_human_form_and_json(cluster):  # noqa: F811
    c = ["--controllers", cluster.controllers]
    j = json.loads(eraftd(*c, "query", "--json").stdout)
    assert j["shards"] == [G100] * 10 and j["groups"] == {str(G100): cluster.addresses}
    r = eraftd(*c, "query")
    assert r.returncode == 0
    assert r.stdout.split("\n") == (
        [f"config {j['num']}", "", "shard  gid"] + [f"{s}      {G100}" for s in range(10)]
        + ["", f"gid  shards               servers",
           f"{G100}  0,1,2,3,4,5,6,7,8,9  {', '.join(cluster.addresses)}", ""])
    assert json.loads(eraftd("--json", *c, "query", "0").stdout) == {"num": 0, "shards": [0] * 10,
                                                                     "groups": {}}


def test_bench_json_native_and_unary(cluster):  # noqa: F811
    c = ["--controllers", cluster.controllers]
    r = eraftd(*c, "bench", "200", "8", "--json", "--reads", "50", "--value-size", "16")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert (j["path"], j["requests"], j["clients"], j["ok"], j["failed"], j["errors"]) == (
        "native", 200, 8, 200, 0, {})
    assert j["reads"] + j["writes"] == 200 and 0 < j["reads"] < 200
    assert j["throughput"] > 0 and 0 < j["latency_ms"]["p50"] <= j["latency_ms"]["p99"] <= j["latency_ms"]["max"]
    j = json.loads(eraftd(*c, "bench", "-n", "60", "-c", "3", "--unary", "--json").stdout)
    assert (j["path"], j["ok"], j["writes"], j["failed"]) == ("unary", 60, 60, 0)
    r = eraftd(*c, "bench", "100", "4")                     # the human summary
    assert r.returncode == 0 and r.stdout.startswith("bench: 100 requests (0 reads, 100 writes) from 4 clients")
    assert re.search(r"^latency     p50 [\d.]+ ms  p95 [\d.]+ ms  p99 [\d.]+ ms  max [\d.]+ ms$", r.stdout, re.M)
    assert "errors      none" in r.stdout
    assert re.search(r"^cleanup     removed \d+ bench keys$", r.stdout, re.M)


def _bench_keys_left(cluster, prefix: str) -> list[bytes]:
    """Every key of the bench keyspace (D + prefix + I) still in the cluster."""
    import asyncio

    from eraftd.shardkv.clerk import Clerk

    async def scan() -> list[bytes]:
        async with Clerk(cluster.addresses, total_timeout=30) as kv:
            return [k for d in range(10) async for k, _ in kv.scan(f"{d}{prefix}")]
    return asyncio.run(scan())


def test_bench_keeps_out_of_the_keyspace_and_cleans_up(cluster):  # noqa: F811
    c = ["--controllers", cluster.controllers]
    j = json.loads(eraftd(*c, "bench", "300", "8", "--json", "--prefix", "t1/").stdout)
    assert j["writes"] == 300 and j["removed"] > 0 and j["left"] == 0 and j["prefix"] == "t1/"
    assert _bench_keys_left(cluster, "t1/") == []
    j = json.loads(eraftd(*c, "bench", "50", "2", "--json", "--prefix", "t2/", "--keep").stdout)
    assert j["removed"] == 0 and j["left"] > 0
    left = _bench_keys_left(cluster, "t2/")
    assert len(left) == j["left"] and all(k[1:].startswith(b"t2/") for k in left)


def test_status_lists_a_node_that_is_down(cluster):  # noqa: F811
    c = ["--controllers", cluster.controllers]
    for i in range(3):                      # three one-shot clients: a session each, where they wrote
        assert eraftd(*c, "put", f"sess{i}", "v").returncode == 0
    r = eraftd(*c, "status")
    assert r.returncode == 0 and "3 nodes up (3 controller peers, 3 replicas)" in r.stdout
    # the sessions kept for deduplication (issue 14): the controllers' (the joins at least) on the
    # first line, each shard's in its column
    m = re.search(r", (\d+) controller sessions", r.stdout.split("\n")[0])
    assert m and int(m.group(1)) >= 1, r.stdout
    table = [line.split() for line in r.stdout.split("\n\n")[2].strip().split("\n")]
    assert table[0][-1] == "sessions" and sum(int(row[-1]) for row in table[1:]) >= 3, r.stdout
    down = cluster.nodes[2]
    down.kill()
    try:
        r = eraftd(*c, "status")
        assert r.returncode == 0, r.stderr
        nodes, shards = r.stdout.split("\n\n")[1:3]
        rows = [line.split() for line in nodes.split("\n")]
        assert rows[0] == ["group", "id", "address", "role", "term", "applied", "commit", "storage"]
        assert [(g, i, a) for g, i, a, *_ in rows[1:]] == (
            [("ctrl", str(i), a) for i, a in enumerate(cluster.addresses)]
            + [(str(G100), str(i), a) for i, a in enumerate(cluster.addresses)])
        for row in rows[1:]:
            if row[2] == down.address:
                assert row[3:] == ["down", "-", "-", "-", "-"]
            else:
                assert row[3] in ("Leader", "Follower", "Candidate") and row[4].isdigit() and row[-1] in ("B", "KiB", "MiB")
        assert "2 of 3 nodes up (2 of 3 controller peers, 2 of 3 replicas)" in r.stdout
        srows = [line.split() for line in shards.strip().split("\n")]
        assert srows[0] == ["shard", "gid", "status", "keys", "bytes", "sessions"]
        assert [(s[0], s[1], s[2]) for s in srows[1:]] == [(str(i), str(G100), "Serving") for i in range(10)]
        j = json.loads(eraftd(*c, "status", "--json").stdout)
        roles = {(m["gid"], m["address"]): m["role"] for m in j["controllers"] + j["replicas"]}
        assert roles[(0, down.address)] == roles[(G100, down.address)] == "down"
        assert sum(r == "down" for r in roles.values()) == 2 and len(roles) == 6
        assert [s["status"] for s in j["shards"]] == ["Serving"] * 10
    finally:
        down.start().wait_serving(60)
