"""A shardkv group's state, pure: shard states, configuration steps, deduplication, commands.

No I/O, no clock, no randomness, no dependence on set or dict iteration order: replicas that
apply the same commands in the same order reach the same state.  The key-value data itself
lives in the node's RocksDB, so the commands read and write it through a `Store` (the machine
gives one that stages into the round's batch; tests give a dict); everything else (configs,
shard states, sessions, counters) is held here, and `dirty` says what changed since the
machine last persisted it.

Shard states (eRaft's): SERVING (ours and here, or not ours and holding nothing), PULLING
(ours since the current configuration, data not here yet), BEPULLING (ours until the current
configuration: kept frozen for the new owner), GCING (arrived; the old owner not yet told to
delete).  A group takes configuration n + 1 only once every shard is SERVING again.

A group acts only on configurations in which its own servers are groups[gid] (`is_ours`: the
listed servers share an address with the group's own): a configuration that lists the gid
with other servers (a re-join of the gid elsewhere, which the controller now refuses, or an
old history that holds one) is taken with the group owning nothing in it, so it neither takes
shards as empty nor pulls what belongs to the other servers.  Whether a configuration is ours
is decided by the leader that proposes it and recorded in the log entry (machine.py), so
replicas whose TOML peers differ (a member added later) still apply the same thing.

Abandoned shards (`shard abandon`, Config.abandoned: shard -> the configuration m that gave
up its data): a group at configuration n < m that waits on such a shard (PULLING: from a lost
group; BEPULLING: for a lost group to pull; GCING: to tell a lost group to delete) stops
waiting (`apply_abandoned`): PULLING and BEPULLING shards are cleared (served empty if ours,
with empty session tables), GCING ones keep their data; all become SERVING.

Deduplication is per (shard, client), so the table travels with its shard and goes with it.
A Session remembers `floor` (every seq below it counts as applied) and the applied seqs at or
above it.  eRaft's clients, one command in flight per client id, send floor = seq = their
command id, which is eRaft's "highest applied id" rule; eraftd's clerk pipelines and sends its
lowest unacknowledged seq as the floor, so a later seq applying first never makes an earlier
one look like a duplicate.

An APPEND whose result would be longer than max_value_bytes is refused when it applies
(the bound comes in the log entry, from the leader that proposed it, so every replica refuses
the same ones; a refusal changes nothing and is not recorded).  eRaft's clerk numbers its
commands from 0, so its entries count seq 0 as a command (first_seq=0); a negative command id
never reaches the log.

Operations beyond eRaft's (the native path only): DELETE (OK = the key existed, NO_KEY = it
did not), EXISTS (a read: OK / NO_KEY), CAS (set the value if it equals `expected`) and
CAS_ABSENT (set it if the key is absent: create-if-missing); a CAS answers OK (swapped),
ERR_MISMATCH with the current value, or ERR_NO_KEY (not swapped: absent).  An absent key is
not an empty value: a CAS expecting b"" does not swap an absent key.

Exactly-once outcomes without remembering them: a session records the seq of a write only
when it changed the data (a put, an append, a delete of a present key, a CAS that swapped).
So a deduplicated retry answers OK, which is then the original outcome (existed / swapped).
A write that changed nothing (a delete of an absent key, a CAS that did not swap) is not
recorded: a retry of it runs again as a new attempt, which is linearizable (the first attempt
had no effect, so the op takes effect at the retry, inside the client's call) and exact (the
client takes the answer of its last attempt; an earlier copy in the log is either before it,
and so already seen by it, or never applied).  Session, its encodings and its migration are
unchanged: no outcome needs a byte of storage.

Sessions expire (eraftd/sessions.py: the time comes from the log): `tick` takes an entry's
stamp and ttl; a session idle longer than the ttl is dropped (from the SERVING and GCING
shards: a frozen BEPULLING shard keeps what its new owner pulls; a PULLING one gets its
sessions as they arrive, each with the time it had been idle at the old owner, so last used
at the insert's clock minus that: an idle time, not the old owner's clock, which may differ
(a chunk from before says none: used on arrival); the shard's table is put in last-use order
when the last chunk is in).  Each shard's table is in last-use
order, so the sweep looks at the oldest only.  Every applied write of a session, a
deduplicated retry or one that changed nothing included, is a use.  A native write says
whether its client has had an answer to a write of its session on the shard (`opened`, one
per op): such a write that finds no session belongs to a session that expired, and is
answered ERR_SESSION_EXPIRED, not applied: one of the writes made in it may be this very one,
applied before the session was forgotten.  (Not "is this the session's first seq": the
clerk pipelines, so a later seq may well open the session.)  eRaft's
calls carry no such number: their session is opened by any write, so their highest-command-id
rule holds while it lives (a retry that comes after its session expired applies again; with
the default hour, long after eRaft's clerk gave up on it).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

from ..controller.state import NSHARDS, Config
from ..sessions import AppliedClock, expire, touch

# the wire's answers (eRaft's strings)
OK = "OK"
ERR_NO_KEY = "ErrNoKey"
ERR_WRONG_GROUP = "ErrWrongGroup"
ERR_WRONG_LEADER = "ErrWrongLeader"
ERR_OUTDATED = "ErrOutDated"
ERR_TIMEOUT = "ErrTimeout"
ERR_NOT_READY = "ErrNotReady"

ERR_MISMATCH = "ErrMismatch"         # a CAS that did not swap: the key holds another value
ERR_SESSION_EXPIRED = "ErrSessionExpired"   # a native write of a session this shard forgot

# operations (the wire's numbering)
PUT, APPEND, GET, DELETE, EXISTS, CAS, CAS_ABSENT = 0, 1, 2, 3, 4, 5, 6
OP_NAMES = {PUT: "put", APPEND: "append", GET: "get", DELETE: "delete", EXISTS: "exists",
            CAS: "cas", CAS_ABSENT: "cas"}
UNARY_KINDS = (PUT, APPEND, GET)                     # eRaft's Command path
NATIVE_KINDS = tuple(OP_NAMES)                       # the KVBatch path
READ_KINDS = (GET, EXISTS)                           # served after a read barrier, no log entry
_KIND_WORDS = {PUT: "PUT", APPEND: "APPEND", GET: "GET", DELETE: "DELETE", EXISTS: "EXISTS",
               CAS: "CAS", CAS_ABSENT: "CAS_ABSENT"}

# shard states
SERVING, PULLING, BEPULLING, GCING = 0, 1, 2, 3
STATUS_NAMES = ("Serving", "Pulling", "BePulling", "GCing")
NOBODY = -1                  # a gid no configuration assigns a shard to


def is_ours(cfg: Config, gid: int, own: Iterable[str]) -> bool:
    """Whether `cfg` counts the group whose servers are `own` as its gid: gid absent (it owns
    nothing there anyway), or listed with servers of which at least one is the group's own (a
    group whose membership changed one server at a time keeps its configurations)."""
    servers = cfg.groups.get(gid)
    return servers is None or not set(servers).isdisjoint(own)


def key2shard(key: bytes) -> int:
    """eRaft's: the first byte of the key's UTF-8 encoding mod NSHARDS; 0 for the empty key."""
    return key[0] % NSHARDS if key else 0


@dataclass
class Session:
    floor: int = 0
    applied: set[int] = field(default_factory=set)
    last_used: int = 0        # the applied clock (ms) at its latest use; 0 = before any stamp

    def seen(self, seq: int) -> bool:
        return seq < self.floor or seq in self.applied

    def record(self, seq: int | None, floor: int) -> None:
        """seq applied (None: nothing applied, only the floor moves)."""
        if floor > self.floor:
            self.floor = floor
            self.applied = {s for s in self.applied if s >= floor}
        if seq is not None and seq >= self.floor:
            self.applied.add(seq)

    def max_applied(self) -> int:
        return max(self.applied, default=self.floor - 1)


@dataclass
class Shard:
    status: int = SERVING
    cursor: bytes = b""       # PULLING: how far the inserted chunks reach
    keys: int = 0
    bytes: int = 0
    sessions: dict[int, Session] = field(default_factory=OrderedDict)   # in last-use order

    def __post_init__(self) -> None:
        if not isinstance(self.sessions, OrderedDict):
            self.sessions = in_use_order(self.sessions)


def in_use_order(sessions: dict[int, Session]) -> "OrderedDict[int, Session]":
    """A session table in last-use order (ties in the order given), as a sweep needs it."""
    return OrderedDict(sorted(sessions.items(), key=_last_used_of_item))


def _last_used_of_item(item: tuple[int, Session]) -> int:
    return item[1].last_used


class Store(Protocol):
    """The key-value data of the shards, as the commands of one round see it."""

    def get(self, shard: int, key: bytes) -> bytes | None: ...
    def put(self, shard: int, key: bytes, value: bytes) -> None: ...
    def delete(self, shard: int, key: bytes) -> None: ...
    def clear(self, shard: int) -> None:
        """Delete the shard's data and sessions."""


