"""The Raft log: stable storage (read-only here) plus an unstable tail not yet persisted.

Invariants:
  * applied <= committed <= last_index()
  * the unstable part starts at `unstable.offset`; entries below it are in storage
    (or covered by the unstable snapshot, when one is pending);
  * when an unstable snapshot is pending, storage's entries are obsolete: every index at or
    below the snapshot is "compacted", and the log restarts at snapshot.index + 1.
"""
from __future__ import annotations

from typing import Any

from .messages import Entry, SnapshotMeta
from .storage import CompactedError, LogStorage, UnavailableError, limit_size


class Unstable:
    __slots__ = ("snapshot", "snapshot_data", "entries", "offset")

    def __init__(self, offset: int) -> None:
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data: Any = None
        self.entries: list[Entry] = []
        self.offset = offset  # index of entries[0]

    def last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.index
        return None

    def term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.index == i:
                return self.snapshot.term
            return None
        k = i - self.offset
        if k < len(self.entries):
            return self.entries[k].term
        return None

    def truncate_and_append(self, ents: list[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # replace the whole unstable tail; storage's suffix is overwritten when persisted
            self.offset = after
            self.entries = list(ents)
        else:
            self.entries = self.entries[:after - self.offset]
            self.entries.extend(ents)

    def stable_to(self, i: int, t: int) -> None:
        mt = self.term(i)
        if mt is None or mt != t or i < self.offset:
            return
        del self.entries[:i + 1 - self.offset]
        self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.index == i:
            self.snapshot = None
            self.snapshot_data = None

    def restore(self, snap: SnapshotMeta, data: Any) -> None:
        self.offset = snap.index + 1
        self.entries = []
        self.snapshot = snap
        self.snapshot_data = data


class RaftLog:
    def __init__(self, storage: LogStorage, applied: int = 0,
                 max_committed_size: int = 1 << 22) -> None:
        self.storage = storage
        hs, _snap = storage.initial_state()
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = max(hs.commit, first - 1)
        self.applied = max(applied, first - 1)
        if self.applied > self.committed:
            raise ValueError(f"raft log: applied {self.applied} > committed {self.committed}")
        self.max_committed_size = max_committed_size

    # -- positions --
    def first_index(self) -> int:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.last_index()
        if i is not None:
            return i
        return self.storage.last_index()

    def stable_last_index(self) -> int:
        """The last index known to be durable (used for the leader's own progress)."""
        if self.unstable.snapshot is not None:
            return 0
        if self.unstable.entries:
            return self.unstable.offset - 1
        return self.storage.last_index()

    def term_or_none(self, i: int) -> int | None:
        dummy = self.first_index() - 1
        if i < dummy or i > self.last_index():
            return None
        t = self.unstable.term(i)
        if t is not None:
            return t
        try:
            return self.storage.term(i)
        except (CompactedError, UnavailableError):
            return None

    def term(self, i: int) -> int:
        dummy = self.first_index() - 1
        if i < dummy:
            raise CompactedError(i)
        if i > self.last_index():
            raise UnavailableError(i)
        t = self.unstable.term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, t: int) -> bool:
        return self.term_or_none(i) == t

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Is a candidate's log (last index, last term) at least as up to date as ours?"""
        lt = self.last_term()
        return term > lt or (term == lt and lasti >= self.last_index())

    # -- reading entries --
    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), at most max_bytes (but at least one)."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise CompactedError(lo)
        if hi > self.last_index() + 1:
            raise UnavailableError(hi)
        u = self.unstable
        ents: list[Entry] = []
        if lo < u.offset:
            ents = self.storage.entries(lo, min(hi, u.offset), max_bytes)
            if len(ents) < min(hi, u.offset) - lo:
                return ents  # size limit reached inside storage
        if hi > u.offset:
            part = u.entries[max(lo, u.offset) - u.offset:hi - u.offset]
            ents = ents + part if ents else part
        return limit_size(ents, max_bytes)

    def entries_from(self, i: int, max_bytes: int) -> list[Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_bytes)

    def snapshot(self) -> SnapshotMeta:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    # -- changing the log --
    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"raft log: append after {after} is below committed {self.committed}")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents) -> int:
        """Index of the first entry whose term differs from ours (or that we lack); 0 if none."""
        for e in ents:
            if self.term_or_none(e.index) != e.term:
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= `index` whose term is <= `term` (or the first index we know)."""
        while index > 0:
            t = self.term_or_none(index)
            if t is None or t <= term:
                return index
            index -= 1
        return index

    def maybe_append(self, index: int, log_term: int, committed: int, ents) -> tuple[int, bool]:
        """Follower side of APP: returns (last new index, accepted)."""
        if not self.match_term(index, log_term):
            return 0, False
        lastnewi = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise AssertionError(f"raft log: conflict at {ci} <= committed {self.committed}")
            self.append(list(ents[ci - index - 1:]))
        self.commit_to(min(committed, lastnewi))
        return lastnewi, True

    def commit_to(self, tocommit: int) -> None:
        if tocommit > self.committed:
            if self.last_index() < tocommit:
                raise AssertionError(
                    f"raft log: commit {tocommit} is past last index {self.last_index()}")
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Leader: commit max_index only if it is from the current term (Figure 8)."""
        if max_index > self.committed and self.term_or_none(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            raise AssertionError(f"raft log: applied {i} outside [{self.applied}, {self.committed}]")
        self.applied = i

    def next_committed(self) -> list[Entry]:
        if self.unstable.snapshot is not None:
            return []  # apply the snapshot first
        lo = max(self.applied + 1, self.first_index())
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1, self.max_committed_size)

    def has_next_committed(self) -> bool:
        return self.unstable.snapshot is None and self.committed > self.applied

    def restore(self, snap: SnapshotMeta, data: Any) -> None:
        self.committed = snap.index
        self.unstable.restore(snap, data)

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)
        if self.applied < i:
            self.applied = i
