"""The shard controller's state, pure: configurations, rebalancing, commands, deduplication.

No I/O, no clock, no randomness, and no dependence on dict or set iteration order: every
replica that applies the same commands in the same order reaches the same configurations.

A configuration is (num, shards, groups): shard s is served by group shards[s] (0 = nobody),
groups maps gid -> server addresses.  Configuration 0 has no groups and every shard on gid 0.
A gid keeps the servers it joined with (only SetServers, below, changes them): a group decides
what it owns by its gid, so new servers under an old gid would replay its history and wedge its
shards.  A
leave that would leave no group while shards are assigned is refused (it would delete every
value).  Abandon(shards) (`eraftd shard abandon`, when the group that held them is lost for
good) moves nothing: the new configuration records, in `abandoned`, that the shards' data
held before it is given up, so that a group waiting to pull them from the lost group (or to
be pulled by it) serves them empty instead; the record is carried into every later
configuration (shard -> the configuration that abandoned it last).  Join and Leave rebalance so that the groups' shard counts differ by at most one while moving
as few shards as possible; Move hands one shard to one group and does not rebalance.
SetServers is the one way a gid's servers change: its replica group changed members (the same
group, its history carried on by the new list), so the next configuration has the same shards
and the new list, which is then the servers the gid keeps (a later re-join must name them).

Commands carry (client_id, command_id); per client the highest applied command id is kept
with its outcome.  A command whose id is not above it is a duplicate: not applied again,
answered with the recorded outcome (the same command) or OK (an older one).  client_id 0 means
"no session": such a command is never deduplicated (nor recorded).

Sessions expire (eraftd/sessions.py: the time comes from the log): `tick` takes a command's
stamp and ttl and drops the sessions idle longer than the ttl (the table is kept in last-use
order, so only the oldest are looked at); applying a command, a duplicate included, is a use.
A command retried after its session expired applies again: the controller's commands are
idempotent in effect or refused the second time (a join of a present gid, a leave of an
absent one), and the default hour is far beyond any client's retries.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence, Union

from ..names import MAX_ADDRESS_CHARS, gid_problem, is_address, shown
from ..sessions import AppliedClock, expire

NSHARDS = 10
OK = "OK"


@dataclass(frozen=True)
class Config:
    num: int = 0
    shards: tuple[int, ...] = (0,) * NSHARDS
    groups: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    abandoned: Mapping[int, int] = field(default_factory=dict)   # shard -> config that abandoned it

    def __post_init__(self) -> None:
        # normalise: shards a tuple of ints, groups ordered by gid with tuple values
        object.__setattr__(self, "shards", tuple(int(g) for g in self.shards))
        object.__setattr__(self, "groups",
                           {int(g): tuple(self.groups[g]) for g in sorted(self.groups)})
        object.__setattr__(self, "abandoned",
                           {int(s): int(self.abandoned[s]) for s in sorted(self.abandoned)})
        if len(self.shards) != NSHARDS:
            raise ValueError(f"a configuration has {NSHARDS} shards, got {len(self.shards)}")

    def shards_of(self, gid: int) -> list[int]:
        return [s for s, g in enumerate(self.shards) if g == gid]


# ---------------------------------------------------------------- commands

@dataclass(frozen=True)
class Join:
    groups: Mapping[int, tuple[str, ...]]    # gid -> servers

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups",
                           {int(g): tuple(self.groups[g]) for g in sorted(self.groups)})


@dataclass(frozen=True)
class Leave:
    gids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "gids", tuple(int(g) for g in self.gids))


@dataclass(frozen=True)
class Move:
    shard: int
    gid: int


@dataclass(frozen=True)
class SetServers:
    """The servers of a present gid are now `servers` (its replica group's membership changed)."""
    gid: int
    servers: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "gid", int(self.gid))
        object.__setattr__(self, "servers", tuple(self.servers))


@dataclass(frozen=True)
class Abandon:
    shards: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shards", tuple(int(s) for s in self.shards))


Op = Union[Join, Leave, Move, SetServers, Abandon]


@dataclass(frozen=True)
class Command:
    op: Op
    client_id: int = 0
    command_id: int = 0


