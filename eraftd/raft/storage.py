"""The read side of stable storage, as the Raft core sees it, and an in-memory implementation.

The core only *reads* stable storage (to send old entries to lagging
followers and to look up terms); all writes go through Ready and are done by
the driver, which then calls the storage's own write methods.  Log layout:

    [snapshot.index]  first_index() .. last_index()
    the entry at snapshot.index is compacted away but its term is remembered,
    so term(snapshot.index) answers.

MemoryStorage is used by the simulation and as the reference behaviour for
the RocksDB storage in eraftd/node/storage.py.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Protocol

from .messages import ConfState, Entry, HardState, SnapshotMeta, EMPTY_HARD_STATE, EMPTY_SNAPSHOT


_data = itemgetter(2)  # Entry.data


class CompactedError(Exception):
    """The requested index is at or below the snapshot: send a snapshot instead."""


class UnavailableError(Exception):
    """The requested index is past the last stored entry."""


class LogStorage(Protocol):
    def initial_state(self) -> tuple[HardState, SnapshotMeta]: ...
    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi); at least one if lo < hi, then stop once max_bytes is exceeded."""
    def term(self, index: int) -> int: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def snapshot(self) -> SnapshotMeta:
        """The snapshot a leader should send to a follower that needs compacted entries."""


def limit_size(ents: list[Entry], max_bytes: int) -> list[Entry]:
    """Keep a prefix of ents totalling at most max_bytes, but always at least one entry."""
    if not ents:
        return ents
    # fast path (C loops): everything fits, which is the common case on the hot path
    if sum(map(len, map(_data, ents))) + 16 * len(ents) <= max_bytes:
        return ents
    total = 0
    for i, e in enumerate(ents):
        total += len(e.data) + 16
        if total > max_bytes and i > 0:
            return ents[:i]
    return ents


class MemoryStorage:
    """Stable storage held in memory: a snapshot position plus a list of entries after it."""

    def __init__(self) -> None:
        self.hard_state: HardState = EMPTY_HARD_STATE
        self.snap: SnapshotMeta = EMPTY_SNAPSHOT
        self.snap_data: object = None
        # ents[0] is a dummy standing for the snapshot position
        self.ents: list[Entry] = [Entry(0, 0)]

    # -- read side (LogStorage) --
    def initial_state(self) -> tuple[HardState, SnapshotMeta]:
        return self.hard_state, self.snap

    def first_index(self) -> int:
        return self.ents[0].index + 1

    def last_index(self) -> int:
        return self.ents[0].index + len(self.ents) - 1

    def term(self, index: int) -> int:
        off = self.ents[0].index
        if index < off:
            raise CompactedError(index)
        if index - off >= len(self.ents):
            raise UnavailableError(index)
        return self.ents[index - off].term

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        off = self.ents[0].index
        if lo <= off:
            raise CompactedError(lo)
        if hi > self.last_index() + 1:
            raise UnavailableError(hi)
        return limit_size(self.ents[lo - off:hi - off], max_bytes)

    def snapshot(self) -> SnapshotMeta:
        return self.snap

    # -- write side (called by the driver / simulation) --
    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def append(self, ents: list[Entry]) -> None:
        """Append, truncating any conflicting suffix from ents[0].index."""
        if not ents:
            return
        first = self.first_index()
        if ents[-1].index < first:
            return
        if ents[0].index < first:  # already compacted part
            ents = ents[first - ents[0].index:]
        off = ents[0].index - self.ents[0].index
        if off > len(self.ents):
            raise ValueError(f"missing log entry: last {self.last_index()}, appending at {ents[0].index}")
        del self.ents[off:]
        self.ents.extend(ents)

    def apply_snapshot(self, snap: SnapshotMeta, data: object = None) -> None:
        """Replace the log by a snapshot received from the leader."""
        if snap.index <= self.snap.index:
            return
        self.snap = snap
        self.snap_data = data
        self.ents = [Entry(snap.term, snap.index)]

    def create_snapshot(self, index: int, data: object = None,
                        conf: ConfState | None = None) -> SnapshotMeta:
        """Record a snapshot of the state machine at `index` (which must be applied), with the
        membership at that index."""
        if index <= self.snap.index:
            return self.snap
        if index > self.last_index():
            raise UnavailableError(index)
        self.snap = SnapshotMeta(index, self.term(index), conf)
        self.snap_data = data
        return self.snap

    def compact(self, index: int) -> None:
        """Drop entries up to and including `index` (keeping its term as the dummy)."""
        off = self.ents[0].index
        if index <= off:
            return
        if index > self.last_index():
            raise UnavailableError(index)
        i = index - off
        self.ents = [Entry(self.ents[i].term, index)] + self.ents[i + 1:]
