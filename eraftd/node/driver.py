"""The asyncio driver: one loop per process runs every Raft group the node hosts.

A round:  inputs (ticks, peer messages, proposals, reads) have been stepped into the cores;
then for every group with a Ready, stage its snapshot, new entries, hard state and the
state machine's writes for the committed entries, with the applied index, in ONE WriteBatch
shared by all groups; send the messages that promise nothing (a leader's appends go out while
its own disk works) and answer the proposers of the committed entries (durable on a majority
already); write the batch (one fsync, when a group's Ready must_sync: new entries, a snapshot,
a new term or vote -- not for a round that only commits and applies); send the messages that wait for it (votes,
acknowledgements); serve readers; advance the cores.  Many proposals and reads that arrive
while a round runs are taken together by the next one: one propose() call and one ReadIndex
per group per round.

Membership: each group's members (ids, addresses, node uids) are a Members record kept with
the state machine's data (eraftd/node/members.py) and changed by CONF_CHANGE entries, applied
here in log order in the round's batch.  Transport addresses come from it.  A node that waits to
be added (join = true, or refused after coming back with an empty disk) has no id yet: the
first message of its group's leader names it (m.to), and the snapshot that follows brings the
membership.  Peers are known by their data_dir's node uid (first contact, then the groups'
records): a peer that comes back under a member's address with another uid is refused in every
group that does not know it by that uid (its messages dropped, so it neither votes nor counts;
a REFUSED message tells it why) until that group replaces it.

The fsync runs in a thread (rocksdict holds the GIL through a synced write, but not through
flush_wal), so the loop keeps accepting calls and peer messages meanwhile.  Nothing is stepped
into a core between its ready() and advance(): ticks, peer messages and reports that arrive
while a round waits for its fsync are held and stepped when the round ends.  A node that leads
no group has nothing to serve meanwhile: it writes the round synced in the loop's thread
(no thread hops), sends its acknowledgements, gives the transport one loop turn to write them
(inputs held), and only then applies what the round commits, in a second, unsynced write: a
leader's commit waits for our acknowledgement, not for our apply.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from dataclasses import replace

from ..raft.messages import (ConfChange, ConfChangeOp, Entry, EntryType, Message, MsgType, Ready,
                             Role, SnapshotMeta)
from ..raft.options import RaftOptions
from ..raft.rawnode import ProposalDropped, RawNode
from .. import metrics
from ..logs import Every
from . import validate
from .members import MEMBERS_KEY, Members

log = logging.getLogger("eraftd.raft")

COALESCE_TURNS = 32  # at most this many extra event-loop turns to gather a round's inputs
JOIN_MAX_BYTES = 1 << 20   # joined proposals go to the log in entries about this big


class NotLeader(Exception):
    """This node is not the group's leader; `hint` is the leader's address when known."""

    def __init__(self, hint: str = "") -> None:
        super().__init__(f"not the leader (leader: {hint or 'unknown'})")
        self.hint = hint


class ProposalLost(NotLeader):
    """The entry was overwritten or leadership was lost before it applied: outcome unknown."""


class ChangeRefused(Exception):
    """A membership change the leader cannot make now; str() says why (plain words)."""


WAITING = -2  # the id of a node that waits to be added to its group


@dataclass
class GroupSpec:
    gid: int                    # 0 = controller group, > 0 = shardkv group
    peers: tuple[str, ...]      # the TOML's peers: the founding members (ids = positions)
    me: int | None              # our position in peers (None: we join a running group)
    make_state_machine: Callable[[Any], Any]   # GroupStore -> state machine
    address: str = ""           # our advertise address
    uid: int = 0                # our data_dir's node uid


@dataclass
class _ReadBatch:
    index: int
    futures: list[asyncio.Future] = field(default_factory=list)


class Group:
    def __init__(self, spec: GroupSpec, store: Any, opts: RaftOptions, rng: random.Random,
                 snapshot_entries: int) -> None:
        self.gid = spec.gid
        self.store = store
        self.sm = spec.make_state_machine(store)
        self.members, self.me = self._load_members(spec)
        self.opts = opts
        self.rng = rng
        self.node = self._new_node(self.me)
        self.snapshot_entries = snapshot_entries
        self.conf_listeners: list[Callable[["Group"], None]] = []
        # addresses of senders our record does not name (a node that waits to be added learns
        # where its leader is from the leader's own messages)
        self.sender_addrs: dict[int, str] = {}
        self.refused: dict[str, str] = {}   # member address -> why its messages are refused
        # sender address -> why its messages are refused: its founding member list differs
        # from ours (Driver.on_views; not kept on disk: it is seen again on every stream)
        self.differ: dict[str, str] = {}
        self.members_problem = ""           # a peer refuses us so ("" = none); its address:
        self.members_problem_from = ""
        # the commit index as the last round knew it (a message stepped since may have moved
        # the core's on; the next round applies that): what /readyz compares applied with
        self.round_commit = self.node.applied
        self.problem = ""                   # why this node is refused in this group, if it is
        self.name = "controller" if self.gid == 0 else f"group {self.gid}"
        # proposals waiting for the next round, and proposals in the log waiting to apply
        self.proposals: list[tuple[bytes, asyncio.Future]] = []
        # proposals to join into one entry per round: join function -> items (propose_joined)
        self.joined: dict[Callable[[list[bytes]], bytes], list[tuple[bytes, asyncio.Future]]] = {}
        self.waiters: dict[int, tuple[int, asyncio.Future]] = {}  # index -> (term, future)
        # reads: waiting for the next round -> waiting for their read index -> waiting to apply
        self.reads: list[asyncio.Future] = []
        self.reads_joined: list[asyncio.Future] = []     # read_barrier(joined=True)
        self.reads_inflight: dict[bytes, list[asyncio.Future]] = {}
        self.reads_ready: list[_ReadBatch] = []
        # read ids start at a random point, so an answer meant for an earlier run of this
        # process (before a restart) can never match a request of this one
        self.read_seq = random.SystemRandom().getrandbits(62)
        self.restoring = False
        self.leader_changes = 0
        # counters for eraftd/metrics.py: bumped once per round with the batch's size
        self.proposed = 0
        self.entries_appended = 0
        self.entries_applied = 0
        self.elections = 0
        self.snapshots = 0

    # -- membership --
    def _load_members(self, spec: GroupSpec) -> tuple[Members, int]:
        raw = self.store.get(MEMBERS_KEY)
        if raw is not None:
            m = Members.decode(raw)
            me = m.id_of_uid(spec.uid) if spec.uid else None
            if me is None and spec.me is not None and m.address(spec.me) == spec.address:
                me = spec.me  # a record written before uids, or by a peer's snapshot
            return m, me if me is not None else WAITING
        if spec.me is None:
            return Members(), WAITING
        m = Members.founding(spec.peers)
        batch = self.store._store.new_batch()
        self.store.stage_put(batch, MEMBERS_KEY, m.encode())
        self.store._store.write(batch)
        return m, spec.me

    def _new_node(self, me: int) -> RawNode:
        m = self.members if me != WAITING else Members()
        if me != WAITING and me not in m.conf:
            m = Members()  # we are no member of the record we hold: wait to be told more
        opts = replace(self.opts, id=me, peers=m.voters, learners=m.learners,
                       applied=self.store.applied_index())
        return RawNode(opts, self.store, self.rng)

    def rebind(self, me: int) -> None:
        """We were added to the group as `me` (a node that waited, or came back refused)."""
        log.info("%s: the group's leader addresses this node as member id %d: joining", self.name,
                 me)
        self.fail_pending(NotLeader(""))
        self.me = me
        self.problem = ""
        self.node = self._new_node(me)

    @property
    def waiting(self) -> bool:
        return self.me == WAITING or self.me not in self.node.conf_state

    def address_of(self, nid: int) -> str:
        return self.members.address(nid) or self.sender_addrs.get(nid, "")

    def apply_committed(self, ents: list[Entry], batch: Any) -> list[Any]:
        """Apply a round's committed entries: CONF_CHANGE ones here (the state machine sees a
        no-op in their place), the rest by the state machine; one result per entry."""
        conf = [i for i, e in enumerate(ents) if e.type == EntryType.CONF_CHANGE]
        if not conf:
            return self.sm.apply(ents, batch)
        sm_ents = list(ents)
        for i in conf:
            e = ents[i]
            sm_ents[i] = Entry(e.term, e.index, b"")
        res = list(self.sm.apply(sm_ents, batch))
        for i in conf:
            res[i] = self._apply_conf_change(ents[i], batch)
        return res

    def _apply_conf_change(self, e: Entry, batch: Any) -> Members:
        try:
            cc = ConfChange.decode(e.data)
        except ValueError as err:
            log.error("%s: entry %d is a damaged membership change (%s): ignored", self.name,
                      e.index, err)
            return self.members
        before = self.members
        conf = self.node.apply_conf_change(cc)
        after = before.applied(cc, conf)
        if after != before:
            self.members = after
            self.store.stage_put(batch, MEMBERS_KEY, after.encode())
            addr = after.address(cc.node_id) or before.address(cc.node_id)
            what = {ConfChangeOp.ADD_LEARNER: "added as a learner",
                    ConfChangeOp.PROMOTE: "promoted to voter",
                    ConfChangeOp.REMOVE: "removed"}.get(cc.op, "changed")
            log.info("%s: member %d (%s) %s at index %d; voters %s, learners %s", self.name,
                     cc.node_id, addr, what, e.index, list(after.voter_addresses()),
                     list(after.learner_addresses()))
            for fn in self.conf_listeners:
                fn(self)
        return after

    def reload_members(self) -> None:
        """After a snapshot was installed: the record came with it."""
        raw = self.store.get(MEMBERS_KEY)
        if raw is not None:
            self.members = Members.decode(raw)
            for fn in self.conf_listeners:
                fn(self)

    @property
    def leader_address(self) -> str:
        lead = self.node.lead
        return self.address_of(lead) if lead >= 0 else ""

    def is_leader(self) -> bool:
        return self.node.role == Role.LEADER

    # -- inputs taken at the start of a round --
    def flush_inputs(self) -> None:
        if self.joined:
            self._join_proposals()
        if self.proposals:
            props, self.proposals = self.proposals, []
            live = [(d, f) for d, f in props if not f.done()]
            if live:
                try:
                    first = self.node.propose([d for d, _ in live])
                except ProposalDropped:
                    err = NotLeader(self.leader_address)
                    for _, f in live:
                        f.set_exception(err)
                else:
                    term = self.node.term
                    self.proposed += len(live)
                    for i, (_, f) in enumerate(live):
                        self.waiters[first + i] = (term, f)
        if self.reads or self.reads_joined:
            futs = [f for f in self.reads if not f.done()]
            self.reads = []
            if self.reads_joined and (futs or not self.reads_inflight):
                futs += [f for f in self.reads_joined if not f.done()]
                self.reads_joined = []
            if futs:
                if not self.is_leader():
                    err = NotLeader(self.leader_address)
                    for f in futs:
                        f.set_exception(err)
                else:
                    self.read_seq += 1
                    ctx = self.read_seq.to_bytes(8, "big")
                    self.reads_inflight[ctx] = futs
                    self.node.read_index(ctx)

    def _join_proposals(self) -> None:
        """Each join function's items of this round -> one proposal (or a few, about
        JOIN_MAX_BYTES each) whose result, a list, is handed out one element per item."""
        joined, self.joined = self.joined, {}
        loop = asyncio.get_running_loop()
        for join, items in joined.items():
            live = [(d, f) for d, f in items if not f.done()]
            while live:
                size, n = 0, 0
                while n < len(live) and (n == 0 or size + len(live[n][0]) <= JOIN_MAX_BYTES):
                    size += len(live[n][0])
                    n += 1
                part, live = live[:n], live[n:]
                whole = loop.create_future()
                whole.add_done_callback(lambda w, part=part: _hand_out(w, part))
                self.proposals.append((join([d for d, _ in part]), whole))

    # -- after the round's write --
    def finish(self, rd: Ready, results: list[Any]) -> None:
        for e, res in zip(rd.committed, results):
            w = self.waiters.pop(e.index, None)
            if w is None:
                continue
            term, fut = w
            if fut.done():
                continue
            if e.term == term:
                fut.set_result(res)
            else:
                fut.set_exception(ProposalLost(self.leader_address))
        for rs in rd.read_states:
            futs = self.reads_inflight.pop(rs.context, None)
            if futs:
                self.reads_ready.append(_ReadBatch(rs.index, futs))
        if rd.soft_state is not None:
            self._on_soft_state(rd)

    def after_advance(self) -> None:
        if self.reads_ready:
            applied = self.node.applied
            keep = []
            for rb in self.reads_ready:
                if rb.index <= applied:
                    for f in rb.futures:
                        if not f.done():
                            f.set_result(rb.index)
                else:
                    keep.append(rb)
            self.reads_ready = keep

    def _on_soft_state(self, rd: Ready) -> None:
        ss = rd.soft_state
        self.leader_changes += 1
        if ss.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            self.elections += 1
        if ss.role == Role.LEADER:
            log.info("%s: became leader at term %d", self.name, self.node.term)
        elif ss.leader >= 0:
            log.info("%s: leader is %s (id %d) at term %d", self.name, self.leader_address,
                     ss.leader, self.node.term)
        else:
            log.info("%s: %s at term %d, no leader known", self.name, ss.role.wire_name.lower(),
                     self.node.term)
        if ss.role != Role.LEADER:
            self.fail_pending(ProposalLost(self.leader_address))

    def fail_pending(self, err: Exception) -> None:
        for _, f in self.waiters.values():
            if not f.done():
                f.set_exception(err)
        self.waiters.clear()
        for futs in self.reads_inflight.values():
            for f in futs:
                if not f.done():
                    f.set_exception(err)
        self.reads_inflight.clear()
        for rb in self.reads_ready:
            for f in rb.futures:
                if not f.done():
                    f.set_exception(err)
        self.reads_ready.clear()
        for _, f in self.proposals:
            if not f.done():
                f.set_exception(err)
        self.proposals.clear()
        for items in self.joined.values():
            for _, f in items:
                if not f.done():
                    f.set_exception(err)
        self.joined.clear()

    def compaction_point(self) -> int:
        """Index to compact the log to this round, or 0: keep a tail for slow followers."""
        applied = self.node.applied
        snap = self.store.snapshot().index
        if applied - snap < self.snapshot_entries:
            return 0
        keep = min(1000, self.snapshot_entries // 10)
        return applied - keep


def _hand_out(whole: asyncio.Future, part: list[tuple[bytes, asyncio.Future]]) -> None:
    """A joined proposal ended: each of its items gets its own element of the result."""
    if whole.cancelled():
        err: BaseException | None = ProposalLost("")
    else:
        err = whole.exception()
    res = None if err is not None else whole.result()
    if err is None and not (isinstance(res, list) and len(res) == len(part)):
        err = ProposalLost("")      # a machine that did not answer per item: outcome unknown
    for i, (_, f) in enumerate(part):
        if not f.done():
            if err is not None:
                f.set_exception(err)
            else:
                f.set_result(res[i])


class Driver:
    def __init__(self, store: Any, transport: Any, heartbeat_ms: int) -> None:
        self.cluster: Any = None            # the node's ClusterIdentity (server.py sets it)
        self.store = store
        self.transport = transport
        self.heartbeat_s = heartbeat_ms / 1000.0
        self.groups: dict[int, Group] = {}
        self.wake = asyncio.Event()
        self.stopping = False
        self.rounds = 0
        self._tasks: set[asyncio.Task] = set()
        # while a round waits for its fsync, core inputs wait here (see the module docstring)
        self._syncing = False
        self._held_msgs: list[tuple[int, Message, bool, str]] = []
        self._held_ticks = 0
        self._held_calls: list[Callable[[], None]] = []     # rare inputs: reports, snapshots
        self._syncer: ThreadPoolExecutor | None = None
        # peers' node uids (address -> uid): learned on first contact, then from the groups'
        # records; a peer that comes back with another uid is refused (see check_peer)
        load = getattr(store, "load_peer_uids", None)
        uids, refused = load() if load else ({}, {})
        self.peer_uids: dict[str, int] = uids
        self._saved_refusals: dict[int, dict[str, str]] = refused
        self.problem = ""              # why the whole node is refused by a peer (another cluster)
        self._refusal_logged: dict[int, float] = {}
        self._refusal_told: dict[tuple[int, str], float] = {}
        self.drops = validate.Drops()  # invalid peer messages (eraftd/node/validate.py)
        # founding member lists: ours (gid -> list; a new dict when one changes: the transport
        # sends it again then) and each peer's, as its streams said
        self.views: dict[int, tuple[str, ...]] = {}
        self.peer_views: dict[str, dict[int, tuple[str, ...]]] = {}
        self._differ_logged = Every(60.0)       # (gid, peer) -> at most a line a minute

    def add_group(self, spec: GroupSpec, opts: RaftOptions, rng: random.Random,
                  snapshot_entries: int) -> Group:
        g = Group(spec, self.store.group(spec.gid), opts, rng, snapshot_entries)
        self.groups[spec.gid] = g
        g.refused = dict(self._saved_refusals.get(spec.gid, {}))
        g.conf_listeners.append(self._learn_member_uids)
        g.conf_listeners.append(self._founders_known)
        self._learn_member_uids(g)
        self._founders_known(g)
        if g.me == WAITING:
            log.info("%s: waiting to be added to the group (run `eraftd member add %s %s` "
                     "against it)", g.name, "ctrl" if g.gid == 0 else g.gid, spec.address)
        return g

    # ---------------------------------------------------------------- peer identity
    # peer_uids: the node uid last known at each address (node-level: one disk per address).
    # A new uid at a member's address is a new disk: in every group whose record does not name
    # that uid for the member there, the member is refused (g.refused) -- its messages dropped,
    # nothing sent to it, a REFUSED message back now and then -- until that group replaces it.
    def _learn_member_uids(self, g: Group) -> None:
        """The group's record names members' uids (an added member's): they are the truth."""
        changed = False
        for nid, uid in g.members.uids.items():
            addr = g.members.address(nid)
            if addr and uid:
                changed |= self._uid_at(addr, uid)
                if g.refused.pop(addr, None) is not None:
                    changed = True
                    log.info("%s: %s is a member again (replaced)", g.name, addr)
        for addr in [a for a in g.refused if g.members.id_of(a) is None]:
            del g.refused[addr]     # removed: nothing to refuse any more
            changed = True
        if changed:
            self._save_peer_uids()

    def _uid_at(self, addr: str, uid: int) -> bool:
        """`uid` is at `addr` now; if another one was known there, refuse the member at addr in
        every group that does not know it by `uid`.  True if anything changed."""
        known = self.peer_uids.get(addr)
        if known == uid:
            return False
        self.peer_uids[addr] = uid
        if known is None:
            return True
        for h in self.groups.values():
            nid = h.members.id_of(addr)
            if nid is not None and h.members.uids.get(nid) != uid and addr not in h.refused:
                sel = "ctrl" if h.gid == 0 else str(h.gid)
                h.refused[addr] = (f"{addr} came back with an empty disk (node uid {uid:016x}, "
                                   f"{h.name} knew {known:016x}): run `eraftd member replace "
                                   f"{sel} {addr}`")
                log.warning("%s: refusing %s", h.name, h.refused[addr])
        return True

    def _save_peer_uids(self) -> None:
        save = getattr(self.store, "save_peer_uids", None)
        if save:
            save(self.peer_uids, {g.gid: dict(g.refused) for g in self.groups.values()
                                  if g.refused})

    def check_peer(self, addr: str, uid: int) -> str:
        """The transport shows us each stream's sender uid first (refusals are per group, in
        _step_messages: the stream itself is always taken)."""
        if uid and addr and self._uid_at(addr, uid):
            self._save_peer_uids()
        return ""

    def on_refused(self, addr: str, why: str) -> None:
        """A peer turned our stream away (another cluster, say): the whole node is refused."""
        line = f"refused by {addr}: {why}"
        if line != self.problem:
            log.error("this node is %s", line)
        self.problem = line

    def on_stranger(self, addr: str) -> None:
        """A peer sent us messages meant for the disk that was at our address before ours: tell
        it who is here (the batch carries our uid), so that its groups refuse this node until
        they replace it -- even one that waits to be added and sends nothing else."""
        if not self.groups or not self._once_a_second((-1, addr)):
            return
        gid = next(iter(self.groups))
        self.transport.send(addr, gid, [Message(MsgType.HELLO)])

    def _refuse(self, g: Group, addr: str, m: Message) -> None:
        """A message of a refused member: dropped; it hears why at most once a second."""
        if self._once_a_second((g.gid, addr)):
            self.transport.send(addr, g.gid, [Message(MsgType.REFUSED, to=m.frm, frm=g.me,
                                                      context=g.refused[addr].encode())])

    def _once_a_second(self, key: tuple[int, str]) -> bool:
        """Whether to tell the peer of `key` (a group, or -1 for HELLO) now: once a second."""
        now = time.monotonic()
        if now - self._refusal_told.get(key, -1e9) < 1.0:
            return False
        self._refusal_told[key] = now
        return True

    # ---------------------------------------------------------------- founding member lists
    # A member's id is its position in the founding list (the TOML's peers), so members whose
    # lists differ (the same peers in another order, another cluster's node listing ours) would
    # take each other's messages for another member's.  Every stream says the sender's lists
    # (MessageBatch.views); a group whose list differs from ours refuses the sender's messages
    # and tells it why (MEMBERS_DIFFER); both log it once per peer per minute.
    def _founders_known(self, g: Group) -> None:
        """g's record may have changed (a snapshot brought it): our views, then every peer's."""
        if self.views.get(g.gid) != g.members.founders:
            self.views = {**self.views, g.gid: g.members.founders}
        for addr in list(self.peer_views):
            self._compare_views(g, addr)

    def on_views(self, addr: str, views: dict[int, tuple[str, ...]]) -> None:
        """A peer's stream said its founding member lists."""
        if len(self.peer_views) > 4096 and addr not in self.peer_views:
            self.peer_views.clear()     # (bounded: senders name themselves)
        self.peer_views[addr] = views
        for g in self.groups.values():
            self._compare_views(g, addr)

    def _compare_views(self, g: Group, addr: str) -> None:
        theirs = self.peer_views.get(addr, {}).get(g.gid, ())
        ours = g.members.founders
        if not theirs or not ours or theirs == ours:
            if g.differ.pop(addr, None) is not None:
                log.info("%s: %s lists the same founding members again", g.name, addr)
            return
        me = getattr(self.transport, "self_addr", "") or "this node"
        line = (f"the founding members of {g.name} differ: {addr} lists {list(theirs)}, {me} "
                f"lists {list(ours)}; every founding member's TOML must list the same peers in "
                f"the same order (a member's id is its position there), so their messages are "
                f"refused")
        g.differ[addr] = line
        if self._differ_logged((g.gid, addr)):
            log.error("%s: refusing %s: %s", g.name, addr, line)

    def _refused_by(self, g: Group, addr: str, why: str) -> None:
        line = f"refused by {addr}: {why}"
        now = time.monotonic()
        if line != g.problem or now - self._refusal_logged.get(g.gid, -1e9) >= 60:
            self._refusal_logged[g.gid] = now
            log.error("%s: this node is %s", g.name, line)
        g.problem = line

    # ---------------------------------------------------------------- membership changes
    async def change_membership(self, gid: int, cc: ConfChange) -> tuple[int, Members]:
        """Propose one membership change at this (leader) node and wait until it applies;
        returns (its index, the new membership).  NotLeader / ChangeRefused / ProposalLost.
        The caller bounds the wait."""
        g = self.groups[gid]
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def propose() -> int:
            if not g.is_leader():
                raise NotLeader(g.leader_address)
            try:
                idx = g.node.propose_conf_change(cc)
            except ProposalDropped as e:
                raise ChangeRefused(str(e)) from None
            g.waiters[idx] = (g.node.term, fut)
            return idx
        idx = await self._when_stepping(propose)
        self.wake.set()
        return idx, await fut

    # ---------------------------------------------------------------- API for services
    def group(self, gid: int) -> Group:
        return self.groups[gid]

    def _enqueue(self, gid: int, datas: list[bytes]) -> list[asyncio.Future]:
        g = self.groups[gid]
        if not g.is_leader():
            raise NotLeader(g.leader_address)
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in datas]
        g.proposals.extend(zip(datas, futs))
        self.wake.set()
        return futs

    async def propose(self, gid: int, data: bytes) -> Any:
        """Append `data` to the group's log; the state machine's result once it applied.

        Raises NotLeader at once on a follower; ProposalLost when the outcome is unknown.
        The caller bounds the wait (asyncio.wait_for)."""
        return await self._enqueue(gid, [data])[0]

    async def propose_joined(self, gid: int, data: bytes,
                             join: Callable[[list[bytes]], bytes]) -> Any:
        """Like propose, but the items with the same `join` function that one round takes go
        to the log as ONE entry, join([data, ...]) (or a few, about JOIN_MAX_BYTES each), as
        a native batch does: many unary calls, one entry.  The state machine's result for that
        entry must be a list of one result per item; this call returns its item's."""
        g = self.groups[gid]
        if not g.is_leader():
            raise NotLeader(g.leader_address)
        fut = asyncio.get_running_loop().create_future()
        g.joined.setdefault(join, []).append((data, fut))
        self.wake.set()
        return await fut

    async def propose_many(self, gid: int, datas: list[bytes]) -> list[Any]:
        """Like propose, for many commands taken by one round."""
        futs = self._enqueue(gid, datas)
        if len(futs) == 1:          # (gather would cost a loop turn more)
            return [await futs[0]]
        return list(await asyncio.gather(*futs))

    async def read_barrier(self, gid: int, joined: bool = False) -> int:
        """Wait until a linearizable read may be served locally (ReadIndex); returns the index.

        joined (eRaft's unary gets, one read per call): while a ReadIndex of the group is out,
        wait for it to answer and share the next one with every such read that arrives
        meanwhile (or go with the next round's other reads).  Each ReadIndex costs a heartbeat
        to every follower, its answer, and a round on each node: unary reads issued one per
        round cost the group about twice the CPU per read.  A read waits at most one more
        round trip; one that finds none out goes at once."""
        g = self.groups[gid]
        if not g.is_leader():
            raise NotLeader(g.leader_address)
        fut = asyncio.get_running_loop().create_future()
        (g.reads_joined if joined else g.reads).append(fut)
        self.wake.set()
        return await fut

    # ---------------------------------------------------------------- transport callbacks
    def on_messages(self, batch: list[tuple[int, Message]], from_addr: str = "",
                    to_me: bool = False) -> None:
        """Step a peer's messages.  to_me: the sender named this node by its node uid, so a
        message to another id of ours means the group added this node anew (a replace)."""
        items = []
        for gid, m in batch:
            why = validate.problem(m)
            if why:
                self._drop(from_addr, f"group {gid}", m, why)
            else:
                items.append((gid, m, to_me, from_addr))
        if self._syncing:
            self._held_msgs.extend(items)
            return
        self._step_messages(items)

    def _step_messages(self, items: Iterable[tuple[int, Message, bool, str]]) -> None:
        groups = self.groups
        for gid, m, to_me, addr in items:
            if m.type == MsgType.HELLO:
                # (its uid was looked at with its batch, in check_peer): tell it every group
                # that refuses it
                for h in groups.values():
                    if addr in h.refused:
                        self._refuse(h, addr, m)
                continue
            g = groups.get(gid)
            if g is None:
                self.drops.drop(addr, f"a message of group {gid}", "this node hosts no such group")
                continue
            if (addr and m.frm >= 0 and m.frm not in g.members.addrs
                    and (len(g.sender_addrs) < 1024 or m.frm in g.sender_addrs)):
                g.sender_addrs[m.frm] = addr   # (see Group.sender_addrs; bounded)
            if m.type == MsgType.REFUSED:
                self._refused_by(g, addr, m.context.decode(errors="replace"))
                continue
            if m.type == MsgType.MEMBERS_DIFFER:
                line = f"refused by {addr}: {m.context.decode(errors='replace')}"
                if self._differ_logged((g.gid, "by " + addr)):
                    log.error("%s: this node is %s", g.name, line)
                g.members_problem, g.members_problem_from = line, addr
                continue
            if addr in g.differ:
                if self._once_a_second((g.gid, addr)):
                    self.transport.send(addr, g.gid, [Message(
                        MsgType.MEMBERS_DIFFER, to=m.frm, frm=g.me,
                        context=g.differ[addr].encode())])
                continue
            if g.members_problem and addr == g.members_problem_from:
                g.members_problem = g.members_problem_from = ""   # it takes our messages again
            if addr in g.refused:
                self._refuse(g, addr, m)
                continue
            if m.to != g.me:
                if not (m.to >= 0 and (to_me or g.waiting or g.problem or self.problem)
                        and m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP)):
                    continue
                why = validate.step_problem(g.node.raft, m)
                if why:         # (an invalid message never makes us take another id)
                    self._drop(addr, g.name, m, why)
                    continue
                g.rebind(m.to)
            self._step_one(g, m, addr)
        self.wake.set()

    def _step_one(self, g: Group, m: Message, addr: str) -> None:
        """Step a peer's message into g's core: never fatal (see eraftd/node/validate.py)."""
        why = validate.step_problem(g.node.raft, m)
        if not why:
            try:
                g.node.step(m)
                return
            except Exception as e:  # noqa: BLE001 - a peer's message must never stop the driver
                log.debug("%s: stepping %r from %s raised", g.name, m, addr, exc_info=True)
                why = f"the Raft core could not take it ({type(e).__name__}: {e})"
        self._drop(addr, g.name, m, why)

    def _drop(self, addr: str, where: str, m: Message, why: str) -> None:
        self.drops.drop(addr, f"a {validate.type_name(m.type)} message of {where}", why)

    async def on_snapshot(self, gid: int, msg: Message, chunks: Any,
                          from_addr: str = "") -> bool | str:
        """A peer's snapshot: True once its core took it; False or why not (a refusal)."""
        g = self.groups.get(gid)
        why = validate.snapshot_problem(msg) or ("" if g else "this node hosts no such group")
        if not why and g is not None:
            why = g.differ.get(from_addr) or validate.step_problem(g.node.raft, msg)
        if why:
            self.drops.drop(from_addr, f"a snapshot of group {gid}", why)
            return why
        if g.restoring:
            return False
        g.restoring = True
        restore = g.store.begin_restore()
        taken = False
        try:
            async for chunk in chunks:
                restore.add_chunk(chunk)
            msg.snapshot_data = restore
            raw = restore.get(MEMBERS_KEY)
            if raw is not None:
                # the membership at the snapshot's index travels in its data
                try:
                    conf = Members.decode(raw).conf
                except ValueError as e:
                    self.drops.drop(from_addr, f"a snapshot of {g.name}", str(e))
                    return str(e)
                msg.snapshot = SnapshotMeta(msg.snapshot.index, msg.snapshot.term, conf)

            def step() -> bool:
                self._step_one(g, msg, from_addr)
                return g.node.raft.log.unstable.snapshot_data is restore
            taken = await self._when_stepping(step)
            if taken:
                log.info("%s: received snapshot at index %d from %s", g.name, msg.snapshot.index,
                         g.address_of(msg.frm) or msg.frm)
            self.wake.set()
            return True
        finally:
            if not taken:
                restore.abort()
            g.restoring = False

    def on_unreachable(self, addr: str) -> None:
        if self._syncing:
            self._held_calls.append(lambda: self.on_unreachable(addr))
            return
        for g in self.groups.values():
            nid = g.members.id_of(addr)
            if nid is not None:
                g.node.report_unreachable(nid)
        self.wake.set()

    # ---------------------------------------------------------------- the loop
    async def run(self) -> None:
        ticker = asyncio.create_task(self._ticker())
        try:
            while not self.stopping:
                await self.wake.wait()
                await self._coalesce()
                while await self._round():
                    pass
                # let the transport and the services run before the next round
                await asyncio.sleep(0)
        finally:
            ticker.cancel()
            for t in list(self._tasks):
                t.cancel()
            if self._syncer is not None:
                self._syncer.shutdown(wait=True)
                self._syncer = None

    async def _coalesce(self) -> None:
        """Inputs arrive one per event-loop turn (grpc.aio accepts one new call per turn, the
        transport hands over one batch per turn): while they keep arriving, give them a few
        more turns, so that one round -- one fsync -- serves them all.  An input that arrives
        alone costs one extra turn."""
        for _ in range(COALESCE_TURNS):
            self.wake.clear()
            await asyncio.sleep(0)
            if not self.wake.is_set():
                break
        self.wake.clear()

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.heartbeat_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if self._syncing:
                self._held_ticks += 1
            else:
                for g in self.groups.values():
                    g.node.tick()
            self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def _round(self) -> bool:
        readies: list[tuple[Group, Ready]] = []
        for g in self.groups.values():
            g.flush_inputs()
            if g.node.has_ready():
                readies.append((g, g.node.ready()))
        if not readies:
            return False
        self.rounds += 1
        must_sync = any(rd.must_sync for _, rd in readies)
        snapshots = any(rd.snapshot is not None for _, rd in readies)
        leads = any(g.is_leader() for g in self.groups.values())
        # a node that leads no group syncs in the loop's thread (its loop has nothing to serve
        # meanwhile: its peers' messages wait for this round anyway, and a client hears "not
        # the leader" a moment later), and applies what this round commits only after its
        # acknowledgements have left: the leader's commit waits for them, not for our apply
        ack_first = must_sync and self.store.fsync and not snapshots and not leads
        batch = self.store.new_batch()
        for g, rd in readies:
            gs = g.store
            if rd.snapshot is not None and not gs.stage_install_snapshot(batch, rd.snapshot_data,
                                                                         rd.snapshot):
                # the core only hands over snapshots newer than its commit index, which is never
                # behind the stored snapshot: this would be a bug, and must not pass silently
                rd.snapshot_data.abort()
                raise AssertionError(f"{g.name}: storage refused snapshot {rd.snapshot} "
                                     f"(stored {gs.snapshot()})")
            if rd.entries:
                gs.stage_append(batch, rd.entries)
                g.entries_appended += len(rd.entries)
            if rd.hard_state is not None:
                gs.stage_hard_state(batch, rd.hard_state)
        if ack_first:
            for g, rd in readies:
                self._send(g, rd.messages)
            t0 = time.perf_counter()
            self.store.write(batch)
            metrics.observe_fsync(time.perf_counter() - t0)
            for g, rd in readies:
                self._send(g, rd.persisted_messages)
            if any(rd.committed for _, rd in readies):
                # one loop turn for the transport's sender tasks to write the acknowledgements
                # (inputs for the cores are held meanwhile, as during a thread's fsync), then
                # the applies, written unsynced: the entries are durable, they apply again
                # after a crash
                self._syncing = True
                try:
                    await asyncio.sleep(0)
                finally:
                    self._syncing = False
                batch = self.store.new_batch()
                results = self._stage_applies(readies, batch)
                self.store.write(batch, sync=False)
            else:
                results = [[] for _ in readies]
            for (g, rd), res in zip(readies, results):
                g.finish(rd, res)
        else:
            results = self._stage_applies(readies, batch)
            for (g, rd), res in zip(readies, results):
                self._send(g, rd.messages)   # they promise nothing: out while the disk works
                # committed entries are durable on a majority already: their proposers may have
                # their answers now (they are sent while the disk works; the batch is written,
                # unsynced, before any other task runs)
                g.finish(rd, res)
            # durable (fsync) before anything that depends on it leaves, when anything does
            # (new entries, a snapshot, a new term or vote: Ready.must_sync).  A round that only
            # moves the commit index and applies is written unsynced: a crash that loses it
            # loses no promise (the entries are durable; they apply again).  Not in a thread: a
            # round that installs a snapshot (no loop turn between the write and the state
            # machine's restore)
            if not must_sync:
                if len(batch):
                    self.store.write(batch, sync=False)
            else:
                t0 = time.perf_counter()
                if self.store.fsync and not snapshots:
                    await self._write_and_sync(batch, not any(rd.committed for _, rd in readies))
                else:
                    self.store.write(batch)
                metrics.observe_fsync(time.perf_counter() - t0)
        for g, rd in readies:
            if rd.snapshot is not None:
                g.sm.restored()
                g.reload_members()
                self._learn_member_uids(g)
                g.snapshots += 1
                log.info("%s: installed snapshot at index %d", g.name, rd.snapshot.index)
            if not ack_first:
                self._send(g, rd.persisted_messages)
            g.node.advance(rd)
            g.round_commit = g.node.commit
            g.after_advance()
            for n in rd.notices:
                self._log_notice(g, n)
        self._step_held()
        self._compact(readies)
        return True

    @staticmethod
    def _stage_applies(readies: list[tuple[Group, Ready]], batch: Any) -> list[list[Any]]:
        """Apply each group's committed entries into batch, with its applied index; the state
        machines' results, one list per group."""
        results: list[list[Any]] = []
        for g, rd in readies:
            res: list[Any] = []
            if rd.committed:
                res = g.apply_committed(rd.committed, batch)
                g.store.stage_applied(batch, rd.committed[-1].index)
                g.entries_applied += len(rd.committed)
            results.append(res)
        return results

    async def _write_and_sync(self, batch: Any, appends_first: bool = False) -> None:
        """Write the batch unsynced, then fsync in the syncer thread; the loop runs meanwhile
        and the inputs for the cores that arrive are held (see _step_held).  appends_first:
        the batch applies nothing (only log entries and hard state, which nobody reads from
        the store meanwhile), so give the transport's sender tasks one loop turn first: the
        round's appends go on the wire before the write and the fsync thread's start."""
        self._syncing = True
        try:
            if appends_first:
                await asyncio.sleep(0)
            self.store.write(batch, sync=False)
            if self._syncer is None:
                self._syncer = ThreadPoolExecutor(1, thread_name_prefix="eraftd-fsync")
            await asyncio.get_running_loop().run_in_executor(self._syncer, self.store.sync_wal)
        finally:
            self._syncing = False

    async def _when_stepping(self, fn: Callable[[], Any]) -> Any:
        """fn() (which steps a core) now, or when the round waiting for its fsync ends: never
        later than that, however busy the rounds that follow are."""
        if not self._syncing:
            return fn()
        fut = asyncio.get_running_loop().create_future()

        def call() -> None:
            if fut.cancelled():        # the caller is gone (and has undone its part)
                return
            try:
                fut.set_result(fn())
            except Exception as e:     # noqa: BLE001 - the waiting caller gets it
                fut.set_exception(e)
        self._held_calls.append(call)
        return await fut

    def _step_held(self) -> None:
        """Step into the cores what arrived while the round waited for its fsync: messages
        first (a leader's heartbeats count before the ticks that would time it out)."""
        if self._held_msgs:
            msgs, self._held_msgs = self._held_msgs, []
            self._step_messages(msgs)
        if self._held_calls:
            calls, self._held_calls = self._held_calls, []
            for call in calls:
                call()
        if self._held_ticks:
            ticks, self._held_ticks = self._held_ticks, 0
            for _ in range(ticks):
                for g in self.groups.values():
                    g.node.tick()
            self.wake.set()

    def _compact(self, readies: list[tuple[Group, Ready]]) -> None:
        batch = None
        for g, _ in readies:
            point = g.compaction_point()
            if point:
                if batch is None:
                    batch = self.store.new_batch()
                g.store.stage_compact(batch, point)
                log.info("%s: compacted log through index %d", g.name, point)
        if batch is not None:
            self.store.write(batch, sync=False)   # lost in a crash, it is done again later

    def _log_notice(self, g: Group, n: Any) -> None:
        if n.kind == "lost-log":
            log.warning("%s: member %d (%s) no longer has entries up to %d that it had "
                        "acknowledged (a wiped or damaged disk?); sending it the log again from %d",
                        g.name, n.peer, g.address_of(n.peer), n.index, n.hint)
        elif n.kind == "removed":
            log.warning("%s: this node was removed from the group; it serves nothing for it now",
                        g.name)

    def _send(self, g: Group, msgs: list[Message]) -> None:
        if not msgs:
            return
        by_peer: dict[int, list[Message]] = {}
        for m in msgs:
            if m.type == MsgType.SNAP:
                self._spawn(self._send_snapshot(g, m))
            else:
                by_peer.setdefault(m.to, []).append(m)
        for to, ms in by_peer.items():
            addr = g.address_of(to)
            if addr and addr not in g.refused:
                self.transport.send(addr, g.gid, ms)

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _send_snapshot(self, g: Group, m: Message) -> None:
        meta, chunks = g.store.snapshot_chunks()
        m.snapshot = meta
        addr = g.address_of(m.to)
        log.info("%s: sending snapshot at index %d to %s", g.name, meta.index, addr)
        ok = False
        try:
            ok = await self.transport.send_snapshot(addr, g.gid, m, chunks)
        except Exception as e:  # the peer went away mid-stream: report and retry later
            log.warning("%s: snapshot to %s failed: %s", g.name, addr, e)
        await self._when_stepping(lambda: g.node.report_snapshot(m.to, ok))
        g.snapshots += ok
        self.wake.set()
