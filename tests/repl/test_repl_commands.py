"""The command registry in-process, against fake clients (no cluster): the option rule, help,
(nil), --json for every command, delete/exists/cas/scan, values from a file / stdin / hex,
join/leave/move's "no change" and --wait, the spinner, "unreachable" said at once, plain errors,
and the prompt that does not flip on one slow refresh."""
from __future__ import annotations

import asyncio
import io
import json

import grpc

from eraftd.controller.state import Config
from repl import commands, output
from repl.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Session, execute
from repl.completer import ClusterMetadata
from repl.output import ClusterStatus, Member, ShardRow


class FakeClerk:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.calls: list[tuple] = []
        self.gate: asyncio.Event | None = None
        self.pages_seen = 0

    @staticmethod
    def _b(x: bytes | str) -> bytes:
        return x.encode() if isinstance(x, str) else x

    async def put(self, key, value) -> None:
        self.calls.append(("put", key, value))
        self.data[self._b(key)] = self._b(value)

    async def append(self, key, value) -> None:
        self.data[self._b(key)] = self.data.get(self._b(key), b"") + self._b(value)

    async def get(self, key):
        if self.gate is not None:
            await self.gate.wait()
        return self.data.get(self._b(key))

    async def delete(self, key) -> bool:
        return self.data.pop(self._b(key), None) is not None

    async def exists(self, key) -> bool:
        return self._b(key) in self.data

    async def cas(self, key, expected, new):
        cur = self.data.get(self._b(key))
        if (expected is None and cur is None) or (expected is not None and cur == self._b(expected)):
            self.data[self._b(key)] = self._b(new)
            return True, None
        return False, cur

    async def scan(self, prefix=b"", limit=None):
        n = 0
        for k in sorted(self.data):
            if k.startswith(self._b(prefix)) and (limit is None or n < limit):
                n += 1
                self.pages_seen += 1
                yield k, self.data[k]
                await asyncio.sleep(0)


CFG = Config(num=4, shards=(100,) * 5 + (101,) * 5, groups={100: ("a:1",), 101: ("b:1",)})


class FakeCtl:
    def __init__(self, cfg: Config = CFG) -> None:
        self.cfg = cfg
        self.proposed: list[tuple] = []
        self.leader = "a:1"
        self.addresses = ["a:1"]

    async def query(self, num=-1):
        return self.cfg

    async def move(self, shard, gid):
        self.proposed.append(("move", shard, gid))
        shards = list(self.cfg.shards)
        shards[shard] = gid
        self.cfg = Config(self.cfg.num + 1, tuple(shards), self.cfg.groups)
        return self.cfg

    async def join(self, groups):
        self.proposed.append(("join", groups))
        self.cfg = Config(self.cfg.num + 1, self.cfg.shards, {**self.cfg.groups, **groups})
        return self.cfg

    async def leave(self, gids):
        self.proposed.append(("leave", gids))
        return self.cfg

    async def close(self) -> None:
        pass


class FakeProbe:
    def __init__(self, states: list[str]) -> None:
        self.states = states       # each call: the next status of every shard
        self.calls = 0

    async def status(self, cfg, membership=False):
        s = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        return ClusterStatus(cfg, (), (), tuple(ShardRow(i, g, s, 1) for i, g in enumerate(cfg.shards)))

    async def close(self) -> None:
        pass


def session(**kw) -> tuple[Session, FakeClerk]:
    s = Session(["127.0.0.1:1"], timeout=5, **kw)
    s._clerk = FakeClerk()
    s.ctl = FakeCtl()
    s.probe = FakeProbe(["Serving"])
    s.out = io.StringIO()
    return s, s._clerk


def run(s: Session, line: str) -> commands.Outcome:
    return asyncio.run(execute(s, line))


# ---------------------------------------------------------------- the option rule, help