@dataclass
class Dirty:
    """What changed since the machine last persisted: it writes these and resets them."""
    configs: bool = False
    clock: bool = False
    shards: set[int] = field(default_factory=set)               # status / cursor / counters
    sessions: set[tuple[int, int]] = field(default_factory=set)  # (shard, client): written or dropped


class ShardKVState:
    def __init__(self, gid: int, config: Config | None = None, prev: Config | None = None,
                 shards: list[Shard] | None = None, member: bool = True,
                 clock: AppliedClock | None = None) -> None:
        self.gid = gid
        self.clock = clock or AppliedClock()
        self.expired = 0                            # sessions dropped since start (a counter)
        self.config = config or Config()
        self.prev = prev or Config()
        self.member = member          # the current configuration lists our servers as gid's
        self.shards = shards if shards is not None else [Shard() for _ in range(NSHARDS)]
        if len(self.shards) != NSHARDS:
            raise ValueError(f"a group has {NSHARDS} shard records, got {len(self.shards)}")
        self.dirty = Dirty()

    # ---------------------------------------------------------------- queries
    @property
    def me(self) -> int:
        """Our gid as the current configuration assigns shards to it (NOBODY when it is not ours)."""
        return self.gid if self.member else NOBODY

    def owns(self, shard: int) -> bool:
        return self.config.shards[shard] == self.me

    def can_serve(self, shard: int) -> bool:
        return self.config.shards[shard] == self.me and self.shards[shard].status in (SERVING, GCING)

    def settled(self) -> bool:
        return all(s.status == SERVING for s in self.shards)

    def shards_in(self, status: int) -> list[int]:
        return [i for i, s in enumerate(self.shards) if s.status == status]

    def held(self) -> list[int]:
        """Shards this group owns or still holds data of."""
        return [i for i, s in enumerate(self.shards) if self.owns(i) or s.status != SERVING]

    def previous_owner(self, shard: int) -> int:
        return self.prev.shards[shard]

    def abandoned_here(self, latest: Config) -> list[int]:
        """The shards we wait on that `latest` says were abandoned after our configuration."""
        return [i for i, sh in enumerate(self.shards)
                if sh.status != SERVING and latest.abandoned.get(i, 0) > self.config.num]

    # ---------------------------------------------------------------- commands
    def tick(self, stamp: int, ttl_ms: int) -> None:
        """An entry stamped `stamp` (ms) with `ttl_ms` applies: the clock takes the stamp
        (never going back) and the sessions idle longer than ttl_ms go (see the module doc)."""
        if self.clock.advance(stamp):
            self.dirty.clock = True
        # every stamped entry looks (at the oldest session of each shard only: cheap); never
        # skipped when the clock stood still, since a shard that became SERVING or GCING
        # since then brings sessions used earlier (a replica restored in between would sweep)
        cutoff = self.clock.cutoff(ttl_ms)
        if not cutoff:
            return
        for i, sh in enumerate(self.shards):
            if sh.sessions and (sh.status == SERVING or sh.status == GCING):
                gone = expire(sh.sessions, cutoff, _last_used)
                if gone:
                    self.dirty.sessions.update((i, c) for c in gone)
                    self.expired += len(gone)

    def apply_ops(self, store: Store, client: int, floor: int, ops: Iterable[tuple],
                  max_value: int | None = None, first_seq: int = 1,
                  opened: Sequence[bool] = ()) -> list[tuple[str, bytes]]:
        """Client operations (kind, key, value, seq) or (kind, key, value, seq, expected)
        (expected: what a CAS compares with); one (err, value) each.  max_value: an APPEND
        whose result would be longer is refused (None: no bound, the entries logged before
        the bound was).  first_seq: the lowest seq that names a write (eRaft's clerk numbers
        its commands from 0; the native path and the older entries from 1).  opened: empty, or
        one per op: the client has had its session on the op's shard (see the module doc)."""
        out: list[tuple[str, bytes]] = []
        gid, cfg_shards, shards = self.me, self.config.shards, self.shards
        dirty_sessions, dirty_shards = self.dirty.sessions, self.dirty.shards
        now = self.clock.now
        for n, op in enumerate(ops):
            if len(op) == 4:
                kind, key, value, seq = op
                expected = b""
            else:
                kind, key, value, seq, expected = op
            s = key[0] % NSHARDS if key else 0
            sh = shards[s]
            if cfg_shards[s] != gid or (sh.status != SERVING and sh.status != GCING):
                out.append((ERR_WRONG_GROUP, b""))
                continue
            if kind == GET or kind == EXISTS:
                v = store.get(s, key)
                if v is None:
                    out.append((ERR_NO_KEY, b""))
                else:
                    out.append((OK, v if kind == GET else b""))
                continue
            sess = None
            if client:
                sessions = sh.sessions
                sess = sessions.get(client)
                if sess is None:
                    if opened and opened[n]:
                        out.append((ERR_SESSION_EXPIRED, b""))   # forgotten: never applied again
                        continue
                    sess = sessions[client] = Session(last_used=now)
                elif sess.last_used != now:
                    sess.last_used = now
                    touch(sessions, client)
                dirty_sessions.add((s, client))
                if sess.seen(seq):
                    out.append((OK, b""))       # it changed the data once: existed / swapped
                    continue
            old = store.get(s, key)
            if kind == PUT or kind == APPEND:
                res = (OK, b"")
                if kind == APPEND and old is not None:
                    if max_value is not None and len(old) + len(value) > max_value:
                        res = (append_too_long(len(old), len(value), max_value), b"")
                    else:
                        value = old + value
            elif kind == DELETE:
                res = (OK, b"") if old is not None else (ERR_NO_KEY, b"")
            elif kind == CAS:
                res = ((ERR_NO_KEY, b"") if old is None else
                       (OK, b"") if old == expected else (ERR_MISMATCH, old))
            elif kind == CAS_ABSENT:
                res = (OK, b"") if old is None else (ERR_MISMATCH, old)
            else:                                   # never proposed (refused before)
                res = (f"unknown op {kind}; nothing stored", b"")
            out.append(res)
            if res[0] != OK:                        # changed nothing: not recorded (see above)
                if sess is not None:
                    sess.record(None, floor)
                continue
            if sess is not None:
                sess.record(seq if seq >= first_seq else None, floor)
            dirty_shards.add(s)
            if kind == DELETE:
                sh.keys -= 1
                sh.bytes -= len(key) + len(old)
                store.delete(s, key)
                continue
            if old is None:
                sh.keys += 1
                sh.bytes += len(key) + len(value)
            else:
                sh.bytes += len(value) - len(old)
            store.put(s, key, value)
        return out

    def apply_config(self, store: Store, cfg: Config, ours: bool = True) -> str:
        """Take configuration num + 1: shards that arrive start PULLING (SERVING when nobody
        had them), shards that leave are kept BEPULLING (dropped when nobody gets them).
        `ours` False: the configuration lists our gid with other servers; we own nothing in it."""
        if cfg.num != self.config.num + 1:
            return ERR_OUTDATED
        if not self.settled():
            return ERR_NOT_READY
        gid, new_gid = self.me, (self.gid if ours else NOBODY)
        for i, sh in enumerate(self.shards):
            old, new = self.config.shards[i], cfg.shards[i]
            if old != gid and new == new_gid:
                self._clear(store, i)               # a clean slate for what arrives
                sh.status = PULLING if old != 0 else SERVING
            elif old == gid and new != new_gid:
                if new != 0:
                    sh.status = BEPULLING
                else:
                    self._clear(store, i)           # every group left: nobody keeps it
            else:
                continue
            self.dirty.shards.add(i)
        self.prev, self.config, self.member = self.config, cfg, ours
        self.dirty.configs = True
        return OK

    def apply_abandoned(self, store: Store, num: int, shards: Iterable[int]) -> str:
        """Stop waiting on shards abandoned after configuration num (see the module doc)."""
        if num == self.config.num:
            for i in sorted(set(shards)):
                if not 0 <= i < NSHARDS:
                    continue
                sh = self.shards[i]
                if sh.status in (PULLING, BEPULLING):
                    self._clear(store, i)
                if sh.status != SERVING:
                    sh.status = SERVING
                    self.dirty.shards.add(i)
        return OK

    def apply_insert(self, store: Store, num: int, shard: int, cursor: bytes, nxt: bytes,
                     kvs: Iterable[tuple[bytes, bytes]], sessions: dict[int, Session],
                     done: bool, idle: dict[int, int] | None = None) -> str:
        """One pulled chunk of a PULLING shard; only the chunk that follows the last one
        inserted applies (a duplicate or stale one is ErrOutDated and changes nothing).
        idle: client -> how long its session had been idle at the old owner (ms; absent:
        used now)."""
        if not (0 <= shard < NSHARDS) or num != self.config.num:
            return ERR_OUTDATED
        sh = self.shards[shard]
        if sh.status != PULLING or sh.cursor != cursor:
            return ERR_OUTDATED
        for k, v in kvs:
            store.put(shard, k, v)
            sh.keys += 1
            sh.bytes += len(k) + len(v)
        now, idle = self.clock.now, idle or {}
        for client in sorted(sessions):
            sess = sessions[client]
            sess.last_used = max(now - idle.get(client, 0), 0) if now else 0
            sh.sessions.pop(client, None)
            sh.sessions[client] = sess
            self.dirty.sessions.add((shard, client))
        sh.cursor = nxt
        if done:
            sh.status, sh.cursor = GCING, b""
            sh.sessions = in_use_order(sh.sessions)     # the sweep's order (once per move)
        self.dirty.shards.add(shard)
        return OK

    def apply_delete(self, store: Store, num: int, shards: Iterable[int]) -> str:
        """The new owner has the shards of configuration num: drop our BEPULLING copies."""
        if num == self.config.num:
            for i in sorted(set(shards)):
                if 0 <= i < NSHARDS and self.shards[i].status == BEPULLING:
                    self._clear(store, i)
                    self.shards[i].status = SERVING
                    self.dirty.shards.add(i)
        return OK

    def apply_gc_done(self, num: int, shards: Iterable[int]) -> str:
        """The old owner deleted the shards we pulled at configuration num: GCING -> SERVING."""
        if num == self.config.num:
            for i in sorted(set(shards)):
                if 0 <= i < NSHARDS and self.shards[i].status == GCING:
                    self.shards[i].status = SERVING
                    self.dirty.shards.add(i)
        return OK

    def _clear(self, store: Store, shard: int) -> None:
        sh = self.shards[shard]
        store.clear(shard)
        sh.keys = sh.bytes = 0
        sh.cursor = b""
        self.dirty.sessions.difference_update((shard, c) for c in sh.sessions)
        sh.sessions = OrderedDict()
        self.dirty.shards.add(shard)


