"""Tunables of one Raft node, in ticks and bytes (the core knows no clock)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RaftOptions:
    id: int                          # this node's id in its group
    peers: tuple[int, ...]           # the voters' ids at `applied` (empty: a node that waits
                                     # to be added, and learns its group from the leader)
    election_tick: int = 10          # randomised in [election_tick, 2*election_tick)
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20  # bytes of entries in one APP message
    max_inflight_msgs: int = 256     # APP messages in flight to one follower in replicate state
    max_committed_per_ready: int = 1 << 22  # bytes of committed entries handed out in one Ready
    applied: int = 0                 # on restart: the last index the state machine has applied
    learners: tuple[int, ...] = ()   # the learners' ids at `applied`
    promote_lag: int = 1000          # a learner may be promoted once within this many entries

    def __post_init__(self) -> None:
        if set(self.peers) & set(self.learners):
            raise ValueError(f"raft: {sorted(set(self.peers) & set(self.learners))} are both "
                             f"voters and learners")
        if self.heartbeat_tick <= 0 or self.election_tick <= self.heartbeat_tick:
            raise ValueError("raft: need 0 < heartbeat_tick < election_tick")
