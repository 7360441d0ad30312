"""The shell's commands: ONE registry serving help, completion metadata, options and dispatch,
for the REPL, batch mode and one-shot `eraftd put k v` alike.

A line is split into words by shell quoting rules (shlex); the first word names the command.
After it, the OPTION RULE: a word is an option only if it is exactly one of the names that
command knows (its own, see `help CMD`, and the ones every command takes: --json, --help/-h,
--timeout DURATION); any other word is a word, even one starting with '-' (so `put k -5`
stores "-5"); and after a `--` every word is a word (`put -- -h v` stores the key "-h").
Options may come anywhere after the command word.

`execute` never raises for a command's failure: it returns an Outcome with the exit code
(0 ok, 1 the command failed, 2 usage error), the text for stdout and a one-line error for
stderr.  With --json every command prints one JSON object (a failure: {"error": ...} too).
Cancellation (Ctrl-C) is the one exception that passes through.
"""
from __future__ import annotations

import asyncio
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence, TextIO

import grpc

from eraftd import members as mb
from eraftd.controller.client import ControllerClient, ControllerError, ControllerUnavailable
from eraftd.controller.state import NSHARDS, Config
from eraftd.durations import DurationError, parse_duration
from eraftd.errors import Error
from eraftd.names import MAX_GID
from eraftd.shardkv.clerk import Clerk, ShardKVError, ShardKVUnavailable
from eraftd.tls import TlsFiles

from . import output, suggest
from .probe import Probe, rpc_problem
from .suggest import Grammar

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_REMEMBERED_KEYS = 1000
SPINNER_AFTER_S = 1.0
WAIT_POLL_S = 0.2
WAIT_GRACE_S = 2.0         # --wait: its own deadline comes first, then this much for the last probe
NIL = "(nil)"


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


@dataclass(frozen=True)
class Reply:
    """What a command found: `text` for people (None: print nothing), `data` for --json;
    `nil`: a missing key, shown as (nil) in the REPL and as nothing elsewhere."""
    text: str | bytes | None
    data: dict[str, Any] = field(default_factory=dict)
    nil: bool = False


def emit(out: TextIO, data: str | bytes | None) -> None:
    """Write a command's output and a newline; bytes go out raw when the stream allows."""
    if data is None:
        return
    if isinstance(data, bytes):
        buf = getattr(out, "buffer", None)
        if buf is not None:
            out.flush()
            buf.write(data + b"\n")
            buf.flush()
            return
        data = data.decode("utf-8", errors="replace")
    out.write(data + "\n")
    out.flush()


# ---------------------------------------------------------------- the session

class Session:
    """What the commands share: the clients (made once), the output mode, the keys used.

    `dial` maps an advertised address to where to connect (a --config file's [node.dial]);
    `tls` the TLS files every channel uses (None: plaintext);
    `out` is where streaming commands (scan) write as they go; `stdin` what `put KEY -` reads
    (one-shot only); `interactive` is set by the REPL (a missing key shows as (nil));
    `unreachable` is the REPL's knowledge that the controllers do not answer (a problem
    text, or "" when they do / nothing is known)."""

    def __init__(self, controllers: Sequence[str], timeout: float = 10.0, json: bool = False,
                 progress: TextIO | None = None, dial: Callable[[str], str] | None = None,
                 tls: TlsFiles | None = None) -> None:
        self.controllers = list(controllers)
        self.timeout = timeout
        self.json = json
        self.progress = progress            # a terminal: bench's progress bar, the spinner
        self.dial = dial
        self.tls = tls                      # every channel's TLS files (None: plaintext)
        self.ctl = ControllerClient(self.controllers, total_timeout=timeout,
                                    call_timeout=min(3.0, timeout),
                                    dial=dial, tls=tls)
        self.probe = Probe(self.ctl, timeout=min(1.0, timeout), dial=dial, tls=tls)
        self._clerk: Any = None
        self._members: mb.MemberClient | None = None
        self.keys: dict[str, None] = {}     # keys used this session, oldest first
        self.on_config: list[Callable[[Config, str | None], None]] = []
        self.out: TextIO | None = None
        self.stdin: Any = None
        self.interactive = False
        self.unreachable: Callable[[], str] = lambda: ""
        self.spinner_after = SPINNER_AFTER_S
        self.deadline = 0.0                 # of the running command (time.monotonic())
        self.activity = ""                  # what the running command waits for (the spinner)

    @property
    def clerk(self) -> Clerk:
        if self._clerk is None:
            self._clerk = Clerk(self.controllers, total_timeout=self.timeout,
                                call_timeout=min(3.0, self.timeout), dial=self.dial, tls=self.tls)
        return self._clerk

    @property
    def members(self) -> mb.MemberClient:
        if self._members is None:
            self._members = mb.MemberClient(self.ctl, dial=self.dial, tls=self.tls,
                                            call_timeout=min(mb.CALL_TIMEOUT_S, self.timeout),
                                            default_timeout=self.timeout)
        return self._members

    async def close(self) -> None:
        if self._clerk is not None and hasattr(self._clerk, "close"):
            await self._clerk.close()
        if self._members is not None:
            await self._members.close()
        await self.probe.close()
        await self.ctl.close()

    def used_key(self, key: str | bytes) -> None:
        if isinstance(key, bytes):
            return
        self.keys.pop(key, None)
        self.keys[key] = None
        while len(self.keys) > MAX_REMEMBERED_KEYS:
            del self.keys[next(iter(self.keys))]

    def saw_config(self, cfg: Config) -> Config:
        for listener in self.on_config:
            listener(cfg, self.ctl.leader)
        return cfg

    def write(self, data: str | bytes) -> None:
        emit(self.out or sys.stdout, data)


