"""eraftd.node.storage: the node's RocksDB store.

Parity with MemoryStorage (the reference LogStorage), restart recovery,
identity checks, refusal of damaged data dirs, chunked snapshots with an
atomic switch."""
from __future__ import annotations

import hashlib
import json
import os
import random

import pytest
from rocksdict import Options, Rdict

from eraftd.node.storage import (NodeStore, StaleBatchError, StorageError, decode_chunk,
                                 encode_chunk, uid_text)
from eraftd.raft.messages import Entry, HardState, SnapshotMeta
from eraftd.raft.storage import CompactedError, MemoryStorage, UnavailableError

IDENT = {"advertise": "127.0.0.1:7001", "roles": ["controller", "kv"], "gid": 1}


def open_store(path, ident=IDENT, **kw):
    kw.setdefault("fsync", False)
    return NodeStore.open(str(path), ident, **kw)


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except (CompactedError, UnavailableError, ValueError) as e:
        return ("err", type(e))


def dir_state(path):
    """Names, sizes, mtimes and content hashes of everything under path."""
    out = {}
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns,
                                                  hashlib.sha1(fh.read()).hexdigest())
    return out


def raw_keys(store, prefix):
    return [k for k, _ in store._db.items(from_key=prefix) if k.startswith(prefix)]


# ---------------------------------------------------------------------------
# parity with MemoryStorage

class Model:
    """MemoryStorage plus the applied index the node store keeps."""

    def __init__(self):
        self.mem = MemoryStorage()
        self.applied = 0


def assert_same(mem: MemoryStorage, g, rng: random.Random, applied: int):
    assert g.initial_state() == mem.initial_state()
    assert g.first_index() == mem.first_index()
    assert g.last_index() == mem.last_index()
    assert g.snapshot() == mem.snapshot()
    assert g.applied_index() == applied
    first, last = mem.first_index(), mem.last_index()
    for i in range(first - 3, last + 3):
        assert outcome(g.term, i) == outcome(mem.term, i), i
    assert outcome(g.entries, first, last + 1, 1 << 40) == outcome(mem.entries, first, last + 1, 1 << 40)
    for _ in range(12):
        lo = rng.randint(first - 2, last + 2)
        hi = rng.randint(lo - 1, last + 3)
        mb = rng.choice([0, 1, 20, 40, 100, 1 << 30])
        assert outcome(g.entries, lo, hi, mb) == outcome(mem.entries, lo, hi, mb), (lo, hi, mb)


@pytest.mark.parametrize("seed", range(8))
def test_parity_with_memory_storage(tmp_path, seed):
    rng = random.Random(seed)
    store = open_store(tmp_path / "d", cache_entries=rng.choice([1, 3, 8, 4096]),
                       cache_bytes=rng.choice([30, 200, 1 << 20]))
    g = store.group(7)
    m = Model()
    term = 1
    for step in range(250):
        batch = store.new_batch()
        staged_install = False
        for _ in range(rng.randint(1, 3)):
            mem = m.mem
            first, last = mem.first_index(), mem.last_index()
            op = rng.random()
            if op < 0.55:                                     # append (maybe truncating / gap / old)
                start = rng.randint(max(1, first - 3), last + (2 if rng.random() < 0.1 else 1))
                if rng.random() < 0.3:
                    term += 1
                ents = [Entry(term, i, rng.randbytes(rng.randint(0, 12)))
                        for i in range(start, start + rng.randint(0, 6))]
                r1 = outcome(mem.append, list(ents))
                r2 = outcome(g.stage_append, batch, ents)
                assert r1 == r2, (ents, r1, r2)
            elif op < 0.7:                                    # snapshot + compact at an applied index
                i = rng.randint(first - 2, last + 1)
                if m.applied < i <= last:
                    m.applied = i
                    g.stage_applied(batch, i)

                def mem_compact(i=i):
                    mem.create_snapshot(i)
                    mem.compact(i)
                assert outcome(mem_compact) == outcome(g.stage_compact, batch, i)
            elif op < 0.85:                                   # hard state
                hs = HardState(term, rng.randint(-1, 2), rng.randint(0, last))
                mem.set_hard_state(hs)
                g.stage_hard_state(batch, hs)
            elif op < 0.95 and not staged_install:            # install a received snapshot
                meta = SnapshotMeta(rng.randint(max(0, first - 2), last + 5), term)
                restore = g.begin_restore()
                restore.add_chunk(encode_chunk([(b"snap", str(meta).encode())]))
                installed = g.stage_install_snapshot(batch, restore, meta)
                before = mem.snapshot()
                mem.apply_snapshot(meta)
                assert installed == (mem.snapshot() != before)
                if installed:
                    m.applied = meta.index
                    staged_install = True
                else:
                    restore.abort()
            else:                                             # applied moves forward
                if m.applied < last:
                    m.applied = rng.randint(m.applied + 1, last)
                    g.stage_applied(batch, m.applied)
        store.write(batch)
        assert_same(m.mem, g, rng, m.applied)
        if rng.random() < 0.05:                               # restart
            store.close()
            store = open_store(tmp_path / "d", cache_entries=rng.choice([1, 3, 8, 4096]),
                               cache_bytes=rng.choice([30, 200, 1 << 20]))
            g = store.group(7)
            assert_same(m.mem, g, rng, m.applied)
    store.close()


