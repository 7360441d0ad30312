"""eraftd.shardkv.machine over a real NodeStore: log entry formats, one round's writes seen by
its later commands, everything persisted with the applied index, reload after a restart and
after a snapshot install, chunked shard scans, deletion that gives the disk space back."""
from __future__ import annotations

import os

from skv_support import Harness, config, key_in

from eraftd._pb import kvbatch_pb2 as kvpb
from eraftd._pb import shardkv_pb2 as pb
from eraftd._pb import shardmigration_pb2 as migpb
from eraftd.controller.state import NSHARDS
from eraftd.node.storage import encode_chunk
from eraftd.raft.messages import Entry
from eraftd.shardkv.machine import (ENTRY_ABANDONED, ENTRY_BATCH, ENTRY_BOUNDED, ENTRY_COMMAND,
                                    ENTRY_COMMANDS, ENTRY_DELETE, ENTRY_GC_DONE, decode_session,
                                    encode_bounded, encode_commands, encode_config, encode_insert,
                                    encode_session, encode_shard_op, sessions_from_pb,
                                    sessions_to_pb)
from eraftd.shardkv.state import (APPEND, BEPULLING, CAS, CAS_ABSENT, DELETE, ERR_MISMATCH,
                                  ERR_NO_KEY, ERR_WRONG_GROUP, EXISTS, GCING, GET, OK, PULLING,
                                  PUT, SERVING, Session)

GID = 100
def batch(session: int, floor: int, *ops: tuple) -> bytes:
    """ops: (op, key, value, seq) or (op, key, value, seq, expected)."""
    req = kvpb.BatchRequest(session=session, floor=floor)
    with_expected = any(len(o) == 5 for o in ops)
    for op, k, v, seq, *e in ops:
        req.ops.append(op)
        req.keys.append(k)
        req.values.append(v)
        req.seqs.append(seq)
        if with_expected:
            req.expected.append(e[0] if e else b"")
    return ENTRY_BATCH + req.SerializeToString()


def command(op: int, key: str, value: str = "", client: int = 0, cid: int = 0) -> bytes:
    return ENTRY_COMMAND + pb.CommandRequest(op=op, key=key, value=value, client_id=client,
                                             command_id=cid).SerializeToString()


ALL = config(1, [GID] * NSHARDS)


def test_round_sees_its_own_writes_and_everything_persists(tmp_path):
    h = Harness(tmp_path / "d")
    k = key_in(3, "k").decode()
    res = h.apply(b"", encode_config(ALL),
                  command(APPEND, k, "a", 7, 1), command(APPEND, k, "b", 7, 2),
                  command(APPEND, k, "b", 7, 2),                        # a retry: once
                  batch(8, 1, (APPEND, k.encode(), b"c", 1), (GET, k.encode(), b"", 0)))
    assert res[0] is None and res[1] == OK
    assert res[2:5] == [[(OK, b"")]] * 3
    assert res[5] == [(OK, b""), (OK, b"abc")]
    assert h.m.get(k.encode()) == b"abc"
    h = h.reopen()                                  # nothing replayed: state from RocksDB
    st = h.m.state
    assert st.config == ALL and st.prev.num == 0 and h.g.applied_index() == 6
    assert st.shards[3].sessions == {7: Session(2, {2}), 8: Session(1, {1})}
    assert (st.shards[3].keys, st.shards[3].bytes) == (1, len(k) + 3)
    assert h.apply(command(APPEND, k, "b", 7, 2)) == [[(OK, b"")]]   # still a duplicate
    assert h.m.get(k.encode()) == b"abc"
    h.close()


def test_bounded_entries_carry_the_append_bound_and_erafts_command_ids(tmp_path):
    """b"L" entries apply with the bound the leader logged (the same on every replica,
    whatever their TOML says); their eRaft command id 0 is a command, a negative one refused."""
    h = Harness(tmp_path / "d")
    k = key_in(2, "k")
    res = h.apply(encode_config(ALL),
                  encode_bounded(batch(8, 1, (PUT, k, b"12345", 1)), 8),
                  encode_bounded(batch(8, 2, (APPEND, k, b"6789", 2)), 8),
                  encode_bounded(command(APPEND, k.decode(), "678", 7, 0), 8),
                  encode_bounded(command(APPEND, k.decode(), "678", 7, 0), 8),   # a retry
                  encode_bounded(command(APPEND, k.decode(), "!", 7, -1), 100),
                  command(APPEND, k.decode(), "+", 7, 1))                       # bare: unbounded
    assert res[1] == [(OK, b"")]
    assert "grow to 9 bytes" in res[2][0][0] and "max_value_bytes" in res[2][0][0]
    assert res[3] == res[4] == [(OK, b"")]
    assert res[5][0][0].startswith("command id -1 is below 0")
    assert res[6] == [(OK, b"")]
    assert h.m.get(k) == b"12345678+"
    assert h.apply(ENTRY_BOUNDED + b"\0" * 8 + b"Z", ENTRY_BOUNDED + b"\0") == [
        "undecodable shardkv log entry of kind b'L': no client entry inside"] * 2
    h.close()


