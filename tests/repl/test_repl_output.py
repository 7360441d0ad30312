"""Pure parts of the shell: output formatting, completion candidates, argument parsing and the
exit codes of usage errors (no cluster: nothing here talks to one)."""
from __future__ import annotations

import json

import pytest

from eraftd.controller.state import Config
from repl import output
from repl.commands import COMMANDS, EXIT_USAGE, Session, execute
from repl.completer import ClusterView, candidates
from repl.output import BenchResult, ClusterStatus, Member, ShardRow
from repl.suggest import suggest

CFG = Config(4, (100, 100, 100, 100, 100, 101, 101, 101, 101, 0),
             {100: ("a:1", "a:2"), 101: ("b:1",)})


def test_table_aligns_columns_and_shows_none_as_a_dash():
    assert output.table(("a", "long"), [(1, None), ("xyz", 2)]).split("\n") == [
        "a    long",
        "1    -",
        "xyz  2",
    ]


def test_query_human_form_and_json():
    assert output.format_query(CFG).split("\n") == [
        "config 4",
        "",
        "shard  gid",
        "0      100",
        "1      100",
        "2      100",
        "3      100",
        "4      100",
        "5      101",
        "6      101",
        "7      101",
        "8      101",
        "9      -",
        "",
        "gid  shards     servers",
        "100  0,1,2,3,4  a:1, a:2",
        "101  5,6,7,8    b:1",
    ]
    assert output.query_json(CFG) == {"num": 4, "shards": [100] * 5 + [101] * 4 + [0],
                                      "groups": {"100": ["a:1", "a:2"], "101": ["b:1"]}}
    assert output.format_query(Config()).endswith("\n\nno groups")


def test_status_lists_a_down_node_and_every_shard():
    st = ClusterStatus(
        CFG,
        controllers=(Member(0, 0, "a:1", "Leader", 3, 10, 10, 2048, sessions=12),
                     Member(0, 1, "a:2", problem="unreachable")),
        replicas=(Member(100, 0, "a:1", "Follower", 2, 7, 7, 2048),
                  Member(100, 1, "a:2", problem="unreachable"),
                  Member(101, 0, "b:1", "Leader", 1, 5, 5, 100)),
        shards=tuple(ShardRow(s, g, "Serving", s, 10 * s, 2 * s) for s, g in enumerate(CFG.shards[:9]))
        + (ShardRow(9, 0, "unassigned"),),
        leader="a:1")
    lines = output.format_status(st).split("\n")
    assert lines[:8] == [
        "config 4, controller leader a:1, 2 of 3 nodes up (1 of 2 controller peers, 2 of 3 replicas), "
        "12 controller sessions",
        "",
        "group  id  address  role      term  applied  commit  storage",
        "ctrl   0   a:1      Leader    3     10       10      2.0 KiB",
        "ctrl   1   a:2      down      -     -        -       -",
        "100    0   a:1      Follower  2     7        7       2.0 KiB",
        "100    1   a:2      down      -     -        -       -",
        "101    0   b:1      Leader    1     5        5       100 B",
    ]
    assert lines[9] == "shard  gid  status      keys  bytes  sessions"
    assert lines[10] == "0      100  Serving     0     0      0"
    assert lines[11] == "1      100  Serving     1     10     2"
    assert lines[-1] == "9      -    unassigned  -     -      -"
    j = json.loads(output.dumps(output.status_json(st)))
    assert j["controllers"][0]["sessions"] == 12 and j["shards"][1]["sessions"] == 2
    assert j["controllers"][1] == {"gid": 0, "id": 1, "address": "a:2", "role": "down", "term": None,
                                   "applied": None, "commit": None, "storage_bytes": None,
                                   "problem": "unreachable"}
    assert [s["status"] for s in j["shards"]][-2:] == ["Serving", "unassigned"]


