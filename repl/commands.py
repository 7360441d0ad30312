"""The shell's commands: ONE registry serving help, completion metadata and dispatch, for the
REPL, batch mode and one-shot `eraftd put k v` alike.

A line is split into words by shell quoting rules (shlex); the first word names the command,
and after it nothing is parsed as an option (so `put k -5` stores "-5"), except by bench, and
the --json switch of query and status.  `execute` never raises for a command's failure: it
returns an Outcome with the exit code (0 ok, 1 the command failed, 2 usage error), the text
for stdout and a one-line error for stderr.  Cancellation (Ctrl-C) is the one exception that
passes through.
"""
from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence, TextIO

import grpc

from eraftd.controller.client import ControllerClient, ControllerError, ControllerUnavailable
from eraftd.controller.state import NSHARDS, Config
from eraftd.shardkv.clerk import Clerk, ShardKVError, ShardKVUnavailable

from . import output, suggest
from .probe import Probe, rpc_problem
from .suggest import Grammar

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_REMEMBERED_KEYS = 1000


class UsageError(Exception):
    """Wrong arguments (exit 2); the message is one line."""


class CommandFailed(Exception):
    """The command ran and failed (exit 1); the message is one line."""


@dataclass(frozen=True)
class Outcome:
    code: int = EXIT_OK
    output: str | bytes | None = None     # for stdout (a newline is added)
    error: str = ""                       # for stderr, one line
    leave: bool = False                   # exit / quit


# ---------------------------------------------------------------- the session

class Session:
    """What the commands share: the clients (made once), the output mode, the keys used."""

    def __init__(self, controllers: Sequence[str], timeout: float = 10.0, json: bool = False,
                 progress: TextIO | None = None) -> None:
        self.controllers = list(controllers)
        self.timeout = timeout
        self.json = json
        self.progress = progress            # where bench draws its progress bar (a terminal)
        self.ctl = ControllerClient(self.controllers, total_timeout=timeout,
                                    call_timeout=min(3.0, timeout))
        self.probe = Probe(self.ctl, timeout=min(1.0, timeout))
        self._clerk: Clerk | None = None
        self.keys: dict[str, None] = {}     # keys used this session, oldest first
        self.on_config: list[Callable[[Config, str | None], None]] = []

    @property
    def clerk(self) -> Clerk:
        if self._clerk is None:
            self._clerk = Clerk(self.controllers, total_timeout=self.timeout,
                                call_timeout=min(3.0, self.timeout))
        return self._clerk

    async def close(self) -> None:
        if self._clerk is not None:
            await self._clerk.close()
        await self.probe.close()
        await self.ctl.close()

    def used_key(self, key: str) -> None:
        self.keys.pop(key, None)
        self.keys[key] = None
        while len(self.keys) > MAX_REMEMBERED_KEYS:
            del self.keys[next(iter(self.keys))]

    def saw_config(self, cfg: Config) -> Config:
        for listener in self.on_config:
            listener(cfg, self.ctl.leader)
        return cfg


# ---------------------------------------------------------------- the registry

Run = Callable[[Session, Any], Awaitable["str | bytes | Outcome | None"]]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    grammar: Grammar
    parse: Callable[[list[str]], Any]      # words after the command -> arguments; UsageError
    run: Run
    oneshot: bool = True                   # also `eraftd NAME ...`
    more: str = ""                         # help NAME's extra lines