@dataclass(frozen=True)
class Session:
    """The last command applied for one client: its id and its outcome."""
    command_id: int
    err: str
    num: int          # the latest configuration once it applied
    last_used: int = 0    # the applied clock (ms) at its latest use; 0 = before any stamp


@dataclass(frozen=True)
class Applied:
    """What applying one command did: its outcome (err, num) and the changes to persist."""
    err: str
    num: int                         # the latest configuration once the command applied
    config: Config | None = None     # the configuration it created, if any
    session: Session | None = None   # the client's new session record, if any


# ---------------------------------------------------------------- validation

def command_id_problem(command_id: int) -> str | None:
    """Why a client's command id is refused, or None.  eRaft's clerks number their commands
    0, 1, 2, ... and every id not above a client's highest applied one counts as a duplicate
    (answered, not applied), so after a negative id the next lower one would be answered OK
    and never applied."""
    if command_id < 0:
        return (f"command id {command_id} is below 0: number a client's commands 0, 1, 2, ... "
                f"(as eRaft's clerk does); nothing changed")
    return None


def admit(cmd: Command) -> str | None:
    """What is wrong with a new command a client sends, before it is proposed, or None:
    validate(), and the rules that only new commands meet (the log may hold older ones that
    were admitted without them, and applies them as before)."""
    return command_id_problem(cmd.command_id) or validate(cmd.op) or _servers_problem(cmd.op)


def _servers_problem(op: Op) -> str | None:
    """A join's or set-servers' server that is not HOST:PORT (the TOML's address rule)."""
    if isinstance(op, Join):
        verb, groups = "join", op.groups.items()
    elif isinstance(op, SetServers):
        verb, groups = "set-servers", ((op.gid, op.servers),)
    else:
        return None
    for gid, servers in groups:
        for s in servers:
            if not is_address(s):
                return (f"{verb}: gid {gid}: server {shown(s)} is not an address: give HOST:PORT "
                        f"with a port in 1-65535, at most {MAX_ADDRESS_CHARS} characters")
    return None


def validate(op: Op) -> str | None:
    """What is wrong with `op` on its own (before it reaches the log), or None."""
    if isinstance(op, Join):
        if not op.groups:
            return "join: no groups given"
        for gid, servers in op.groups.items():
            if err := _group_problem("join", gid, servers):
                return err
        return None
    if isinstance(op, SetServers):
        if err := _group_problem("set-servers", op.gid, op.servers):
            return err
        # (a join may repeat a server: eRaft's tests do; a new member list names each once)
        twice = [s for i, s in enumerate(op.servers) if s in op.servers[:i]]
        return f"set-servers: gid {op.gid} lists server {twice[0]} twice" if twice else None
    if isinstance(op, Leave):
        if not op.gids:
            return "leave: no gids given"
        seen: set[int] = set()
        for gid in op.gids:
            if problem := gid_problem(gid):
                return f"leave: {problem}"
            if gid in seen:
                return f"leave: gid {gid} is listed twice"
            seen.add(gid)
        return None
    if isinstance(op, Move):
        if not 0 <= op.shard < NSHARDS:
            return f"move: shard {op.shard} is outside 0..{NSHARDS - 1}"
        if problem := gid_problem(op.gid):
            return f"move: {problem}"
        return None
    if isinstance(op, Abandon):
        if not op.shards:
            return "shard abandon: no shards given"
        for i, s in enumerate(op.shards):
            if not 0 <= s < NSHARDS:
                return f"shard abandon: shard {s} is outside 0..{NSHARDS - 1}"
            if s in op.shards[:i]:
                return f"shard abandon: shard {s} is listed twice"
        return None
    return f"unknown operation {op!r}"


def _group_problem(verb: str, gid: int, servers: Sequence[str]) -> str | None:
    """What is wrong with naming `servers` as the servers of `gid`, or None."""
    if problem := gid_problem(gid):
        return f"{verb}: {problem}"
    if not servers:
        return f"{verb}: gid {gid} has an empty server list"
    if any(not s for s in servers):
        return f"{verb}: gid {gid} has an empty server address"
    return None


