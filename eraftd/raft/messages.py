"""Plain data types of the Raft core: entries, hard state, snapshots, messages.

Everything that happens to a Raft node is a Message, local events included
(HUP to start an election, BEAT to send heartbeats, PROP to propose).  Peer ids
are small ints, unique within a group and never reused by the driver for another
disk (a group built from a TOML starts with ids 0..n-1, the positions in its peer list).

Membership is a ConfState (voters, learners).  It changes only through CONF_CHANGE
entries, one member at a time, and a change takes effect when the entry is applied
(RawNode.apply_conf_change); snapshots carry the ConfState at their index.

The core never looks inside Entry.data or Message.snapshot_data: they are
opaque to it.  This module imports nothing but the standard library.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple, Any

NONE = -1  # "no peer" (no leader known, no vote cast)
_CC_HEAD = struct.Struct(">BI")  # ConfChange: op, node id; the context follows


class EntryType(IntEnum):
    NORMAL = 0       # data is a state-machine command; empty data = the leader's no-op
    CONF_CHANGE = 1  # data is ConfChange.encode(): one membership change


class ConfChangeOp(IntEnum):
    ADD_LEARNER = 1  # a new member that receives the log but neither votes nor counts
    PROMOTE = 2      # a learner becomes a voter
    REMOVE = 3       # a voter or learner leaves the group


class ConfState(NamedTuple):
    """A group's membership: sorted tuples of ids (a node is in at most one of them)."""
    voters: tuple = ()
    learners: tuple = ()

    def members(self) -> tuple:
        return tuple(sorted(self.voters + self.learners))

    def __contains__(self, nid: object) -> bool:  # type: ignore[override]
        return nid in self.voters or nid in self.learners


class ConfChange(NamedTuple):
    """One membership change.  `context` is the driver's (e.g. the new member's address);
    the core reads only op and node_id."""
    op: int
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        return _CC_HEAD.pack(self.op, self.node_id) + self.context

    @classmethod
    def decode(cls, data: bytes) -> "ConfChange":
        if len(data) < _CC_HEAD.size:
            raise ValueError(f"conf change entry too short ({len(data)} bytes)")
        op, nid = _CC_HEAD.unpack_from(data)
        return cls(ConfChangeOp(op), nid, bytes(data[_CC_HEAD.size:]))

    def applied_to(self, cs: ConfState) -> ConfState | None:
        """The membership after this change, or None when it does not apply to `cs` (then
        it is a no-op: the leader checks before proposing, this guards replays)."""
        v, ln, nid = set(cs.voters), set(cs.learners), self.node_id
        if self.op == ConfChangeOp.ADD_LEARNER:
            if nid in v or nid in ln:
                return None
            ln.add(nid)
        elif self.op == ConfChangeOp.PROMOTE:
            if nid not in ln:
                return None
            ln.discard(nid)
            v.add(nid)
        elif self.op == ConfChangeOp.REMOVE:
            if nid not in v and nid not in ln:
                return None
            if v == {nid}:
                return None  # never remove the last voter
            v.discard(nid)
            ln.discard(nid)
        else:
            return None
        return ConfState(tuple(sorted(v)), tuple(sorted(ln)))


class Entry(NamedTuple):
    term: int
    index: int
    data: bytes = b""
    type: int = EntryType.NORMAL

    def size(self) -> int:
        return len(self.data) + 16


class HardState(NamedTuple):
    term: int = 0
    vote: int = NONE
    commit: int = 0


EMPTY_HARD_STATE = HardState()


class SnapshotMeta(NamedTuple):
    """The last log position a snapshot covers, and the membership at that position (None:
    the one the node was configured with, for snapshots taken before membership changes)."""
    index: int = 0
    term: int = 0
    conf: ConfState | None = None


EMPTY_SNAPSHOT = SnapshotMeta()


class MsgType(IntEnum):
    # local messages: never cross the network
    HUP = 0             # start an election (pre-vote first when enabled)
    BEAT = 1            # leader: send heartbeats
    PROP = 2            # reserved: proposals go through RawNode.propose, never through step
    SNAP_STATUS = 3     # driver reports a snapshot send finished (reject=True: failed)
    UNREACHABLE = 4     # driver reports a peer could not be reached
    CHECK_QUORUM = 5    # leader: check that a quorum was active this election timeout
    READ_INDEX = 6      # ask for a read index; context identifies the request
    TRANSFER_LEADER = 7  # frm = transferee
    # network messages
    APP = 10
    APP_RESP = 11
    VOTE = 12
    VOTE_RESP = 13
    PRE_VOTE = 14
    PRE_VOTE_RESP = 15
    SNAP = 16
    HEARTBEAT = 17
    HEARTBEAT_RESP = 18
    READ_INDEX_RESP = 19
    TIMEOUT_NOW = 20
    # the driver's own, never stepped into a core: "your messages are refused in this group"
    # (context: why, in plain words), sent to a member that came back with an empty disk
    REFUSED = 30
    # the driver's own too: "this is who is at this address now" (sent to a peer whose
    # messages were meant for the disk that was here before; its batch carries our uid)
    HELLO = 31
    # the driver's own too: "your founding member list of this group differs from mine, so your
    # messages are refused" (context: both lists, in plain words)
    MEMBERS_DIFFER = 32