def test_multi_op_batch_composes_in_order(tmp_path):
    store = open_store(tmp_path / "d", cache_entries=4)
    g = store.group(1)
    b = store.new_batch()
    g.stage_append(b, [Entry(1, i, b"a%d" % i) for i in range(1, 11)])
    g.stage_append(b, [Entry(2, i, b"b%d" % i) for i in range(6, 9)])    # truncates 9, 10
    g.stage_applied(b, 7)
    g.stage_compact(b, 7)
    g.stage_append(b, [Entry(2, 9, b"c9")])
    assert g.last_index() == 0                       # nothing visible before the write
    store.write(b)
    assert (g.first_index(), g.last_index(), g.snapshot()) == (8, 9, SnapshotMeta(7, 2))
    assert g.entries(8, 10, 1 << 20) == [Entry(2, 8, b"b8"), Entry(2, 9, b"c9")]
    assert raw_keys(store, b"g" + (1).to_bytes(4, "big") + b"l") == [
        b"g\x00\x00\x00\x01l" + i.to_bytes(8, "big") for i in (8, 9)]


def test_compact_beyond_applied_is_refused(tmp_path):
    store = open_store(tmp_path / "d")
    g = store.group(1)
    b = store.new_batch()
    g.stage_append(b, [Entry(1, i) for i in range(1, 6)])
    g.stage_applied(b, 3)
    store.write(b)
    b = store.new_batch()
    with pytest.raises(ValueError, match="applied"):
        g.stage_compact(b, 4)
    g.stage_compact(b, 3)
    store.write(b)
    assert g.first_index() == 4


def test_stale_batch_is_refused(tmp_path):
    store = open_store(tmp_path / "d")
    g = store.group(1)
    b1, b2 = store.new_batch(), store.new_batch()
    g.stage_append(b1, [Entry(1, 1)])
    g.stage_append(b2, [Entry(1, 1), Entry(1, 2)])
    store.write(b1)
    with pytest.raises(StaleBatchError):
        store.write(b2)
    assert g.last_index() == 1
    # hard state / applied only batches do not conflict
    b3, b4 = store.new_batch(), store.new_batch()
    g.stage_hard_state(b3, HardState(1, 0, 1))
    g.stage_applied(b4, 1)
    store.write(b3)
    store.write(b4)
    assert g.initial_state()[0] == HardState(1, 0, 1) and g.applied_index() == 1


def test_batch_reusable_and_hooks(tmp_path):
    store = open_store(tmp_path / "d")
    g = store.group(1)
    b = store.new_batch()
    seen = []
    g.stage_append(b, [Entry(1, 1)])
    b.on_commit(lambda: seen.append(g.last_index()))
    store.write(b)
    g.stage_append(b, [Entry(1, 2)])
    store.write(b)
    assert seen == [1] and g.last_index() == 2


# ---------------------------------------------------------------------------
# restart recovery

