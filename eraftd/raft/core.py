"""The Raft state machine.  Sans-I/O: messages and ticks in, messages and log changes out.

Everything that happens goes through `step(m)`: term handling common to every role first,
then votes, then one `_step_leader` / `_step_candidate` / `_step_follower` per role.
Every role change goes through a `become_*` method, and each of them through `_reset`.

Outgoing messages are split in two lists: `msgs` may be sent before this round's writes are
durable (a leader's appends and heartbeats: they promise nothing about our own disk), while
`msgs_after_persist` carry promises (votes, acknowledgements) and must wait for the write.
A leader counts its own entries toward commit only once they are durable (see
RawNode.advance), which is what makes sending appends before persisting safe.

Membership (`conf`: voters and learners) changes one member at a time, through CONF_CHANGE
entries that take effect when the driver applies them (`apply_conf_change`), as in etcd-io/raft.
What keeps two configurations in use at once adjacent (their majorities overlap):
  * a leader proposes a change only once an entry of its own term is committed (the
    single-server bug found after Ongaro's thesis) and no earlier change is unapplied
    (`pending_conf_index`, conservatively the last index when it became leader);
  * a node does not campaign while a committed change is not yet applied;
  * learners never vote, never count toward commit, ReadIndex or check-quorum, and never
    campaign; a removed leader, once its removal is applied, leads on without counting
    itself until it has handed the leadership to a voter that has the whole log.
"""
from __future__ import annotations

import random
from typing import Any

from .log import RaftLog
from .messages import (NONE, ConfChange, ConfChangeOp, ConfState, Entry, EntryType, Message,
                       MsgType, Notice, ReadState, Role, SnapshotMeta)
from .options import RaftOptions
from .progress import Progress, ProgressState
from .quorum import VoteResult, committed_index, majority, vote_result
from .storage import CompactedError, LogStorage, UnavailableError

T = MsgType
TRANSFER_CONTEXT = b"transfer"
# APP_RESP context of a node that knows no membership yet (it waits to be added): it can start
# only from a snapshot, which carries the membership; entries from index 1 would be applied
# against no configuration at all
NEED_SNAPSHOT = b"need-snapshot"
# from a node that is not a member (as far as we know) we take what a leader sends (to a node
# that does not know yet that it was added; TIMEOUT_NOW from a removed leader handing over) and
# campaigns: a voter that lags may not know the candidate yet, and refusing it could leave no
# majority for anyone (a removed node's campaigns are kept off by check-quorum's lease, as in
# thesis 4.2.3, and cannot win: votes count only among the candidate's own voters); answers from
# non-members are dropped
_FROM_NON_MEMBERS = frozenset({T.APP, T.HEARTBEAT, T.SNAP, T.TIMEOUT_NOW, T.VOTE, T.PRE_VOTE})
# kinds of campaign
_PRE_VOTE, _ELECTION, _TRANSFER = "pre-vote", "election", "transfer"

# messages this node may send before its own writes of the round are durable
_SEND_BEFORE_PERSIST = frozenset({T.APP, T.HEARTBEAT, T.SNAP, T.TIMEOUT_NOW, T.READ_INDEX_RESP,
                                  T.PRE_VOTE, T.PRE_VOTE_RESP})


class ProposalDropped(Exception):
    """The proposal was not appended: this node is not the leader, or a transfer is under way,
    or (for a membership change) str() says why the change cannot be made now."""


class _ReadIndexStatus:
    __slots__ = ("req", "index", "acks")

    def __init__(self, req: Message, index: int) -> None:
        self.req = req
        self.index = index
        self.acks: set[int] = set()