def test_joined_commands_apply_each_as_its_own_bounded_command(tmp_path):
    """b"M" (the unary calls one round took, in one entry): each command applies as its own
    bounded b"C" would, in order (later ones see earlier ones, duplicates are answered), one
    result each; a damaged one, or one outside b"L", is refused whole."""
    h = Harness(tmp_path / "d")
    k = key_in(2, "k").decode()

    def cmd(op, value, client, cid):
        return command(op, k, value, client, cid)[1:]
    res = h.apply(encode_config(ALL),
                  encode_commands([cmd(PUT, "1234", 7, 0), cmd(APPEND, "5", 7, 1),
                                   cmd(APPEND, "5", 7, 1), cmd(APPEND, "6789", 8, 0),
                                   cmd(APPEND, "!", 9, -1)], max_value_bytes=6))
    assert res[1][:4] == [[(OK, b"")]] * 3 + [res[1][3]]
    assert "grow to 9 bytes" in res[1][3][0][0]
    assert res[1][4][0][0].startswith("command id -1 is below 0")
    assert h.m.get(k.encode()) == b"12345"
    whole = encode_commands([cmd(PUT, "x", 7, 2)], 100)
    assert h.apply(whole[:-1], ENTRY_COMMANDS + whole[10:]) == [
        "undecodable shardkv log entry of kind b'M': a command cut short",
        "not a shardkv log entry (kind b'M')"]
    assert h.m.get(k.encode()) == b"12345"
    h.close()


def test_delete_and_cas_inside_one_round(tmp_path):
    """Later ops of a round see a delete staged earlier in it (the overlay holds None), the
    counters follow, and all of it is what RocksDB holds after the round."""
    h = Harness(tmp_path / "d")
    a, b = key_in(3, "a"), key_in(3, "b")
    h.apply(encode_config(ALL), batch(8, 1, (PUT, a, b"1", 1), (PUT, b, b"22", 2)))
    res = h.apply(
        batch(8, 3, (DELETE, a, b"", 3), (GET, a, b"", 0), (EXISTS, a, b"", 0),
              (CAS, a, b"x", 4, b"1"), (CAS_ABSENT, a, b"new", 5), (GET, a, b"", 0),
              (DELETE, b, b"", 6), (CAS, b, b"x", 7, b"22"), (APPEND, b, b"!", 8)),
        batch(8, 3, (DELETE, a, b"", 3), (CAS_ABSENT, a, b"again", 9), (EXISTS, b, b"", 0)))
    assert res[0] == [(OK, b""), (ERR_NO_KEY, b""), (ERR_NO_KEY, b""), (ERR_NO_KEY, b""),
                      (OK, b""), (OK, b"new"), (OK, b""), (ERR_NO_KEY, b""), (OK, b"")]
    assert res[1] == [(OK, b""), (ERR_MISMATCH, b"new"), (OK, b"")]      # 3: a duplicate
    assert h.m.get(a) == b"new" and h.m.get(b) == b"!"
    sh = h.m.state.shards[3]
    assert (sh.keys, sh.bytes) == (2, len(a) + 3 + len(b) + 1)
    # a delete as the last word of a round reaches RocksDB, counters with it
    assert h.apply(batch(8, 10, (DELETE, b, b"", 10))) == [[(OK, b"")]]
    h = h.reopen()
    assert h.m.get(b) is None and h.m.get(a) == b"new"
    sh = h.m.state.shards[3]
    assert (sh.keys, sh.bytes) == (1, len(a) + 3)
    assert list(h.g.scan(b"s\x00\x00\x00\x03k")) == [(b"s\x00\x00\x00\x03k" + a, b"new")]
    assert sh.sessions[8] == Session(10, {10})
    h.close()


def test_session_encoding_round_trip():
    """The session records only seqs (see state.py: outcomes need no bytes), so the disk and
    migration encodings are what they were: an old record still decodes."""
    for sess in (Session(), Session(5), Session(3, {3, 7, 1 << 40})):
        assert decode_session(encode_session(sess)) == sess
        assert sessions_from_pb(sessions_to_pb({9: sess})) == {9: sess}
    assert decode_session(bytes.fromhex("0000000000000002" "0000000000000004")) == Session(2, {4})


