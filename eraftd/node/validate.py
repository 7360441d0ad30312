"""What a peer may send: every incoming Raft message is checked here before it reaches a core.

A peer's message is input like a client's: a bug, a version mismatch, a damaged sender or a
hand-made batch must never stop this node.  So, at the receiving boundary (the driver's entry
points for peer messages and snapshot headers, eraftd/node/driver.py):

* `problem(m)` checks a message on its own: a type that crosses the wire (no local type: HUP,
  BEAT, ...; no SNAP on the Send stream: snapshots come by InstallSnapshot, with their data),
  every number inside the range its wire and storage types can hold with room for +1 (terms
  and indexes 0..MAX_NUMBER, ids 0..MAX_ID), a term on every message that is not forwarded,
  entries only on appends, consecutive from the append's index, of a known type, with terms
  that never decrease and never pass the message's own, a membership change that decodes (its
  op, a member id that fits, the new member's address and uid), a bounded context;
* `step_problem(raft, m)` checks it against the group's state just before it is stepped (held
  messages too, later): no term implausibly far ahead of ours (a term of 2^63-1 would overflow
  the next election's term+1, for good, since it is persisted), no acknowledgement of entries a
  leader does not have (which would commit them);
* `snapshot_problem(m)` checks an InstallSnapshot header.

What is invalid is dropped, with one log line per peer per minute (`Drops`); whatever still
raises while being stepped is caught by the driver and dropped the same way, never fatal.
"""
from __future__ import annotations

import logging
from operator import itemgetter

from ..logs import Every
from ..names import MAX_ADDRESS_CHARS, shown
from ..raft.messages import ConfChange, ConfChangeOp, EntryType, Message, MsgType
from .members import ChangeContext

log = logging.getLogger("eraftd.raft")

MAX_NUMBER = 1 << 62          # terms, indexes, commits: +1 always fits an int64 (and a uint64)
TERM_LEAP = 1 << 32           # a term further ahead of ours than this is refused
MAX_ID = (1 << 31) - 2        # member ids: the wire's sint32, with room for next_id = id + 1
MAX_UID = (1 << 64) - 1
MAX_CONTEXT = 4096            # read ids, "transfer", refusal lines
LOG_INTERVAL_S = 60.0

_T = MsgType
# what a peer may send on the Send stream (SNAP comes by InstallSnapshot only)
WIRE_TYPES = frozenset({_T.APP, _T.APP_RESP, _T.VOTE, _T.VOTE_RESP, _T.PRE_VOTE, _T.PRE_VOTE_RESP,
                        _T.HEARTBEAT, _T.HEARTBEAT_RESP, _T.READ_INDEX, _T.READ_INDEX_RESP,
                        _T.TIMEOUT_NOW, _T.TRANSFER_LEADER, _T.REFUSED, _T.HELLO,
                        _T.MEMBERS_DIFFER})
_DRIVER_TYPES = frozenset({_T.REFUSED, _T.HELLO, _T.MEMBERS_DIFFER})  # the driver's own: never stepped
_FORWARDED = frozenset({_T.READ_INDEX, _T.TRANSFER_LEADER})  # relayed with term 0
_ENTRY_TYPES = frozenset({EntryType.NORMAL, EntryType.CONF_CHANGE})


def type_name(t: int) -> str:
    try:
        return MsgType(t).name
    except ValueError:
        return f"type {t}"


def _number(name: str, v: int) -> str:
    return "" if 0 <= v <= MAX_NUMBER else f"{name} {v} is outside 0..{MAX_NUMBER}"


_RAFT_TYPES = frozenset(int(t) for t in WIRE_TYPES - _DRIVER_TYPES)
_TERM, _INDEX, _TYPE = itemgetter(0), itemgetter(1), itemgetter(3)
_NORMAL_ONLY = frozenset({int(EntryType.NORMAL)})


def problem(m: Message) -> str:
    """Why `m` (decoded from the Send stream) cannot be a peer's message; "" if it can."""
    t = m.type
    # the hot path (every peer message): a plain message of a correct peer, checked at once
    term = m.term
    if (t in _RAFT_TYPES and 0 < term <= MAX_NUMBER and 0 <= m.log_term <= term
            and 0 <= m.index <= MAX_NUMBER and 0 <= m.commit <= MAX_NUMBER
            and 0 <= m.reject_hint <= MAX_NUMBER and 0 <= m.to <= MAX_ID + 1
            and 0 <= m.frm <= MAX_ID + 1 and m.snapshot is None
            and len(m.context) <= MAX_CONTEXT):
        ents = m.entries
        if not ents:
            return ""
        if t == _T.APP and _plain_entries(m, ents):
            return ""
    return _problem(m)


def _plain_entries(m: Message, ents: tuple) -> bool:
    """The entries of a correct append: consecutive from index + 1, terms from log_term (at
    least 1) up to the append's, never decreasing, all NORMAL (else the detailed check)."""
    n = len(ents)
    first, last = ents[0], ents[-1]
    if first[1] != m.index + 1 or last[1] != m.index + n or last[1] > MAX_NUMBER:
        return False
    if not max(m.log_term, 1) <= first[0] <= last[0] <= m.term:
        return False
    if n > 2:
        if list(map(_INDEX, ents)) != list(range(m.index + 1, m.index + n + 1)):
            return False
        terms = list(map(_TERM, ents))
        if terms != sorted(terms):
            return False
    return set(map(_TYPE, ents)) <= _NORMAL_ONLY