def test_only_known_option_names_are_options_and_dash_dash_ends_them():
    s, kv = session()
    assert run(s, "put k -5").code == EXIT_OK and kv.data[b"k"] == b"-5"       # not an option
    assert run(s, "put -- -h v").code == EXIT_OK and kv.data[b"-h"] == b"v"    # after --: words
    assert run(s, "put k -- --json").code == EXIT_OK and kv.data[b"k"] == b"--json"
    assert run(s, "get k --json").output == '{"key": "k", "value": "--json"}'  # after the word too
    assert run(s, "get --json k").output == '{"key": "k", "value": "--json"}'
    o = run(s, "put k v --bogus")
    assert o.code == EXIT_USAGE and "not one of its options is a word" in o.error


def test_help_for_every_command_without_a_cluster():
    s, kv = session()
    for name, cmd in commands.COMMANDS.items():
        for line in (f"help {name}", f"{name} --help", f"{name} -h", f"{name} x y --help"):
            o = run(s, line)
            assert o.code == EXIT_OK and o.output.startswith("usage: " + cmd.usage), line
            assert "after -- every word is a word" in o.output
    assert kv.data == {}                                  # nothing was stored: -h is help
    assert commands.answer_offline(["put", "-h", "x"]).output.startswith("usage: put")
    assert commands.answer_offline(["get", "--", "-h"]) is None
    assert json.loads(commands.answer_offline(["help"], as_json=True).output)["help"].startswith("commands:")
    assert run(s, "help nope").code == EXIT_USAGE


def test_timeout_after_the_command_word():
    s, kv = session()
    kv.gate = asyncio.Event()                # get never answers
    o = run(s, "get k --timeout 50ms")
    assert o.code == EXIT_FAILED and o.error == ("get: no answer within 0.05 s; see status, "
                                                 "or try again with a longer --timeout")
    assert run(s, "get k --timeout soon").code == EXIT_USAGE


# ---------------------------------------------------------------- (nil) and --json

def test_a_missing_key_is_nil_in_the_repl_nothing_elsewhere_null_in_json():
    s, _ = session()
    assert run(s, "get nope") == commands.Outcome(EXIT_OK, None)
    s.interactive = True
    assert run(s, "get nope").output == "(nil)"
    assert json.loads(run(s, "get nope --json").output) == {"key": "nope", "value": None}
    run(s, "put e ''")
    assert run(s, "get e").output == b""                  # an empty value is not (nil)


def test_json_for_every_command_is_one_object():
    s, kv = session()
    lines = ["put k v", "append k w", "get k", "exists k", "delete k", "delete k", "cas k --absent 1",
             "cas k 1 2", "move 0 101", "move 0 101", "join 102=c:1", "leave 102", "query", "help",
             "help get", "status", "put onlykey", "move 99 1"]
    for line in lines:
        o = run(s, line + " --json")
        obj = json.loads(o.output)
        assert isinstance(obj, dict), line
        assert ("error" in obj) == (o.code != EXIT_OK), line
    assert kv.data == {b"k": b"2"}


# ---------------------------------------------------------------- delete, exists, cas, scan

def test_delete_exists_cas_scan():
    s, kv = session()
    run(s, "put a 1")
    assert run(s, "exists a").output == "yes" and run(s, "exists b").output == "no"
    assert run(s, "delete a").output == "OK"
    assert run(s, "delete a").output == "no change: a did not exist"
    assert run(s, "cas a --absent x").output == "OK" and kv.data[b"a"] == b"x"
    o = run(s, "cas a wrong y")
    assert (o.code, o.error) == (EXIT_FAILED, "cas a: not swapped: its value is 'x'")
    assert run(s, "cas a x y").output == "OK" and kv.data[b"a"] == b"y"
    o = run(s, "cas zz --absent 1 2")
    assert o.code == EXIT_USAGE
    for k in ("p1", "p2", "p3", "q"):
        run(s, f"put {k} v{k}")
    out = s.out
    assert run(s, "scan p --limit 2").output is None
    assert out.getvalue() == "p1\tvp1\np2\tvp2\n"
    out.truncate(0), out.seek(0)
    run(s, "scan --json")
    assert [json.loads(x)["key"] for x in out.getvalue().split("\n") if x] == ["a", "p1", "p2", "p3", "q"]
    assert run(s, "scan p --limit 0").code == EXIT_USAGE