def test_scan_shard_prefix_and_limit(tmp_path):
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL))
    keys = [key_in(5, f"{p}{i:02d}") for p in ("a", "b") for i in range(30)]
    h.apply(batch(0, 0, *[(PUT, k, b"v" * 10, 0) for k in keys]))
    pre = key_in(5, "b")
    got, cursor, pages = [], b"", 0
    while True:
        pairs, cursor, done = h.m.scan_shard(5, cursor, 1 << 20, pre, 7)
        assert len(pairs) <= 7
        got += [k for k, _ in pairs]
        pages += 1
        if done:
            break
    assert got == [k for k in keys if k.startswith(pre)] and pages == 5
    pairs, _, done = h.m.scan_shard(5, b"", 30, b"", 0)       # bytes bound, at least one
    assert len(pairs) == 1 and not done
    assert h.m.scan_shard(5, b"", 100, key_in(5, "zz"), 0) == ([], b"", True)
    h.close()


def test_migration_round_trip_between_two_machines(tmp_path):
    old, new = Harness(tmp_path / "old"), Harness(tmp_path / "new")
    old.apply(encode_config(ALL))
    keys = [key_in(4, "k%03d" % i) for i in range(200)]
    old.apply(batch(9, 1, *[(PUT, k, os.urandom(100), i + 1) for i, k in enumerate(keys)]))
    want = {k: old.m.get(k) for k in keys}
    c2 = config(2, [GID] * 4 + [200] + [GID] * 5, {GID: ("a",), 200: ("b",)})
    old.apply(encode_config(c2))
    assert old.m.state.shards[4].status == BEPULLING

    new.m.state.gid = 200
    new.m.gid = 200
    new.apply(encode_config(config(1, [GID] * NSHARDS)))
    new.apply(encode_config(c2))
    assert new.m.state.shards[4].status == PULLING
    cursor, chunks = b"", 0
    while True:                      # what PullShard does, chunk by chunk
        resp = old.m.pull_chunk(4, cursor, 4000)
        nxt, done = resp.next, resp.done
        assert new.apply(encode_insert(2, 4, cursor, resp)) == [OK]
        assert new.apply(encode_insert(2, 4, cursor, resp)) != [OK]     # a repeat: no effect
        chunks += 1
        cursor = nxt
        if done:
            break
    assert chunks > 3
    st = new.m.state
    assert st.shards[4].status == GCING
    assert {k: new.m.get(k) for k in keys} == want
    assert st.shards[4].sessions == {9: Session(1, set(range(1, 201)))}
    assert (st.shards[4].keys, st.shards[4].bytes) == (200, old.m.state.shards[4].bytes)
    assert new.apply(batch(9, 1, (APPEND, keys[0], b"!", 1))) == [[(OK, b"")]]   # duplicate
    assert new.m.get(keys[0]) == want[keys[0]]

    # the old owner deletes; the space comes back; then the new owner stops tracking
    size = old.store.size_bytes()
    assert old.apply(encode_shard_op(ENTRY_DELETE, 2, [4])) == [OK]
    assert old.m.state.shards[4].status == SERVING and old.m.get(keys[0]) is None
    assert list(old.g.scan(b"s")) == []
    assert old.store.size_bytes() < size
    assert new.apply(encode_shard_op(ENTRY_GC_DONE, 2, [4])) == [OK]
    assert new.m.state.settled()
    new = new.reopen()
    assert new.m.state.shards[4].keys == 200 and new.m.get(keys[5]) == want[keys[5]]
    old.close()
    new.close()


def test_snapshot_install_reloads_the_state(tmp_path):
    src, dst = Harness(tmp_path / "src"), Harness(tmp_path / "dst")
    src.apply(encode_config(ALL), command(PUT, "a", "1", 5, 1))
    dst.apply(b"")
    dst.install_snapshot_from(src)
    assert dst.m.state.config == ALL and dst.m.get(b"a") == b"1"
    assert dst.m.state.shards[ord("a") % 10].sessions == {5: Session(1, {1})}
    src.close()
    dst.close()


def test_wrong_group_and_bad_entries(tmp_path):
    h = Harness(tmp_path / "d")
    h.apply(encode_config(config(1, [GID] + [300] * 9)))
    res = h.apply(command(PUT, key_in(0).decode(), "x"), command(PUT, key_in(1).decode(), "x"),
                  command(GET, key_in(0, "none").decode()), b"Zjunk", b"B\xff\xff")
    assert res[0] == [(OK, b"")] and res[1] == [(ERR_WRONG_GROUP, b"")]
    assert res[2] == [(ERR_NO_KEY, b"")]
    assert "not a shardkv log entry" in res[3] and "undecodable" in res[4]
    bad_chunk = b"I" + migpb.InsertChunk(config_num=1, shard=0, kvs=b"nope").SerializeToString()
    assert "undecodable" in h.apply(bad_chunk)[0]
    h.close()