def _int(word: str, what: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        n = int(word)
    except ValueError:
        raise UsageError(f"{what} must be an integer, got {word!r}") from None
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        rng = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
        raise UsageError(f"{what} must be {rng}, got {n}")
    return n


def _count(words: list[str], lo: int, hi: int | None) -> list[str]:
    """`words` if there are lo..hi of them (hi None: no limit), else a UsageError."""
    n = len(words)
    if lo <= n and (hi is None or n <= hi):
        return words
    if hi == 0:
        want = "no arguments"
    elif lo == hi:
        want = f"{lo} argument{'s' if lo != 1 else ''}"
    elif hi is None:
        want = f"at least {lo} argument{'s' if lo != 1 else ''}"
    else:
        want = f"{lo} to {hi} arguments"
    raise UsageError(f"takes {want}, got {n}")


def _json_switch(words: list[str]) -> tuple[list[str], bool]:
    rest = [w for w in words if w != "--json"]
    return rest, len(rest) != len(words)


# -- key-value

def _parse_kv(n: int) -> Callable[[list[str]], list[str]]:
    def parse(words: list[str]) -> list[str]:
        if len(words) > n and n == 2:
            raise UsageError(f"takes {n} arguments, got {len(words)} (quote a value that has "
                             f"spaces: put k 'a b')")
        return _count(words, n, n)
    return parse


def _kv(method: str) -> Run:
    """put / append print OK; get prints the value (nothing, i.e. an empty line, when none)."""
    async def run(s: Session, args: list[str]) -> str | bytes:
        s.used_key(args[0])
        value = await getattr(s.clerk, method)(*args)
        return (value or b"") if method == "get" else "OK"
    return run


# -- configuration

def _parse_join(words: list[str]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for w in _count(words, 1, None):
        gid_text, eq, addrs = w.partition("=")
        servers = [a.strip() for a in addrs.split(",") if a.strip()]
        if not eq or not servers:
            raise UsageError(f"expected GID=ADDR,ADDR,..., got {w!r}")
        gid = _int(gid_text, "a gid", 1)
        if gid in groups:
            raise UsageError(f"gid {gid} is given twice")
        groups[gid] = servers
    return groups


def _parse_leave(words: list[str]) -> list[int]:
    return [_int(w, "a gid", 1) for w in _count(words, 1, None)]


def _parse_move(words: list[str]) -> tuple[int, int]:
    shard, gid = _count(words, 2, 2)
    return _int(shard, "the shard", 0, NSHARDS - 1), _int(gid, "the gid", 1)


async def _join(s: Session, groups: dict[int, list[str]]) -> str:
    s.saw_config(await s.ctl.join(groups))
    return "OK"


async def _leave(s: Session, gids: list[int]) -> str:
    s.saw_config(await s.ctl.leave(gids))
    return "OK"


async def _move(s: Session, args: tuple[int, int]) -> str:
    s.saw_config(await s.ctl.move(*args))
    return "OK"


def _parse_query(words: list[str]) -> tuple[int, bool]:
    rest, as_json = _json_switch(words)
    _count(rest, 0, 1)
    return (_int(rest[0], "the configuration number", -1) if rest else -1), as_json


async def _query(s: Session, args: tuple[int, bool]) -> str:
    num, as_json = args
    cfg = await s.ctl.query(num)
    if num == -1:
        s.saw_config(cfg)
    elif cfg.num != num:
        raise CommandFailed(f"configuration {num} does not exist yet (the latest is {cfg.num})")
    return output.dumps(output.query_json(cfg)) if as_json or s.json else output.format_query(cfg)


# -- status, bench

def _parse_status(words: list[str]) -> bool:
    rest, as_json = _json_switch(words)
    _count(rest, 0, 0)
    return as_json


async def _status(s: Session, as_json: bool) -> str:
    cfg = s.saw_config(await s.ctl.query())
    st = await s.probe.status(cfg)
    return output.dumps(output.status_json(st)) if as_json or s.json else output.format_status(st)


def _parse_bench(words: list[str]) -> Any:
    from . import bench
    try:
        return bench.parse_args(words)
    except ValueError as e:
        raise UsageError(str(e)) from None


async def _bench(s: Session, opts: Any) -> Outcome:
    from . import bench
    result = await bench.run(s, opts)
    text = output.dumps(output.bench_json(result)) if opts.json or s.json else output.format_bench(result)
    if result.failed:
        return Outcome(EXIT_FAILED, text, f"bench: {result.failed} of {result.requests} requests failed")
    return Outcome(EXIT_OK, text)


# -- the shell itself

def _parse_help(words: list[str]) -> str | None:
    _count(words, 0, 1)
    if words and words[0] not in COMMANDS:
        raise UsageError(f"no command {words[0]!r}; the commands: {', '.join(COMMANDS)}")
    return words[0] if words else None


async def _help(s: Session, name: str | None) -> str:
    if name is None:
        return output.format_help([(c.usage, c.help) for c in COMMANDS.values() if c.name != "quit"])
    c = COMMANDS[name]
    return "\n".join(["usage: " + c.usage, c.help] + ([c.more] if c.more else []))


async def _exit(s: Session, _: Any) -> Outcome:
    return Outcome(leave=True)


BENCH_USAGE = ("bench [N [CLIENTS]] [-n REQUESTS] [-c CLIENTS] [--value-size BYTES] "
               "[--reads PERCENT] [--keys KEYSPACE] [--unary] [--json]")
BENCH_OPTIONS = {"-n": True, "-c": True, "--value-size": True, "--reads": True, "--keys": True,
                 "--unary": False, "--json": False}
_JSON_OPTION = {"--json": False}


def _no_args(words: list[str]) -> list[str]:
    return _count(words, 0, 0)


COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("put", "put KEY VALUE", "store VALUE under KEY",
            Grammar((suggest.KEY, suggest.VALUE)), _parse_kv(2), _kv("put")),
    Command("get", "get KEY", "print the value of KEY (an empty line if it has none)",
            Grammar((suggest.KEY,)), _parse_kv(1), _kv("get")),
    Command("append", "append KEY VALUE", "add VALUE to the end of KEY's value",
            Grammar((suggest.KEY, suggest.VALUE)), _parse_kv(2), _kv("append")),
    Command("join", "join GID=ADDR,ADDR,... [GID=...]", "add replica groups; shards are rebalanced",
            Grammar((suggest.GROUP_SPEC,), repeat=True), _parse_join, _join,
            more="e.g. join 101=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"),
    Command("leave", "leave GID [GID ...]", "remove groups; their shards go to the others",
            Grammar((suggest.GID,), repeat=True), _parse_leave, _leave),
    Command("move", "move SHARD GID", f"give shard SHARD (0..{NSHARDS - 1}) to group GID",
            Grammar((suggest.SHARD, suggest.GID)), _parse_move, _move),
    Command("query", "query [NUM] [--json]", "show configuration NUM (default: the latest)",
            Grammar((suggest.CONFIG_NUM,), options=_JSON_OPTION), _parse_query, _query),
    Command("status", "status [--json]", "every controller peer and replica, then every shard",
            Grammar(options=_JSON_OPTION), _parse_status, _status,
            more="a node that does not answer within a second is listed as down"),
    Command("bench", "bench [N [CLIENTS]] [OPTIONS]",
            "measure put/get throughput and latency (default 1000 requests, 16 clients)",
            Grammar((suggest.NOTHING, suggest.NOTHING), options=BENCH_OPTIONS), _parse_bench, _bench,
            more=BENCH_USAGE + "\n--unary: one eRaft-compatible Command call per request instead of "
                               "the native batched path; --reads: the percentage of gets"),
    Command("help", "help [COMMAND]", "list the commands, or explain one",
            Grammar((suggest.TOPIC,)), _parse_help, _help, oneshot=False),
    Command("exit", "exit", "leave the shell (also quit, Ctrl-D)", Grammar(), _no_args, _exit,
            oneshot=False),
    Command("quit", "quit", "leave the shell", Grammar(), _no_args, _exit, oneshot=False),
]}