def test_scan_streams_as_pages_come():
    s, kv = session()
    for i in range(5):
        kv.data[f"k{i}".encode()] = b"v"
    seen: list[int] = []
    real_write = s.write

    def write(data):
        seen.append(kv.pages_seen)            # how many pairs the clerk had given when printed
        real_write(data)
    s.write = write
    run(s, "scan k")
    assert seen == [1, 2, 3, 4, 5]


def test_values_from_a_file_stdin_and_hex(tmp_path):
    s, kv = session()
    big = tmp_path / "big"
    big.write_bytes(b"x" * 200_000)
    assert run(s, f"put k --file {big}").output == "OK" and kv.data[b"k"] == b"x" * 200_000
    assert run(s, f"append k --file {big}").code == EXIT_OK and len(kv.data[b"k"]) == 400_000
    assert run(s, "put k --file /nonexistent/f").code == EXIT_USAGE
    o = run(s, "put k -")
    assert o.code == EXIT_USAGE and "only in one-shot mode" in o.error
    s.stdin = io.BytesIO(b"from stdin\n")
    assert run(s, "put k -").code == EXIT_OK and kv.data[b"k"] == b"from stdin\n"
    assert run(s, "put --hex 00ff 0a0b").code == EXIT_OK and kv.data[b"\x00\xff"] == b"\n\x0b"
    assert run(s, "get 00ff --hex").output == "0a0b"
    assert json.loads(run(s, "get 00ff --hex --json").output) == {"key": "00ff", "value": "0a0b"}
    o = run(s, "put --hex zz 00")
    assert o.code == EXIT_USAGE and "hex digits" in o.error


# ---------------------------------------------------------------- join / leave / move

def test_no_change_is_said_and_nothing_is_proposed():
    s, _ = session()
    ctl = s.ctl
    assert run(s, "move 0 100").output == "no change: shard 0 is already served by group 100 (configuration 4)"
    assert run(s, "join 101=b:1").output == ("no change: group 101 already joined with these servers "
                                             "(configuration 4)")
    assert run(s, "leave 999").output.startswith("no change: group 999 not in the configuration")
    assert ctl.proposed == []
    assert run(s, "move 0 101").output == "OK, configuration 5"
    assert run(s, "join 101=b:1,b:2").output == "OK, configuration 6"      # other servers: a change
    assert len(ctl.proposed) == 2


def test_wait_until_every_shard_serves_with_a_progress_line():
    s, _ = session()
    s.probe = FakeProbe(["Pulling", "Pulling", "Serving"])
    tty = io.StringIO()
    s.progress = tty
    commands.WAIT_POLL_S, saved = 0.001, commands.WAIT_POLL_S
    try:
        o = run(s, "move 0 101 --wait")
        assert o.output == "OK, configuration 5" and s.probe.calls == 3
        assert "0/10 shards serving at configuration 5" in tty.getvalue()
        assert tty.getvalue().endswith("\r\033[K")               # erased at the end
        s.probe = FakeProbe(["Pulling"])
        s.timeout = 0.05
        o = run(s, "move 1 101 --wait --json")
        assert o.code == EXIT_FAILED and "only 0 of 10 shards are serving" in o.error
    finally:
        commands.WAIT_POLL_S = saved


# ---------------------------------------------------------------- waiting

def test_a_spinner_on_a_terminal_after_a_while_erased_at_the_end():
    s, kv = session()
    tty = io.StringIO()
    s.progress, s.spinner_after = tty, 0.01
    kv.gate = asyncio.Event()

    async def go():
        task = asyncio.ensure_future(execute(s, "get slow"))
        while "waiting for the cluster" not in tty.getvalue():     # shown while it waits
            await asyncio.sleep(0.01)
        kv.gate.set()
        return await task
    assert asyncio.run(go()).code == EXIT_OK
    assert "get slow: waiting for the cluster" in tty.getvalue() and tty.getvalue().endswith("\r\033[K")
    s2, _ = session()                                           # no terminal: nothing drawn
    s2.spinner_after = 0
    assert run(s2, "get k").code == EXIT_OK