# ---------------------------------------------------------------- the registry

Opts = Mapping[str, "str | bool"]
Run = Callable[[Session, Any], Awaitable["str | bytes | Reply | Outcome | None"]]

# every command takes these (name -> takes a value)
COMMON_OPTIONS: dict[str, bool] = {"--json": False, "--help": False, "-h": False, "--timeout": True}


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    slots: tuple[str, ...]                 # suggest.* kinds of the words, in order
    parse: Callable[[list[str], Opts], Any]   # words, options -> arguments; UsageError
    run: Run
    oneshot: bool = True                   # also `eraftd NAME ...`
    more: str = ""                         # help NAME's extra lines
    options: Mapping[str, bool] = field(default_factory=dict)   # its own: name -> takes a value
    repeat: bool = False                   # the last slot repeats
    cluster: bool = True                   # needs the cluster (not help, exit)
    subcommands: Mapping[str, str] = field(default_factory=dict)   # a SUBCOMMAND slot's words
    # it bounds its own waits and says what is missing: a --timeout bounds it from outside
    # only a little later (WAIT_GRACE_S), and without --timeout nothing does
    bounds_itself: bool = False

    @property
    def grammar(self) -> Grammar:
        return Grammar(self.slots, self.repeat, {**self.options, **COMMON_OPTIONS},
                       self.subcommands or None)


def split_options(words: Sequence[str], known: Mapping[str, bool]) -> tuple[list[str], dict[str, str | bool]]:
    """The option rule (module doc): (plain words, {option: value or True})."""
    plain_words: list[str] = []
    opts: dict[str, str | bool] = {}
    it = iter(words)
    for w in it:
        if w == "--":
            plain_words.extend(it)
            break
        if w not in known:
            plain_words.append(w)
        elif known[w]:
            value = next(it, None)
            if value is None:
                raise UsageError(f"{w} needs a value")
            opts[w] = value
        else:
            opts[w] = True
    return plain_words, opts


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
    hint = ""
    if hi is not None and n > hi and any(w.startswith("-") for w in words):
        hint = " (a word starting with - that is not one of its options is a word)"
    raise UsageError(f"takes {want}, got {n}{hint}")


def _hex(word: str, what: str) -> bytes:
    try:
        return bytes.fromhex(word)
    except ValueError:
        raise UsageError(f"--hex: {what} must be hex digits (e.g. 00ff), got {word!r}") from None


def shown(b: bytes | str, as_hex: bool = False) -> str:
    """A key or value as the user would type it: text, or hex with --hex (never a b'' repr)."""
    if isinstance(b, str):
        return b
    return b.hex() if as_hex else b.decode("utf-8", errors="replace")


# -- key-value

@dataclass(frozen=True)
class KV:
    key: str | bytes
    value: str | bytes | None = None
    hex: bool = False


_VALUE_OPTIONS = {"--file": True, "--hex": False}


def _parse_key(words: list[str], opts: Opts) -> KV:
    (key,) = _count(words, 1, 1)
    as_hex = bool(opts.get("--hex"))
    return KV(_hex(key, "the key") if as_hex else key, hex=as_hex)


def _parse_key_value(words: list[str], opts: Opts) -> KV:
    """KEY VALUE, KEY --file F, KEY - (stdin); --hex: KEY and VALUE are hex."""
    as_hex = bool(opts.get("--hex"))
    if "--file" in opts:
        (key,) = _count(words, 1, 1)
        try:
            with open(str(opts["--file"]), "rb") as f:
                value: str | bytes | None = f.read()
        except OSError as e:
            raise UsageError(f"--file: cannot read {opts['--file']}: {e.strerror}") from None
        as_hex_value = False
    else:
        if len(words) > 2 and not any(w.startswith("-") for w in words):
            raise UsageError(f"takes 2 arguments, got {len(words)} (quote a value that has "
                             f"spaces: put k 'two words')")
        key, value = _count(words, 2, 2)
        as_hex_value = as_hex
        if value == "-":
            value = None            # stdin, read when run
    k: str | bytes = _hex(key, "the key") if as_hex else key
    if as_hex_value and isinstance(value, str):
        value = _hex(value, "the value")
    return KV(k, value, as_hex)


