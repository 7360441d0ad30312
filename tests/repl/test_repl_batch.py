"""Batch mode of the real `eraftd shell`: a script from a pipe and from -f, every line of its
output, line-numbered errors, stop at the first failure or --keep-going, exit codes."""
from __future__ import annotations

import json
import re

import pytest
from repl_support import G100, cluster, eraftd  # noqa: F401

pytestmark = pytest.mark.e2e

G101 = 101

SCRIPT = """\
# a comment, then a blank line: both skipped

put fruit apple
append fruit ' pie'
get fruit
get "no such key"
put 'spaced key' -1
get 'spaced key'
query --json
"""


def expected_output(query_json: str) -> list[str]:
    return ["OK", "OK", "apple pie", "OK", "-1", query_json, ""]      # a missing key: nothing


def shell(cluster, *args, input=None):  # noqa: F811
    return eraftd("shell", "--controllers", cluster.controllers, *args, input=input)


def test_a_script_from_a_pipe_and_from_a_file(cluster, tmp_path):  # noqa: F811
    r = shell(cluster, input=SCRIPT)
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.split("\n")
    assert lines == expected_output(lines[5])
    q = json.loads(lines[5])
    assert q["shards"] == [G100] * 10 and q["groups"] == {str(G100): cluster.addresses}

    script = tmp_path / "script.eraft"
    script.write_text(SCRIPT)
    r = shell(cluster, "-f", str(script))                 # -f: stdin is not read
    assert (r.returncode, r.stderr, r.stdout.split("\n")) == (0, "", expected_output(lines[5]))
    r = shell(cluster, "-f", str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.startswith("eraftd: cannot read ") and r.stdout == ""


def test_the_first_failing_line_stops_the_script(cluster):  # noqa: F811
    script = "put stop a\n\nput " + "k" * 5000 + " v\nput stop b\n"
    r = shell(cluster, input=script)
    assert r.returncode == 1 and r.stdout == "OK\n"
    assert r.stderr.startswith("line 3: put kkkk") and r.stderr.count("\n") == 1   # as typed, no b''
    assert "b'" not in r.stderr
    assert eraftd("--controllers", cluster.controllers, "get", "stop").stdout == "a\n"   # line 4 never ran
    # a usage error stops it too, with exit code 2
    r = shell(cluster, input="get stop\nput onlykey\nput stop c\n")
    assert (r.returncode, r.stdout) == (2, "a\n")
    assert r.stderr == ("line 2: put: takes 2 arguments, got 1; "
                        "usage: put KEY VALUE | put KEY --file FILE | put KEY -\n")
    # exit ends a script where it stands, successfully
    r = shell(cluster, input="get stop\nexit\nput stop d\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "a\n", "")


def test_keep_going_runs_every_line_and_fails_at_the_end(cluster):  # noqa: F811
    script = "move 3 999\nput kg 1\nnosuch thing\nappend kg 2\nget kg\n"
    r = shell(cluster, "--keep-going", input=script)
    assert r.stdout == "OK\nOK\n12\n"
    assert r.stderr.split("\n") == [
        "line 1: refused by the controller: move: gid 999 is not in configuration 1",
        "line 3: unknown command 'nosuch'; type help for the commands",
        ""]
    assert r.returncode == 2              # the worst line: a usage error
    r = shell(cluster, "--keep-going", input="move 3 999\nget kg\n")
    assert (r.returncode, r.stdout) == (1, "12\n")


def test_join_move_leave_and_every_row_of_query_and_status(cluster):  # noqa: F811
    [addr] = cluster.add_group(G101, replicas=1)
    script = (f"join {G101}={addr} --wait\nquery --json\nquery\nmove 0 {G101}\nleave {G101}\n"
              f"query\nstatus\n")
    r = shell(cluster, input=script)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    out = r.stdout.split("\n")
    assert re.fullmatch(r"OK, configuration \d+", out[0])
    joined = json.loads(out[1])
    assert sorted(joined["groups"]) == [str(G100), str(G101)]
    assert sorted(joined["shards"]) == [G100] * 5 + [G101] * 5
    # the human form of the same configuration, every row
    end = next(i for i in range(2, len(out)) if out[i].startswith("OK, configuration"))
    assert out[2:end] == (
        [f"config {joined['num']}", "", "shard  gid"]
        + [f"{s}      {g}" for s, g in enumerate(joined["shards"])]
        + ["", "gid  shards     servers",
           f"{G100}  {','.join(str(s) for s, g in enumerate(joined['shards']) if g == G100)}  "
           f"{', '.join(cluster.addresses)}",
           f"{G101}  {','.join(str(s) for s, g in enumerate(joined['shards']) if g == G101)}  {addr}"])
    assert out[end:end + 2] == [f"OK, configuration {joined['num'] + 1}",      # move, leave
                                f"OK, configuration {joined['num'] + 2}"]
    rest = out[end + 2:]
    assert rest[:3] == [f"config {joined['num'] + 2}", "", "shard  gid"]
    assert rest[3:13] == [f"{s}      {G100}" for s in range(10)]
    assert rest[13:16] == ["", "gid  shards               servers",
                           f"{G100}  0,1,2,3,4,5,6,7,8,9  {', '.join(cluster.addresses)}"]
    # status: every controller peer and every replica of the latest configuration, every shard
    status = rest[16:]
    assert status[0].startswith(f"config {joined['num'] + 2}, controller leader ")
    nodes = [row.split() for row in status[2:9]]
    assert nodes[0] == ["group", "id", "address", "role", "term", "applied", "commit", "storage"]
    assert [(g, i, a) for g, i, a, *_ in nodes[1:]] == (
        [("ctrl", str(i), a) for i, a in enumerate(cluster.addresses)]
        + [(str(G100), str(i), a) for i, a in enumerate(cluster.addresses)])
    assert all(row[3] in ("Leader", "Follower", "Candidate") and row[4].isdigit() for row in nodes[1:])
    assert status[9] == ""
    shards = [row.split() for row in status[10:21]]
    assert shards[0] == ["shard", "gid", "status", "keys", "bytes", "sessions"]
    assert [row[:2] for row in shards[1:]] == [[str(s), str(G100)] for s in range(10)]
    # (right after the moves the owner may still be on its way through older configurations)
    states = ("Serving", "Pulling", "BePulling", "GCing", "pending")
    assert [row for row in shards[1:] if row[2] not in states] == []
    assert status[21:] == [""]


def test_delete_exists_cas_scan_against_the_cluster(cluster):  # noqa: F811
    """The native-only commands through the real shell and cluster (in-process tests use a fake)."""
    script = "\n".join([
        "put ds1 a", "put ds2 b", "scan ds", "scan ds --limit 1", "exists ds1", "delete ds1",
        "delete ds1", "exists ds1", "get ds1", "cas ds2 b c", "cas ds2 b d", "cas ds3 --absent new",
        "cas ds3 --absent again", "get ds3", "scan ds --json", "delete ds2 --json"]) + "\n"
    r = shell(cluster, "--keep-going", input=script)
    out = r.stdout.split("\n")
    assert out[:11] == ["OK", "OK", "ds1\ta", "ds2\tb", "ds1\ta", "yes", "OK",
                        "no change: ds1 did not exist", "no", "OK", "OK"], r.stdout
    assert out[11] == "new"                                                   # get ds3
    # --json: scan streams one object per pair (JSON lines), delete says what it did
    assert [json.loads(x) for x in out[12:15]] == [{"key": "ds2", "value": "c"},
                                                   {"key": "ds3", "value": "new"},
                                                   {"key": "ds2", "deleted": True}]
    errors = r.stderr.strip().split("\n")
    assert r.returncode == 1 and len(errors) == 2, r.stderr                # the two refused swaps
    assert errors[0] == "line 11: cas ds2: not swapped: its value is 'c'"
    assert errors[1] == "line 13: cas ds3: not swapped: its value is 'new'"
    assert eraftd("--controllers", cluster.controllers, "get", "ds2").stdout == ""   # deleted at the end
