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

Deduplication is per (shard, client), so the table travels with its shard and goes with it.
A Session remembers `floor` (every seq below it counts as applied) and the applied seqs at or
above it.  eRaft's clients, one command in flight per client id, send floor = seq = their
command id, which is eRaft's "highest applied id" rule; eraftd's clerk pipelines and sends its
lowest unacknowledged seq as the floor, so a later seq applying first never makes an earlier
one look like a duplicate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

from ..controller.state import NSHARDS, Config

# the wire's answers (eRaft's strings)
OK = "OK"
ERR_NO_KEY = "ErrNoKey"
ERR_WRONG_GROUP = "ErrWrongGroup"
ERR_WRONG_LEADER = "ErrWrongLeader"
ERR_OUTDATED = "ErrOutDated"
ERR_TIMEOUT = "ErrTimeout"
ERR_NOT_READY = "ErrNotReady"

# operations (the wire's numbering)
PUT, APPEND, GET = 0, 1, 2

# shard states
SERVING, PULLING, BEPULLING, GCING = 0, 1, 2, 3
STATUS_NAMES = ("Serving", "Pulling", "BePulling", "GCing")


def key2shard(key: bytes) -> int:
    """eRaft's: the first byte of the key's UTF-8 encoding mod NSHARDS; 0 for the empty key."""
    return key[0] % NSHARDS if key else 0


@dataclass
class Session:
    floor: int = 0
    applied: set[int] = field(default_factory=set)

    def seen(self, seq: int) -> bool:
        return seq < self.floor or seq in self.applied

    def record(self, seq: int, floor: int) -> None:
        if floor > self.floor:
            self.floor = floor
            self.applied = {s for s in self.applied if s >= floor}
        if seq >= self.floor:
            self.applied.add(seq)

    def max_applied(self) -> int:
        return max(self.applied, default=self.floor - 1)


@dataclass
class Shard:
    status: int = SERVING
    cursor: bytes = b""       # PULLING: how far the inserted chunks reach
    keys: int = 0
    bytes: int = 0
    sessions: dict[int, Session] = field(default_factory=dict)


class Store(Protocol):
    """The key-value data of the shards, as the commands of one round see it."""

    def get(self, shard: int, key: bytes) -> bytes | None: ...
    def put(self, shard: int, key: bytes, value: bytes) -> None: ...
    def clear(self, shard: int) -> None:
        """Delete the shard's data and sessions."""


@dataclass
class Dirty:
    """What changed since the machine last persisted: it writes these and resets them."""
    configs: bool = False
    shards: set[int] = field(default_factory=set)               # status / cursor / counters
    sessions: set[tuple[int, int]] = field(default_factory=set)  # (shard, client)