def _read_stdin(s: Session) -> bytes:
    if s.stdin is None:
        raise UsageError("a value of - (read from stdin) works only in one-shot mode "
                         "(eraftd put KEY - < FILE); use --file FILE here")
    data = s.stdin.read()
    return data if isinstance(data, bytes) else data.encode()


def _write(method: str) -> Run:
    """put / append print OK."""
    async def run(s: Session, a: KV) -> Reply:
        s.used_key(a.key)
        value = a.value if a.value is not None else _read_stdin(s)
        await getattr(s.clerk, method)(a.key, value)
        return Reply("OK", {"ok": True, "key": shown(a.key, a.hex)})
    return run


async def _get(s: Session, a: KV) -> Reply:
    s.used_key(a.key)
    value = await s.clerk.get(a.key)
    key = shown(a.key, a.hex)
    if value is None:
        return Reply(None, {"key": key, "value": None}, nil=True)
    return Reply(value.hex() if a.hex else value, {"key": key, "value": shown(value, a.hex)})


async def _delete(s: Session, a: KV) -> Reply:
    s.used_key(a.key)
    existed = await s.clerk.delete(a.key)
    key = shown(a.key, a.hex)
    return Reply("OK" if existed else f"no change: {key} did not exist",
                 {"key": key, "deleted": bool(existed)})


async def _exists(s: Session, a: KV) -> Reply:
    s.used_key(a.key)
    yes = await s.clerk.exists(a.key)
    return Reply("yes" if yes else "no", {"key": shown(a.key, a.hex), "exists": bool(yes)})


@dataclass(frozen=True)
class Cas:
    key: str | bytes
    expected: str | bytes | None      # None: must be absent
    new: str | bytes
    hex: bool = False


def _parse_cas(words: list[str], opts: Opts) -> Cas:
    as_hex = bool(opts.get("--hex"))
    conv = (lambda w, what: _hex(w, what)) if as_hex else (lambda w, what: w)
    if opts.get("--absent"):
        key, new = _count(words, 2, 2)
        return Cas(conv(key, "the key"), None, conv(new, "the value"), as_hex)
    key, expected, new = _count(words, 3, 3)
    return Cas(conv(key, "the key"), conv(expected, "EXPECTED"), conv(new, "the value"), as_hex)


async def _cas(s: Session, a: Cas) -> Reply | Outcome:
    s.used_key(a.key)
    swapped, current = await s.clerk.cas(a.key, a.expected, a.new)
    key = shown(a.key, a.hex)
    if swapped:
        return Reply("OK", {"key": key, "swapped": True})
    now = "it does not exist" if current is None else f"its value is {shown(current, a.hex)!r}"
    data = {"key": key, "swapped": False, "value": None if current is None else shown(current, a.hex)}
    return Outcome(EXIT_FAILED, output.dumps(data) if s.json else None, f"cas {key}: not swapped: {now}")


@dataclass(frozen=True)
class Scan:
    prefix: str | bytes
    limit: int | None
    hex: bool = False


def _parse_scan(words: list[str], opts: Opts) -> Scan:
    words = _count(words, 0, 1)
    as_hex = bool(opts.get("--hex"))
    prefix: str | bytes = words[0] if words else ""
    if as_hex:
        prefix = _hex(prefix, "the prefix")
    limit = _int(str(opts["--limit"]), "--limit", 1) if "--limit" in opts else None
    return Scan(prefix, limit, as_hex)


async def _scan(s: Session, a: Scan) -> Reply:
    """Streams: one line per key as the pages come (--json: one object per key)."""
    prefix = a.prefix.encode() if isinstance(a.prefix, str) else a.prefix
    pairs = s.clerk.scan(prefix, a.limit)
    n = 0
    async for key, value in pairs:
        n += 1
        k, v = shown(key, a.hex), shown(value, a.hex)
        s.write(output.dumps({"key": k, "value": v}) if s.json else f"{k}\t{v}")
    return Reply(None, {}) if s.json else Reply(f"({n} key{'s' if n != 1 else ''})" if s.interactive
                                                 else None)


# -- configuration

@dataclass(frozen=True)
class Change:
    what: Any
    wait: bool = False
    force: bool = False         # join --force: the controller does not ask the servers first


def _parse_join(words: list[str], opts: Opts) -> Change:
    groups: dict[int, list[str]] = {}
    for w in _count(words, 1, None):
        gid_text, eq, addrs = w.partition("=")
        servers = [a.strip() for a in addrs.split(",") if a.strip()]
        if not eq or not servers:
            raise UsageError(f"expected GID=ADDR,ADDR,..., got {w!r}")
        gid = _int(gid_text, "a gid", 1, MAX_GID)
        if gid in groups:
            raise UsageError(f"gid {gid} is given twice")
        groups[gid] = servers
    return Change(groups, bool(opts.get("--wait")), bool(opts.get("--force")))


