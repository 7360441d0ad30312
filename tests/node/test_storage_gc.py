"""GroupStore.stage_delete_range and compact_data: deleting a key range of a group's
state-machine data in one batch, and getting the disk space back."""
from __future__ import annotations

import os

from eraftd.node.storage import NodeStore, encode_chunk
from eraftd.raft.messages import Entry, SnapshotMeta

IDENT = {"advertise": "127.0.0.1:7001", "roles": ["shardkv"], "gid": 1}


def open_store(path):
    return NodeStore.open(str(path), IDENT, fsync=False)


def fill(store, g, prefix: bytes, n: int, size: int = 1000) -> None:
    for i in range(0, n, 100):
        b = store.new_batch()
        for j in range(i, min(n, i + 100)):
            g.stage_put(b, prefix + b"%06d" % j, os.urandom(size))
        store.write(b)


def test_delete_range_removes_only_the_range_and_later_puts_survive(tmp_path):
    s = open_store(tmp_path / "d")
    g, other = s.group(1), s.group(2)
    fill(s, g, b"a", 10, 10)
    fill(s, g, b"b", 10, 10)
    fill(s, other, b"b", 3, 10)
    b = s.new_batch()
    g.stage_put(b, b"b000001", b"before")        # overwritten by the range delete
    g.stage_delete_range(b, b"b", b"c")
    g.stage_put(b, b"b000002", b"after")         # staged after: survives
    g.stage_delete_range(b, b"z", b"y")          # empty range: nothing
    s.write(b)
    assert [k for k, _ in g.scan(b"b")] == [b"b000002"]
    assert len(list(g.scan(b"a"))) == 10
    assert len(list(other.scan(b"b"))) == 3       # other groups untouched
    s.close()
    s = open_store(tmp_path / "d")
    assert [k for k, _ in s.group(1).scan(b"b")] == [b"b000002"]
    s.close()


def test_delete_range_follows_a_snapshot_installed_in_the_same_batch(tmp_path):
    s = open_store(tmp_path / "d")
    g = s.group(1)
    fill(s, g, b"k", 5, 10)
    r = g.begin_restore()
    r.add_chunk(encode_chunk([(b"k000001", b"x"), (b"m", b"y")]))
    b = s.new_batch()
    assert g.stage_install_snapshot(b, r, SnapshotMeta(7, 2))
    g.stage_delete_range(b, b"k", b"l")          # applies to the restored generation
    s.write(b)
    assert list(g.scan()) == [(b"m", b"y")]
    s.close()


def test_compact_data_gives_the_space_back(tmp_path):
    s = open_store(tmp_path / "d")
    g = s.group(1)
    b = s.new_batch()
    g.stage_append(b, [Entry(1, i, os.urandom(1000)) for i in range(1, 2001)])
    g.stage_applied(b, 2000)
    s.write(b)
    fill(s, g, b"s\x00\x00\x00\x03", 3000)        # ~3 MB in one "shard"
    fill(s, g, b"s\x00\x00\x00\x04", 50)
    b = s.new_batch()
    g.stage_compact(b, 2000)                      # the log's 2 MB are deleted too
    s.write(b)
    full = s.size_bytes()
    assert full > 4_500_000
    b = s.new_batch()
    g.stage_delete_range(b, b"s\x00\x00\x00\x03", b"s\x00\x00\x00\x04")
    s.write(b)
    g.compact_data(b"s\x00\x00\x00\x03", b"s\x00\x00\x00\x04")
    after = s.size_bytes()
    assert after < full - 4_000_000, (full, after)
    assert len(list(g.scan(b"s\x00\x00\x00\x04"))) == 50
    assert list(g.scan(b"s\x00\x00\x00\x03")) == []
    s.close()