def test_restart_recovers_every_piece(tmp_path):
    d = tmp_path / "d"
    store = open_store(d, fsync=True, cache_entries=10)
    ctl, kv = store.group(0), store.group(3)
    b = store.new_batch()
    ctl.stage_append(b, [Entry(1, i, b"c%d" % i) for i in range(1, 101)])
    ctl.stage_hard_state(b, HardState(4, 2, 90))
    ctl.stage_applied(b, 90)
    ctl.stage_put(b, b"config/1", b"{}")
    kv.stage_append(b, [Entry(2, i, b"k%d" % i) for i in range(1, 31)])
    kv.stage_hard_state(b, HardState(2, -1, 30))
    store.write(b)
    b = store.new_batch()
    ctl.stage_compact(b, 60)
    ctl.stage_delete(b, b"config/1")
    ctl.stage_put(b, b"config/2", b"{2}")
    store.write(b)
    # kv installs a snapshot
    src = open_store(tmp_path / "src")
    sg = src.group(3)
    b = src.new_batch()
    sg.stage_append(b, [Entry(5, i) for i in range(1, 51)])
    sg.stage_applied(b, 50)
    for i in range(100):
        sg.stage_put(b, b"key%03d" % i, b"val%d" % i)
    src.write(b)
    meta, chunks = sg.snapshot_chunks(max_bytes=300)
    r = kv.begin_restore()
    for c in chunks:
        r.add_chunk(c)
    b = store.new_batch()
    assert kv.stage_install_snapshot(b, r, meta)
    kv.stage_append(b, [Entry(5, 51, b"after")])
    kv.stage_hard_state(b, HardState(5, 0, 50))
    store.write(b)
    src.close()

    def check(s):
        c, k = s.group(0), s.group(3)
        assert c.initial_state() == (HardState(4, 2, 90), SnapshotMeta(60, 1))
        assert (c.first_index(), c.last_index(), c.applied_index()) == (61, 100, 90)
        assert c.entries(61, 101, 1 << 30) == [Entry(1, i, b"c%d" % i) for i in range(61, 101)]
        assert c.term(60) == 1 and c.term(100) == 1
        assert list(c.scan()) == [(b"config/2", b"{2}")]
        assert c.get(b"config/1") is None
        assert k.initial_state() == (HardState(5, 0, 50), SnapshotMeta(50, 5))
        assert (k.first_index(), k.last_index(), k.applied_index()) == (51, 51, 50)
        assert k.entries(51, 52, 0) == [Entry(5, 51, b"after")]
        assert k.snapshot_meta_now() == SnapshotMeta(50, 5)
        assert list(k.scan()) == [(b"key%03d" % i, b"val%d" % i) for i in range(100)]
        assert k.get(b"key007") == b"val7"
        assert sorted(s.group_ids()) == [0, 3]

    check(store)
    store.close()
    store = open_store(d)
    check(store)
    # only the active generation of group 3 is left on disk
    gens = {k[6:10] for k in raw_keys(store, b"g\x00\x00\x00\x03d")}
    assert gens == {(1).to_bytes(4, "big")}
    store.close()


def test_staged_restore_is_invisible_after_restart(tmp_path):
    d = tmp_path / "d"
    store = open_store(d)
    g = store.group(2)
    b = store.new_batch()
    g.stage_append(b, [Entry(1, i) for i in range(1, 6)])
    g.stage_applied(b, 5)
    g.stage_put(b, b"old", b"1")
    store.write(b)
    r = g.begin_restore()
    r.add_chunk(encode_chunk([(b"new%d" % i, b"x") for i in range(50)]))
    assert list(g.scan()) == [(b"old", b"1")]        # staging generation is invisible
    store.close()                                     # crash/stop before the switch
    store = open_store(d)
    g = store.group(2)
    assert list(g.scan()) == [(b"old", b"1")]
    assert (g.first_index(), g.last_index(), g.applied_index()) == (1, 5, 5)
    staging = b"g\x00\x00\x00\x02d" + (1).to_bytes(4, "big")
    assert raw_keys(store, staging) == []             # cleaned up on open
    # a fresh restore works afterwards
    r = g.begin_restore()
    r.add_chunk(encode_chunk([(b"k", b"v")]))
    b = store.new_batch()
    assert g.stage_install_snapshot(b, r, SnapshotMeta(9, 3))
    store.write(b)
    assert list(g.scan()) == [(b"k", b"v")]
    assert (g.first_index(), g.last_index(), g.applied_index()) == (10, 9, 9)
    store.close()