class ShardKVState:
    def __init__(self, gid: int, config: Config | None = None, prev: Config | None = None,
                 shards: list[Shard] | None = None) -> None:
        self.gid = gid
        self.config = config or Config()
        self.prev = prev or Config()
        self.shards = shards if shards is not None else [Shard() for _ in range(NSHARDS)]
        if len(self.shards) != NSHARDS:
            raise ValueError(f"a group has {NSHARDS} shard records, got {len(self.shards)}")
        self.dirty = Dirty()

    # ---------------------------------------------------------------- queries
    def owns(self, shard: int) -> bool:
        return self.config.shards[shard] == self.gid

    def can_serve(self, shard: int) -> bool:
        return self.config.shards[shard] == self.gid and self.shards[shard].status in (SERVING, GCING)

    def settled(self) -> bool:
        return all(s.status == SERVING for s in self.shards)

    def shards_in(self, status: int) -> list[int]:
        return [i for i, s in enumerate(self.shards) if s.status == status]

    def held(self) -> list[int]:
        """Shards this group owns or still holds data of."""
        return [i for i, s in enumerate(self.shards) if self.owns(i) or s.status != SERVING]

    def previous_owner(self, shard: int) -> int:
        return self.prev.shards[shard]

    # ---------------------------------------------------------------- commands
    def apply_ops(self, store: Store, client: int, floor: int,
                  ops: Iterable[tuple[int, bytes, bytes, int]]) -> list[tuple[str, bytes]]:
        """Client operations (kind, key, value, seq); one (err, value) each."""
        out: list[tuple[str, bytes]] = []
        gid, cfg_shards, shards = self.gid, self.config.shards, self.shards
        dirty_sessions, dirty_shards = self.dirty.sessions, self.dirty.shards
        for kind, key, value, seq in ops:
            s = key[0] % NSHARDS if key else 0
            sh = shards[s]
            if cfg_shards[s] != gid or (sh.status != SERVING and sh.status != GCING):
                out.append((ERR_WRONG_GROUP, b""))
                continue
            if kind == GET:
                v = store.get(s, key)
                out.append((OK, v) if v is not None else (ERR_NO_KEY, b""))
                continue
            if client:
                sess = sh.sessions.get(client)
                if sess is None:
                    sess = sh.sessions[client] = Session()
                elif sess.seen(seq):
                    out.append((OK, b""))
                    continue
                sess.record(seq, floor)
                dirty_sessions.add((s, client))
            old = store.get(s, key)
            if kind == APPEND and old is not None:
                value = old + value
            if old is None:
                sh.keys += 1
                sh.bytes += len(key) + len(value)
            else:
                sh.bytes += len(value) - len(old)
            store.put(s, key, value)
            dirty_shards.add(s)
            out.append((OK, b""))
        return out

    def apply_config(self, store: Store, cfg: Config) -> str:
        """Take configuration num + 1: shards that arrive start PULLING (SERVING when nobody
        had them), shards that leave are kept BEPULLING (dropped when nobody gets them)."""
        if cfg.num != self.config.num + 1:
            return ERR_OUTDATED
        if not self.settled():
            return ERR_NOT_READY
        gid = self.gid
        for i, sh in enumerate(self.shards):
            old, new = self.config.shards[i], cfg.shards[i]
            if old != gid and new == gid:
                self._clear(store, i)               # a clean slate for what arrives
                sh.status = PULLING if old != 0 else SERVING
            elif old == gid and new != gid:
                if new != 0:
                    sh.status = BEPULLING
                else:
                    self._clear(store, i)           # every group left: nobody keeps it
            else:
                continue
            self.dirty.shards.add(i)
        self.prev, self.config = self.config, cfg
        self.dirty.configs = True
        return OK

    def apply_insert(self, store: Store, num: int, shard: int, cursor: bytes, nxt: bytes,
                     kvs: Iterable[tuple[bytes, bytes]], sessions: dict[int, Session],
                     done: bool) -> str:
        """One pulled chunk of a PULLING shard; only the chunk that follows the last one
        inserted applies (a duplicate or stale one is ErrOutDated and changes nothing)."""
        if not (0 <= shard < NSHARDS) or num != self.config.num:
            return ERR_OUTDATED
        sh = self.shards[shard]
        if sh.status != PULLING or sh.cursor != cursor:
            return ERR_OUTDATED
        for k, v in kvs:
            store.put(shard, k, v)
            sh.keys += 1
            sh.bytes += len(k) + len(v)
        for client in sorted(sessions):
            sh.sessions[client] = sessions[client]
            self.dirty.sessions.add((shard, client))
        sh.cursor = nxt
        if done:
            sh.status, sh.cursor = GCING, b""
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
        sh.sessions = {}
        self.dirty.shards.add(shard)


@dataclass(frozen=True)
class Limits:
    """The longest key and value accepted ([shardkv] max_key_bytes / max_value_bytes)."""
    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20

    def refuse(self, kind: int, key: bytes, value: bytes) -> str | None:
        """Why this operation is refused (one line), or None."""
        if kind not in (PUT, APPEND, GET):
            return f"unknown op {kind}: expected PUT (0), APPEND (1) or GET (2)"
        if len(key) > self.max_key_bytes:
            return (f"key of {len(key)} bytes is longer than the limit of {self.max_key_bytes} "
                    f"bytes (max_key_bytes); nothing stored")
        if kind != GET and len(value) > self.max_value_bytes:
            return (f"value of {len(value)} bytes is longer than the limit of "
                    f"{self.max_value_bytes} bytes (max_value_bytes); nothing stored")
        return None
