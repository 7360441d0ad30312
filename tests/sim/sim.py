"""A seeded, deterministic simulation of a Raft cluster around eraftd.raft.rawnode.RawNode.

Time is logical (integer units; one tick of a node = TICK units).  Everything that happens is
an event in one heap ordered by (time, seq); ONE step = one event: a message delivery, a tick
of one node, a snapshot-status report, or a scheduled action (proposal, read, crash, restart,
partition change...).  Scripted calls (cluster.propose(...), cluster.crash(...)) count as a
step too.  The only randomness is random.Random(seed) (one for the network, one per node
incarnation for the core), and nothing iterates over a set, so a seed replays exactly.

Network: per-message delay in [delay_min, delay_max], plus with probability `long_delay` a long
one; links are FIFO like the real transport's streams (a slow message holds up the ones behind
it) except that with probability `reorder` a message may overtake others; random drops and
duplicates (a duplicate arrives at its own random time); symmetric partitions (groups, isolated
nodes) and one-way cuts, checked when a message is sent and again when it would arrive.

Driver (per Ready, in this order, as the core's contract asks):
  rd.messages are sent first (a real driver may send them before its write: checked by the
  invariants), then [optionally a torn crash: the node dies before the write], then
  1. install rd.snapshot (storage + state machine), 2. append rd.entries and set rd.hard_state
  ("durable"), 3. send rd.persisted_messages, 4. apply rd.committed and record rd.read_states,
  5. advance, 6. every `snap_every` applied entries snapshot the state machine and compact.
SNAP messages get their payload attached at send time; their fate (delivered or lost) is
reported back to the sender with report_snapshot.  A message dropped because its target is
cut off or down is reported with report_unreachable.

Crash: the RawNode, the state machine and every in-flight message to or from the node are
lost; the MemoryStorage is the disk and survives.  Restart: a new RawNode over the same
storage with applied = the storage's snapshot index; the state machine restarts from the
snapshot data; later committed entries come again through Ready.committed.

The state machine is a chained hash (index, term, hash) of the applied entries: that is the
snapshot data too, and it makes state machine safety a comparison of integers.

Membership: nodes 0..voters-1 start as the group's voters, the others (spares) start knowing
no membership, as a real node started to join a group does.  add_learner / promote / remove
propose one change at the leader; committed CONF_CHANGE entries are applied with
apply_conf_change as the driver does.  wipe(i) replaces a node's disk by an empty one (only for a
node that is no member in anyone's eyes: reusing an id with a wiped disk is safe only then).
With membership on (voters < n), storage makes a snapshot on demand at the applied index, like
the real store, since a node that joins must start from one.
"""
from __future__ import annotations

import hashlib
import heapq
import random
from collections import deque
from dataclasses import dataclass, fields, replace

from eraftd.raft.messages import ConfChange, ConfChangeOp, ConfState, EntryType, Message, MsgType, Role
from eraftd.raft.options import RaftOptions
from eraftd.raft.storage import MemoryStorage

from .invariants import Invariants, Violation, chain_hash

TICK = 10  # time units per tick

EV_DELIVER, EV_TICK, EV_SNAP_STATUS, EV_CALL = 0, 1, 2, 3
_SNAP = MsgType.SNAP
_LEADER = Role.LEADER


@dataclass
class SimConfig:
    n: int = 3
    # core options
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_committed_per_ready: int = 1 << 22
    # network
    delay_min: int = 1
    delay_max: int = 5
    long_delay: float = 0.0        # probability that a message takes a long delay
    reorder: float = 0.0           # probability that a message ignores per-link FIFO order
    long_delay_max: int = 300
    drop: float = 0.0
    dup: float = 0.0
    report_unreachable: bool = True
    # driver
    snap_every: int = 0            # snapshot + compact every this many applied entries (0: never)
    keep: int = 0                  # entries kept below the snapshot when compacting
    torn: float = 0.0              # probability that a node crashes between send and write
    voters: int = 0                # the initial voters are nodes 0..voters-1 (0: all n)
    # harness
    check: bool = True             # run the invariants
    trace_len: int = 400           # events kept for failure reports
    trace_hash: bool = False       # hash every event (determinism tests)

    def describe(self) -> str:
        d = SimConfig()
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                        if getattr(self, f.name) != getattr(d, f.name) or f.name == "n")