def _last_used(s: Session) -> int:
    return s.last_used


def append_too_long(have: int, add: int, limit: int) -> str:
    """Why an APPEND is refused when it applies (the value it would make is too long)."""
    return (f"the value would grow to {have + add} bytes ({have} held + {add} appended), "
            f"longer than the limit of {limit} bytes (max_value_bytes); nothing stored")


@dataclass(frozen=True)
class Limits:
    """The longest key and value accepted ([shardkv] max_key_bytes / max_value_bytes)."""
    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20

    def refuse(self, kind: int, key: bytes, value: bytes, expected: bytes = b"",
               kinds: tuple[int, ...] = NATIVE_KINDS) -> str | None:
        """Why this operation is refused (one line), or None.  `kinds`: the operations the
        path takes (eRaft's Command path: UNARY_KINDS)."""
        if kind not in kinds:
            names = [f"{_KIND_WORDS[k]} ({k})" for k in kinds]
            return f"unknown op {kind}: expected {', '.join(names[:-1])} or {names[-1]}"
        if len(key) > self.max_key_bytes:
            return (f"key of {len(key)} bytes is longer than the limit of {self.max_key_bytes} "
                    f"bytes (max_key_bytes); nothing stored")
        for what, n in (("value", len(value)), ("expected value", len(expected))):
            if kind not in READ_KINDS and n > self.max_value_bytes:
                return (f"{what} of {n} bytes is longer than the limit of "
                        f"{self.max_value_bytes} bytes (max_value_bytes); nothing stored")
        return None