def _problem(m: Message) -> str:
    t = m.type
    if t not in WIRE_TYPES:
        if t == _T.SNAP:
            return "a SNAP message on the message stream (snapshots come with their data by InstallSnapshot)"
        return f"{type_name(t)} is not a message a peer sends"
    if len(m.context) > MAX_CONTEXT:
        return f"a context of {len(m.context)} bytes (at most {MAX_CONTEXT})"
    if t in _DRIVER_TYPES:
        return ""
    return _raft_problem(m)


def snapshot_problem(m: Message) -> str:
    """Why `m` cannot be the header of an InstallSnapshot stream; "" if it can."""
    if m.type != _T.SNAP:
        return f"a snapshot header of {type_name(m.type)} (not SNAP)"
    s = m.snapshot
    if s is None:
        return "a SNAP message without a snapshot"
    why = _raft_problem(m) or _number("snapshot index", s.index) or _number("snapshot term", s.term)
    if why:
        return why
    if s.index < 1 or s.term < 1:
        return f"a snapshot at index {s.index}, term {s.term} (both start at 1)"
    if s.term > m.term:
        return f"a snapshot of term {s.term} sent at term {m.term}"
    return ""


def _raft_problem(m: Message) -> str:
    t = m.type
    if not (0 <= m.to <= MAX_ID + 1 and 0 <= m.frm <= MAX_ID + 1):
        return f"member ids {m.frm} -> {m.to} (ids are 0..{MAX_ID + 1})"
    why = (_number("term", m.term) or _number("log term", m.log_term) or _number("index", m.index)
           or _number("commit", m.commit) or _number("reject hint", m.reject_hint))
    if why:
        return why
    if m.term == 0 and t not in _FORWARDED and not (t == _T.PRE_VOTE_RESP and m.reject):
        return f"{type_name(t)} without a term"
    if m.log_term > m.term and t in (_T.APP, _T.VOTE, _T.PRE_VOTE, _T.APP_RESP):
        return f"a log term {m.log_term} past the message's term {m.term}"
    if m.snapshot is not None and t != _T.SNAP:
        return f"{type_name(t)} with a snapshot"
    ents = m.entries
    if ents:
        if t != _T.APP:
            return f"{type_name(t)} with entries"
        return _entries_problem(m)
    return ""


def _entries_problem(m: Message) -> str:
    expect = m.index + 1
    prev_term, top = max(m.log_term, 1), m.term
    for term, index, data, typ in m.entries:
        if index != expect:
            return (f"an append after index {m.index} whose entries are not consecutive from "
                    f"{m.index + 1} (entry {index})")
        if not prev_term <= term <= top:
            return (f"entry {index} of term {term} (terms never decrease and never pass the "
                    f"append's term {top})")
        if typ not in _ENTRY_TYPES:
            return f"entry {index} of unknown type {typ}"
        if typ == EntryType.CONF_CHANGE:
            why = conf_change_problem(data)
            if why:
                return f"entry {index}: {why}"
        expect += 1
        prev_term = term
    if expect - 1 > MAX_NUMBER:
        return f"entries up to index {expect - 1} (at most {MAX_NUMBER})"
    return ""


def conf_change_problem(data: bytes) -> str:
    """Why a CONF_CHANGE entry's data cannot be applied; "" if it can."""
    try:
        cc = ConfChange.decode(data)
    except ValueError as e:
        return f"a damaged membership change ({e})"
    if cc.node_id > MAX_ID:
        return f"a membership change of member id {cc.node_id} (ids are 0..{MAX_ID})"
    if cc.op == ConfChangeOp.ADD_LEARNER:
        try:
            ctx = ChangeContext.decode(cc.context)
        except ValueError as e:
            return f"a membership change whose new member is not described ({e})"
        if len(ctx.address) > MAX_ADDRESS_CHARS:
            return f"a membership change adding {shown(ctx.address)}, longer than an address"
        if not 0 <= ctx.uid <= MAX_UID:
            return f"a membership change adding a member with node uid {ctx.uid}"
    return ""


def step_problem(raft, m: Message) -> str:
    """Why `m` must not be stepped into `raft` (eraftd.raft.core.Raft) now; "" if it may."""
    if m.term > raft.term + TERM_LEAP:
        return (f"term {m.term} is implausibly far ahead of this node's term {raft.term} "
                f"(more than {TERM_LEAP} ahead)")
    if (m.type == _T.APP_RESP and not m.reject and m.term == raft.term
            and m.index > raft.log.last_index()):
        return (f"an acknowledgement of index {m.index}, past this leader's last index "
                f"{raft.log.last_index()}")
    return ""


class Drops:
    """Invalid peer messages: counted, and logged once per peer per minute."""

    def __init__(self, interval: float = LOG_INTERVAL_S) -> None:
        self.count = 0
        self._every = Every(interval)
        self._since: dict[str, int] = {}

    def drop(self, peer: str, what: str, why: str) -> None:
        """One message (or header) from `peer` dropped: `what` it was, `why`."""
        self.count += 1
        peer = peer or "an unnamed peer"
        if not self._every(peer):
            if len(self._since) < 4096 or peer in self._since:
                self._since[peer] = self._since.get(peer, 0) + 1
            return
        more = self._since.pop(peer, 0)
        tail = f" ({more} more dropped from it in the last minute)" if more else ""
        log.warning("dropped %s from %s: %s; this node ignores such messages (a peer of another "
                    "version, or a damaged or hostile sender?)%s", what, peer, why, tail)
