"""eraftd.shardkv.state, pure: key2shard, operations, dedup windows, configuration steps,
migration and garbage collection, limits."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from skv_support import DictStore, config, key_in

from eraftd.controller.state import NSHARDS
from eraftd.shardkv.state import (APPEND, BEPULLING, CAS, CAS_ABSENT, DELETE, ERR_MISMATCH,
                                  ERR_NO_KEY, ERR_NOT_READY, ERR_OUTDATED, ERR_WRONG_GROUP,
                                  EXISTS, GCING, GET, OK, PULLING, PUT, SERVING, UNARY_KINDS,
                                  Limits, Session, ShardKVState, is_ours, key2shard)
from eraftd.controller.state import Config

G1, G2 = 100, 101


def serving(gid=G1, shards=None) -> tuple[ShardKVState, DictStore]:
    """A group at configuration 1 owning `shards` (default: all), everything SERVING."""
    st, store = ShardKVState(gid), DictStore()
    owned = set(range(NSHARDS) if shards is None else shards)
    cfg = config(1, [gid if s in owned else G2 for s in range(NSHARDS)])
    assert st.apply_config(store, cfg) == OK
    return st, store


def test_key2shard_is_erafts():
    assert key2shard(b"") == 0
    assert key2shard(b"a") == ord("a") % 10
    assert key2shard("é".encode()) == 0xC3 % 10          # first byte of the UTF-8 encoding
    assert all(key2shard(key_in(s, "x")) == s for s in range(NSHARDS))


def test_put_append_get():
    st, store = serving()
    k = key_in(3, "k")
    assert st.apply_ops(store, 0, 0, [(GET, k, b"", 0)]) == [(ERR_NO_KEY, b"")]
    assert st.apply_ops(store, 0, 0, [(APPEND, k, b"a", 0), (APPEND, k, b"b", 0),
                                      (GET, k, b"", 0), (PUT, k, b"x", 0), (GET, k, b"", 0)]) == \
        [(OK, b""), (OK, b""), (OK, b"ab"), (OK, b""), (OK, b"x")]
    assert store.shard(3) == {k: b"x"}
    sh = st.shards[3]
    assert (sh.keys, sh.bytes) == (1, len(k) + 1)
    assert 3 in st.dirty.shards


def test_wrong_group_for_shards_not_served():
    st, store = serving(shards=[1])
    assert st.apply_ops(store, 7, 1, [(PUT, key_in(2), b"v", 1), (PUT, key_in(1), b"v", 2)]) == \
        [(ERR_WRONG_GROUP, b""), (OK, b"")]
    assert store.data == {(1, key_in(1)): b"v"}
    # the refused op is not recorded: it may be retried at the right group
    assert st.shards[2].sessions == {}


def test_erafts_one_in_flight_dedup():
    """eRaft's clients send floor = seq = command id: the highest applied id rule."""
    st, store = serving()
    k = key_in(4)
    for cid in (1, 1, 2, 1, 2):       # retries and a late duplicate of 1
        assert st.apply_ops(store, 9, cid, [(APPEND, k, b"%d" % cid, cid)]) == [(OK, b"")]
    assert store.get(4, k) == b"12"
    assert st.shards[4].sessions[9] == Session(2, {2})


def test_pipelined_window_never_mistakes_an_earlier_seq_for_a_duplicate():
    st, store = serving()
    k = key_in(5)
    # seqs 1..4 in flight (floor 1); they apply out of order, some twice
    for seq in (3, 1, 3, 4, 1):
        st.apply_ops(store, 9, 1, [(APPEND, k, b"%d" % seq, seq)])
    assert store.get(5, k) == b"314"
    st.apply_ops(store, 9, 1, [(APPEND, k, b"2", 2)])           # the late earlier one applies
    assert store.get(5, k) == b"3142"
    # the client got answers for 1..4: floor 5 forgets them, and they stay duplicates
    st.apply_ops(store, 9, 5, [(APPEND, k, b"5", 5)])
    assert st.shards[5].sessions[9] == Session(5, {5})
    st.apply_ops(store, 9, 5, [(APPEND, k, b"2", 2), (APPEND, k, b"5", 5)])
    assert store.get(5, k) == b"31425"