def _parse_leave(words: list[str], opts: Opts) -> Change:
    return Change([_int(w, "a gid", 1, MAX_GID) for w in _count(words, 1, None)],
                  bool(opts.get("--wait")))


def _parse_move(words: list[str], opts: Opts) -> Change:
    shard, gid = _count(words, 2, 2)
    return Change((_int(shard, "the shard", 0, NSHARDS - 1), _int(gid, "the gid", 1, MAX_GID)),
                  bool(opts.get("--wait")))


def _join_unchanged(cfg: Config, groups: dict[int, list[str]]) -> str | None:
    if all(tuple(cfg.groups.get(g, ())) == tuple(s) for g, s in groups.items()):
        names = ", ".join(str(g) for g in groups)
        return f"group{'s' if len(groups) > 1 else ''} {names} already joined with these servers"
    return None


def _leave_unchanged(cfg: Config, gids: list[int]) -> str | None:
    if not any(g in cfg.groups for g in gids):
        return f"group{'s' if len(gids) > 1 else ''} {', '.join(map(str, gids))} not in the configuration"
    return None


def _move_unchanged(cfg: Config, args: tuple[int, int]) -> str | None:
    shard, gid = args
    return f"shard {shard} is already served by group {gid}" if cfg.shards[shard] == gid else None


def _change(method: str, unchanged: Callable[[Config, Any], str | None]) -> Run:
    """join / leave / move: decided from the latest configuration first ("no change: ..."),
    then "OK, configuration N"; with --wait until every shard is Serving at it."""
    async def run(s: Session, a: Change) -> Reply:
        latest = s.saw_config(await s.ctl.query())
        why = unchanged(latest, a.what)
        if why is not None:
            return Reply(f"no change: {why} (configuration {latest.num})",
                         {"ok": True, "changed": False, "config": latest.num, "reason": why})
        fn = getattr(s.ctl, method)
        extra = {"force": True} if a.force else {}
        cfg = s.saw_config(await (fn(*a.what) if method == "move" else fn(a.what, **extra)))
        return await _changed(s, cfg, a.wait)
    return run


async def _changed(s: Session, cfg: Config, wait: bool, said: str = "") -> Reply:
    """The answer to a command that made configuration `cfg` (with --wait: once settled)."""
    data: dict[str, Any] = {"ok": True, "changed": True, "config": cfg.num}
    if wait:
        data["settled"] = await _wait_settled(s, cfg)
    return Reply(f"OK, configuration {cfg.num}{said}", data)


SHARD_SUBCOMMANDS = {"abandon": "give up shards whose previous group is lost for good: "
                                "their owner serves them empty"}
_ABANDON_OPTIONS = {"--yes-lose-data": False, "--wait": False}


@dataclass(frozen=True)
class Abandoning:
    shards: tuple[int, ...]
    confirmed: bool
    wait: bool