LOCAL_TYPES = frozenset({MsgType.HUP, MsgType.BEAT, MsgType.SNAP_STATUS, MsgType.UNREACHABLE,
                         MsgType.CHECK_QUORUM})
RESPONSE_TYPES = frozenset({MsgType.APP_RESP, MsgType.VOTE_RESP, MsgType.PRE_VOTE_RESP,
                            MsgType.HEARTBEAT_RESP, MsgType.READ_INDEX_RESP})


@dataclass(slots=True)
class Message:
    type: int
    to: int = NONE
    frm: int = NONE
    term: int = 0
    log_term: int = 0          # APP: term of entry at `index`; VOTE: candidate's last log term
    index: int = 0             # APP: index before `entries`; APP_RESP: last matched / rejected index
    entries: tuple = ()        # tuple[Entry, ...]
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0       # APP_RESP reject: follower's hint index (fast back-off)
    snapshot: SnapshotMeta | None = None
    snapshot_data: Any = None  # opaque payload travelling with SNAP (the driver streams the real one)
    context: bytes = b""       # READ_INDEX / HEARTBEAT: read request id; VOTE: b"transfer" when forced

    def __repr__(self) -> str:  # compact, for test failures and logs
        t = MsgType(self.type).name
        parts = [f"{t} {self.frm}->{self.to} t{self.term}"]
        if self.type in (MsgType.APP, MsgType.VOTE, MsgType.PRE_VOTE, MsgType.APP_RESP):
            parts.append(f"lt{self.log_term} i{self.index}")
        if self.entries:
            parts.append(f"ents[{self.entries[0].index}..{self.entries[-1].index}]")
        if self.commit:
            parts.append(f"c{self.commit}")
        if self.reject:
            parts.append(f"reject(hint {self.reject_hint})")
        if self.snapshot is not None:
            parts.append(f"snap{tuple(self.snapshot)}")
        if self.context:
            parts.append(f"ctx{self.context!r}")
        return "<" + " ".join(parts) + ">"


class ReadState(NamedTuple):
    """A read index is safe to serve once the applied index reaches `index`."""
    index: int
    context: bytes


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3

    @property
    def wire_name(self) -> str:
        """The name shown on the wire: a pre-candidate reports itself as a Candidate."""
        return ("Follower", "Candidate", "Candidate", "Leader")[self]


class SoftState(NamedTuple):
    leader: int
    role: Role


@dataclass(slots=True)
class Ready:
    """What the driver must do after a round of input.

    Order: persist `snapshot`, `entries` and `hard_state` in one write, durable when
    `must_sync`;
    `messages` may go out before that write (they depend on nothing it
    holds); `persisted_messages` only after it.  Apply `committed` entries
    (they are already durable), serve `read_states` once applied reaches
    their index, then call RawNode.advance(ready).
    """
    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list = field(default_factory=list)           # list[Entry]: append, truncating a conflicting suffix
    snapshot: SnapshotMeta | None = None                  # install this snapshot (data in snapshot_data)
    snapshot_data: Any = None
    committed: list = field(default_factory=list)         # list[Entry] to apply, in order
    messages: list = field(default_factory=list)          # send now
    persisted_messages: list = field(default_factory=list)  # send after the write is durable
    read_states: list = field(default_factory=list)       # list[ReadState]
    notices: list = field(default_factory=list)           # list[Notice]: for the driver's log
    # the write must be durable before persisted_messages leave (new entries, a snapshot, a new
    # term or vote); a write of only the commit index and applied entries need not be synced:
    # lost in a crash, it is redone from the log (etcd's MustSync)
    must_sync: bool = False

    def empty(self) -> bool:
        return not (self.soft_state or self.hard_state or self.entries or self.snapshot
                    or self.committed or self.messages or self.persisted_messages
                    or self.read_states or self.notices)


class Notice(NamedTuple):
    """Something the core saw that an operator should hear of (the driver logs it).

    kind "lost-log": peer `peer` no longer holds entries up to `index` that it had
    acknowledged (its disk was wiped or damaged); the leader sends it the log again from
    `hint`.  kind "removed": this node was removed from the group (it stops campaigning).
    """
    kind: str
    peer: int
    index: int = 0
    hint: int = 0