def check(cfg: Config, op: Op, servers_of: Mapping[int, tuple[str, ...]] | None = None) -> str | None:
    """What is wrong with applying `op` to `cfg`, or None.  `servers_of`: the servers each gid
    had the last time it was in a configuration (ControllerState.servers_of)."""
    err = validate(op)
    if err:
        return err
    if isinstance(op, Join):
        for gid, servers in op.groups.items():
            have = cfg.groups.get(gid)
            if have is not None and set(have) != set(servers):
                return (f"join: gid {gid} is already present with other servers "
                        f"({', '.join(have)}); a gid keeps its servers: join the new servers "
                        f"under a new gid, then make gid {gid} leave")
            had = (servers_of or {}).get(gid)
            if have is None and had is not None and set(had) != set(servers):
                # its new servers would replay the gid's history from configuration 0, take
                # its shards as empty and wedge them (and the old ones could still pull)
                return (f"join: gid {gid} was served by other servers before "
                        f"({', '.join(had)}); a gid keeps its servers: change them with "
                        f"`eraftd member`, or join the new servers under a new gid")
    elif isinstance(op, Leave):
        for gid in op.gids:
            if gid not in cfg.groups:
                return f"leave: gid {gid} is not in configuration {cfg.num}"
        if any(cfg.shards) and set(cfg.groups) <= set(op.gids):
            return (f"leave: {_listing(op.gids)} would leave no group to serve the shards, and "
                    f"their values would be deleted; join another group first")
    elif isinstance(op, SetServers):
        if op.gid not in cfg.groups:
            return f"set-servers: gid {op.gid} is not in configuration {cfg.num}"
    elif isinstance(op, Abandon):
        for s in op.shards:
            if cfg.shards[s] == 0:
                return (f"shard abandon: shard {s} is not assigned to any group in configuration "
                        f"{cfg.num}: nothing would serve it; join a group first")
    elif op.gid not in cfg.groups:
        return f"move: gid {op.gid} is not in configuration {cfg.num}"
    return None


def last_handoff(configs: Sequence[Config], shard: int) -> tuple[int, int]:
    """(from, to): the shard's owner before the last configuration that changed it, and its
    owner in the latest configuration (from = 0 when it never moved between groups)."""
    to = configs[-1].shards[shard]
    for c in reversed(configs[:-1]):
        if c.shards[shard] != to:
            return c.shards[shard], to
    return 0, to


def _listing(gids: Iterable[int]) -> str:
    gids = sorted(gids)
    return f"gid {gids[0]}" if len(gids) == 1 else "gids " + ", ".join(map(str, gids))


# ---------------------------------------------------------------- configurations

def rebalance(shards: Sequence[int], gids: Iterable[int]) -> tuple[int, ...]:
    """Shards spread over `gids` so that counts differ by at most one, with fewest moves.

    Every group keeps what it holds up to its target; the groups that hold the most get the
    larger targets (ties: lower gid); shards of absent groups and the excess are handed out
    in shard order to the groups below target, in gid order.  With more groups than shards,
    some groups get none; with no groups, every shard goes to gid 0.
    """
    live = sorted(set(gids))
    if not live:
        return (0,) * len(shards)
    owned: dict[int, list[int]] = {g: [] for g in live}
    free: list[int] = []
    for s, g in enumerate(shards):
        (owned[g] if g in owned else free).append(s)
    base, extra = divmod(len(shards), len(live))
    by_load = sorted(live, key=lambda g: (-len(owned[g]), g))
    target = {g: base + (1 if i < extra else 0) for i, g in enumerate(by_load)}
    for g in live:
        while len(owned[g]) > target[g]:
            free.append(owned[g].pop())            # a group over target gives up its highest
    free.sort()
    out = list(shards)
    for g in live:
        while len(owned[g]) < target[g]:
            s = free.pop(0)
            owned[g].append(s)
            out[s] = g
    assert not free, f"shards {free} left unassigned"   # targets sum to len(shards)
    return tuple(out)