class SimStorage(MemoryStorage):
    """MemoryStorage that, when `on_demand` is set, answers snapshot() with a fresh snapshot at
    the node's applied index (the real store builds the snapshot it sends from its current
    state)."""

    def __init__(self, node: "SimNode | None" = None, on_demand: bool = False) -> None:
        super().__init__()
        self.node = node
        self.on_demand = on_demand

    def snapshot(self):
        sn = self.node
        if self.on_demand and sn.up and sn.sm_index > self.snap.index:
            data = (sn.sm_index, sn.sm_term, sn.sm_hash)
            self.create_snapshot(sn.sm_index, data, sn.raw.conf_state)
            sn.snaps[sn.sm_index] = data
        return self.snap


class SimNode:
    __slots__ = ("id", "storage", "snaps", "raw", "up", "epoch", "sm_index", "sm_term",
                 "sm_hash", "reads", "done_reads", "all_reads", "read_results", "incarnations",
                 "base_conf")

    def __init__(self, nid: int, base_conf: ConfState, on_demand: bool = False) -> None:
        self.id = nid
        self.base_conf = base_conf       # the membership at index 0 as this disk knows it
        self.storage = SimStorage(self, on_demand)   # the disk: survives crashes
        self.snaps: dict[int, tuple] = {}  # snapshots this node created (on disk too)
        self.raw = None
        self.up = False
        self.epoch = 0
        self.sm_index = 0
        self.sm_term = 0
        self.sm_hash = 0
        self.reads: dict[bytes, int] = {}        # ctx -> commit bound, waiting for a ReadState
        self.done_reads: dict[bytes, int] = {}   # ctx -> bound, answered
        self.read_results: dict[bytes, int] = {}  # ctx -> read index
        self.all_reads: dict[bytes, int] = {}    # ctx -> bound, every incarnation
        self.incarnations = 0


def _rawnode():
    from eraftd.raft.rawnode import RawNode, ProposalDropped
    return RawNode, ProposalDropped


