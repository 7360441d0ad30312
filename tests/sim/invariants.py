"""Raft safety invariants, checked incrementally by the simulated driver (tests/sim/sim.py).

Every hook looks only at what the current step changed, so the checks stay cheap enough to run
after every event of a long simulation.  The checks, with the paper's names:

  election safety        at most one leader per term, ever (seen from soft state AND from the
                         leader-only messages APP/HEARTBEAT/SNAP, so a leadership that lasted less
                         than one Ready is caught too)
  log matching           a global map (index, term) -> (data, term of index-1): an entry appended
                         anywhere must match it (same data, same predecessor term => same prefix
                         by induction)
  leader completeness    a leader of term T holds every entry committed in a term < T: checked when
                         it is elected and when a commit is reported (the term an entry is
                         committed in is that of the first node to report it: its leader)
  committed never lost   no node ever persists an entry at a committed index with another term;
                         when any node reports commit c, entry c is durable on a majority
  state machine safety   a global map index -> (term, data, chained hash) of applied entries;
                         every apply is at sm_index + 1 and matches it; no proposal applied twice;
                         an installed snapshot's data is the chained hash at its index
  persistence contract   hard state: term never decreases, one vote per term, commit never
                         decreases and never passes the durable log; a message that promises
                         durability (a granted VOTE_RESP, an accepting APP_RESP) is backed by
                         what is on disk when it is sent
  membership             every node applies the same changes in the same order (state machine
                         safety covers it); a commit is durable on a majority of the voters of
                         the reporting node, of its leader, or of one of the two newest
                         configurations changed below the entry; a new leader's membership is at
                         most one change behind the newest applied anywhere (two configurations
                         in use at once are adjacent, so their majorities overlap)
  read index             a ReadState(index, ctx) reaches only the node that asked (possibly a later
                         incarnation of it: an answer can outlive a restart), and its index is
                         >= every commit index reported anywhere before the read was issued
                         (a deposed leader's stale answer would fail this), <= the highest commit

A violation raises Violation (an AssertionError) with a one-line description; the Cluster adds
the seed and the trace.
"""
from __future__ import annotations

import bisect
import zlib

from eraftd.raft.messages import NONE, MsgType, Role

_APP, _HB, _SNAP = MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP
_VOTE_RESP, _APP_RESP = MsgType.VOTE_RESP, MsgType.APP_RESP
_LEADER_ONLY = frozenset({_APP, _HB, _SNAP})


class Violation(AssertionError):
    """A Raft safety property does not hold."""


def chain_hash(prev: int, index: int, term: int, data: bytes) -> int:
    """The state machine's running hash after applying (index, term, data)."""
    return zlib.crc32(data, zlib.crc32(b"%d:%d:" % (index, term), prev))


def _has_entry(st, index: int, term: int) -> bool:
    """Is entry (index, term) durable in MemoryStorage st (a compacted index counts: it is
    covered by an applied snapshot)?"""
    ents = st.ents
    off = ents[0].index
    if index < off:
        return True
    k = index - off
    return k < len(ents) and ents[k].term == term