def _subcommand(words: list[str], names: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(the subcommand, the words after it) of a command with subcommands (shard, member)."""
    if not words:
        raise UsageError(f"expected a subcommand: {', '.join(names)}")
    sub, *rest = words
    if sub not in names:
        raise UsageError(f"unknown subcommand {sub!r}; expected {', '.join(names)}")
    return sub, rest


def _parse_shard(words: list[str], opts: Opts) -> Abandoning:
    """abandon SHARD [SHARD ...] (the only subcommand so far)."""
    _, rest = _subcommand(words, SHARD_SUBCOMMANDS)
    shards: list[int] = []
    for w in _count(rest, 1, None):
        shard = _int(w, "a shard", 0, NSHARDS - 1)
        if shard in shards:
            raise UsageError(f"shard {shard} is given twice")
        shards.append(shard)
    return Abandoning(tuple(shards), bool(opts.get("--yes-lose-data")), bool(opts.get("--wait")))


def _listed(shards: Sequence[int]) -> str:
    return ("shard " if len(shards) == 1 else "shards ") + ", ".join(map(str, shards))


async def _shard(s: Session, a: Abandoning) -> Reply:
    if not a.confirmed:
        raise CommandFailed(f"shard abandon: not done: it gives up every value of {_listed(a.shards)} "
                            f"for good (their owner serves them empty); if the group that held "
                            f"them is lost for good, run it again with --yes-lose-data")
    cfg = s.saw_config(await s.ctl.abandon(a.shards))
    return await _changed(s, cfg, a.wait, f": {_listed(a.shards)} abandoned, served empty")


def _settled(st: output.ClusterStatus) -> tuple[int, int]:
    """(shards settled, shards assigned): Serving at their owner in `st`'s configuration."""
    rows = [r for r in st.shards if r.gid]
    return sum(r.status == "Serving" for r in rows), len(rows)


async def _wait_settled(s: Session, cfg: Config) -> bool:
    """Until every assigned shard is Serving at its owner of `cfg` (bounded by the timeout)."""
    while True:
        st = await s.probe.status(cfg)
        done, total = _settled(st)
        if s.progress is not None:
            keys = sum(r.keys or 0 for r in st.shards if r.status == "Serving")
            s.progress.write(f"\r\033[Kwaiting: {done}/{total} shards serving at configuration "
                             f"{cfg.num}, {keys} keys in place")
            s.progress.flush()
        if done == total:
            _erase(s.progress)
            return True
        if time.monotonic() > s.deadline:
            _erase(s.progress)
            raise CommandFailed(f"configuration {cfg.num} is in place but only {done} of {total} "
                                f"shards are serving after the timeout; see status")
        await asyncio.sleep(WAIT_POLL_S)


def _erase(stream: TextIO | None) -> None:
    if stream is not None:
        stream.write("\r\033[K")
        stream.flush()


def _parse_query(words: list[str], opts: Opts) -> int:
    _count(words, 0, 1)
    return _int(words[0], "the configuration number", -1) if words else -1


async def _query(s: Session, num: int) -> Reply:
    cfg = await s.ctl.query(num)
    if num == -1:
        s.saw_config(cfg)
    elif cfg.num != num:
        raise CommandFailed(f"configuration {num} does not exist yet (the latest is {cfg.num})")
    return Reply(output.format_query(cfg), output.query_json(cfg))


# -- status, bench

def _no_args(words: list[str], opts: Opts) -> None:
    _count(words, 0, 0)


async def _status(s: Session, _: None) -> Reply:
    cfg = s.saw_config(await s.ctl.query())
    st = await s.probe.status(cfg, membership=True)
    return Reply(output.format_status(st), output.status_json(st))


BENCH_OPTIONS = {"-n": True, "-c": True, "--value-size": True, "--reads": True, "--keys": True,
                 "--prefix": True, "--keep": False, "--unary": False}


def _parse_bench(words: list[str], opts: Opts) -> Any:
    from . import bench
    argv = list(words) + [x for o, v in opts.items() if o in BENCH_OPTIONS
                          for x in ([o] if v is True else [o, str(v)])]
    try:
        return bench.parse_args(argv)
    except ValueError as e:
        raise UsageError(str(e)) from None


async def _bench(s: Session, opts: Any) -> Outcome:
    from . import bench
    result = await bench.run(s, opts)
    text = output.dumps(output.bench_json(result)) if s.json else output.format_bench(result)
    if result.interrupted:
        return Outcome(EXIT_FAILED, text, "cancelled: the summary above is of the requests made")
    if result.failed:
        return Outcome(EXIT_FAILED, text, f"bench: {result.failed} of {result.requests} requests failed")
    return Outcome(EXIT_OK, text)


# -- member: a group's Raft membership (eraftd/members.py does the work)

MEMBER_OPS: dict[str, tuple[str, str]] = {   # name -> (usage, help)
    "list": ("member list GID|ctrl", "the group's members: voters and learners, and how far each is "
                                     "behind the leader"),
    "add": ("member add GID|ctrl ADDR [--learner] [--timeout DURATION]",
            "add the node at ADDR as a learner, wait until it has caught up, make it a voter"),
    "promote": ("member promote GID|ctrl ADDR|ID", "make a learner a voter, once it has caught up"),
    "remove": ("member remove GID|ctrl ADDR|ID",
               "take a member out of the group (a leader hands over to another voter first)"),
    "replace": ("member replace GID|ctrl ADDR",
                "the member at ADDR came back with an empty disk: remove it, add it again as a "
                "new member, promote it once caught up"),
}
MEMBER_USAGE = "member list|add|promote|remove|replace GID|ctrl [ADDR|ID] [--learner]"
MEMBER_MORE = "\n".join(
    [f"  {u}: {h}" for u, h in MEMBER_OPS.values()]
    + ["GID|ctrl: a shardkv group's gid, or ctrl for the controller group; ID: a member's id "
       "(member list shows them)",
       "--learner: add only, do not promote; --timeout: the whole command (add and replace: "
       f"default {mb.DEFAULT_WAIT_S:g}s, catching up included)",
       "the node to add runs already, started with join = true in its TOML (eraft.toml.example, "
       "\"Joining\")"])


@dataclass(frozen=True)
class MemberArgs:
    op: str
    group: int
    member: str | int | None = None
    learner: bool = False
    wait: float | None = None          # --timeout, in seconds


def _parse_member(words: list[str], opts: Opts) -> MemberArgs:
    op, rest = _subcommand(words, MEMBER_OPS)
    sub_usage = MEMBER_OPS[op][0].split(" [")[0]
    want = 1 if op == "list" else 2
    if len(rest) != want:
        raise UsageError(f"expected {sub_usage}, got {len(rest)} word{'s' if len(rest) != 1 else ''} "
                         f"after {op}")
    if opts.get("--learner") and op != "add":
        raise UsageError("--learner goes only with member add")
    try:
        group = mb.parse_group(rest[0])
        member = mb.parse_member(rest[1], address_only=op in ("add", "replace")) if want == 2 else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    wait = parse_duration(str(opts["--timeout"])) / 1000 if "--timeout" in opts else None
    return MemberArgs(op, group, member, bool(opts.get("--learner")), wait)


async def _member(s: Session, a: MemberArgs) -> Reply:
    mc = s.members
    # the whole command's time: --timeout, else the session's (add and replace: their own)
    timeout = a.wait if a.wait is not None else (
        mb.DEFAULT_WAIT_S if a.op in ("add", "replace") else s.timeout)
    if a.op == "list":
        ms = await mc.members(a.group, timeout=timeout)
        return Reply(output.format_members(ms), output.members_json(ms))

    def step(text: str) -> None:           # a step done: printed as it happens
        s.activity = ""
        if not s.json:
            _erase(s.progress)
            s.write(text)

    def progress(text: str) -> None:       # what it waits for: the spinner says it
        s.activity = text

    if a.op == "add":
        done = await mc.add(a.group, str(a.member), a.learner, timeout, progress, step)
    elif a.op == "replace":
        done = await mc.replace(a.group, str(a.member), timeout, progress, step)
    else:
        assert a.member is not None
        done = await getattr(mc, a.op)(a.group, a.member, timeout, progress, step)
    return Reply(None, output.member_done_json(done))


# -- the shell itself

def _parse_help(words: list[str], opts: Opts) -> str | None:
    _count(words, 0, 1)
    if words and words[0] not in COMMANDS:
        raise UsageError(f"no command {words[0]!r}; the commands: {', '.join(COMMANDS)}")
    return words[0] if words else None


def help_text(name: str | None) -> str:
    """`help` (every command) or `help NAME` (its usage, options and notes)."""
    if name is None:
        return output.format_help([(c.usage, c.help) for c in COMMANDS.values() if c.name != "quit"])
    c = COMMANDS[name]
    lines = ["usage: " + c.usage, c.help] + ([c.more] if c.more else [])
    lines.append("options: " + " ".join(sorted(c.options)) + (" " if c.options else "")
                 + "--json --timeout DURATION --help (-h)")
    lines.append("a word is an option only if it is one of these names; after -- every word is a word")
    return "\n".join(lines)


async def _help(s: Session, name: str | None) -> Reply:
    return Reply(help_text(name), {"help": help_text(name)})


async def _exit(s: Session, _: Any) -> Outcome:
    return Outcome(leave=True)


BENCH_USAGE = ("bench [N [CLIENTS]] [-n REQUESTS] [-c CLIENTS] [--value-size BYTES] "
               "[--reads PERCENT] [--keys KEYSPACE] [--prefix PREFIX] [--keep] [--unary] [--json]")
_WAIT = {"--wait": False}
_WAIT_MORE = ("--wait: then wait until every shard is Serving at the new configuration "
              "(bounded by --timeout)")
_HEX_MORE = "--hex: KEY (and VALUE) are hex digits, for binary data"

COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("put", "put KEY VALUE | put KEY --file FILE | put KEY -", "store VALUE under KEY",
            (suggest.KEY, suggest.VALUE), _parse_key_value, _write("put"), options=_VALUE_OPTIONS,
            more="- reads the value from stdin (one-shot mode); " + _HEX_MORE),
    Command("get", "get KEY", "print the value of KEY (missing: (nil) in the shell, nothing elsewhere)", (suggest.KEY,), _parse_key, _get, options={"--hex": False},
            more="--hex: KEY is hex and the value prints as hex; a missing key exits 0"),
    Command("append", "append KEY VALUE | append KEY --file FILE | append KEY -",
            "add VALUE to the end of KEY's value", (suggest.KEY, suggest.VALUE), _parse_key_value,
            _write("append"), options=_VALUE_OPTIONS, more="- reads stdin (one-shot mode); " + _HEX_MORE),
    Command("delete", "delete KEY", "remove KEY (no change if it does not exist)", (suggest.KEY,),
            _parse_key, _delete, options={"--hex": False}),
    Command("exists", "exists KEY", "print yes or no", (suggest.KEY,), _parse_key, _exists,
            options={"--hex": False}),
    Command("cas", "cas KEY EXPECTED NEW | cas KEY --absent NEW",
            "set KEY to NEW only if its value is EXPECTED (--absent: only if it has none)",
            (suggest.KEY, suggest.VALUE, suggest.VALUE), _parse_cas, _cas,
            options={"--absent": False, "--hex": False},
            more="not swapped: exit 1 and the current value on stderr"),
    Command("scan", "scan [PREFIX] [--limit N]", "list the keys starting with PREFIX, in key order",
            (suggest.KEY,), _parse_scan, _scan, options={"--limit": True, "--hex": False},
            more="one line per key: KEY<TAB>VALUE (--json: one object per key), as they come"),
    Command("join", "join GID=ADDR,ADDR,... [GID=...] [--wait] [--force]",
            "add replica groups; shards are rebalanced",
            (suggest.GROUP_SPEC,), _parse_join, _change("join", _join_unchanged),
            options={**_WAIT, "--force": False}, repeat=True,
            more="e.g. join 101=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003\n" + _WAIT_MORE + "\n"
                 "the controller first asks each new group's servers: refused when none answers "
                 "as a replica of that gid;\n--force: join anyway (servers not started yet)"),
    Command("leave", "leave GID [GID ...] [--wait]", "remove groups; their shards go to the others",
            (suggest.GID,), _parse_leave, _change("leave", _leave_unchanged), options=_WAIT,
            repeat=True, more=_WAIT_MORE),
    Command("move", "move SHARD GID [--wait]", f"give shard SHARD (0..{NSHARDS - 1}) to group GID",
            (suggest.SHARD, suggest.GID), _parse_move, _change("move", _move_unchanged), options=_WAIT,
            more=_WAIT_MORE),
    Command("shard", "shard abandon SHARD [SHARD ...] --yes-lose-data [--wait]",
            "give up shards whose previous group is lost for good: their owner serves them empty",
            (suggest.SUBCOMMAND, suggest.SHARD), _parse_shard, _shard, options=_ABANDON_OPTIONS,
            repeat=True, subcommands=SHARD_SUBCOMMANDS,
            more="every value of those shards is gone for good; refused without --yes-lose-data, "
                 "and refused while\nthe shard's previous owner still answers (let the move finish "
                 "instead) or its owner does not;\nshown by query and status; " + _WAIT_MORE),
    Command("query", "query [NUM] [--json]", "show configuration NUM (default: the latest)",
            (suggest.CONFIG_NUM,), _parse_query, _query),
    Command("status", "status [--json]", "every node (process), controller peer and replica, then every shard",
            (), _no_args, _status, more="a node that does not answer within a second is listed as down"),
    Command("bench", "bench [N [CLIENTS]] [OPTIONS]",
            "measure put/get throughput and latency (default 1000 requests, 16 clients)",
            (suggest.NOTHING, suggest.NOTHING), _parse_bench, _bench, options=BENCH_OPTIONS,
            more=BENCH_USAGE + "\n--unary: one eRaft-compatible Command call per request instead of "
                               "the native batched path; --reads: the percentage of gets;\n"
                               "the keys are D + PREFIX + I (default __bench/, D = 0-9 spreads them over the "
                               "shards), deleted at the end unless --keep; Ctrl-C prints the summary so far"),
    Command("member", MEMBER_USAGE, "list, add, promote, remove or replace a group's replicas",
            (suggest.SUBCOMMAND, suggest.MEMBER_GROUP, suggest.MEMBER), _parse_member, _member,
            options={"--learner": False}, more=MEMBER_MORE,
            subcommands={name: h for name, (_, h) in MEMBER_OPS.items()}, bounds_itself=True),
    Command("help", "help [COMMAND]", "list the commands, or explain one (also COMMAND --help)",
            (suggest.TOPIC,), _parse_help, _help, cluster=False),
    Command("exit", "exit", "leave the shell (also quit, Ctrl-D)", (), _no_args, _exit,
            oneshot=False, cluster=False),
    Command("quit", "quit", "leave the shell", (), _no_args, _exit, oneshot=False, cluster=False),
]}