def test_a_configuration_not_ours_and_an_abandon_are_entries_and_survive_a_restart(tmp_path):
    h = Harness(tmp_path / "n")
    try:
        other = config(1, [GID] * NSHARDS, {GID: ("elsewhere:1",)})
        assert h.apply(encode_config(other, ours=False)) == [OK]
        assert not h.m.state.member and not h.m.state.owns(0)
        h = h.reopen()
        assert h.m.state.config == other and not h.m.state.member      # persisted
        assert h.apply(command(PUT, key_in(0).decode(), "v")) == [[("ErrWrongGroup", b"")]]
        # ours again at 2: shards arrive from "gid 100 elsewhere", pulled; then abandoned
        assert h.apply(encode_config(config(2, [GID] * NSHARDS))) == [OK]
        assert h.m.state.member and h.m.state.shards_in(PULLING) == list(range(NSHARDS))
        assert h.apply(encode_shard_op(ENTRY_ABANDONED, 2, range(NSHARDS))) == [OK]
        h = h.reopen()
        assert h.m.state.member and h.m.state.settled() and h.m.state.can_serve(0)
    finally:
        h.close()


def _migrate(old: Harness, new: Harness, shard: int, max_bytes: int, chunked: bool) -> list[int]:
    """Move `shard` chunk by chunk as PullShard and the puller do; the answers' sizes."""
    cursor, sizes = b"", []
    while True:
        resp = old.m.pull_chunk(shard, cursor, max_bytes, chunked)
        sizes.append(resp.ByteSize())
        assert new.apply(encode_insert(2, shard, cursor, resp)) == [OK]
        cursor = resp.next
        if resp.done:
            return sizes


def test_sessions_stream_in_chunks_under_the_bound_and_the_old_format_still_applies(tmp_path):
    """50,000 sessions and 5,000 keys under a 16 KB bound: the sessions come in chunks (client
    order, then the data), each answer within the bound; the same shard sent as before (every
    session in the first chunk: the entries already in logs) arrives as the same state."""
    from skv_support import fill_shard
    old = Harness(tmp_path / "old")
    old.apply(encode_config(ALL))
    fill_shard(old, 4, 50_000, 5_000)
    c2 = config(2, [GID] * 4 + [200] + [GID] * 5, {GID: ("a",), 200: ("b",)})
    old.apply(encode_config(c2))
    got = {}
    for chunked in (True, False):
        new = Harness(tmp_path / f"new{chunked}", gid=200)
        new.apply(encode_config(config(1, [GID] * NSHARDS)), encode_config(c2))
        sizes = _migrate(old, new, 4, 16 << 10, chunked)
        if chunked:
            assert len(sizes) > 40 and max(sizes) <= (16 << 10) + 1024, (len(sizes), max(sizes))
        else:
            assert max(sizes) > 50_000 * 8          # the old way: all of them at once
        new = new.reopen()
        sh = new.m.state.shards[4]
        assert sh.status == GCING
        got[chunked] = (sh.sessions, sh.keys, sh.bytes, list(new.g.scan(b"s")))
        new.close()
    assert got[True] == got[False]
    assert len(got[True][0]) == 50_000 and got[True][0][777] == Session(2, {2})
    want = old.m.state.shards[4]
    assert (want.keys, want.bytes) == got[True][1:3]
    old.close()


def test_a_shard_copy_is_of_one_applied_index_whatever_applies_after(tmp_path):
    """shard_copy over a SnapshotReader (ShardBackup.ReadShard): the pairs, state and index of
    the moment the view was taken, while later rounds write, delete and move the shard; a
    shard the group does not serve there has no copy."""
    from eraftd.node.storage import decode_chunk
    from eraftd.shardkv.machine import shard_copy
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL))
    keys = [key_in(4, "k%04d" % i) for i in range(300)]
    h.apply(batch(9, 1, *[(PUT, k, b"old%d" % i, i + 1) for i, k in enumerate(keys)]))
    view = h.g.snapshot_reader()
    index = h.index
    h.apply(batch(9, 1, (PUT, keys[0], b"new", 301), (DELETE, keys[1], b"", 302),
                  (PUT, key_in(4, "later"), b"x", 303)))
    h.apply(encode_config(config(2, [GID] * 4 + [200] + [GID] * 5, {GID: ("a",), 200: ("b",)})))
    assert h.m.state.shards[4].status == BEPULLING and h.index > index
    st, chunks = shard_copy(view, GID, 4, 1000)
    pairs = [p for c in chunks for p in decode_chunk(c)]
    assert view.meta.index == index and st.config.num == 1 and st.shards[4].keys == 300
    assert pairs == [(k, b"old%d" % i) for i, k in enumerate(keys)]
    view.close()
    with h.g.snapshot_reader() as now:          # now the shard is leaving: no copy here
        assert shard_copy(now, GID, 4, 1000) is None
        st, chunks = shard_copy(now, GID, 3, 1000)
        assert list(chunks) == [] and st.config.num == 2
    h.close()