def test_delete_keeps_the_counters_right():
    st, store = serving()
    a, b = key_in(3, "a"), key_in(3, "bb")
    st.apply_ops(store, 0, 0, [(PUT, a, b"123", 0), (PUT, b, b"4", 0)])
    sh = st.shards[3]
    assert (sh.keys, sh.bytes) == (2, len(a) + 3 + len(b) + 1)
    st.dirty.shards.clear()
    assert st.apply_ops(store, 0, 0, [(DELETE, a, b"", 0), (GET, a, b"", 0), (EXISTS, a, b"", 0),
                                      (EXISTS, b, b"", 0), (DELETE, a, b"", 0)]) == \
        [(OK, b""), (ERR_NO_KEY, b""), (ERR_NO_KEY, b""), (OK, b""), (ERR_NO_KEY, b"")]
    assert (sh.keys, sh.bytes) == (1, len(b) + 1) and store.shard(3) == {b: b"4"}
    assert 3 in st.dirty.shards
    st.apply_ops(store, 0, 0, [(DELETE, b, b"", 0), (APPEND, a, b"x", 0)])
    assert (sh.keys, sh.bytes) == (1, len(a) + 1) and store.shard(3) == {a: b"x"}


def test_cas_present_absent_and_mismatch():
    st, store = serving()
    k = key_in(2, "k")
    assert st.apply_ops(store, 0, 0, [
        (CAS, k, b"new", 0, b"old"),        # absent: not swapped, answers NO_KEY
        (CAS, k, b"new", 0, b""),           # absent is not the empty value
        (CAS_ABSENT, k, b"v1", 0, b""),     # create-if-missing
        (CAS_ABSENT, k, b"v2", 0, b""),     # present: not swapped, the current value
        (CAS, k, b"v3", 0, b"nope"),
        (CAS, k, b"v3", 0, b"v1"),
        (GET, k, b"", 0)]) == [
        (ERR_NO_KEY, b""), (ERR_NO_KEY, b""), (OK, b""), (ERR_MISMATCH, b"v1"),
        (ERR_MISMATCH, b"v1"), (OK, b""), (OK, b"v3")]
    sh = st.shards[2]
    assert (sh.keys, sh.bytes) == (1, len(k) + 2)
    st.apply_ops(store, 0, 0, [(PUT, b"2e", b"", 0)])     # an empty value is a value
    assert st.apply_ops(store, 0, 0, [(CAS, b"2e", b"x", 0, b""), (CAS_ABSENT, b"2e", b"y", 0, b"")]) == \
        [(OK, b""), (ERR_MISMATCH, b"x")]


def test_retried_delete_and_cas_answer_their_original_outcome():
    """A retry of a delete that deleted / a CAS that swapped is a duplicate and answers OK
    (existed / swapped) even though the data changed since; one that changed nothing is not
    recorded, so its retry runs again (it took no effect the first time)."""
    st, store = serving()
    k = key_in(4, "k")
    st.apply_ops(store, 9, 1, [(PUT, k, b"a", 1)])
    assert st.apply_ops(store, 9, 2, [(DELETE, k, b"", 2)]) == [(OK, b"")]
    assert st.apply_ops(store, 9, 3, [(PUT, k, b"b", 3)]) == [(OK, b"")]
    # the delete's answer was lost; its retry must not delete b, and says it existed
    assert st.apply_ops(store, 9, 2, [(DELETE, k, b"", 2)]) == [(OK, b"")]
    assert store.get(4, k) == b"b"
    assert st.apply_ops(store, 9, 4, [(CAS, k, b"c", 4, b"b")]) == [(OK, b"")]
    assert st.apply_ops(store, 9, 5, [(PUT, k, b"b", 5)]) == [(OK, b"")]
    assert st.apply_ops(store, 9, 4, [(CAS, k, b"c", 4, b"b")]) == [(OK, b"")]    # retry: once
    assert store.get(4, k) == b"b"
    assert st.apply_ops(store, 9, 6, [(CAS_ABSENT, k, b"z", 6, b"")]) == [(ERR_MISMATCH, b"b")]
    assert st.apply_ops(store, 9, 6, [(CAS_ABSENT, k, b"z", 6, b"")]) == [(ERR_MISMATCH, b"b")]
    assert st.apply_ops(store, 9, 6, [(DELETE, k, b"", 7)]) == [(OK, b"")]   # 6 unanswered
    # seq 6 changed nothing, so it is not recorded: its (late) retry is a new attempt
    assert 6 not in st.shards[4].sessions[9].applied
    assert st.apply_ops(store, 9, 6, [(CAS_ABSENT, k, b"z", 6, b"")]) == [(OK, b"")]
    assert st.apply_ops(store, 9, 6, [(CAS_ABSENT, k, b"w", 6, b"")]) == [(OK, b"")]
    assert store.get(4, k) == b"z"
    # a no-op still moves the floor: the window stays bounded
    assert st.apply_ops(store, 9, 20, [(DELETE, key_in(4, "none"), b"", 20)]) == [(ERR_NO_KEY, b"")]
    assert st.shards[4].sessions[9] == Session(20, set())