GRAMMAR: dict[str, Grammar] = {name: c.grammar for name, c in COMMANDS.items()}


# ---------------------------------------------------------------- dispatch

def plain(e: BaseException) -> str:
    """A failure in plain words, one line: no status code names, no b'' reprs."""
    return rpc_problem(e)


async def execute(session: Session, line: str) -> Outcome:
    """Run one line of the shell."""
    try:
        words = shlex.split(line)
    except ValueError as e:        # an unclosed quote
        return Outcome(EXIT_USAGE, error=f"cannot split the line into words: {str(e).lower()}")
    if not words:
        return Outcome()
    return await run_words(session, words)


def answer_offline(words: Sequence[str], as_json: bool = False) -> Outcome | None:
    """`help [CMD]`, `CMD --help` and `CMD -h` (before any --): answered without a cluster
    (one-shot mode asks this before looking for controller addresses); None for the rest."""
    name, *args = words
    cmd = COMMANDS.get(name)
    if cmd is None:
        return None
    try:
        plain_words, opts = split_options(args, {**cmd.options, **COMMON_OPTIONS})
    except UsageError:
        return None
    as_json = as_json or bool(opts.get("--json"))
    if opts.get("--help") or opts.get("-h"):
        topic: str | None = name
    elif name == "help":
        try:
            topic = _parse_help(plain_words, opts)
        except UsageError as e:
            return _failed(EXIT_USAGE, f"help: {e}; usage: {cmd.usage}", as_json)
    else:
        return None
    text = help_text(topic)
    return Outcome(EXIT_OK, output.dumps({"help": text}) if as_json else text)


