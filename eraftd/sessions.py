"""Client sessions that expire, deterministically: the time stamp in the log, the applied
clock, the leader's clock and the sweep by last use.  One home for what the shardkv groups and
the controller group share (their own session records stay in their state modules).

Time comes from the log, never from a replica's clock.  A leader wraps each client entry it
proposes (a native batch, the eRaft calls one round took, a controller command) as

    b"T" >Q stamp_ms >Q ttl_ms, then the entry itself

with its wall-clock time (`LeaderClock`) and its `session_ttl_ms`, so every replica applies
the same time and the same ttl whatever its own clock or TOML says.  The applied clock
(`AppliedClock`) is the max of every stamp applied so far: a leader whose clock is behind (a
backwards jump, a new leader that is slower) never moves it back, so nothing dead comes back
and nothing is "used" in the past.  An entry without a stamp (logged before stamps existed)
carries no time: it moves nothing and expires nothing.  `epoch` is the first stamp applied:
a session last used before it (recorded without a time, last_used 0) counts as used then, so
that the first stamp after an upgrade does not expire every older session at once.

A session idle longer than the ttl (applied clock - last use > ttl_ms) is dropped when an
entry applies, on every replica at the same index, and its record deleted with the round's
writes (so a snapshot, which ships the group's data, holds the same sessions as a replica
that applied the log).  Cheaply: each table is kept in last-use order (an OrderedDict: a use
moves the session to the end, which keeps the order by last use since the clock never goes
back), so a sweep looks at the oldest few only (`expire`), never at every session.

A far-forward jump of the leader's wall clock must not expire live sessions en masse; the
bound (`LeaderClock`): a leader's stamps advance at most MAX_RATE (1.1) times as fast as its
monotonic clock since its previous stamp (and a new leader starts from the applied clock), so
after a jump of any size the applied clock runs at most 10% fast until it has caught up: only
sessions idle longer than ttl / 1.1 in real time can expire early (54.5 min of the default
hour), never every session at once.  The same bound closes a real gap slowly: after a whole
cluster was down, or an election, the stamps gain at most 10% on real time until they reach
the wall clock (expiry is late meanwhile, never early).
"""
from __future__ import annotations

import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable

STAMPED = b"T"
DEFAULT_TTL_MS = 3_600_000          # [shardkv] / [controller] session_ttl_ms: one hour
MIN_TTL_MS = 1_000                  # shorter is refused by the config (see config.py)
MAX_RATE = 1.1                      # a leader's stamps run at most this much faster than real time

_STAMP = struct.Struct(">QQ")
_CLOCK = struct.Struct(">QQ")


def stamp_entry(stamp_ms: int, ttl_ms: int, entry: bytes) -> bytes:
    """`entry` as the leader proposes it: with its time and the ttl it applies with."""
    return STAMPED + _STAMP.pack(stamp_ms, ttl_ms) + entry


def unstamp(data: bytes) -> tuple[int | None, int | None, bytes]:
    """(stamp_ms, ttl_ms, the entry inside) of a stamped entry; (None, None, data) otherwise.
    ValueError for a stamp cut short."""
    if data[:1] != STAMPED:
        return None, None, data
    if len(data) < 1 + _STAMP.size + 1:
        raise ValueError("a time stamp with no entry inside")
    stamp, ttl = _STAMP.unpack_from(data, 1)
    return stamp, ttl, data[1 + _STAMP.size:]


@dataclass
class AppliedClock:
    """The group's time as its log says: the max stamp applied (ms; 0 = no stamp yet) and
    the first one (epoch)."""
    now: int = 0
    epoch: int = 0

    def advance(self, stamp: int) -> bool:
        """Take an entry's stamp; whether the clock moved."""
        if stamp <= self.now:
            return False
        if not self.epoch:
            self.epoch = stamp
        self.now = stamp
        return True

    def cutoff(self, ttl_ms: int) -> int:
        """Sessions last used before this (ms) are idle longer than ttl_ms; 0 = none are (no
        time yet).  A last use before the epoch counts as the epoch (see the module doc)."""
        if not self.now or self.now - self.epoch <= ttl_ms:
            return 0
        return self.now - ttl_ms

    def encode(self) -> bytes:
        return _CLOCK.pack(self.now, self.epoch)

    @classmethod
    def decode(cls, raw: bytes | None) -> "AppliedClock":
        if raw is None or len(raw) != _CLOCK.size:
            return cls()
        return cls(*_CLOCK.unpack(raw))


def expire(table: "OrderedDict[Hashable, object]", cutoff: int,
           last_used: Callable[[object], int], limit: int = 0) -> list:
    """Drop from `table` (kept in last-use order) the sessions last used before `cutoff`,
    oldest first (at most `limit` of them, 0 = all); their keys."""
    gone = []
    while table and cutoff:
        key, sess = next(iter(table.items()))
        if last_used(sess) >= cutoff or (limit and len(gone) >= limit):
            break
        del table[key]
        gone.append(key)
    return gone


def touch(table: "OrderedDict[Hashable, object]", key: Hashable) -> None:
    """key was used now: to the end of the last-use order."""
    table.move_to_end(key)


class LeaderClock:
    """The time a leader stamps on what it proposes (see the module doc for the bound):

        stamp = max(applied, previous stamp, min(wall clock, previous + MAX_RATE * elapsed))

    where elapsed is the monotonic time since the previous stamp.  The first stamp of a group
    without any (applied 0) is the wall clock.  When another leader's stamps have applied since
    this node's previous one, it starts again from the applied clock."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._mono = mono
        self._last = 0.0              # the previous stamp (ms, unrounded)
        self._at = 0.0                # its monotonic time (s)

    def stamp(self, applied_ms: int) -> int:
        wall_ms, mono = self._wall() * 1000.0, self._mono()
        if applied_ms > self._last or not self._last:
            if not applied_ms:
                self._last, self._at = wall_ms, mono          # no time yet: the wall clock
                return int(wall_ms)
            self._last, self._at = float(applied_ms), mono    # another leader's, or a restart
        bound = self._last + MAX_RATE * max(0.0, mono - self._at) * 1000.0
        self._last, self._at = max(self._last, min(wall_ms, bound)), mono
        return int(self._last)


class Stamper:
    """What a group's services wrap each client entry with before proposing it: the leader's
    stamp (one LeaderClock per group, shared by its services) and the ttl from its TOML.
    `applied`: the group's applied clock now (ms)."""

    def __init__(self, ttl_ms: int, applied: Callable[[], int],
                 clock: LeaderClock | None = None) -> None:
        self.ttl_ms = ttl_ms
        self.applied = applied
        self.clock = clock or LeaderClock()

    def __call__(self, entry: bytes) -> bytes:
        return stamp_entry(self.clock.stamp(self.applied()), self.ttl_ms, entry)