# ---------------------------------------------------------------------------
# snapshots

def fill(store, gid, n, size=200, start_index=1, term=1):
    g = store.group(gid)
    rng = random.Random(n)
    expect = {}
    b = store.new_batch()
    for i in range(n):
        k, v = b"user%06d" % i, rng.randbytes(size)
        g.stage_put(b, k, v)
        expect[k] = v
    g.stage_append(b, [Entry(term, i, b"cmd") for i in range(start_index, start_index + 10)])
    g.stage_applied(b, start_index + 9)
    store.write(b)
    return expect


def test_snapshot_chunk_round_trip_and_atomic_switch(tmp_path):
    src = open_store(tmp_path / "src")
    dst = open_store(tmp_path / "dst")
    expect = fill(src, 5, 5000, term=3)
    sg = src.group(5)
    meta, chunks = sg.snapshot_chunks(max_bytes=64 << 10)
    assert meta == SnapshotMeta(10, 3)
    # the copy is point-in-time: later writes are not in it
    b = src.new_batch()
    sg.stage_put(b, b"user000001", b"changed")
    sg.stage_put(b, b"zzz-late", b"late")
    sg.stage_delete(b, b"user000002")
    store_b = b
    src.write(store_b)
    chunks = list(chunks)
    assert len(chunks) >= 10
    assert all(len(c) <= (64 << 10) + 300 for c in chunks)
    got = [kv for c in chunks for kv in decode_chunk(c)]
    assert dict(got) == expect and [k for k, _ in got] == sorted(expect)

    dg = dst.group(5)
    b = dst.new_batch()
    dg.stage_append(b, [Entry(1, i) for i in range(1, 4)])
    dg.stage_put(b, b"mine", b"old")
    dg.stage_applied(b, 2)
    dst.write(b)
    r = dg.begin_restore()
    for c in chunks:
        r.add_chunk(c)
        assert list(dg.scan()) == [(b"mine", b"old")]  # not visible before the switch
    assert r.pairs == 5000
    b = dst.new_batch()
    assert dg.stage_install_snapshot(b, r, meta)
    assert dg.get(b"mine") == b"old" and dg.applied_index() == 2   # still the old view
    dst.write(b)
    assert dict(dg.scan()) == expect
    assert dg.get(b"mine") is None
    assert (dg.first_index(), dg.last_index(), dg.applied_index()) == (11, 10, 10)
    assert dg.snapshot() == meta and dg.term(10) == 3
    with pytest.raises(CompactedError):
        dg.entries(10, 11, 100)
    assert list(dg.scan(prefix=b"user00000")) == [(b"user00000%d" % i, expect[b"user00000%d" % i])
                                                  for i in range(10)]
    assert [k for k, _ in dg.scan(prefix=b"user0000", start=b"user000095")] == \
        [b"user0000%02d" % i for i in range(95, 100)]
    # the old generation is gone from disk
    assert raw_keys(dst, b"g\x00\x00\x00\x05d\x00\x00\x00\x00") == []
    src.close()
    dst.close()
    dst = open_store(tmp_path / "dst")
    assert dict(dst.group(5).scan()) == expect
    dst.close()


def test_snapshot_reader_and_empty_snapshot(tmp_path):
    s = open_store(tmp_path / "d")
    g = s.group(1)
    meta, chunks = g.snapshot_chunks()
    assert meta == SnapshotMeta(0, 0)
    chunks = list(chunks)
    assert len(chunks) == 1 and list(decode_chunk(chunks[0])) == []
    fill(s, 1, 10)
    rd = s.snapshot_reader(1)
    b = s.new_batch()
    g.stage_put(b, b"user000000", b"new")
    g.stage_put(b, b"extra", b"x")
    s.write(b)
    assert rd.meta == SnapshotMeta(10, 1)
    assert rd.get(b"user000000") != b"new" and rd.get(b"extra") is None
    assert [k for k, _ in rd.scan(prefix=b"user00000", start=b"user000008")] == [b"user000008",
                                                                                 b"user000009"]
    assert g.get(b"user000000") == b"new"
    rd.close()
    s.close()