def next_config(cfg: Config, op: Op) -> Config | None:
    """The configuration after a checked `op`, or None when it changes nothing."""
    if isinstance(op, Join):
        new = {g: s for g, s in op.groups.items() if g not in cfg.groups}
        if not new:
            return None                              # every group already there, same servers
        groups = {**cfg.groups, **new}
        return Config(cfg.num + 1, rebalance(cfg.shards, groups), groups, cfg.abandoned)
    if isinstance(op, Leave):
        gone = set(op.gids)
        groups = {g: s for g, s in cfg.groups.items() if g not in gone}
        return Config(cfg.num + 1, rebalance(cfg.shards, groups), groups, cfg.abandoned)
    if isinstance(op, SetServers):
        if cfg.groups[op.gid] == op.servers:
            return None                              # already its servers
        return Config(cfg.num + 1, cfg.shards, {**cfg.groups, op.gid: op.servers}, cfg.abandoned)
    if isinstance(op, Abandon):
        return Config(cfg.num + 1, cfg.shards, cfg.groups,
                      {**cfg.abandoned, **{s: cfg.num + 1 for s in op.shards}})
    if cfg.shards[op.shard] == op.gid:
        return None
    shards = list(cfg.shards)
    shards[op.shard] = op.gid
    return Config(cfg.num + 1, shards, cfg.groups, cfg.abandoned)


class ControllerState:
    """Every configuration so far, and the session (dedup) table."""

    def __init__(self, configs: Sequence[Config] = (), sessions: Mapping[int, Session] | None = None,
                 clock: AppliedClock | None = None):
        self.configs: list[Config] = list(configs) or [Config()]
        for i, c in enumerate(self.configs):
            if c.num != i:
                raise ValueError(f"configuration {i} is numbered {c.num}")
        # in last-use order (ties by client id), as the sweep needs it
        self.sessions: dict[int, Session] = OrderedDict(
            sorted((sessions or {}).items(), key=lambda cs: (cs[1].last_used, cs[0])))
        self.clock = clock or AppliedClock()
        self.expired = 0                    # sessions dropped since start (a counter)
        self.servers_of: dict[int, tuple[str, ...]] = {}    # derived: gid -> its last servers
        for c in self.configs:
            self.servers_of.update(c.groups)

    @property
    def latest(self) -> Config:
        return self.configs[-1]

    def query(self, num: int) -> Config:
        """Configuration `num`; the latest for -1 (any negative) or a number past it."""
        return self.configs[num] if 0 <= num < len(self.configs) else self.configs[-1]

    def tick(self, stamp: int, ttl_ms: int) -> list[int]:
        """A command stamped `stamp` (ms) with `ttl_ms` applies: the clock takes the stamp
        (never going back); the clients whose sessions were idle longer than ttl_ms, dropped."""
        self.clock.advance(stamp)
        gone = expire(self.sessions, self.clock.cutoff(ttl_ms), lambda s: s.last_used)
        self.expired += len(gone)
        return gone

    def apply(self, cmd: Command) -> Applied:
        cid = cmd.client_id
        if cid:
            s = self.sessions.get(cid)
            if s is not None and cmd.command_id <= s.command_id:
                used = self._use(cid, s)
                if cmd.command_id == s.command_id:
                    return Applied(s.err, s.num, session=used)
                return Applied(OK, self.latest.num, session=used)
        err = check(self.latest, cmd.op, self.servers_of)
        new = None if err else next_config(self.latest, cmd.op)
        if new is not None:
            self.configs.append(new)
            self.servers_of.update(new.groups)
        session = None
        if cid:
            self.sessions.pop(cid, None)                # to the end of the last-use order
            session = self.sessions[cid] = Session(cmd.command_id, err or OK, self.latest.num,
                                                   self.clock.now)
        return Applied(err or OK, self.latest.num, new, session)

    def _use(self, cid: int, s: Session) -> Session | None:
        """A duplicate of client cid's session s applied: now its latest use (None: it was)."""
        if s.last_used == self.clock.now:
            return None
        self.sessions.pop(cid)
        used = self.sessions[cid] = replace(s, last_used=self.clock.now)
        return used