def test_known_unreachable_is_said_at_once():
    s, kv = session()
    s.unreachable = lambda: "127.0.0.1:1 unreachable"
    o = run(s, "get k")
    assert o.code == EXIT_FAILED and o.error.startswith("get: not tried: the controllers do not answer")
    assert run(s, "help").code == EXIT_OK                       # no cluster needed


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_one_slow_refresh_does_not_flip_the_prompt():
    async def go():
        clock = Clock()
        m = ClusterMetadata(["127.0.0.1:1"], clock=clock)
        answers: list = [CFG]

        class Ctl(FakeCtl):
            async def query(self, num=-1):
                a = answers.pop(0) if answers else TimeoutError()
                if isinstance(a, BaseException):
                    raise a
                return a
        m.ctl = Ctl()
        m.probe = FakeProbe(["Serving"])
        await m.refresh()
        assert m.view.reachable is True
        answers[:] = [TimeoutError(), TimeoutError()]         # two slow refreshes: still reachable
        await m.refresh()
        await m.refresh()
        assert m.view.reachable is True and m.unreachable() == ""
        answers[:] = [CFG, TimeoutError()]                  # one success resets the count
        await m.refresh()
        clock.t += 2
        await m.refresh()
        assert m.view.reachable is True
        clock.t += 10                                        # failing for longer than a few seconds
        answers[:] = [TimeoutError()]
        await m.refresh()
        assert m.view.reachable is False and m.unreachable()
        m2 = ClusterMetadata(["127.0.0.1:1"], clock=clock)   # never reached: said at the first failure
        m2.ctl = Ctl()
        answers[:] = [TimeoutError()]
        await m2.refresh()
        assert m2.view.reachable is False
        answers[:] = [grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, "x")] * 3
        for _ in range(3):
            await m.refresh()
        assert "UNAVAILABLE" not in m.unreachable()
    asyncio.run(go())


# ---------------------------------------------------------------- plain words

def test_errors_never_show_status_names_or_byte_reprs():
    for e in [grpc.aio.AioRpcError(code, None, None, "details") for code in grpc.StatusCode]:
        text = commands.plain(e)
        assert text and text.upper() != text and "StatusCode" not in text
    scrubbed = commands.plain(RuntimeError("put b'kkkk' (shard 4): <AioRpcError status = "
                                           "StatusCode.UNIMPLEMENTED>, then DEADLINE_EXCEEDED, INTERNAL: x"))
    for bad in ("b'", "UNIMPLEMENTED", "DEADLINE_EXCEEDED", "INTERNAL", "StatusCode"):
        assert bad not in scrubbed, scrubbed
    assert "put kkkk (shard 4)" in scrubbed
    assert commands.plain(RuntimeError(r"get b'caf\xc3\xa9'")) == "get café"


# ---------------------------------------------------------------- the one count of nodes

def test_nodes_are_processes_and_roles_are_counted_apart():
    up = [Member(0, i, f"a:{i}", "Follower") for i in range(3)]
    reps = [Member(100, i, f"a:{i}", "Follower") for i in range(3)] + [
        Member(101, i, f"b:{i}", "Follower") for i in range(3)]
    st = ClusterStatus(CFG, tuple(up), tuple(reps), ())
    assert output.format_count(output.status_count(st)) == "6 nodes up (3 controller peers, 6 replicas)"
    reps[0] = Member(100, 0, "a:0", problem="unreachable")
    st = ClusterStatus(CFG, tuple(up), tuple(reps), ())
    assert output.format_count(output.status_count(st)) == "6 nodes up (3 controller peers, 5 of 6 replicas)"
    st = ClusterStatus(CFG, (Member(0, 0, "a:0"),), (Member(100, 0, "a:0"),), ())
    assert output.format_count(output.status_count(st)) == ("0 of 1 node up (0 of 1 controller peer, "
                                                            "0 of 1 replica)")