def test_restore_superseded_aborted_and_bad_chunk(tmp_path):
    s = open_store(tmp_path / "d")
    g = s.group(1)
    r1 = g.begin_restore()
    r1.add_chunk(encode_chunk([(b"a", b"1")]))
    r2 = g.begin_restore()                        # supersedes r1 and clears the staging area
    with pytest.raises(ValueError):
        r1.add_chunk(encode_chunk([(b"b", b"2")]))
    with pytest.raises(ValueError):
        g.stage_install_snapshot(s.new_batch(), r1, SnapshotMeta(5, 1))
    with pytest.raises(ValueError):
        r2.add_chunk(b"EKV1garbage")
    r2.add_chunk(encode_chunk([(b"c", b"3")]))
    b = s.new_batch()
    assert g.stage_install_snapshot(b, r2, SnapshotMeta(5, 1))
    s.write(b)
    assert list(g.scan()) == [(b"c", b"3")]
    r3 = g.begin_restore()
    r3.add_chunk(encode_chunk([(b"d", b"4")]))
    r3.abort()
    assert raw_keys(s, b"g\x00\x00\x00\x01d\x00\x00\x00\x02") == []
    assert list(g.scan()) == [(b"c", b"3")]
    s.close()


def test_chunk_codec():
    pairs = [(b"", b""), (b"k", b"v" * 1000), (b"\x00\xff", b"")]
    assert list(decode_chunk(encode_chunk(pairs))) == pairs
    for bad in (b"", b"XXXX\x00\x00\x00\x00", encode_chunk(pairs)[:-1], encode_chunk(pairs) + b"x"):
        with pytest.raises(ValueError):
            list(decode_chunk(bad))


def test_groups_are_isolated(tmp_path):
    s = open_store(tmp_path / "d")
    a, b_ = s.group(1), s.group(2)
    b = s.new_batch()
    a.stage_put(b, b"k", b"a")
    b_.stage_put(b, b"k", b"b")
    a.stage_append(b, [Entry(1, 1, b"x")])
    s.write(b)
    assert a.get(b"k") == b"a" and b_.get(b"k") == b"b"
    assert b_.last_index() == 0 and list(b_.scan()) == [(b"k", b"b")]
    assert s.group(1) is a
    assert s.size_bytes() > 0
    s.close()


# ---------------------------------------------------------------------------
# identity and damaged data dirs

def test_identity_first_start_and_reopen(tmp_path):
    d = tmp_path / "new" / "dir"
    s = open_store(d)
    assert s.identity == {"advertise": "127.0.0.1:7001", "gid": 1, "roles": ["controller", "kv"]}
    b = s.new_batch()
    s.group(1).stage_put(b, b"k", b"v")
    s.write(b)
    s.close()
    s = open_store(d, dict(IDENT))
    assert s.group(1).get(b"k") == b"v"
    s.close()


@pytest.mark.parametrize("change,words", [
    ({"advertise": "127.0.0.1:7002"}, ["advertise='127.0.0.1:7001'", "advertise='127.0.0.1:7002'"]),
    ({"roles": ["kv"]}, ["roles=['controller', 'kv']", "roles=['kv']"]),
    ({"gid": 2}, ["gid=1", "gid=2"]),
])
def test_identity_mismatch_refused_and_nothing_written(tmp_path, change, words):
    d = tmp_path / "d"
    s = open_store(d)
    b = s.new_batch()
    s.group(1).stage_put(b, b"k", b"v")
    s.write(b)
    s.close()
    before = dir_state(d)
    with pytest.raises(StorageError) as ei:
        open_store(d, {**IDENT, **change})
    msg = str(ei.value)
    assert "\n" not in msg and str(d) in msg and "fresh data_dir" in msg
    for w in words:
        assert w in msg
    assert "was created for" in msg and "the config now says" in msg
    assert dir_state(d) == before
    s = open_store(d)
    assert s.group(1).get(b"k") == b"v"
    s.close()