@settings(max_examples=100, deadline=None)
@given(hst.lists(hst.tuples(hst.sampled_from([PUT, APPEND, GET, DELETE, EXISTS, CAS, CAS_ABSENT]),
                            hst.sampled_from([b"1a", b"1b", b"2a"]),
                            hst.sampled_from([b"", b"x", b"y"]),
                            hst.sampled_from([b"", b"x", b"y", b"xy"])), max_size=40))
def test_new_ops_are_deterministic_and_the_counters_match_the_data(ops):
    runs = []
    for _ in range(2):
        st, store = serving()
        out = st.apply_ops(store, 5, 1, [(kind, k, v, i + 1, e) for i, (kind, k, v, e) in enumerate(ops)])
        runs.append((out, dict(store.data), [(s.keys, s.bytes) for s in st.shards],
                     st.shards[1].sessions, st.shards[2].sessions))
        for sh in range(NSHARDS):
            data = store.shard(sh)
            assert st.shards[sh].keys == len(data)
            assert st.shards[sh].bytes == sum(len(k) + len(v) for k, v in data.items())
    assert runs[0] == runs[1]


@settings(max_examples=100, deadline=None)
@given(hst.lists(hst.tuples(hst.sampled_from([PUT, APPEND, CAS, CAS_ABSENT, DELETE]),
                            hst.sampled_from([b"1a", b"1b"]),
                            hst.binary(max_size=6), hst.binary(max_size=6)), max_size=40))
def test_no_value_ever_grows_past_the_bound(ops):
    """Whatever the writes (each within the request limit of 6), the bound of 6 holds for every
    stored value, a refused append changes nothing, and the counters match the data."""
    st, store = serving()
    for i, (kind, k, v, e) in enumerate(ops):
        before = dict(store.data)
        (err, _), = st.apply_ops(store, 5, i + 1, [(kind, k, v, i + 1, e)], max_value=6)
        if err.startswith("the value would grow"):
            assert kind == APPEND and store.data == before
        assert all(len(val) <= 6 for val in store.data.values())
        data = store.shard(1)
        assert st.shards[1].keys == len(data)
        assert st.shards[1].bytes == sum(len(k) + len(v) for k, v in data.items())


def test_no_session_means_no_dedup():
    st, store = serving()
    k = key_in(6)
    st.apply_ops(store, 0, 0, [(APPEND, k, b"a", 0), (APPEND, k, b"a", 0)])
    assert store.get(6, k) == b"aa"
    assert st.shards[6].sessions == {}