async def run_words(session: Session, words: Sequence[str]) -> Outcome:
    name, *args = words
    cmd = COMMANDS.get(name)
    if cmd is None:
        return Outcome(EXIT_USAGE, error=f"unknown command {name!r}; type help for the commands")
    if (offline := answer_offline(words, session.json)) is not None:
        return offline
    as_json = session.json
    try:
        plain_words, opts = split_options(args, {**cmd.options, **COMMON_OPTIONS})
        as_json = as_json or bool(opts.get("--json"))
        limit = session.timeout
        if "--timeout" in opts:
            try:
                limit = parse_duration(str(opts["--timeout"])) / 1000
            except DurationError as e:
                raise UsageError(f"--timeout: {e}") from None
            if limit <= 0:
                raise UsageError("--timeout: must be more than 0")
        parsed = cmd.parse(plain_words, opts)
        if cmd.cluster and (down := session.unreachable()):
            raise CommandFailed(f"{name}: not tried: the controllers do not answer ({down}); "
                                f"check that they run, or wait for the prompt to recover")
        saved, session.json = session.json, as_json
        session.deadline = time.monotonic() + limit
        # the clients bound every call by the session's timeout and say what they tried; a
        # shorter --timeout of this command bounds it from outside (--wait says itself what
        # is missing, so it gets a little longer)
        grace = WAIT_GRACE_S if opts.get("--wait") or cmd.bounds_itself else 0.0
        outer = limit + grace if "--timeout" in opts or opts.get("--wait") else None
        session.activity = ""
        try:
            async with asyncio.timeout(outer):
                result = await _with_spinner(session, cmd, line_of(words), cmd.run(session, parsed))
        finally:
            session.json = saved
    except UsageError as e:
        return _failed(EXIT_USAGE, f"{name}: {e}; usage: {cmd.usage}", as_json)
    except ControllerError as e:
        return _failed(EXIT_FAILED, f"refused by the controller: {plain(e)}", as_json)
    except TimeoutError:
        return _failed(EXIT_FAILED, f"{name}: no answer within {limit:g} s; "
                                    f"see status, or try again with a longer --timeout", as_json)
    except (CommandFailed, ControllerUnavailable, ShardKVError, ShardKVUnavailable, Error,
            grpc.aio.AioRpcError, OSError) as e:
        return _failed(EXIT_FAILED, plain(e), as_json)
    except asyncio.CancelledError:
        raise
    except Exception as e:      # a bug: still one line, never a traceback
        return _failed(EXIT_FAILED, f"{name} failed unexpectedly: {type(e).__name__}: {plain(e)}",
                       as_json)
    return _finish(session, result, as_json)