def test_bench_summary_and_json():
    r = BenchResult("native", 1000, 16, 64, 10, 1000, 2.0, 990, 100, 900, {"unavailable": 10},
                    {"p50": 1.5, "p95": 3.0, "p99": 4.25, "max": 9.0})
    text = output.format_bench(r)
    assert "throughput  495 ops/s" in text
    assert "latency     p50 1.50 ms  p95 3.00 ms  p99 4.25 ms  max 9.00 ms" in text
    assert "errors      unavailable 10" in text
    j = output.bench_json(r)
    assert (j["failed"], j["issued"], j["throughput"]) == (10, 1000, 495.0)
    assert output.progress_bar(3, 10, width=10) == "[###.......] 3/10  30%"
    assert output.human_bytes(5 << 20) == "5.0 MiB"


# ---------------------------------------------------------------- completion candidates

def cands(text: str, view: ClusterView, keys=()) -> list[tuple[str, str, str]]:
    from repl.commands import GRAMMAR
    s = suggest(text, GRAMMAR)
    g = GRAMMAR.get(s.command)
    opts = list(g.options or ()) if g is not None else []
    return candidates(s, view, keys, {n: c.help for n, c in COMMANDS.items()}, opts,
                      g.subcommands if g is not None else None)


def test_candidates_come_from_the_cached_view():
    view = ClusterView().with_config(CFG, "a:1")
    assert [c[0] for c in cands("mo", view)] == ["move"]
    assert [c[0] for c in cands("move 3 ", view)] == ["100", "101"]
    assert cands("move 3 10", view)[1] == ("101", "101", "4 shards · b:1")
    shards = cands("move ", view)
    assert [c[0] for c in shards] == [str(i) for i in range(10)]
    assert shards[5][2] == "gid 101" and shards[9][2] == "unassigned"
    assert [c[0] for c in cands("leave ", view)] == ["100", "101"]
    assert [c[0] for c in cands("get ", view, ["k1", "k2"])] == ["k2", "k1"]   # most recent first
    assert [c[0] for c in cands("query ", view)][:2] == ["4", "3"]
    assert [c[0] for c in cands("bench --u", view)] == ["--unary"]
    # a group that left is offered to join again, whole; addresses inside a spec one by one
    later = view.with_config(Config(5, (100,) * 10, {100: ("a:1", "a:2")}), "a:1")
    assert [c[0] for c in cands("leave ", later)] == ["100"]
    assert cands("join ", later)[0] == ("101=b:1", "101=b:1", "left earlier")
    assert [c[0] for c in cands("join 102=a:1,", later)] == ["102=a:1,a:2", "102=a:1,b:1"]
    assert cands("move 3 ", ClusterView()) == []          # nothing known yet: nothing offered
    # shard abandon: the subcommand, then shard numbers (with their owner), then its options
    assert cands("shard ", view) == [("abandon", "abandon", COMMANDS["shard"].subcommands["abandon"])]
    assert [c[0] for c in cands("shard abandon 3 ", view)] == [str(i) for i in range(10)]
    assert cands("shard abandon 5", view)[0] == ("5", "5", "gid 101")
    assert [c[0] for c in cands("shard abandon 3 --y", view)] == ["--yes-lose-data"]


# ---------------------------------------------------------------- parsing and usage errors