@settings(max_examples=200, deadline=None)
@given(hst.data())
def test_window_exactly_once_under_any_delivery(data):
    """A client with a window of seqs in flight; the network delivers each attempt any number
    of times in any order and the client retries until answered: every seq applies once."""
    st, store = serving()
    k = key_in(7)
    n = data.draw(hst.integers(1, 12))
    rng = random.Random(data.draw(hst.integers(0, 1 << 30)))
    acked: set[int] = set()
    deliveries = []
    for seq in range(1, n + 1):
        deliveries += [seq] * rng.randint(1, 3)
    rng.shuffle(deliveries)
    for seq in deliveries:
        floor = min(set(range(1, n + 1)) - acked, default=n + 1)
        if seq < floor:              # the client never resends what it has an answer for
            floor = min(floor, seq)  # ... but an old copy may arrive with an old floor
        res = st.apply_ops(store, 9, floor, [(APPEND, k, b"<%d>" % seq, seq)])
        assert res == [(OK, b"")]
        if rng.random() < 0.6:
            acked.add(seq)
    got = store.get(7, k)
    for seq in range(1, n + 1):
        assert got.count(b"<%d>" % seq) == 1, (seq, got)


def test_config_steps_one_at_a_time_and_only_when_settled():
    st, store = ShardKVState(G1), DictStore()
    assert st.apply_config(store, config(2, [G1] * NSHARDS)) == ERR_OUTDATED    # skips 1
    assert st.apply_config(store, config(1, [G1] * 5 + [G2] * 5)) == OK
    assert st.settled() and st.config.num == 1 and st.prev.num == 0
    assert [s.status for s in st.shards] == [SERVING] * NSHARDS   # from gid 0: nothing to pull
    assert st.apply_config(store, config(1, [G1] * NSHARDS)) == ERR_OUTDATED    # a duplicate
    k = key_in(0)
    st.apply_ops(store, 0, 0, [(PUT, k, b"v", 0)])
    # shard 0 leaves, shard 5 arrives
    c2 = config(2, [G2] + [G1] * 5 + [G2] * 4)
    assert st.apply_config(store, c2) == OK
    assert st.shards[0].status == BEPULLING and st.shards[5].status == PULLING
    assert st.previous_owner(5) == G2 and st.prev.num == 1
    assert store.get(0, k) == b"v"                     # kept for the new owner
    assert not st.can_serve(0) and not st.can_serve(5) and st.can_serve(1)
    assert st.apply_ops(store, 0, 0, [(GET, k, b"", 0)]) == [(ERR_WRONG_GROUP, b"")]
    assert st.apply_config(store, config(3, [G1] * NSHARDS)) == ERR_NOT_READY
    assert sorted(st.held()) == [0, 1, 2, 3, 4, 5]
    assert st.dirty.configs


def test_pull_insert_in_chunks_then_gc():
    st, store = serving(shards=[1])
    c2 = config(2, [G1] * NSHARDS)
    st.apply_config(store, c2)
    assert st.shards_in(PULLING) == [s for s in range(NSHARDS) if s != 1]
    a, b = key_in(2, "a"), key_in(2, "b")
    sess = {5: Session(3, {4})}
    # chunk 1 applies; a repeat of it, or one that does not follow, changes nothing
    assert st.apply_insert(store, 2, 2, b"", b"ka", [(a, b"1")], sess, False) == OK
    assert st.apply_insert(store, 2, 2, b"", b"ka", [(a, b"X")], {}, False) == ERR_OUTDATED
    assert st.apply_insert(store, 2, 2, b"kzz", b"kzzz", [(b, b"X")], {}, False) == ERR_OUTDATED
    assert st.apply_insert(store, 1, 2, b"ka", b"kb", [(b, b"X")], {}, True) == ERR_OUTDATED
    assert st.shards[2].status == PULLING and not st.can_serve(2)
    assert st.apply_insert(store, 2, 2, b"ka", b"kb", [(b, b"22")], {}, True) == OK
    sh = st.shards[2]
    assert sh.status == GCING and st.can_serve(2) and sh.cursor == b""
    assert (sh.keys, sh.bytes) == (2, len(a) + 1 + len(b) + 2)
    assert store.shard(2) == {a: b"1", b: b"22"}
    # the session came along: a retry of seq 4 at the new owner is a duplicate
    assert st.apply_ops(store, 5, 3, [(APPEND, a, b"!", 4)]) == [(OK, b"")]
    assert store.get(2, a) == b"1"
    # not settled until every GCING shard is confirmed
    assert st.apply_gc_done(1, [2]) == OK and sh.status == GCING          # wrong config: no-op
    assert st.apply_gc_done(2, [2]) == OK and sh.status == SERVING
    assert st.apply_gc_done(2, [2]) == OK                                    # idempotent