def line_of(words: Sequence[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def _failed(code: int, error: str, as_json: bool) -> Outcome:
    return Outcome(code, output.dumps({"error": error}) if as_json else None, error)


def _finish(session: Session, result: Any, as_json: bool) -> Outcome:
    if isinstance(result, Outcome):
        return result
    if isinstance(result, Reply):
        if as_json:
            return Outcome(EXIT_OK, output.dumps(result.data) if result.data else None)
        if result.nil:
            return Outcome(EXIT_OK, NIL if session.interactive else None)
        return Outcome(EXIT_OK, result.text)
    return Outcome(EXIT_OK, result)


async def _with_spinner(session: Session, cmd: Command, line: str, work: Awaitable[Any]) -> Any:
    """On a terminal, after `spinner_after` s a line saying what is being tried; erased at the end."""
    stream = session.progress
    if stream is None or not cmd.cluster or cmd.name == "bench":
        return await work
    task = asyncio.ensure_future(work)
    shown_spinner = False
    start = time.monotonic()
    frames = "|/-\\"
    try:
        done, _ = await asyncio.wait({task}, timeout=session.spinner_after)
        i = 0
        while not done:
            shown_spinner = True
            stream.write(f"\r\033[K{frames[i % 4]} {line}: "
                         f"{session.activity or 'waiting for the cluster'} "
                         f"({time.monotonic() - start:.0f} s; Ctrl-C cancels)")
            stream.flush()
            i += 1
            done, _ = await asyncio.wait({task}, timeout=0.25)
        return task.result()
    finally:
        if not task.done():
            task.cancel()
        if shown_spinner:
            _erase(stream)