class _ReadOnly:
    """Read requests waiting for a quorum of heartbeat acknowledgements (ReadIndex, safe mode)."""

    def __init__(self) -> None:
        self.pending: dict[bytes, _ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add(self, index: int, m: Message) -> None:
        ctx = m.context
        if ctx in self.pending:
            return
        self.pending[ctx] = _ReadIndexStatus(m, index)
        self.queue.append(ctx)

    def recv_ack(self, frm: int, ctx: bytes) -> set[int] | None:
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(frm)
        return rs.acks

    def advance(self, ctx: bytes) -> list[_ReadIndexStatus]:
        """Release every request up to and including ctx (acks for a later one cover earlier ones)."""
        if ctx not in self.pending:
            return []
        out = []
        n = 0
        for c in self.queue:
            n += 1
            out.append(self.pending.pop(c))
            if c == ctx:
                break
        del self.queue[:n]
        return out

    def last_pending(self) -> bytes:
        return self.queue[-1] if self.queue else b""


class Raft:
    def __init__(self, opts: RaftOptions, storage: LogStorage, rng: random.Random) -> None:
        self.id = opts.id
        self.opts = opts
        self.conf = ConfState(tuple(sorted(opts.peers)), tuple(sorted(opts.learners)))
        self.pending_conf_index = 0
        self.hand_over_term = -1   # see _may_hand_over
        self.notices: list[Notice] = []
        self.rng = rng
        self.log = RaftLog(storage, opts.applied, opts.max_committed_per_ready)
        hs, _ = storage.initial_state()
        self.term = hs.term
        self.vote = hs.vote
        self.lead = NONE
        self.role = Role.FOLLOWER
        self.election_timeout = opts.election_tick
        self.heartbeat_timeout = opts.heartbeat_tick
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self.lead_transferee = NONE
        self.transfer_elapsed = 0
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.read_only = _ReadOnly()
        self.pending_read_msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.msgs: list[Message] = []
        self.msgs_after_persist: list[Message] = []
        self.quorum = majority(len(self.conf.voters))
        self.become_follower(self.term, NONE)

    # ------------------------------------------------------------------ helpers
    def _send(self, m: Message) -> None:
        if m.type in (T.TRANSFER_LEADER, T.READ_INDEX):
            pass  # forwarded: frm keeps the transferee / the node that asked for the read
        else:
            m.frm = self.id
        if m.type in (T.VOTE, T.VOTE_RESP, T.PRE_VOTE, T.PRE_VOTE_RESP):
            if m.term == 0:
                raise AssertionError(f"term must be set for {m!r}")
        elif m.type not in (T.READ_INDEX, T.TRANSFER_LEADER):
            m.term = self.term  # a forwarded READ_INDEX carries term 0, like a local message
        if m.type in _SEND_BEFORE_PERSIST:
            self.msgs.append(m)
        else:
            self.msgs_after_persist.append(m)

    def _reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout)

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.lead_transferee = NONE
        self.votes = {}
        last = self.log.last_index()
        cap = self.opts.max_inflight_msgs
        self.prs = {p: Progress(last + 1, cap) for p in self.conf.members()}
        # (ourselves too when we are no member: a removed leader finishing its hand-over)
        self.prs.setdefault(self.id, Progress(last + 1, cap)).match = self.log.stable_last_index()
        self.read_only = _ReadOnly()
        self.pending_read_msgs = []

    def _promotable(self) -> bool:
        return self.id in self.conf.voters or self._may_hand_over()

    def _may_hand_over(self) -> bool:
        """A node that knows it was removed, and that voted for itself in its current term (it
        led, or stood, when it was removed), may still campaign (pre-vote first, votes counted
        among its configuration's voters) to hand over: it may be the only one that knows its
        removal committed, and the voters that do not know could each need its vote (which its
        longer log refuses them).  The right ends with the term (a vote for anyone else, or a
        newer leader); `_hand_over` passes the leadership on.  It also has the right in a term
        in which it refused a voter's campaign for its own longer log (that voter lags, and may
        need exactly our vote)."""
        c = self.conf
        return (bool(c.voters) and self.id not in c
                and (self.vote == self.id or self.hand_over_term == self.term))

    def accepts_from(self, m: Message) -> bool:
        """Whether a network message from m.frm may be stepped (see _FROM_NON_MEMBERS)."""
        return m.frm in self.conf or m.type in _FROM_NON_MEMBERS

    @property
    def conf(self) -> ConfState:
        return self._conf

    @conf.setter
    def conf(self, cs: ConfState) -> None:
        self._conf = cs
        # every member but us: where a leader's appends and heartbeats go (kept with the
        # membership: the broadcasts of the hot path do not rebuild it)
        self._others = tuple(p for p in cs.members() if p != self.id)

    def _knows_membership(self) -> bool:
        """False for a node that waits to be added (it learns the group from a snapshot)."""
        return bool(self._conf.voters or self._conf.learners)

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    # ------------------------------------------------------------------ role changes
    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def become_pre_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise AssertionError("invalid transition leader -> pre-candidate")
        # a pre-candidate changes neither term nor vote
        self.votes = {}
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise AssertionError("invalid transition leader -> candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        if self.role == Role.FOLLOWER:
            raise AssertionError("invalid transition follower -> leader")
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        pr = self.prs[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # the no-op entry of the new term: it lets the leader commit (Figure 8) and serve reads
        self._append_entries([b""])
        # our log may hold changes not applied yet: no new one until all of it is applied
        self.pending_conf_index = self.log.last_index()

    # ------------------------------------------------------------------ ticks
    def tick(self) -> None:
        if self.role == Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(T.HUP, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.lead_transferee != NONE:
            # its own timer: repeated transfer requests must not hold off check-quorum
            self.transfer_elapsed += 1
            if self.transfer_elapsed >= self.election_timeout:
                self.lead_transferee = NONE  # the transfer took too long: give up
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.opts.check_quorum:
                self.step(Message(T.CHECK_QUORUM, frm=self.id))
        if self.role != Role.LEADER:
            return
        if self.id not in self.conf.voters:
            self._hand_over()  # (again, after a transfer that timed out)
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(T.BEAT, frm=self.id))

    # ------------------------------------------------------------------ elections
    def _campaign(self, kind: str) -> None:
        if kind == _PRE_VOTE:
            self.become_pre_candidate()
            vote_msg, term = T.PRE_VOTE, self.term + 1  # ask with the term we would use
        else:
            self.become_candidate()
            vote_msg, term = T.VOTE, self.term
        self.votes[self.id] = True
        if self._poll() == VoteResult.WON:
            # a single-node cluster wins at once
            if kind == _PRE_VOTE:
                self._campaign(_ELECTION)
            else:
                self.become_leader()
            return
        ctx = TRANSFER_CONTEXT if kind == _TRANSFER else b""
        last = self.log.last_index()
        lt = self.log.last_term()
        for p in self.conf.voters:
            if p != self.id:
                self._send(Message(vote_msg, to=p, term=term, index=last, log_term=lt, context=ctx))

    def _poll(self) -> VoteResult:
        return vote_result(self.conf.voters, self.votes)

    def _hup(self, transfer: bool = False) -> None:
        if self.role == Role.LEADER:
            return
        if not self._promotable():
            return
        if self._has_unapplied_conf_change():
            # our membership may be about to change: campaigning with the old one could make
            # two configurations that differ by more than one member both elect leaders
            return
        if transfer:
            self._campaign(_TRANSFER)
        elif self.opts.pre_vote or self.id not in self.conf.voters:
            self._campaign(_PRE_VOTE)
        else:
            self._campaign(_ELECTION)

    # ------------------------------------------------------------------ step
    def step(self, m: Message) -> None:
        if m.term == 0:
            pass  # local message (or a forwarded proposal / read index)
        elif m.term > self.term:
            if m.type in (T.VOTE, T.PRE_VOTE):
                force = m.context == TRANSFER_CONTEXT
                in_lease = (self.opts.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.election_timeout)
                if not force and in_lease:
                    return  # we heard from a leader recently: do not let this node disrupt it
            if m.type == T.PRE_VOTE:
                pass  # never change term for a pre-vote
            elif m.type == T.PRE_VOTE_RESP and not m.reject:
                pass  # the term is only bumped when the pre-candidate wins
            elif m.type in (T.APP, T.HEARTBEAT, T.SNAP):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.opts.check_quorum or self.opts.pre_vote) and m.type in (T.HEARTBEAT, T.APP):
                # a stale leader: our higher term in the answer makes it step down
                self._send(Message(T.APP_RESP, to=m.frm))
            elif m.type in (T.PRE_VOTE, T.VOTE):
                # our higher term in the answer: a candidate that needs our vote learns it (with
                # membership changes, nobody else may ever tell it: the nodes that raised our
                # term need not count it as a voter, and we, a learner in our own view, do not
                # campaign; sim seed 2739)
                resp = T.PRE_VOTE_RESP if m.type == T.PRE_VOTE else T.VOTE_RESP
                self._send(Message(resp, to=m.frm, term=self.term, reject=True))
            return

        t = m.type
        if t == T.HUP:
            self._hup()
        elif t in (T.VOTE, T.PRE_VOTE):
            can_vote = (self.vote == m.frm
                        or (self.vote == NONE and self.lead == NONE)
                        or (t == T.PRE_VOTE and m.term > self.term))
            resp = T.VOTE_RESP if t == T.VOTE else T.PRE_VOTE_RESP
            if not self._knows_membership():
                # a node that knows no membership waits to be added (maybe after losing its
                # disk, and with it the votes it cast): it answers no campaign
                return
            up_to_date = self.log.is_up_to_date(m.index, m.log_term)
            if can_vote and up_to_date:
                self._send(Message(resp, to=m.frm, term=m.term))
                if t == T.VOTE:
                    self.election_elapsed = 0
                    self.vote = m.frm
            else:
                self._send(Message(resp, to=m.frm, term=self.term, reject=True))
                if not up_to_date and self.id not in self.conf and m.frm in self.conf.voters:
                    self.hand_over_term = self.term
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # ------------------------------------------------------------------ leader
    def _has_unapplied_conf_change(self) -> bool:
        lo, hi = self.log.applied + 1, self.log.committed + 1
        if lo >= hi:
            return False
        try:
            ents = self.log.slice(lo, hi, 1 << 62)
        except (CompactedError, UnavailableError):
            return False
        return any(e.type == EntryType.CONF_CHANGE for e in ents)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == T.BEAT:
            self._bcast_heartbeat(self.read_only.last_pending())
            return
        if t == T.CHECK_QUORUM:
            if not self._quorum_active():
                self.become_follower(self.term, NONE)
            for p, pr in self.prs.items():
                if p != self.id:
                    pr.recent_active = False
            return
        if t == T.READ_INDEX:
            # every leader, a lone one included, first commits an entry of its own term: the
            # commit index it restarted with may lag entries it had acknowledged (the hard state
            # of the round that committed them need not have reached the disk)
            if not self._committed_in_current_term():
                self.pending_read_msgs.append(m)  # wait for the no-op of this term to commit
            else:
                self._send_read_index(m)
            return
        if t == T.TRANSFER_LEADER:
            self._transfer(m.frm)
            return

        pr = self.prs.get(m.frm)
        if pr is None:
            return
        if t == T.APP_RESP:
            pr.recent_active = True
            if m.reject and m.context == NEED_SNAPSHOT:
                if pr.state != ProgressState.SNAPSHOT:
                    self._send_snapshot(m.frm, pr)
                return
            if m.reject:
                next_probe = m.reject_hint
                if m.log_term > 0:
                    next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
                old_match = pr.match
                if pr.maybe_decr_to(m.index, next_probe):
                    if pr.match < old_match:
                        self.notices.append(Notice("lost-log", m.frm, old_match, pr.match))
                    if pr.state == ProgressState.REPLICATE:
                        pr.become_probe()
                    self._send_append(m.frm)
                return
            old_paused = pr.is_paused()
            if pr.maybe_update(m.index):
                if pr.state == ProgressState.PROBE:
                    pr.become_replicate()
                elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
                    pr.become_probe()
                    pr.become_replicate()
                elif pr.state == ProgressState.REPLICATE:
                    pr.inflights.free_le(m.index)
                if self._maybe_commit():
                    self._bcast_commit()
                elif old_paused:
                    self._send_append(m.frm)
                while self._maybe_send_append(m.frm, send_if_empty=False):
                    pass
                if m.frm == self.lead_transferee and pr.match == self.log.last_index():
                    self._send(Message(T.TIMEOUT_NOW, to=m.frm))
            return
        if t == T.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if m.reject and m.index < pr.match:
                # it lacks entries it had acknowledged (we sent it commit <= its Match): its
                # log was lost; send it again from where it is, and do not count its ack
                self.notices.append(Notice("lost-log", m.frm, pr.match, m.index))
                pr.match = m.index
                pr.become_probe()
                self._send_append(m.frm)
                return
            if pr.state == ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first()  # appends may have been lost: let one more through
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if not m.context:
                return
            acks = self.read_only.recv_ack(m.frm, m.context)
            if acks is None or self._voters_in(acks) < self.quorum:
                return
            for rs in self.read_only.advance(m.context):
                self._respond_read(rs.req, rs.index)
            return
        if t == T.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            pr.probe_sent = True  # wait for the follower's answer before probing again
            return
        if t == T.UNREACHABLE:
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            return

    def _transfer(self, transferee: int) -> None:
        if transferee == NONE or transferee not in self.conf.voters:
            return
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self.lead_transferee = NONE
        if transferee == self.id:
            return
        self.transfer_elapsed = 0  # the transfer must finish within one election timeout
        self.lead_transferee = transferee
        if self.prs[transferee].match == self.log.last_index():
            self._send(Message(T.TIMEOUT_NOW, to=transferee))
        else:
            self._send_append(transferee)

    def _quorum_active(self) -> bool:
        prs = self.prs
        active = sum(1 for p in self.conf.voters if p == self.id or prs[p].recent_active)
        return active >= self.quorum

    def _voters_in(self, ids: set[int]) -> int:
        voters = self.conf.voters
        return sum(1 for i in ids if i in voters)

    def _committed_in_current_term(self) -> bool:
        return self.log.term_or_none(self.log.committed) == self.term

    def _send_read_index(self, m: Message) -> None:
        if self.conf.voters == (self.id,):
            self._respond_read(m, self.log.committed)  # our own acknowledgement is the quorum
            return
        self.read_only.add(self.log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _respond_read(self, req: Message, index: int) -> None:
        if req.frm == NONE or req.frm == self.id:
            self.read_states.append(ReadState(index, req.context))
        else:
            self._send(Message(T.READ_INDEX_RESP, to=req.frm, index=index, context=req.context))

    def _release_pending_reads(self) -> None:
        if self.pending_read_msgs and self._committed_in_current_term():
            msgs, self.pending_read_msgs = self.pending_read_msgs, []
            for m in msgs:
                self._send_read_index(m)

    def propose(self, datas: list[bytes]) -> int:
        """Append one entry per item and start replicating them; returns the first index."""
        if self.role != Role.LEADER:
            raise ProposalDropped("not the leader")
        if self.lead_transferee != NONE:
            raise ProposalDropped("leadership transfer in progress")
        first = self._append_entries(datas)
        self._bcast_append()
        return first

    # ------------------------------------------------------------------ membership
    def conf_change_refusal(self, cc: ConfChange) -> str:
        """Why the leader cannot propose `cc` now ("" if it can)."""
        if self.role != Role.LEADER:
            return "not the leader"
        if self.lead_transferee != NONE:
            return "a leadership transfer is in progress; try again"
        if not self._committed_in_current_term():
            return "the leader has not committed an entry of its term yet; try again"
        if self.pending_conf_index > self.log.applied:
            return "another membership change is still in progress; try again when it is done"
        nid, op = cc.node_id, cc.op
        if cc.applied_to(self.conf) is None:
            if op == ConfChangeOp.ADD_LEARNER:
                return f"node {nid} is already a member"
            if op == ConfChangeOp.PROMOTE:
                return (f"node {nid} is already a voter" if nid in self.conf.voters
                        else f"node {nid} is not a learner of this group")
            if op == ConfChangeOp.REMOVE:
                return (f"node {nid} is the group's last voter" if nid in self.conf.voters
                        else f"node {nid} is not a member of this group")
            return f"unknown membership change {op}"
        if op == ConfChangeOp.PROMOTE:
            match, last = self.prs[nid].match, self.log.last_index()
            # (match 0: it has not even installed its first snapshot; as a voter that knows
            # no membership it would grant no vote and could block every election)
            if match == 0 or match + self.opts.promote_lag < last:
                return f"learner {nid} has not caught up yet (it has {match} of {last} entries)"
        return ""

    def propose_conf_change(self, cc: ConfChange) -> int:
        """Append one membership change and start replicating it; returns its index."""
        why = self.conf_change_refusal(cc)
        if why:
            raise ProposalDropped(why)
        first = self._append_entries([cc.encode()], EntryType.CONF_CHANGE)
        self.pending_conf_index = first
        self._bcast_append()
        return first

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """A committed CONF_CHANGE entry was applied: the membership changes now."""
        new = cc.applied_to(self.conf)
        if new is not None:
            self._set_conf(new)
        return self.conf

    def _set_conf(self, cs: ConfState) -> None:
        was_member = self.id in self.conf
        self.conf = cs
        self.quorum = majority(len(cs.voters))
        members = cs.members()
        last, cap = self.log.last_index(), self.opts.max_inflight_msgs
        for p in members:
            if p not in self.prs:
                self.prs[p] = Progress(last + 1, cap)
        leading = self.role == Role.LEADER
        for p in [p for p in self.prs if p not in cs and p != self.id]:
            del self.prs[p]
        if was_member and self.id not in cs:
            self.notices.append(Notice("removed", self.id))
        if leading:
            if self.lead_transferee not in cs.voters:
                self.lead_transferee = NONE
            if self._maybe_commit():  # a smaller quorum may commit more
                self._bcast_append()
            if self.id not in cs.voters:
                self._hand_over()
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and self.id not in cs.voters:
            self.become_follower(self.term, NONE)

    def _hand_over(self) -> None:
        """We lead but are no voter any more (thesis 4.2.2): we keep leading, without counting
        ourselves, until the voter furthest ahead has the whole log, and then hand it the
        leadership (TIMEOUT_NOW).  Stepping down at once could leave the new voters without
        knowing that our removal committed; then they would campaign with the old
        configuration, which needs our vote, and our longer log would refuse it."""
        voters = self.conf.voters
        if not voters or self.lead_transferee != NONE:
            return
        best = max(voters, key=lambda v: (self.prs[v].match, -v))
        self._transfer(best)

    def _append_entries(self, datas: list[bytes], typ: int = EntryType.NORMAL) -> int:
        first = self.log.last_index() + 1
        term = self.term
        ents = [Entry(term, first + i, d, typ) for i, d in enumerate(datas)]
        self.log.append(ents)
        return first

    def _maybe_commit(self) -> bool:
        prs = self.prs
        mci = committed_index(prs[v].match for v in self.conf.voters)
        if self.log.maybe_commit(mci, self.term):
            self._release_pending_reads()
            return True
        return False

    def own_entries_stable(self, index: int) -> None:
        """The driver made our log durable up to `index`: count ourselves toward commit."""
        if self.role != Role.LEADER:
            return
        if self.prs[self.id].maybe_update(index) and self._maybe_commit():
            self._bcast_append()

    def _bcast_commit(self) -> None:
        """A new commit index: the followers that have entries to get hear of it with them,
        now; the others with the next append or heartbeat (an empty append to each of them
        on every commit would cost every follower a round and an answer per commit, and
        nothing waits for a follower's commit index)."""
        last = self.log.last_index()
        for p in self._others:
            if self.prs[p].next <= last:
                self._send_append(p)

    def _bcast_append(self) -> None:
        for p in self._others:
            self._send_append(p)

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        committed = self.log.committed
        prs = self.prs
        for p in self._others:
            self._send(Message(T.HEARTBEAT, to=p, commit=min(prs[p].match, committed),
                               context=ctx))

    def _send_append(self, to: int) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        try:
            prev_term = self.log.term(prev)
            ents = self.log.entries_from(pr.next, self.opts.max_size_per_msg)
        except CompactedError:
            return self._send_snapshot(to, pr)
        except UnavailableError:
            # our log shrank under the follower's Next (we are a new leader): probe from the end
            pr.next = self.log.last_index() + 1
            pr.become_probe()
            return False
        if not ents and not send_if_empty:
            return False
        self._send(Message(T.APP, to=to, index=prev, log_term=prev_term, entries=tuple(ents),
                           commit=self.log.committed))
        if pr.state == ProgressState.REPLICATE:
            if ents:
                last = ents[-1].index
                pr.next = last + 1
                pr.inflights.add(last)
        elif pr.state == ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # do not ship a snapshot to a node that may be down
        snap = self.log.snapshot()
        if snap.index == 0:
            # nothing compacted yet (a node that joins asks for one all the same): the driver
            # sends its state at the applied index, which is what this stands for
            applied = self.log.applied
            if applied == 0:
                return False  # nothing applied yet: nothing to send; it asks again
            snap = SnapshotMeta(applied, self.log.term(applied))
        self._send(Message(T.SNAP, to=to, snapshot=snap))
        pr.become_snapshot(snap.index)
        return True

    # ------------------------------------------------------------------ candidate
    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = T.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else T.VOTE_RESP
        if t == T.APP:
            self.become_follower(m.term, m.frm)
            self._handle_append(m)
        elif t == T.HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif t == T.SNAP:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif t == my_resp:
            self.votes.setdefault(m.frm, not m.reject)
            res = self._poll()
            if res == VoteResult.WON:
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign(_ELECTION)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif res == VoteResult.LOST:
                self.become_follower(self.term, NONE)
        elif t == T.TIMEOUT_NOW:
            pass  # ignore: already campaigning

    # ------------------------------------------------------------------ follower
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == T.APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif t == T.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
        elif t == T.SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif t == T.TRANSFER_LEADER:
            if self.lead != NONE:
                self._send(Message(T.TRANSFER_LEADER, to=self.lead, frm=m.frm))
        elif t == T.TIMEOUT_NOW:
            self._hup(transfer=True)
        elif t == T.READ_INDEX:
            if self.lead != NONE:
                self._send(Message(T.READ_INDEX, to=self.lead, frm=m.frm, context=m.context))
        elif t == T.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append(self, m: Message) -> None:
        if not self._knows_membership():
            self._send(Message(T.APP_RESP, to=m.frm, index=m.index, reject=True,
                               context=NEED_SNAPSHOT))
            return
        if m.index < self.log.committed:
            self._send(Message(T.APP_RESP, to=m.frm, index=self.log.committed))
            return
        lastnewi, ok = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if ok:
            self._send(Message(T.APP_RESP, to=m.frm, index=lastnewi))
            return
        # fast back-off: tell the leader the largest index <= m.index whose term <= m.log_term
        hint = min(m.index, self.log.last_index())
        hint = self.log.find_conflict_by_term(hint, m.log_term)
        hint_term = self.log.term_or_none(hint) or 0
        self._send(Message(T.APP_RESP, to=m.frm, index=m.index, reject=True,
                           reject_hint=hint, log_term=hint_term))

    def _handle_heartbeat(self, m: Message) -> None:
        last = self.log.last_index()
        self.log.commit_to(min(m.commit, last))
        if m.commit > last:
            # the leader sends commit <= what we acknowledged: we lost entries we had (a
            # wiped or damaged disk); say so, so that it sends them again
            self._send(Message(T.HEARTBEAT_RESP, to=m.frm, context=m.context, reject=True,
                               index=last))
            return
        self._send(Message(T.HEARTBEAT_RESP, to=m.frm, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is not None and self._restore(snap, m.snapshot_data):
            self._send(Message(T.APP_RESP, to=m.frm, index=self.log.last_index()))
        else:
            self._send(Message(T.APP_RESP, to=m.frm, index=self.log.committed))

    def _restore(self, snap: SnapshotMeta, data: Any) -> bool:
        if snap.index <= self.log.committed:
            return False
        if self.log.match_term(snap.index, snap.term):
            # we already have this prefix: just fast-forward the commit index
            self.log.commit_to(snap.index)
            return False
        self.log.restore(snap, data)
        if snap.conf is not None:
            self._set_conf(snap.conf)
        return True