def test_delete_of_bepulling_shard_is_idempotent_and_clears_everything():
    st, store = serving(shards=[0, 1])
    k = key_in(0)
    st.apply_ops(store, 3, 1, [(PUT, k, b"v", 1)])
    st.apply_config(store, config(2, [G2] + [G1] + [G2] * 8))
    assert st.shards[0].status == BEPULLING
    assert st.apply_delete(store, 1, [0]) == OK and st.shards[0].status == BEPULLING   # stale
    assert st.apply_delete(store, 2, [0, 1]) == OK                       # 1 is SERVING: kept
    sh = st.shards[0]
    assert sh.status == SERVING and sh.sessions == {} and (sh.keys, sh.bytes) == (0, 0)
    assert store.shard(0) == {} and st.shards[1].status == SERVING
    assert st.settled() and 0 not in st.held()
    assert st.apply_delete(store, 2, [0]) == OK
    assert store.cleared.count(0) == 2         # once on config 1 (arrival), once now


def test_shard_that_nobody_gets_is_dropped_and_arrives_fresh():
    st, store = serving(shards=[0])
    st.apply_ops(store, 0, 0, [(PUT, key_in(0), b"v", 0)])
    st.apply_config(store, config(2, [0] * NSHARDS, {}))
    assert st.settled() and store.shard(0) == {}
    st.apply_config(store, config(3, [G1] * NSHARDS))
    assert st.settled() and st.can_serve(0)


def test_shard_leaving_and_coming_back_starts_clean():
    st, store = serving(shards=[0])
    st.apply_ops(store, 0, 0, [(PUT, key_in(0, "old"), b"v", 0)])
    st.apply_config(store, config(2, [G2] * NSHARDS))
    st.apply_delete(store, 2, [0])
    st.apply_config(store, config(3, [G1] + [G2] * 9))
    assert st.shards[0].status == PULLING and store.shard(0) == {}


def test_limits():
    lim = Limits(4, 8)
    assert lim.refuse(PUT, b"abcd", b"12345678") is None
    assert "key of 5 bytes" in lim.refuse(PUT, b"abcde", b"")
    assert "max_key_bytes" in lim.refuse(GET, b"abcde", b"")
    msg = lim.refuse(APPEND, b"k", b"123456789")
    assert "value of 9 bytes is longer than the limit of 8 bytes" in msg and "\n" not in msg
    assert lim.refuse(GET, b"k", b"123456789") is None
    assert "unknown op 7" in lim.refuse(7, b"k", b"")
    assert lim.refuse(DELETE, b"k", b"") is None and lim.refuse(EXISTS, b"k", b"") is None
    assert "expected value of 9 bytes" in lim.refuse(CAS, b"k", b"1", b"123456789")
    assert "value of 9 bytes" in lim.refuse(CAS_ABSENT, b"k", b"123456789")
    # eRaft's Command path takes only its own three
    msg = lim.refuse(DELETE, b"k", b"", kinds=UNARY_KINDS)
    assert msg == "unknown op 3: expected PUT (0), APPEND (1) or GET (2)"


def test_an_append_past_the_bound_is_refused_when_it_applies_and_changes_nothing():
    st, store = serving()
    k = key_in(5)
    assert st.apply_ops(store, 9, 1, [(PUT, k, b"123456", 1)], max_value=8) == [(OK, b"")]
    before = (st.shards[5].keys, st.shards[5].bytes)
    (err, _), = st.apply_ops(store, 9, 2, [(APPEND, k, b"abc", 2)], max_value=8)
    assert err == ("the value would grow to 9 bytes (6 held + 3 appended), longer than the "
                   "limit of 8 bytes (max_value_bytes); nothing stored")
    assert store.get(5, k) == b"123456" and (st.shards[5].keys, st.shards[5].bytes) == before
    assert not st.shards[5].sessions[9].seen(2)      # not recorded: changed nothing
    # exactly at the bound is fine; an append to an absent key is a put (checked before)
    assert st.apply_ops(store, 9, 3, [(APPEND, k, b"ab", 3), (APPEND, key_in(5, "new"), b"x", 4)],
                        max_value=8) == [(OK, b""), (OK, b"")]
    assert store.get(5, k) == b"123456ab"
    # no bound: the entries logged before it apply as they did
    assert st.apply_ops(store, 9, 5, [(APPEND, k, b"c", 5)]) == [(OK, b"")]


