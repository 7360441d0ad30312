"""Message <-> protobuf round trips (eraftd/node/codec.py)."""
from __future__ import annotations

import dataclasses

from hypothesis import given, settings, strategies as st

from eraftd._pb import raft_pb2 as pb
from eraftd.node import codec
from eraftd.raft.messages import Entry, EntryType, Message, MsgType, SnapshotMeta, NONE

U63 = st.integers(min_value=0, max_value=2**63 - 1)
PEER = st.integers(min_value=-1, max_value=1000)

entries_st = st.lists(
    st.builds(Entry, term=U63, index=U63, data=st.binary(max_size=64),
              type=st.sampled_from(list(EntryType)) | st.integers(0, 2**32 - 1)),
    max_size=6).map(tuple)

message_st = st.builds(
    Message,
    type=st.sampled_from(list(MsgType)),
    to=PEER, frm=PEER, term=U63, log_term=U63, index=U63,
    entries=entries_st, commit=U63, reject=st.booleans(), reject_hint=U63,
    snapshot=st.none() | st.builds(SnapshotMeta, index=U63, term=U63, conf=st.none()),
    context=st.binary(max_size=32),
)
group_st = st.integers(min_value=0, max_value=2**32 - 1)


def roundtrip(items, from_addr="n1:7000", tag=0):
    data = codec.encode_batch(items, from_addr, tag).SerializeToString()
    batch = pb.MessageBatch.FromString(data)
    assert batch.from_addr == from_addr and batch.cluster_tag == tag
    return codec.decode_batch(batch)


@given(st.lists(st.tuples(group_st, message_st), max_size=20))
@settings(max_examples=300, deadline=None)
def test_batch_roundtrip_any_messages(items):
    assert roundtrip(items) == items


@given(group_st, message_st)
@settings(max_examples=200, deadline=None)
def test_single_message_roundtrip(group, m):
    p = pb.RaftMessage.FromString(codec.encode_message(group, m).SerializeToString())
    assert codec.decode_message(p) == (group, m)


def test_every_message_type_roundtrips():
    ents = (Entry(3, 10, b""), Entry(3, 11, b"\x00\xff\x00binary\n"), Entry(4, 12, bytes(range(256)), 0))
    items = []
    for i, t in enumerate(MsgType):
        items.append((i % 3, Message(t, to=1, frm=2, term=7, log_term=6, index=9, entries=ents,
                                     commit=8, reject=bool(i % 2), reject_hint=5,
                                     snapshot=SnapshotMeta(100, 6) if i % 2 else None,
                                     context=b"ctx%d" % i)))
        items.append((i, Message(t)))  # all defaults: to/frm = NONE, no snapshot
    out = roundtrip(items)
    assert out == items
    for (_, a), (_, b) in zip(items, out):
        assert type(b.type) is int and b.type == a.type
        assert all(type(e) is Entry for e in b.entries)
        assert b.snapshot is None or type(b.snapshot) is SnapshotMeta


def test_defaults_and_none_peers():
    [(g, m)] = roundtrip([(0, Message(MsgType.HEARTBEAT))])
    assert g == 0 and m.to == NONE and m.frm == NONE and m.snapshot is None
    assert m.entries == () and m.context == b"" and m.snapshot_data is None


def test_empty_snapshot_meta_is_not_none():
    [(_, m)] = roundtrip([(1, Message(MsgType.SNAP, snapshot=SnapshotMeta(0, 0)))])
    assert m.snapshot == SnapshotMeta(0, 0)


def test_snapshot_data_is_not_sent():
    m = Message(MsgType.SNAP, to=1, frm=0, term=3, snapshot=SnapshotMeta(50, 2),
                snapshot_data=b"big payload")
    [(_, out)] = roundtrip([(5, m)])
    assert out.snapshot_data is None
    assert dataclasses.replace(out, snapshot_data=m.snapshot_data) == m


def test_codec_covers_every_message_field():
    """A new Message field must get a RaftMessage field (and codec support)."""
    wire = set(pb.RaftMessage.DESCRIPTOR.fields_by_name)
    for f in dataclasses.fields(Message):
        if f.name == "snapshot_data":
            continue
        if f.name == "snapshot":
            assert {"has_snapshot", "snapshot_index", "snapshot_term"} <= wire
            continue
        assert f.name in wire, f"Message.{f.name} has no RaftMessage field in proto/raft.proto"
    entry_wire = set(pb.Entry.DESCRIPTOR.fields_by_name)
    assert set(Entry._fields) == entry_wire


def test_approx_size_bounds_real_size():
    m = Message(MsgType.APP, to=1, frm=0, term=2**40, log_term=2**40, index=2**50, commit=2**50,
                entries=tuple(Entry(2**40, 2**50 + i, b"x" * 1000) for i in range(10)),
                context=b"c" * 10)
    assert codec.approx_size(m) >= codec.encode_message(1, m).ByteSize()