class Cluster:
    def __init__(self, cfg: SimConfig | None = None, seed: int = 0, **kw) -> None:
        if cfg is None:
            cfg = SimConfig(**kw)
        elif kw:
            cfg = replace(cfg, **kw)
        self.cfg = cfg
        self.seed = seed
        self.n = cfg.n
        nv = cfg.voters or cfg.n
        self.membership = nv < cfg.n
        self.initial_conf = ConfState(tuple(range(nv)), ())
        self.rng = random.Random(seed)
        self.now = 0
        self.steps = 0
        self._in_event = False
        self._seq = 0
        self._q: list = []
        self.nodes = [SimNode(i, self.initial_conf if i < nv else ConfState(), self.membership)
                      for i in range(cfg.n)]
        self.inv = Invariants(self) if cfg.check else None
        self.trace: deque = deque(maxlen=cfg.trace_len)
        self._hasher = hashlib.blake2b(digest_size=16) if cfg.trace_hash else None
        # connectivity: cut[a][b] = messages a -> b are lost
        self._disc = [False] * cfg.n
        self._part = [0] * cfg.n
        self._oneway: dict[tuple[int, int], bool] = {}
        self.cut = [[False] * cfg.n for _ in range(cfg.n)]
        self._link_last = [[0] * cfg.n for _ in range(cfg.n)]
        self._unreach: list[tuple[int, int, int]] = []
        self._reads = 0
        self.stats = dict(delivered=0, dropped=0, dup=0, ticks=0, snaps_sent=0, snaps_installed=0,
                          crashes=0, torn=0, restarts=0, proposals=0, dropped_proposals=0,
                          read_states=0, conf_changes=0, conf_refused=0, wipes=0)
        self._opts = RaftOptions(id=0, peers=(), election_tick=cfg.election_tick,
                                 heartbeat_tick=cfg.heartbeat_tick, pre_vote=cfg.pre_vote,
                                 check_quorum=cfg.check_quorum,
                                 max_size_per_msg=cfg.max_size_per_msg,
                                 max_inflight_msgs=cfg.max_inflight_msgs,
                                 max_committed_per_ready=cfg.max_committed_per_ready)
        self._RawNode, self.ProposalDropped = _rawnode()
        for i in range(cfg.n):
            self._start(i)

    # ================================================================ events
    def _push(self, at: int, kind: int, a=None, b=None, c=None, d=None) -> None:
        self._seq += 1
        heapq.heappush(self._q, (at, self._seq, kind, a, b, c, d))

    def schedule(self, delay: int, fn, label: str = "call") -> None:
        """Run fn() as one step, `delay` time units from now."""
        self._push(self.now + delay, EV_CALL, fn, label)

    def _note(self, *ev) -> None:
        self.trace.append((self.steps, self.now) + ev)
        if self._hasher is not None:
            self._hasher.update(repr((self.steps, self.now) + ev).encode())

    def trace_digest(self) -> str:
        """Hash of every event so far (needs trace_hash=True) plus the final state."""
        h = self._hasher.copy() if self._hasher is not None else hashlib.blake2b(digest_size=16)
        h.update(repr(self.fingerprint()).encode())
        return h.hexdigest()

    def fingerprint(self) -> tuple:
        return (self.steps, self.now, tuple(
            (sn.up, tuple(sn.storage.hard_state), sn.storage.last_index(), sn.sm_index, sn.sm_hash)
            for sn in self.nodes))

    def step(self) -> bool:
        """Run one event; False when nothing is left to do."""
        if not self._q:
            return False
        at, _seq, kind, a, b, c, d = heapq.heappop(self._q)
        self.now = at
        self.steps += 1
        self._in_event = True
        try:
            if kind == EV_DELIVER:
                self._deliver(a, b, c, d)
            elif kind == EV_TICK:
                sn = self.nodes[a]
                if sn.up and sn.epoch == b:
                    self._push(at + TICK, EV_TICK, a, b)
                    self.stats["ticks"] += 1
                    self._note("tick", a)
                    sn.raw.tick()
                    self._drain(sn)
            elif kind == EV_SNAP_STATUS:
                sn = self.nodes[a]
                if sn.up and sn.epoch == b:
                    self._note("snap-status", a, c, d)
                    sn.raw.report_snapshot(c, d)
                    self._drain(sn)
            else:
                self._note("call", b)
                a()
        except Exception as e:
            raise self._described(e) from (None if isinstance(e, Violation) else e)
        finally:
            self._in_event = False
        return True

    def _count(self) -> None:
        """A scripted action is one step, unless it runs inside a scheduled event (already one)."""
        if not self._in_event:
            self.steps += 1

    def _described(self, e: Exception) -> Violation:
        if getattr(e, "described", False):
            return e
        if isinstance(e, Violation):
            v = Violation(f"{e}\n{self.describe()}")
        else:
            v = Violation(f"core raised {type(e).__name__}: {e}\n{self.describe()}")
        v.described = True
        return v

    def run_steps(self, k: int) -> None:
        for _ in range(k):
            if not self.step():
                return

    def run_for(self, dt: int) -> None:
        """Run every event up to now + dt."""
        end = self.now + dt
        q = self._q
        while q and q[0][0] <= end:
            self.step()
        self.now = max(self.now, end)

    def run_until(self, pred, timeout: int) -> bool:
        """Step until pred() holds (checked after every step); False on timeout."""
        end = self.now + timeout
        if pred():
            return True
        q = self._q
        while q and q[0][0] <= end:
            self.step()
            if pred():
                return True
        self.now = max(self.now, end)
        return False

    def ticks(self, k: float) -> int:
        return int(k * TICK)

    @property
    def eto(self) -> int:
        """One (base) election timeout in time units."""
        return self.cfg.election_tick * TICK

    # ================================================================ network
    def _send(self, sn, m: Message) -> None:
        to = m.to
        frm = sn.id
        if not 0 <= to < self.n or to == frm:
            raise Violation(f"node {frm} sends {m!r} to an invalid peer {to}")
        if m.type == _SNAP:
            self.stats["snaps_sent"] += 1
            meta = m.snapshot
            st = sn.storage
            data = st.snap_data if st.snap == meta else sn.snaps.get(meta.index)
            if data is None or (data[0], data[1]) != (meta.index, meta.term):
                raise Violation(f"node {frm} sends a snapshot {tuple(meta)} it does not have "
                                f"(storage has {tuple(st.snap)})")
            m = replace(m, snapshot_data=data)
        dst = self.nodes[to]
        rng = self.rng
        cfg = self.cfg
        if self.cut[frm][to] or not dst.up:
            self.stats["dropped"] += 1
            if m.type == _SNAP:
                self._push(self.now + cfg.delay_min, EV_SNAP_STATUS, frm, sn.epoch, to, False)
            if cfg.report_unreachable:
                self._unreach.append((frm, sn.epoch, to))
            return
        if cfg.drop and rng.random() < cfg.drop:
            self.stats["dropped"] += 1
            if m.type == _SNAP:
                self._push(self.now + cfg.delay_max, EV_SNAP_STATUS, frm, sn.epoch, to, False)
            return
        at = self.now + self._delay()
        if not (cfg.reorder and rng.random() < cfg.reorder):
            # per-link FIFO, like a stream: never overtake an earlier message on this link
            last = self._link_last[frm]
            if at < last[to]:
                at = last[to]
            last[to] = at
        self._push(at, EV_DELIVER, m, frm, sn.epoch, dst.epoch)
        if cfg.dup and rng.random() < cfg.dup:
            self.stats["dup"] += 1
            self._push(self.now + self._delay(), EV_DELIVER, replace(m), frm, sn.epoch, dst.epoch)

    def _delay(self) -> int:
        cfg = self.cfg
        if cfg.long_delay and self.rng.random() < cfg.long_delay:
            return self.rng.randint(cfg.delay_max, cfg.long_delay_max)
        return self.rng.randint(cfg.delay_min, cfg.delay_max)

    def _deliver(self, m: Message, frm: int, frm_epoch: int, to_epoch: int) -> None:
        src = self.nodes[frm]
        dst = self.nodes[m.to]
        alive = src.epoch == frm_epoch
        ok = alive and dst.up and dst.epoch == to_epoch and not self.cut[frm][m.to]
        if m.type == _SNAP and alive:
            self._push(self.now + self.cfg.delay_min, EV_SNAP_STATUS, frm, frm_epoch, m.to, ok)
        if not ok:
            self.stats["dropped"] += 1
            self._note("lost", frm, m)
            return
        self.stats["delivered"] += 1
        self._note("recv", frm, m)
        dst.raw.step(m)
        self._drain(dst)

    def _recompute_cut(self) -> None:
        n = self.n
        for a in range(n):
            row = self.cut[a]
            for b in range(n):
                row[b] = a != b and (self._disc[a] or self._disc[b]
                                     or self._part[a] != self._part[b] or (a, b) in self._oneway)

    def isolate(self, i: int) -> None:
        """Cut node i off from everyone (both directions)."""
        self._disc[i] = True
        self._recompute_cut()
        self._count()
        self._note("isolate", i)

    disconnect = isolate

    def connect(self, i: int) -> None:
        self._disc[i] = False
        self._recompute_cut()
        self._count()
        self._note("connect", i)

    def partition(self, *groups) -> None:
        """Split into groups (nodes not named form one more group)."""
        part = [len(groups)] * self.n
        for g, members in enumerate(groups):
            for i in members:
                part[i] = g
        self._part = part
        self._recompute_cut()
        self._count()
        self._note("partition", tuple(tuple(g) for g in groups))

    def cut_one_way(self, a: int, b: int) -> None:
        """Messages a -> b are lost (b -> a still arrive)."""
        self._oneway[(a, b)] = True
        self._recompute_cut()
        self._count()
        self._note("cut", a, b)

    def heal(self) -> None:
        """Remove every partition, isolation and one-way cut."""
        self._disc = [False] * self.n
        self._part = [0] * self.n
        self._oneway = {}
        self._recompute_cut()
        self._count()
        self._note("heal")

    def set_net(self, **kw) -> None:
        """Change network parameters (drop, dup, long_delay, delay_min, delay_max...)."""
        self.cfg = replace(self.cfg, **kw)
        self._note("net", tuple(sorted(kw.items())))

    def connected(self, i: int) -> bool:
        return self.nodes[i].up and not self._disc[i]

    def reachable(self, a: int, b: int) -> bool:
        return not self.cut[a][b] and not self.cut[b][a]

    # ================================================================ the driver
    def _drain(self, sn) -> None:
        raw = sn.raw
        while sn.up and sn.raw is raw and raw.has_ready():
            self._handle_ready(sn, raw, raw.ready())
        if self._unreach:
            ur, self._unreach = self._unreach, []
            for frm, ep, to in ur:
                s = self.nodes[frm]
                if s.up and s.epoch == ep:
                    s.raw.report_unreachable(to)
            # reporting may produce more to do (a probe instead of a replication stream)
            if sn.up and sn.raw is raw and raw.has_ready():
                self._drain(sn)

    def _handle_ready(self, sn, raw, rd) -> None:
        st = sn.storage
        inv = self.inv
        cfg = self.cfg
        if rd.messages:
            if inv is not None:
                inv.check_outgoing(sn, rd.messages, True, rd, st.hard_state, st.last_index())
            for m in rd.messages:
                self._send(sn, m)
        if cfg.torn and (rd.entries or rd.hard_state or rd.snapshot) \
                and self.rng.random() < cfg.torn:
            self.stats["torn"] += 1
            self._note("torn-crash", sn.id)
            self.crash(sn.id, _counted=False)
            return
        # 1. snapshot
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot, rd.snapshot_data)
            if inv is not None:
                inv.on_snapshot(sn, rd.snapshot, rd.snapshot_data)
            self.stats["snaps_installed"] += 1
            self._note("install", sn.id, tuple(rd.snapshot))
            sn.sm_index, sn.sm_term, sn.sm_hash = rd.snapshot_data
        # 2. persist
        if rd.entries:
            if inv is not None:
                inv.before_entries(sn, rd.entries)
            try:
                st.append(rd.entries)
            except ValueError as e:
                raise Violation(f"ready: node {sn.id} entries do not fit its log: {e}") from None
            if inv is not None:
                inv.on_entries(sn, rd.entries)
        if rd.hard_state is not None:
            old = st.hard_state
            st.set_hard_state(rd.hard_state)
            if inv is not None:
                inv.on_hard_state(sn, old, rd.hard_state)
        if rd.soft_state is not None:
            self._note("role", sn.id, rd.soft_state.role.name, rd.soft_state.leader,
                       st.hard_state.term)
            if rd.soft_state.role == _LEADER and inv is not None:
                inv.on_became_leader(sn, st.hard_state.term)
        # 3. messages that wait for the write
        if rd.persisted_messages:
            if inv is not None:
                inv.check_outgoing(sn, rd.persisted_messages, False)
            for m in rd.persisted_messages:
                self._send(sn, m)
        # 4. apply
        if rd.committed:
            commit = st.hard_state.commit
            h = sn.sm_hash
            for e in rd.committed:
                if inv is not None:
                    h = inv.on_apply(sn, e, commit)
                else:
                    h = chain_hash(h, e.index, e.term, e.data)
                sn.sm_hash = h
                sn.sm_index = e.index
                sn.sm_term = e.term
                if e.type == EntryType.CONF_CHANGE:
                    cs = raw.apply_conf_change(ConfChange.decode(e.data))
                    self._note("conf", sn.id, e.index, cs.voters, cs.learners)
                    if inv is not None:
                        inv.on_conf_applied(sn, e.index, cs)
        for rs in rd.read_states:
            self.stats["read_states"] += 1
            if inv is not None:
                inv.on_read_state(sn, rs)
            bound = sn.reads.pop(rs.context, None)
            if bound is not None:
                sn.done_reads[rs.context] = bound
            sn.read_results.setdefault(rs.context, rs.index)
            self._note("read-state", sn.id, tuple(rs))
        # 5.
        raw.advance(rd)
        # 6. snapshot + compaction
        se = cfg.snap_every
        if se and sn.sm_index - st.snap.index >= se:
            data = (sn.sm_index, sn.sm_term, sn.sm_hash)
            st.create_snapshot(sn.sm_index, data, raw.conf_state)
            sn.snaps[sn.sm_index] = data
            if len(sn.snaps) > 8:
                for k in sorted(sn.snaps)[:-8]:
                    del sn.snaps[k]
            st.compact(max(sn.sm_index - cfg.keep, 0))
            self._note("compact", sn.id, sn.sm_index)

    # ================================================================ node life
    def _start(self, i: int) -> None:
        sn = self.nodes[i]
        st = sn.storage
        conf = st.snap.conf if st.snap.conf is not None else sn.base_conf
        opts = replace(self._opts, id=i, applied=st.snap.index, peers=conf.voters,
                       learners=conf.learners)
        sn.incarnations += 1
        rng = random.Random((self.seed * 1_000_003 + i) * 1_009 + sn.incarnations)
        sn.raw = self._RawNode(opts, st, rng)
        if st.snap.index:
            sn.sm_index, sn.sm_term, sn.sm_hash = st.snap_data
        else:
            sn.sm_index = sn.sm_term = sn.sm_hash = 0
        sn.up = True
        sn.reads = {}
        sn.done_reads = {}
        sn.read_results = {}
        self._push(self.now + self.rng.randint(1, TICK), EV_TICK, i, sn.epoch)
        self._drain(sn)

    def crash(self, i: int, _counted: bool = True) -> None:
        sn = self.nodes[i]
        if not sn.up:
            return
        sn.up = False
        sn.raw = None
        sn.epoch += 1
        sn.reads = {}
        sn.done_reads = {}
        sn.sm_index = sn.sm_term = sn.sm_hash = -1
        self.stats["crashes"] += 1
        if _counted:
            self._count()
            self._note("crash", i)

    def restart(self, i: int) -> None:
        sn = self.nodes[i]
        if sn.up:
            return
        self.stats["restarts"] += 1
        self._count()
        self._note("restart", i)
        self._guard(self._start, i)

    def wipe(self, i: int) -> None:
        """Node i loses its disk and comes back empty, knowing no membership (a replaced
        machine that waits to be added)."""
        sn = self.nodes[i]
        self.crash(i, _counted=False)
        sn.storage = SimStorage(sn, self.membership)
        sn.snaps = {}
        sn.base_conf = ConfState()
        self.stats["wipes"] += 1
        self._count()
        self._note("wipe", i)
        self._guard(self._start, i)

    # ================================================================ membership
    def conf_change(self, i: int, op: int, nid: int) -> int | None:
        """Propose one membership change at node i; its index, or None when refused."""
        sn = self.nodes[i]
        self._count()
        if not sn.up:
            return None
        cc = ConfChange(op, nid, b"n%d-c%d" % (nid, self.stats["conf_changes"] + self.stats["conf_refused"]))
        try:
            idx = self._guard(sn.raw.propose_conf_change, cc)
        except self.ProposalDropped as e:
            self.stats["conf_refused"] += 1
            self._note("conf-refused", i, ConfChangeOp(op).name, nid, str(e))
            return None
        self.stats["conf_changes"] += 1
        self._note("conf-propose", i, ConfChangeOp(op).name, nid, idx)
        self._guard(self._drain, sn)
        return idx

    def conf(self, i: int) -> ConfState:
        """Node i's applied membership (its disk's, when it is down)."""
        sn = self.nodes[i]
        if sn.up:
            return sn.raw.conf_state
        st = sn.storage
        return st.snap.conf if st.snap.conf is not None else sn.base_conf

    def members(self) -> tuple:
        """The members of the group as the stable (or else the newest) leader sees them."""
        ld = self.leader()
        if ld is None:
            return tuple(range(self.n))
        return self.nodes[ld].raw.conf_state.members()

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except self.ProposalDropped:
            raise
        except Exception as e:
            raise self._described(e) from (None if isinstance(e, Violation) else e)

    # ================================================================ client side
    def propose(self, i: int, datas) -> int | None:
        """Propose at node i; the first index, or None when dropped (not leader, down...)."""
        if isinstance(datas, bytes):
            datas = [datas]
        sn = self.nodes[i]
        self._count()
        if not sn.up:
            return None
        self.stats["proposals"] += len(datas)
        try:
            idx = self._guard(sn.raw.propose, list(datas))
        except self.ProposalDropped:
            self.stats["dropped_proposals"] += len(datas)
            self._note("propose-dropped", i, len(datas))
            return None
        self._note("propose", i, idx, len(datas))
        self._guard(self._drain, sn)
        return idx

    def read_index(self, i: int, ctx: bytes | None = None) -> bytes | None:
        """Ask node i for a read index; returns the request's ctx (None if i is down)."""
        sn = self.nodes[i]
        self._count()
        if not sn.up:
            return None
        if ctx is None:
            self._reads += 1
            ctx = b"r%d" % self._reads
        if self.inv is not None:
            self.inv.on_read_request(sn, ctx)
        else:
            sn.reads[ctx] = sn.all_reads[ctx] = 0
        self._note("read", i, ctx)
        self._guard(sn.raw.read_index, ctx)
        self._guard(self._drain, sn)
        return ctx

    def read_result(self, i: int, ctx: bytes) -> int | None:
        """The read index answered to ctx at node i once i has applied it, else None."""
        sn = self.nodes[i]
        idx = sn.read_results.get(ctx)
        if idx is None or not sn.up or sn.sm_index < idx:
            return None
        return idx

    def transfer_leader(self, i: int, to: int) -> None:
        sn = self.nodes[i]
        self._count()
        if sn.up:
            self._note("transfer", i, to)
            self._guard(sn.raw.transfer_leader, to)
            self._guard(self._drain, sn)

    def campaign(self, i: int) -> None:
        sn = self.nodes[i]
        self._count()
        if sn.up:
            self._note("campaign", i)
            self._guard(sn.raw.campaign)
            self._guard(self._drain, sn)

    # ================================================================ observation
    def leader(self) -> int | None:
        """The up node that believes it leads, in the highest term (None if none)."""
        best = None
        for sn in self.nodes:
            if sn.up and sn.raw.role == _LEADER and (best is None or sn.raw.term > best.raw.term):
                best = sn
        return None if best is None else best.id

    def leaders(self) -> list[int]:
        return [sn.id for sn in self.nodes if sn.up and sn.raw.role == _LEADER]

    def term(self, i: int) -> int:
        sn = self.nodes[i]
        return sn.raw.term if sn.up else sn.storage.hard_state.term

    def role(self, i: int):
        sn = self.nodes[i]
        return sn.raw.role if sn.up else None

    def applied_index(self, i: int) -> int:
        return self.nodes[i].sm_index

    def applied_data(self, index: int) -> bytes | None:
        rec = self.inv.applied.get(index) if self.inv is not None else None
        return None if rec is None else rec[1]

    def n_applied(self, index: int, among=None) -> int:
        """How many up nodes (of `among`, default all) have applied `index`."""
        return sum(1 for sn in self.nodes if sn.up and sn.sm_index >= index
                   and (among is None or sn.id in among))

    def stable_leader(self) -> int | None:
        """A leader whose term is the highest of any up node's and that every up node it can
        reach both ways follows."""
        ld = self.leader()
        if ld is None:
            return None
        t = self.nodes[ld].raw.term
        members = self.nodes[ld].raw.conf_state
        for sn in self.nodes:
            if sn.up and sn.id in members and (
                    sn.raw.term > t or (self.reachable(ld, sn.id) and sn.raw.lead != ld)):
                return None
        return ld

    def describe(self, last: int = 60) -> str:
        lines = [f"seed={self.seed} step={self.steps} time={self.now} cfg: {self.cfg.describe()}"]
        for sn in self.nodes:
            st = sn.storage
            if sn.up:
                r = sn.raw
                cs = r.conf_state
                s = (f"up {r.role.name:<13} term={r.term} lead={r.lead} commit={r.commit} "
                     f"applied={sn.sm_index} voters={list(cs.voters)} "
                     f"learners={list(cs.learners)}")
            else:
                s = f"DOWN (disk term={st.hard_state.term} vote={st.hard_state.vote})"
            lines.append(f"  node {sn.id}: {s} disk: hs={tuple(st.hard_state)} "
                         f"snap={tuple(st.snap)} log=[{st.first_index()}..{st.last_index()}]")
        cuts = [f"{a}->{b}" for a in range(self.n) for b in range(self.n) if self.cut[a][b]]
        if cuts:
            lines.append("  cut: " + " ".join(cuts))
        lines.append(f"  last {min(last, len(self.trace))} events:")
        lines.extend("    " + format_event(ev) for ev in list(self.trace)[-last:])
        return "\n".join(lines)


def format_event(ev: tuple) -> str:
    step, now, kind, *rest = ev
    if kind in ("recv", "lost"):
        frm, m = rest
        return f"#{step} t={now} {kind} {m!r}" + (f" (sent by {frm})" if m.frm != frm else "")
    return f"#{step} t={now} {kind} " + " ".join(str(x) for x in rest)