def test_erafts_command_id_zero_is_a_command_when_first_seq_is_zero():
    """eRaft's clerk numbers its commands from 0: with first_seq=0 a retry of 0 is a duplicate."""
    st, store = serving()
    k = key_in(6)
    for _ in range(2):
        assert st.apply_ops(store, 9, 0, [(APPEND, k, b"x", 0)], first_seq=0) == [(OK, b"")]
    assert store.get(6, k) == b"x"
    assert st.shards[6].sessions[9] == Session(0, {0})
    # the old rule (first_seq=1, the bare entries logged before): 0 is no command
    assert st.apply_ops(store, 8, 0, [(APPEND, k, b"y", 0)]) == [(OK, b"")]
    assert st.shards[6].sessions[8] == Session(0, set())


def test_state_must_have_every_shard():
    with pytest.raises(ValueError):
        ShardKVState(G1, shards=[])


# ---------------------------------------------------------------- configurations that are not ours

def test_is_ours_means_the_gid_is_listed_with_some_of_our_own_servers():
    own = ("s1", "s2", "s3")
    assert is_ours(Config(1, [G1] * NSHARDS, {G1: ("s1", "s2", "s3")}), G1, own)
    assert is_ours(Config(1, [G1] * NSHARDS, {G1: ("s3", "s2", "s1")}), G1, own)   # a set
    assert is_ours(Config(1, [G1] * NSHARDS, {G1: ("s1", "s2", "s4")}), G1, own)   # one replaced
    assert not is_ours(Config(1, [G1] * NSHARDS, {G1: ("t1", "t2")}), G1, own)
    assert is_ours(Config(1, [G2] * NSHARDS, {G2: ("t1",)}), G1, own)              # not listed


def replay(gid: int, own: tuple[str, ...], configs: list[Config]) -> tuple[ShardKVState, DictStore]:
    """A group applying `configs` in turn, each as ours or not as its leader would decide."""
    st, store = ShardKVState(gid), DictStore()
    for c in configs:
        assert st.apply_config(store, c, is_ours(c, gid, own)) == OK, c.num
        if not st.settled():
            break
    return st, store


# the history: join 100=S1, join 101, leave 100, join 100=S2 (an old controller let it)
S1, S2, S101 = ("a1", "a2"), ("b1", "b2"), ("c1",)
REJOIN = [config(1, [G1] * 10, {G1: S1}),
          config(2, [G1] * 5 + [G2] * 5, {G1: S1, G2: S101}),
          config(3, [G2] * 10, {G2: S101}),
          config(4, [G1] * 5 + [G2] * 5, {G1: S2, G2: S101})]


def test_new_servers_under_an_old_gid_skip_its_history_then_pull_from_the_real_owner():
    st, store = replay(G1, S2, REJOIN[:3])
    # configurations 1-3 listed gid 100 with S1: S2 took no shard in them (before: took them
    # all as empty at 1, then stuck BePulling at 2 for ever)
    assert st.config.num == 3 and st.settled()     # 3 lists no gid 100: ours, owning nothing
    assert [st.owns(s) for s in range(NSHARDS)] == [False] * NSHARDS
    assert st.apply_ops(store, 0, 0, [(GET, key_in(0), b"", 0)]) == [(ERR_WRONG_GROUP, b"")]
    assert st.apply_config(store, REJOIN[3], is_ours(REJOIN[3], G1, S2)) == OK
    assert st.member and st.shards_in(PULLING) == [0, 1, 2, 3, 4]
    assert {st.previous_owner(s) for s in range(5)} == {G2}         # from 101, which has them