GRAMMAR: dict[str, Grammar] = {name: c.grammar for name, c in COMMANDS.items()}


# ---------------------------------------------------------------- dispatch

def plain(e: BaseException) -> str:
    """A failure in plain words, one line."""
    text = str(e) if not isinstance(e, (grpc.aio.AioRpcError, asyncio.TimeoutError)) else rpc_problem(e)
    text = text.replace(": UNAVAILABLE", ": unreachable").replace(": DEADLINE_EXCEEDED", ": no answer in time")
    return " ".join(text.split()) or type(e).__name__


async def execute(session: Session, line: str) -> Outcome:
    """Run one line of the shell."""
    try:
        words = shlex.split(line)
    except ValueError as e:        # an unclosed quote
        return Outcome(EXIT_USAGE, error=f"cannot split the line into words: {str(e).lower()}")
    if not words:
        return Outcome()
    return await run_words(session, words)


async def run_words(session: Session, words: Sequence[str]) -> Outcome:
    name, *args = words
    cmd = COMMANDS.get(name)
    if cmd is None:
        return Outcome(EXIT_USAGE, error=f"unknown command {name!r}; type help for the commands")
    try:
        result = await cmd.run(session, cmd.parse(list(args)))
    except UsageError as e:
        return Outcome(EXIT_USAGE, error=f"{name}: {e}; usage: {cmd.usage}")
    except ControllerError as e:
        return Outcome(EXIT_FAILED, error=f"refused by the controller: {plain(e)}")
    except (CommandFailed, ControllerUnavailable, ShardKVError, ShardKVUnavailable,
            grpc.aio.AioRpcError, asyncio.TimeoutError, OSError) as e:
        return Outcome(EXIT_FAILED, error=plain(e))
    except asyncio.CancelledError:
        raise
    except Exception as e:      # a bug: still one line, never a traceback
        return Outcome(EXIT_FAILED, error=f"{name} failed unexpectedly: {type(e).__name__}: {plain(e)}")
    return result if isinstance(result, Outcome) else Outcome(EXIT_OK, result)
