"""RawNode: the driver-facing face of the Raft core.

    node.tick() / node.step(msg) / node.propose([...]) / node.read_index(ctx)
    while node.has_ready():
        rd = node.ready()
        persist rd.snapshot, rd.entries, rd.hard_state (and apply rd.committed) in one write
        send rd.messages (any time) and rd.persisted_messages (after the write)
        node.advance(rd)

No I/O, no clock, no threads: the only source of nondeterminism is the `rng` given in.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .core import ProposalDropped, Raft
from .messages import (NONE, ConfChange, ConfState, HardState, Message, MsgType, Ready, Role,
                       SoftState)
from .options import RaftOptions
from .storage import LogStorage

__all__ = ["RawNode", "ProposalDropped", "Status"]


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    role: Role
    last_index: int
    progress: dict  # leader only: peer -> (match, next, state name)
    conf: ConfState = ConfState()


class RawNode:
    def __init__(self, opts: RaftOptions, storage: LogStorage, rng: random.Random) -> None:
        self.raft = Raft(opts, storage, rng)
        r = self.raft
        self._prev_soft = SoftState(r.lead, r.role)
        self._prev_hard = HardState(r.term, r.vote, r.log.committed)

    # ---------------------------------------------------------------- inputs
    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        self.raft.step(Message(MsgType.HUP, frm=self.raft.id))

    def propose(self, datas: list[bytes]) -> int:
        """Append one entry per item (leader only); returns the index of the first."""
        return self.raft.propose(datas)

    def propose_conf_change(self, cc: ConfChange) -> int:
        """Append one membership change (leader only); returns its index.  Raises
        ProposalDropped with the reason when the change cannot be made now."""
        return self.raft.propose_conf_change(cc)

    def conf_change_refusal(self, cc: ConfChange) -> str:
        """Why propose_conf_change(cc) would be refused now ("" if it would not)."""
        return self.raft.conf_change_refusal(cc)

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Call for each committed CONF_CHANGE entry, in apply order, as it is applied (a
        change that does not fit the current membership is a no-op); returns the membership."""
        return self.raft.apply_conf_change(cc)

    @property
    def conf_state(self) -> ConfState:
        return self.raft.conf

    def step(self, m: Message) -> None:
        if m.type in (MsgType.HUP, MsgType.BEAT, MsgType.CHECK_QUORUM, MsgType.PROP,
                      MsgType.SNAP_STATUS, MsgType.UNREACHABLE):
            raise ValueError(f"local message {MsgType(m.type).name} cannot arrive from the network")
        if not self.raft.accepts_from(m):
            return  # a campaign or an answer from a node that is not (or no longer) a member
        self.raft.step(m)

    def read_index(self, ctx: bytes) -> None:
        self.raft.step(Message(MsgType.READ_INDEX, frm=self.raft.id, context=ctx))

    def transfer_leader(self, to: int) -> None:
        self.raft.step(Message(MsgType.TRANSFER_LEADER, frm=to))

    def report_unreachable(self, peer: int) -> None:
        self.raft.step(Message(MsgType.UNREACHABLE, frm=peer))

    def report_snapshot(self, peer: int, ok: bool) -> None:
        self.raft.step(Message(MsgType.SNAP_STATUS, frm=peer, reject=not ok))

    # ---------------------------------------------------------------- outputs
    def has_ready(self) -> bool:
        r = self.raft
        return bool(r.msgs or r.msgs_after_persist or r.read_states or r.notices
                    or r.log.unstable.entries or r.log.unstable.snapshot is not None
                    or r.log.has_next_committed()
                    or SoftState(r.lead, r.role) != self._prev_soft
                    or HardState(r.term, r.vote, r.log.committed) != self._prev_hard)

    def ready(self) -> Ready:
        r = self.raft
        rd = Ready()
        ss = SoftState(r.lead, r.role)
        if ss != self._prev_soft:
            rd.soft_state = ss
        hs = HardState(r.term, r.vote, r.log.committed)
        prev = self._prev_hard
        if hs != prev:
            rd.hard_state = hs
        u = r.log.unstable
        rd.entries = list(u.entries)
        if u.snapshot is not None:
            rd.snapshot = u.snapshot
            rd.snapshot_data = u.snapshot_data
        rd.must_sync = bool(rd.entries or u.snapshot is not None
                            or hs.term != prev.term or hs.vote != prev.vote)
        rd.committed = r.log.next_committed()
        rd.messages, r.msgs = r.msgs, []
        rd.persisted_messages, r.msgs_after_persist = r.msgs_after_persist, []
        rd.read_states, r.read_states = r.read_states, []
        rd.notices, r.notices = r.notices, []
        return rd

    def advance(self, rd: Ready) -> None:
        r = self.raft
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            r.log.stable_snap_to(rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            r.log.stable_to(last.index, last.term)
        if rd.committed:
            r.log.applied_to(rd.committed[-1].index)
        if (rd.entries or rd.snapshot is not None) and r.id in r.prs:
            r.own_entries_stable(r.log.stable_last_index())

    # ---------------------------------------------------------------- introspection
    @property
    def id(self) -> int:
        return self.raft.id

    @property
    def term(self) -> int:
        return self.raft.term

    @property
    def lead(self) -> int:
        return self.raft.lead

    @property
    def role(self) -> Role:
        return self.raft.role

    @property
    def commit(self) -> int:
        return self.raft.log.committed

    @property
    def applied(self) -> int:
        return self.raft.log.applied

    def status(self) -> Status:
        r = self.raft
        prog = {}
        if r.role == Role.LEADER:
            prog = {p: (pr.match, pr.next, pr.state.name) for p, pr in r.prs.items()}
        return Status(r.id, r.term, r.vote, r.log.committed, r.log.applied, r.lead, r.role,
                      r.log.last_index(), prog, r.conf)