@pytest.mark.parametrize("line, message", [
    ("frobnicate", "unknown command 'frobnicate'; type help for the commands"),
    ("put k", "put: takes 2 arguments, got 1; usage: put KEY VALUE"),
    ("put k a b", "put: takes 2 arguments, got 3 (quote a value that has spaces: put k 'two words'); "
                  "usage: put KEY VALUE"),
    ("get", "get: takes 1 argument, got 0; usage: get KEY"),
    ("shard", "shard: expected a subcommand: abandon; usage: shard abandon SHARD [SHARD ...] "
              "--yes-lose-data [--wait]"),
    ("shard forget 3", "shard: unknown subcommand 'forget'; expected abandon; usage: shard abandon "
                       "SHARD [SHARD ...] --yes-lose-data [--wait]"),
    ("shard abandon", "shard: takes at least 1 argument, got 0; usage: shard abandon SHARD "
                      "[SHARD ...] --yes-lose-data [--wait]"),
    ("shard abandon 10", "shard: a shard must be 0..9, got 10; usage: shard abandon SHARD "
                         "[SHARD ...] --yes-lose-data [--wait]"),
    ("shard abandon 3 3", "shard: shard 3 is given twice; usage: shard abandon SHARD [SHARD ...] "
                          "--yes-lose-data [--wait]"),
    ("get a b", "get: takes 1 argument, got 2; usage: get KEY"),
    ("move 10 100", "move: the shard must be 0..9, got 10; usage: move SHARD GID"),
    ("move x 100", "move: the shard must be an integer, got 'x'"),
    ("leave", "leave: takes at least 1 argument, got 0; usage: leave GID [GID ...]"),
    ("join 101", "join: expected GID=ADDR,ADDR,..., got '101'; usage: join GID=ADDR,ADDR,... [GID=...]"),
    ("join 0=a:1", "join: a gid must be 1..2147483647, got 0"),
    ("join 1099511627776=a:1", "join: a gid must be 1..2147483647, got 1099511627776"),
    ("leave 2147483648", "leave: a gid must be 1..2147483647, got 2147483648"),
    ("move 1 2147483648", "move: the gid must be 1..2147483647, got 2147483648"),
    ("join 5=a:1 5=b:1", "join: gid 5 is given twice"),
    ("query 1 2", "query: takes 0 to 1 arguments, got 2"),
    ("status now", "status: takes no arguments, got 1; usage: status [--json]"),
    ("bench -n 0", "bench: argument -n: invalid positive integer value: '0'; usage: bench"),
    ("bench --reads 150", "bench: argument --reads: invalid percentage 0..100 value: '150'"),
    ("bench --frob", "bench: unrecognized arguments: --frob"),
    ("put 'k v", "cannot split the line into words: no closing quotation"),
    ("help nosuch", "help: no command 'nosuch'"),
    ("exit now", "exit: takes no arguments, got 1"),
])
async def test_usage_errors_exit_2_with_one_line(line, message):
    session = Session(["127.0.0.1:9"], timeout=1)       # never contacted: parsing fails first
    try:
        out = await execute(session, line)
    finally:
        await session.close()
    assert out.code == EXIT_USAGE and out.output is None
    assert message in out.error and "\n" not in out.error


async def test_help_and_exit_need_no_cluster():
    session = Session(["127.0.0.1:9"], timeout=1)
    try:
        text = (await execute(session, "help")).output
        assert "put KEY VALUE" in text and "bench [N [CLIENTS]]" in text and "\n  quit" not in text
        assert (await execute(session, "help move")).output.startswith("usage: move SHARD GID")
        assert (await execute(session, "exit")).leave and (await execute(session, "quit")).leave
        assert (await execute(session, "   ")).code == 0
    finally:
        await session.close()


def test_bench_arguments_eraft_positional_form_and_options():
    from repl.bench import bench_key, parse_args, percentiles
    o = parse_args(["1000", "16"])
    assert (o.requests, o.clients, o.keys, o.reads, o.value_size, o.unary) == (1000, 16, 1000, 0, 64, False)
    o = parse_args(["-n", "50", "-c", "2", "--value-size", "8", "--reads", "50", "--keys", "5", "--unary"])
    assert (o.requests, o.clients, o.keys, o.reads, o.value_size, o.unary) == (50, 2, 5, 50, 8, True)
    assert parse_args(["10", "-n", "20"]).requests == 20       # the option wins
    assert parse_args([]).requests == 1000 and parse_args([]).clients == 16
    assert {bench_key(i)[0] for i in range(10)} == set("0123456789")   # every shard
    p = percentiles([i / 1000 for i in range(1, 101)])
    assert (p["p50"], p["p95"], p["p99"], p["max"]) == pytest.approx((50, 95, 99, 100))


def test_the_history_file_flag_then_environment_then_default():
    from repl.app import history_file
    assert history_file("/tmp/h", {"ERAFT_HISTORY": "/tmp/e"}) == "/tmp/h"
    assert history_file(None, {"ERAFT_HISTORY": "/tmp/e"}) == "/tmp/e"
    assert history_file(None, {}).endswith("/.eraft_history")
