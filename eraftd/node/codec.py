"""Message <-> protobuf conversion for the peer transport (proto/raft.proto).

This is on the hot path: every Raft message between nodes goes through it, so
it is written for the upb backend's costs rather than for beauty:

* encoding builds RaftMessages in place inside the batch (`msgs.add(...)`,
  `entries.add(...)`: no intermediate messages copied into the batch) and
  only sets fields that are not at their default (heartbeats and responses
  are mostly zeros);
* decoding reads each field once, positionally, into Message / Entry
  (Entry via tuple.__new__, skipping the NamedTuple constructor's Python
  frame);
* entries are unpacked as tuples (Entry is a NamedTuple), not by attribute.

Roughly 1 us per heartbeat each way and ~0.5 us per entry each way
(measured with upb on the 2-core box).

Message.snapshot_data never crosses this codec: SNAP payloads are streamed by
Transport.send_snapshot.  A decoded message has snapshot_data=None.
"""
from __future__ import annotations

from typing import Iterable

from eraftd._pb import raft_pb2 as pb
from eraftd.raft.messages import Entry, Message, SnapshotMeta

__all__ = [
    "encode_batch", "decode_batch", "add_message", "encode_message", "decode_message",
    "approx_size", "pb",
]

_RaftMessage = pb.RaftMessage
_MessageBatch = pb.MessageBatch
_new_tuple = tuple.__new__


def add_message(add, group: int, m: Message) -> None:
    """Append (group, m) using `add`, a RepeatedCompositeField's bound .add method."""
    p = add(group=group, type=m.type, to=m.to, frm=m.frm, term=m.term)
    if m.log_term:
        p.log_term = m.log_term
    if m.index:
        p.index = m.index
    if m.commit:
        p.commit = m.commit
    if m.reject:
        p.reject = True
    if m.reject_hint:
        p.reject_hint = m.reject_hint
    if m.context:
        p.context = m.context
    s = m.snapshot
    if s is not None:
        p.has_snapshot = True
        p.snapshot_index, p.snapshot_term = s.index, s.term  # (conf travels in the data)
    ents = m.entries
    if ents:
        eadd = p.entries.add
        for term, index, data, typ in ents:
            if typ:
                eadd(term=term, index=index, data=data, type=typ)
            else:
                eadd(term=term, index=index, data=data)


def encode_batch(items: Iterable[tuple[int, Message]], from_addr: str = "",
                 cluster_tag: int = 0) -> pb.MessageBatch:
    """Build one MessageBatch from (group, Message) pairs, in order."""
    batch = _MessageBatch(from_addr=from_addr, cluster_tag=cluster_tag)
    add = batch.msgs.add
    for group, m in items:
        add_message(add, group, m)
    return batch


def encode_message(group: int, m: Message) -> pb.RaftMessage:
    """One standalone RaftMessage (used for the snapshot header)."""
    holder = _MessageBatch()
    add_message(holder.msgs.add, group, m)
    return holder.msgs[0]


def decode_message(p: pb.RaftMessage) -> tuple[int, Message]:
    pe = p.entries
    if pe:
        ents = tuple([_new_tuple(Entry, (e.term, e.index, e.data, e.type)) for e in pe])
    else:
        ents = ()
    snap = _new_tuple(SnapshotMeta, (p.snapshot_index, p.snapshot_term, None)) if p.has_snapshot else None
    return p.group, Message(p.type, p.to, p.frm, p.term, p.log_term, p.index, ents, p.commit,
                            p.reject, p.reject_hint, snap, None, p.context)


def decode_batch(batch: pb.MessageBatch) -> list[tuple[int, Message]]:
    """The (group, Message) pairs of a batch, in order."""
    out = []
    append = out.append
    for p in batch.msgs:
        pe = p.entries
        if pe:
            ents = tuple([_new_tuple(Entry, (e.term, e.index, e.data, e.type)) for e in pe])
        else:
            ents = ()
        snap = (_new_tuple(SnapshotMeta, (p.snapshot_index, p.snapshot_term, None))
                if p.has_snapshot else None)
        append((p.group, Message(p.type, p.to, p.frm, p.term, p.log_term, p.index, ents, p.commit,
                                 p.reject, p.reject_hint, snap, None, p.context)))
    return out


def approx_size(m: Message) -> int:
    """A cheap upper-ish estimate of m's encoded size in bytes (for batch byte limits)."""
    n = 48 + len(m.context)
    ents = m.entries
    if ents:
        n += 24 * len(ents)
        for e in ents:
            n += len(e[2])
    return n
