"""The leader's view of one follower: Match/Next, probe/replicate/snapshot state, in-flight window.

PROBE:     one APP at a time until the follower's position is known (`probe_sent` pauses).
REPLICATE: optimistic streaming; Next moves ahead as soon as an APP is sent, bounded by the
           in-flight window (a count of unacknowledged APP messages).
SNAPSHOT:  a snapshot is on its way; nothing else is sent until it is reported done.
"""
from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """Last indexes of the APP messages in flight, oldest first."""
    __slots__ = ("cap", "q")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.q: deque[int] = deque()

    def add(self, last_index: int) -> None:
        self.q.append(last_index)

    def free_le(self, index: int) -> None:
        q = self.q
        while q and q[0] <= index:
            q.popleft()

    def free_first(self) -> None:
        if self.q:
            self.q.popleft()

    def full(self) -> bool:
        return len(self.q) >= self.cap

    def reset(self) -> None:
        self.q.clear()

    def __len__(self) -> int:
        return len(self.q)


class Progress:
    __slots__ = ("match", "next", "state", "pending_snapshot", "recent_active", "probe_sent",
                 "inflights")

    def __init__(self, next_index: int, max_inflight: int, match: int = 0) -> None:
        self.match = match
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.recent_active = False
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged everything up to n; False if that is old news."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an APP whose previous index was `rejected`.

        A rejection at or below Match means either an old answer overtaken by later ones or a
        follower that lost entries it had acknowledged (a wiped disk).  In REPLICATE, one at
        Match itself makes us probe there; if the probe at Match is rejected too, the follower
        did lose them, and Match comes down to what it says it has (etcd-io/raft assumes a
        disk never forgets, and would never send such a follower anything again).  Lowering
        Match is safe: the commit index never goes back, and a follower that did have the
        entries just acknowledges them again."""
        if self.state == ProgressState.REPLICATE:
            if rejected < self.match:
                return False  # stale rejection
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # stale: not the probe we sent last
        if rejected <= self.match:
            self.match = min(match_hint, rejected - 1)
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def __repr__(self) -> str:
        return (f"Progress({self.state.name} match={self.match} next={self.next} "
                f"inflight={len(self.inflights)} active={self.recent_active})")