def test_node_uid_is_stable_over_reopen_and_differs_between_data_dirs(tmp_path):
    s = open_store(tmp_path / "a")
    uid = s.node_uid
    assert isinstance(uid, int) and 0 < uid < 1 << 64
    assert "node_uid" not in s.identity
    s.close()
    for _ in range(2):
        s = open_store(tmp_path / "a", dict(IDENT))
        assert s.node_uid == uid
        s.close()
    s = open_store(tmp_path / "b")
    assert s.node_uid != uid
    s.close()
    assert uid_text(uid) == f"{uid:016x}" and len(uid_text(1)) == 16


def test_node_uid_is_not_part_of_the_identity_check(tmp_path):
    d = tmp_path / "d"
    s = open_store(d)
    uid = s.node_uid
    s.close()
    with pytest.raises(StorageError) as ei:
        open_store(d, {**IDENT, "gid": 2})
    said = str(ei.value).split(" was created for ", 1)[1]
    assert said == "gid=1; the config now says gid=2; use the matching config or a fresh data_dir"
    s = open_store(d)
    assert s.node_uid == uid
    s.close()
    with pytest.raises(ValueError, match="node_uid"):
        open_store(tmp_path / "e", {**IDENT, "node_uid": 5})
    assert not (tmp_path / "e").exists()


def test_old_format_identity_gets_a_uid_and_keeps_it(tmp_path):
    d = tmp_path / "d"
    o = Options(raw_mode=True)
    o.create_if_missing(True)
    db = Rdict(str(d), o)            # as eraftd wrote it before uids: the config's identity only
    db.put(b"I", json.dumps(IDENT, sort_keys=True).encode())
    db.put(b"g\x00\x00\x00\x01a", (0).to_bytes(8, "big"))
    db.close()
    s = open_store(d)
    uid = s.node_uid
    assert 0 < uid < 1 << 64 and s.identity == IDENT
    s.close()
    s = open_store(d)
    assert s.node_uid == uid
    s.close()
    with pytest.raises(StorageError, match="gid=1.*gid=2"):
        open_store(d, {**IDENT, "gid": 2})


def test_damaged_node_uid_refused(tmp_path):
    d = tmp_path / "d"
    open_store(d).close()
    db = Rdict(str(d), Options(raw_mode=True))
    db.put(b"I", json.dumps({**IDENT, "node_uid": "x"}).encode())
    db.close()
    assert "node_uid" in check_refused(d, "invalid node_uid", "fresh data_dir")


def check_refused(d, *fragments):
    before = dir_state(d)
    with pytest.raises(StorageError) as ei:
        open_store(d)
    msg = str(ei.value)
    assert "\n" not in msg and str(d) in msg
    for f in fragments:
        assert f in msg
    assert dir_state(d) == before
    return msg


def test_junk_dir_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_bytes(os.urandom(100))
    check_refused(d, "holds no RocksDB", "notes.txt")


def test_garbage_current_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "CURRENT").write_bytes(b"\x00garbage\xff")
    check_refused(d, "damaged")


def test_garbage_manifest_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "CURRENT").write_bytes(b"MANIFEST-000005\n")
    (d / "MANIFEST-000005").write_bytes(os.urandom(500))
    check_refused(d, "cannot be opened")


def test_damaged_existing_db_refused(tmp_path):
    d = tmp_path / "d"
    s = open_store(d)
    s.close()
    manifest = open(d / "CURRENT").read().strip()
    (d / manifest).write_bytes(os.urandom(200))
    check_refused(d, "cannot be opened")


def test_data_dir_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(StorageError, match="not a directory"):
        open_store(f)


def test_missing_or_bad_identity_refused(tmp_path):
    d = tmp_path / "d"
    o = Options(raw_mode=True)
    o.create_if_missing(True)
    db = Rdict(str(d), o)
    db.put(b"g\x00\x00\x00\x01h", b"x")
    db.close()
    check_refused(d, "no (readable) identity")
    db = Rdict(str(d), Options(raw_mode=True))
    db.put(b"I", b"{not json")
    db.close()
    check_refused(d, "identity record is unreadable")