class Invariants:
    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.leaders: dict[int, int] = {}               # term -> leader id
        self.ents: dict[tuple[int, int], list] = {}     # (index, term) -> [data, prev_term|None]
        self.commit_terms: dict[int, int] = {}          # index -> term of every committed entry
        self.commit_in: dict[int, int] = {}             # index -> term it was committed in
        self.max_commit = 0                             # highest commit index reported anywhere
        self.applied: dict[int, tuple] = {}             # index -> (term, data, chained hash)
        self.data_index: dict[bytes, int] = {}          # proposal data -> index it was applied at
        self.max_applied = 0
        self.read_states = 0
        self.conf_at: list[int] = []                    # indexes of applied conf changes, in order
        self.confs: dict[int, tuple] = {}               # index -> (voters, learners) after it

    def fail(self, what: str) -> None:
        raise Violation(what)

    # ------------------------------------------------------------ election safety
    def leader_seen(self, term: int, nid: int, how: str) -> None:
        cur = self.leaders.get(term)
        if cur is None:
            self.leaders[term] = nid
        elif cur != nid:
            self.fail(f"election safety: term {term} has two leaders {cur} and {nid} ({how})")

    def on_conf_applied(self, sn, index: int, cs) -> None:
        rec = self.confs.get(index)
        if rec is None:
            if self.conf_at and index < self.conf_at[-1]:
                self.fail(f"membership: node {sn.id} applies a change at {index} below the newest "
                          f"one at {self.conf_at[-1]} that nobody had applied")
            self.confs[index] = (cs.voters, cs.learners)
            self.conf_at.append(index)
        elif rec != (cs.voters, cs.learners):
            self.fail(f"membership: node {sn.id} has voters {cs.voters} learners {cs.learners} "
                      f"after the change at {index}; elsewhere {rec}")

    def _voters_before(self, index: int) -> list[tuple]:
        """The voters of the newest configuration applied anywhere whose change is below
        `index`, and of the one before it: an entry there is committed under one of them (a
        leader that has not applied the newest yet still counts with the one before)."""
        k = bisect.bisect_left(self.conf_at, index)
        out = [self.confs[i][0] for i in self.conf_at[max(0, k - 2):k]]
        if k < 2:
            out.append(self.cluster.initial_conf.voters)
        return out

    def on_became_leader(self, sn, term: int) -> None:
        self.leader_seen(term, sn.id, "soft state")
        if self.conf_at:
            behind = len(self.conf_at) - bisect.bisect_right(self.conf_at, sn.sm_index)
            if behind > 1:
                self.fail(f"membership: node {sn.id} leads term {term} with a membership "
                          f"{behind} changes behind the newest applied (it applied up to "
                          f"{sn.sm_index}; changes at {self.conf_at[-behind:]})")
        # leader completeness: every committed entry is in the new leader's durable log
        st = sn.storage
        ents = st.ents
        off = ents[0].index
        ct = self.commit_terms
        cin = self.commit_in
        for i in range(off + 1, self.max_commit + 1):
            t = ct.get(i)
            if t is None or cin[i] >= term:
                # (a leader elected late with old votes need not hold what later terms committed)
                continue
            k = i - off
            if k >= len(ents) or ents[k].term != t:
                have = ents[k].term if k < len(ents) else None
                self.fail(f"leader completeness: node {sn.id} leads term {term} without committed "
                          f"entry {i} (term {t}; it has term {have}, last index {st.last_index()})")

    # ------------------------------------------------------------ messages
    def check_outgoing(self, sn, msgs, early: bool, rd=None, pre_hs=None, pre_last=0) -> None:
        """Messages a node sends.  early: sent before this Ready's write (rd.messages)."""
        st = sn.storage
        for m in msgs:
            t = m.type
            if t in _LEADER_ONLY:
                self.leader_seen(m.term, sn.id, f"sent {m!r}")
            elif t == _VOTE_RESP and not m.reject:
                hs = pre_hs if early else st.hard_state
                if hs.term != m.term or hs.vote != m.to:
                    self.fail(f"persistence: node {sn.id} grants {m!r} but its durable hard state "
                              f"is {tuple(hs)}" + (" (sent before the write)" if early else ""))
            elif t == _APP_RESP and not m.reject and m.index:
                if early:
                    if (m.index > pre_last or (rd.entries and rd.entries[0].index <= m.index)
                            or rd.snapshot is not None):
                        self.fail(f"persistence: node {sn.id} acknowledges {m!r} before the "
                                  f"write that holds it (durable last index {pre_last})")
                elif m.index > st.last_index():
                    self.fail(f"persistence: node {sn.id} acknowledges {m!r} but its durable log "
                              f"ends at {st.last_index()}")

    # ------------------------------------------------------------ persisting a Ready
    def before_entries(self, sn, entries) -> None:
        """Before storage.append(entries): the append must not remove or replace a committed
        entry that the node holds (a stale uncommitted entry at a committed index may go)."""
        st = sn.storage
        first = entries[0].index
        old_last = st.last_index()
        if first > old_last:
            return
        ents = st.ents
        off = ents[0].index
        ct = self.commit_terms
        for i in range(max(first, off + 1), min(old_last, self.max_commit) + 1):
            c = ct.get(i)
            if c is None or ents[i - off].term != c:
                continue
            k = i - first
            new_t = entries[k].term if k < len(entries) else None
            if new_t != c:
                what = f"replaces it with term {new_t}" if new_t is not None else "truncates it"
                self.fail(f"committed entry lost: node {sn.id} holds committed ({i}, term {c}) "
                          f"and {what} (appending [{first}..{entries[-1].index}] over a log "
                          f"ending at {old_last})")

    def on_entries(self, sn, entries) -> None:
        """After storage.append(entries)."""
        st = sn.storage
        first = entries[0].index
        off = st.ents[0].index
        prev_t = st.ents[first - 1 - off].term if first - 1 >= off else None
        prev_i = first - 1
        ents = self.ents
        ct = self.commit_terms
        hs_term = max(st.hard_state.term, sn.raw.term if sn.raw is not None else 0)
        for e in entries:
            if e.index != prev_i + 1:
                self.fail(f"ready: node {sn.id} entries not contiguous at {e.index} "
                          f"(after {prev_i})")
            if prev_t is not None and e.term < prev_t:
                self.fail(f"log: node {sn.id} entry {e.index} term {e.term} < previous term "
                          f"{prev_t}")
            if e.term > hs_term:
                self.fail(f"log: node {sn.id} persists entry {tuple(e[:2])} from a term above its "
                          f"own {hs_term}")
            key = (e.index, e.term)
            rec = ents.get(key)
            if rec is None:
                ents[key] = [e.data, prev_t]
            else:
                if rec[0] != e.data:
                    self.fail(f"log matching: entry {key} has data {e.data!r} on node {sn.id} but "
                              f"{rec[0]!r} elsewhere")
                if prev_t is not None:
                    if rec[1] is None:
                        rec[1] = prev_t
                    elif rec[1] != prev_t:
                        self.fail(f"log matching: entry {key} on node {sn.id} follows term {prev_t}"
                                  f" at {e.index - 1}, elsewhere term {rec[1]}")
            c = ct.get(e.index)
            if c is not None and c != e.term and e.term > self.commit_in[e.index]:
                # (a lower term is a stale entry of a node that never had the committed one)
                self.fail(f"leader completeness: node {sn.id} persists ({e.index}, term {e.term})"
                          f" but ({e.index}, term {c}) was committed in term "
                          f"{self.commit_in[e.index]}: the term-{e.term} leader lacked it")
            prev_t = e.term
            prev_i = e.index

    def on_hard_state(self, sn, old, hs) -> None:
        """After storage.set_hard_state(hs) (old: the previous durable one)."""
        st = sn.storage
        if hs.term < old.term:
            self.fail(f"persistence: node {sn.id} term goes back {old.term} -> {hs.term}")
        if hs.term == old.term and old.vote != NONE and hs.vote != old.vote:
            self.fail(f"persistence: node {sn.id} votes twice in term {hs.term}: "
                      f"{old.vote} then {hs.vote}")
        if hs.commit < old.commit:
            self.fail(f"persistence: node {sn.id} commit goes back {old.commit} -> {hs.commit}")
        last = st.last_index()
        if hs.commit > last:
            self.fail(f"persistence: node {sn.id} commit {hs.commit} is past its durable log "
                      f"(last {last})")
        if hs.commit > old.commit:
            self._record_commit(sn, old.commit, hs.commit)

    def _record_commit(self, sn, old_c: int, c: int) -> None:
        st = sn.storage
        ents = st.ents
        off = ents[0].index
        ct = self.commit_terms
        cin = self.commit_in
        now_term = st.hard_state.term
        for i in range(max(old_c + 1, off), c + 1):
            t = ents[i - off].term
            prev = ct.get(i)
            if prev is None:
                ct[i] = t
                cin[i] = now_term
            elif prev != t:
                self.fail(f"committed entry lost: node {sn.id} commits ({i}, term {t}) but "
                          f"({i}, term {prev}) was committed before")
        if c > self.max_commit:
            self.max_commit = c
        t = ct.get(c)
        if t is None:
            return  # below our snapshot: recorded by whoever committed it
        nodes = self.cluster.nodes
        holders = {o.id for o in nodes if _has_entry(o.storage, c, t)}
        vsets = [sn.raw.conf_state.voters if sn.raw is not None
                 else self.cluster.initial_conf.voters]
        lead = sn.raw.lead if sn.raw is not None else NONE
        if 0 <= lead < len(nodes) and nodes[lead].raw is not None:
            vsets.append(nodes[lead].raw.conf_state.voters)
        vsets.extend(self._voters_before(c))
        if not any(2 * len(holders.intersection(v)) > len(v) for v in vsets):
            self.fail(f"commit: node {sn.id} reports commit {c} (term {t}) but only nodes "
                      f"{sorted(holders)} hold it durably (voters {[list(v) for v in vsets]})")
        # leader completeness, the other way round: current leaders of later terms hold it
        u = cin[c]
        for other in self.cluster.nodes:
            raw = other.raw
            if (other.up and raw.role == Role.LEADER and raw.term > u
                    and not _has_entry(other.storage, c, t)):
                self.fail(f"leader completeness: node {other.id} leads term {raw.term} without "
                          f"entry ({c}, term {t}) committed in term {u}")

    # ------------------------------------------------------------ state machine
    def on_snapshot(self, sn, meta, data) -> None:
        """A snapshot was installed from Ready.snapshot (data: (index, term, hash))."""
        if data is None:
            self.fail(f"snapshot: node {sn.id} installs {tuple(meta)} without data")
        idx, term, h = data
        if (idx, term) != (meta.index, meta.term):
            self.fail(f"snapshot: node {sn.id} installs {tuple(meta)} with data for "
                      f"({idx}, {term})")
        rec = self.applied.get(idx)
        if rec is None:
            self.fail(f"snapshot: node {sn.id} installs {tuple(meta)} that nobody applied")
        if rec[0] != term or rec[2] != h:
            self.fail(f"state machine safety: node {sn.id} installs snapshot {tuple(meta)} whose "
                      f"state differs from the applied one at {idx}")
        c = self.commit_terms.get(idx)
        if c is not None and c != term:
            self.fail(f"snapshot: node {sn.id} installs {tuple(meta)} but ({idx}, {c}) committed")

    def on_apply(self, sn, e, st_commit: int) -> int:
        """Check and apply committed entry e on sn's state machine; returns the new hash."""
        if e.index != sn.sm_index + 1:
            self.fail(f"apply: node {sn.id} applies {e.index} after {sn.sm_index}")
        if e.index > st_commit:
            self.fail(f"apply: node {sn.id} applies {e.index} beyond its durable commit "
                      f"{st_commit}")
        if not _has_entry(sn.storage, e.index, e.term):
            self.fail(f"apply: node {sn.id} applies ({e.index}, term {e.term}) that is not in "
                      f"its durable log")
        h = chain_hash(sn.sm_hash, e.index, e.term, e.data)
        rec = self.applied.get(e.index)
        if rec is None:
            self.applied[e.index] = (e.term, e.data, h)
            self.max_applied = e.index
            if e.data:
                j = self.data_index.get(e.data)
                if j is not None:
                    self.fail(f"state machine safety: proposal {e.data!r} applied at {j} and "
                              f"again at {e.index}")
                self.data_index[e.data] = e.index
        elif rec[0] != e.term or rec[1] != e.data or rec[2] != h:
            self.fail(f"state machine safety: node {sn.id} applies ({e.index}, term {e.term}, "
                      f"{e.data!r}) but ({e.index}, term {rec[0]}, {rec[1]!r}) was applied "
                      f"elsewhere" + ("" if rec[1] != e.data or rec[0] != e.term
                                      else " (same entry, different state before it)"))
        c = self.commit_terms.get(e.index)
        if c is not None and c != e.term:
            self.fail(f"apply: node {sn.id} applies ({e.index}, term {e.term}) but term {c} "
                      f"was committed there")
        return h

    # ------------------------------------------------------------ reads
    def on_read_request(self, sn, ctx: bytes) -> None:
        sn.reads[ctx] = sn.all_reads[ctx] = self.max_commit

    def on_read_state(self, sn, rs) -> None:
        self.read_states += 1
        bound = sn.all_reads.get(rs.context)
        if bound is None:
            self.fail(f"read index: node {sn.id} got ReadState {tuple(rs)} for a request it "
                      f"never made (the answer to another node's read)")
        if rs.index < bound:
            self.fail(f"read index: node {sn.id} got ReadState(index={rs.index}, "
                      f"ctx={rs.context!r}) but {bound} was committed before the read was "
                      f"issued (stale read)")
        if rs.index > self.max_commit:
            self.fail(f"read index: ReadState index {rs.index} is past every reported commit "
                      f"({self.max_commit})")


def role_name(role) -> str:
    return Role(role).name