def test_the_old_servers_take_no_shard_in_a_configuration_that_lists_others():
    st, store = replay(G1, S1, REJOIN[:1])
    assert st.apply_ops(store, 0, 0, [(PUT, key_in(0), b"v", 0)]) == [(OK, b"")]
    # a configuration that lists gid 100 with S2 only: S1 owns nothing in it, so its shards
    # wait to be pulled by S2 (BePulling) instead of being served by two groups at once
    c = config(2, [G1] * 10, {G1: S2})
    assert st.apply_config(store, c, is_ours(c, G1, S1)) == OK
    assert not st.member and st.shards_in(BEPULLING) == list(range(NSHARDS))
    assert st.apply_ops(store, 0, 0, [(GET, key_in(0), b"", 0)]) == [(ERR_WRONG_GROUP, b"")]
    assert store.shard(0) == {key_in(0): b"v"}                       # kept for the new owner


# ---------------------------------------------------------------- abandoned shards

def test_abandoned_shards_stop_waiting_and_serve_empty():
    # 101 held everything; a phantom 102 got 5-9 (config 2), left (3), 5-9 abandoned at 4
    st, store = serving(G2, shards=range(NSHARDS))      # config 1, all ours
    for s in (5, 6):
        st.apply_ops(store, 9, 1, [(PUT, key_in(s), b"old", s)])
    to_phantom = config(2, [G2] * 5 + [102] * 5)
    assert st.apply_config(store, to_phantom) == OK
    assert st.shards_in(BEPULLING) == [5, 6, 7, 8, 9]
    latest = Config(4, [G2] * 10, {G2: ("g101",)}, {5: 4, 6: 4, 7: 4, 8: 4, 9: 4})
    assert st.abandoned_here(Config(3, [G2] * 10, {G2: ("g101",)})) == []   # not abandoned yet
    assert st.abandoned_here(latest) == [5, 6, 7, 8, 9]
    assert st.apply_abandoned(store, 1, [5]) == OK and st.shards_in(BEPULLING) == [5, 6, 7, 8, 9]  # stale
    assert st.apply_abandoned(store, 2, [5, 6, 7, 8, 9]) == OK
    assert st.settled() and store.shard(5) == {} and st.shards[5].sessions == {}
    # back from the phantom at 3: they arrive from 102 (PULLING), abandoned after 3: served empty
    assert st.apply_config(store, Config(3, [G2] * 10, {G2: ("g101",)})) == OK
    assert st.shards_in(PULLING) == [5, 6, 7, 8, 9]
    assert st.abandoned_here(latest) == [5, 6, 7, 8, 9]
    assert st.apply_abandoned(store, 3, st.abandoned_here(latest)) == OK
    assert st.settled() and all(st.can_serve(s) for s in range(NSHARDS))
    assert st.apply_ops(store, 9, 2, [(GET, key_in(5), b"", 0), (PUT, key_in(5), b"new", 7),
                                      (GET, key_in(5), b"", 0)]) == \
        [(ERR_NO_KEY, b""), (OK, b""), (OK, b"new")]             # session table empty: seq 7 applies
    assert st.apply_config(store, latest) == OK and st.settled()   # nothing more to do at 4


def test_an_abandon_before_or_at_our_configuration_changes_nothing():
    st, store = serving(G1, shards=range(5))
    c2 = config(2, [G1] * 10)                                  # 5-9 arrive from 101
    assert st.apply_config(store, c2) == OK and st.shards_in(PULLING) == [5, 6, 7, 8, 9]
    assert st.abandoned_here(Config(3, [G1] * 10, {G1: ("g100",)}, {5: 2, 6: 1})) == []
    # a GCING shard keeps the data it got (the old owner is just never told to delete)
    assert st.apply_insert(store, 2, 5, b"", b"", [(key_in(5), b"v")], {}, True) == OK
    assert st.shards[5].status == GCING
    assert st.apply_abandoned(store, 2, [5]) == OK
    assert st.shards[5].status == SERVING and store.shard(5) == {key_in(5): b"v"}