def test_empty_existing_db_is_a_first_start(tmp_path):
    d = tmp_path / "d"
    o = Options(raw_mode=True)
    o.create_if_missing(True)
    Rdict(str(d), o).close()
    s = open_store(d)
    s.close()
    s = open_store(d)
    s.close()
    with pytest.raises(StorageError):
        open_store(d, {**IDENT, "gid": 9})


def test_data_dir_in_use_refused(tmp_path):
    d = tmp_path / "d"
    s = open_store(d)
    with pytest.raises(StorageError, match="in use"):
        open_store(d)
    s.close()
    open_store(d).close()


def test_long_truncation_and_restart(tmp_path):
    d = tmp_path / "d"
    s = open_store(d, cache_entries=50)
    g = s.group(1)
    b = s.new_batch()
    g.stage_append(b, [Entry(1, i, b"a") for i in range(1, 501)])
    s.write(b)
    b = s.new_batch()
    g.stage_append(b, [Entry(2, i, b"b") for i in range(101, 111)])   # drops 111..500
    s.write(b)
    assert g.last_index() == 110 and g.term(100) == 1 and g.term(101) == 2
    with pytest.raises(UnavailableError):
        g.term(111)
    s.close()
    s = open_store(d, cache_entries=50)
    g = s.group(1)
    assert g.last_index() == 110
    assert g.entries(99, 111, 1 << 20) == [Entry(1, 99, b"a"), Entry(1, 100, b"a")] + [
        Entry(2, i, b"b") for i in range(101, 111)]
    s.close()


def test_restore_writes_in_bounded_batches(tmp_path, monkeypatch):
    import eraftd.node.storage as st
    monkeypatch.setattr(st, "_RESTORE_BATCH_BYTES", 1000)
    writes = []
    s = open_store(tmp_path / "d")
    g = s.group(1)
    r = g.begin_restore()
    real = s._db

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def write(self, wb, wo=None):
            writes.append(wb.len())
            return real.write(wb, wo)

    g._db = Spy()
    pairs = [(b"k%04d" % i, b"v" * 100) for i in range(100)]
    r.add_chunk(encode_chunk(pairs))
    g._db = real
    assert len(writes) >= 10 and max(writes) <= 10
    b = s.new_batch()
    g.stage_install_snapshot(b, r, SnapshotMeta(1, 1))
    s.write(b)
    assert list(g.scan()) == pairs
    s.close()


def test_staged_install_guards(tmp_path):
    s = open_store(tmp_path / "d")
    g = s.group(1)
    r = g.begin_restore()
    r.add_chunk(encode_chunk([(b"a", b"1")]))
    b = s.new_batch()
    assert g.stage_install_snapshot(b, r, SnapshotMeta(3, 1))
    with pytest.raises(ValueError, match="staged"):
        g.begin_restore()                 # would clear what the batch switches to
    r.abort()
    with pytest.raises(StaleBatchError):
        s.write(b)
    assert g.snapshot() == SnapshotMeta(0, 0) and list(g.scan()) == []
    r = g.begin_restore()                 # allowed again after the abort
    r.add_chunk(encode_chunk([(b"b", b"2")]))
    b = s.new_batch()
    assert not g.stage_install_snapshot(b, r, SnapshotMeta(0, 0))   # not newer: no-op
    assert g.stage_install_snapshot(b, r, SnapshotMeta(4, 2))
    s.write(b)
    assert r.state == "installed" and list(g.scan()) == [(b"b", b"2")]
    s.close()


def test_close_ends_open_iterators_so_the_dir_can_be_reopened(tmp_path):
    d = tmp_path / "d"
    s = open_store(d)
    fill(s, 1, 20)
    g = s.group(1)
    rd = s.snapshot_reader(1)
    sc = rd.scan()
    next(sc)
    _meta, chunks = g.snapshot_chunks(max_bytes=100)
    next(chunks)
    it = g.scan()
    next(it)
    s.close()
    s = open_store(d)                     # the LOCK was released
    assert len(list(s.group(1).scan())) == 20
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.group(9)
