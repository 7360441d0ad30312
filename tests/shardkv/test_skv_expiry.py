"""Sessions that expire (eraftd/sessions.py, shardkv/state.py): stamped entries fed to the
machine directly, the applied clock (backwards and far-forward jumps), SESSION_EXPIRED on the
native path, snapshots and restarts; the clerk's handling of an expired session."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from skv_support import Harness, config, key_in

from eraftd._pb import kvbatch_pb2 as kvpb
from eraftd.controller.state import NSHARDS
from eraftd.metrics import sessions_expired
from eraftd.sessions import MAX_RATE, AppliedClock, LeaderClock, stamp_entry
from eraftd.shardkv import clerk as clerk_mod
from eraftd.shardkv.clerk import Clerk, ShardKVSessionExpired
from eraftd.shardkv.machine import (ENTRY_BATCH, _session_key, decode_session, encode_bounded,
                                    encode_config, encode_session, load_state)
from eraftd.shardkv.state import APPEND, ERR_SESSION_EXPIRED, OK, PUT, Session

GID = 100
ALL = config(1, [GID] * NSHARDS)
TTL = 10_000
T0 = 1_700_000_000_000            # a wall-clock time in ms
K = key_in(3, "k")


def write(session: int, floor: int, *ops: tuple, at: int | None = None, ttl: int = TTL) -> bytes:
    """A native batch of (op, key, value, seq) or (op, key, value, seq, opened) as the leader
    logs it, stamped `at` (None: an entry from before stamps).  opened: the client has had an
    answer in this session on the shard (default False)."""
    req = kvpb.BatchRequest(session=session, floor=floor)
    for op, k, v, seq, *opened in ops:
        req.ops.append(op)
        req.keys.append(k)
        req.values.append(v)
        req.seqs.append(seq)
        req.opened.append(bool(opened and opened[0]))
    entry = encode_bounded(ENTRY_BATCH + req.SerializeToString(), 1 << 20)
    return entry if at is None else stamp_entry(at, ttl, entry)


def sessions(st) -> dict[int, dict[int, Session]]:
    return {i: dict(sh.sessions) for i, sh in enumerate(st.shards) if sh.sessions}


def test_an_idle_session_goes_at_apply_time_and_a_used_one_stays(tmp_path):
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL),
            write(7, 1, (PUT, K, b"a", 1), at=T0),
            write(8, 1, (PUT, K, b"b", 1), at=T0))
    h.apply(write(7, 2, (APPEND, K, b"c", 2), at=T0 + TTL // 2))     # 7 used again
    assert set(h.m.state.shards[3].sessions) == {7, 8}
    h.apply(write(9, 1, (PUT, key_in(4), b"x", 1), at=T0 + TTL))      # idle exactly ttl: kept
    assert set(h.m.state.shards[3].sessions) == {7, 8}
    h.apply(write(9, 2, (PUT, key_in(4), b"y", 2), at=T0 + TTL + 1))  # 8 idle longer: gone
    st = h.m.state
    assert set(st.shards[3].sessions) == {7} and st.expired == 1
    assert st.shards[3].sessions[7].last_used == T0 + TTL // 2
    assert st.clock == AppliedClock(T0 + TTL + 1, T0)
    assert h.g.get(_session_key(3, 8)) is None           # its record deleted in that round
    group = SimpleNamespace(sm=h.m)                      # /metrics: eraft_sessions_expired_total
    assert sessions_expired(group) == 1
    h.m.restored()                                       # a snapshot installed: still counted
    assert sessions_expired(group) == 1 and h.m.state.clock == st.clock
    st = h.m.state
    before = sessions(st)
    h = h.reopen()                                       # the same from RocksDB, in use order
    assert sessions(h.m.state) == before and h.m.state.clock == st.clock
    assert list(h.m.state.shards[3].sessions) == [7]
    h.close()


def test_entries_without_a_stamp_expire_nothing_and_old_records_still_read(tmp_path):
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL), write(7, 1, (PUT, K, b"a", 1)))       # before stamps
    assert h.m.state.shards[3].sessions[7] == Session(1, {1}, 0)
    legacy = b"".join(x.to_bytes(8, "big") for x in (3, 3, 5))            # floor 3, seqs 3 and 5
    assert decode_session(legacy) == Session(3, {3, 5}, 0)
    assert decode_session(encode_session(Session(3, {5}, T0))) == Session(3, {5}, T0)
    # the first stamp starts the clock: a session from before it counts as used then
    h.apply(write(8, 1, (PUT, key_in(5), b"b", 1), at=T0))
    h.apply(write(8, 2, (PUT, key_in(5), b"b", 2), at=T0 + TTL))
    assert 7 in h.m.state.shards[3].sessions
    h.apply(write(8, 3, (PUT, key_in(5), b"b", 3), at=T0 + TTL + 1))
    assert 7 not in h.m.state.shards[3].sessions
    h.apply(write(8, 4, (PUT, key_in(5), b"b", 4)))                   # unstamped: no time
    assert h.m.state.clock.now == T0 + TTL + 1
    h.close()


def test_a_write_of_an_expired_session_is_answered_expired_and_not_applied(tmp_path):
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL), write(7, 1, (PUT, K, b"a", 1), (APPEND, K, b"b", 2), at=T0))
    h.apply(write(9, 1, (PUT, key_in(4), b"x", 1), at=T0 + TTL + 1))   # 7 expires
    assert 7 not in h.m.state.shards[3].sessions
    # the retry of seq 2 (its answer was lost): the session that knew it is gone
    res = h.apply(write(7, 2, (APPEND, K, b"b", 2, True), (APPEND, K, b"c", 3, True), at=T0 + TTL + 2))
    assert res == [[(ERR_SESSION_EXPIRED, b""), (ERR_SESSION_EXPIRED, b"")]]
    assert h.m.get(K) == b"ab" and 7 not in h.m.state.shards[3].sessions
    # the clerk's new session: its first write on the shard opens it
    res = h.apply(write(70, 4, (APPEND, K, b"c", 4), (APPEND, K, b"d", 5), at=T0 + TTL + 3))
    assert res == [[(OK, b""), (OK, b"")]] and h.m.get(K) == b"abcd"
    # without opened (eRaft's rule, an older clerk) any write opens a session, as before
    req = kvpb.BatchRequest(session=71, floor=5, ops=[APPEND], keys=[K], values=[b"e"], seqs=[5])
    res = h.apply(stamp_entry(T0 + TTL + 4, TTL, encode_bounded(ENTRY_BATCH + req.SerializeToString(), 100)))
    assert res == [[(OK, b"")]] and h.m.get(K) == b"abcde"
    h.close()


def test_the_clock_never_goes_back_so_nothing_comes_back(tmp_path):
    """A leader whose clock is behind (a backwards jump, a slower new leader): the applied
    clock stays at the max stamp; an expired session stays expired, a use is at the max."""
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL), write(7, 1, (PUT, K, b"a", 1), at=T0),
            write(8, 1, (PUT, key_in(4), b"a", 1), at=T0 + TTL))
    h.apply(write(9, 1, (PUT, key_in(5), b"x", 1), at=T0 + TTL + 1))   # 7 goes
    res = h.apply(write(7, 2, (APPEND, K, b"b", 2, True), at=T0),            # an hour-old clock
                  write(8, 2, (APPEND, key_in(4), b"b", 2), at=T0 - 3_600_000))
    assert res == [[(ERR_SESSION_EXPIRED, b"")], [(OK, b"")]]
    st = h.m.state
    assert st.clock.now == T0 + TTL + 1 and 7 not in st.shards[3].sessions
    assert st.shards[4].sessions[8].last_used == T0 + TTL + 1          # used at the max
    h.close()


class FakeTime:
    def __init__(self, wall_s: float) -> None:
        self.wall = wall_s
        self.mono = 100.0

    def pass_(self, s: float) -> None:
        self.wall += s
        self.mono += s


def test_the_leader_clock_bounds_a_far_forward_jump(tmp_path):
    """The leader's wall clock jumps a year ahead: its stamps run at most MAX_RATE times real
    time, so sessions used within ttl / MAX_RATE (real time) all live; fed to the machine."""
    t = FakeTime(T0 / 1000)
    clock = LeaderClock(wall=lambda: t.wall, mono=lambda: t.mono)
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL))

    def stamped(session: int, seq: int, key: bytes) -> list:
        return h.apply(write(session, seq, (PUT, key, b"v", seq),
                             at=clock.stamp(h.m.state.clock.now)))
    assert stamped(7, 1, K) == [[(OK, b"")]]
    assert h.m.state.clock.now == T0                    # the first stamp: the wall clock
    live = [100 + i for i in range(20)]
    for s in live:
        stamped(s, 1, key_in(s % NSHARDS))
    t.pass_(1.0)
    t.wall += 365 * 24 * 3600                           # the jump
    # 1,000 entries over 8 s of real time (ttl 10 s): a session used 8 s ago is alive
    for i in range(1000):
        t.pass_(0.008)
        stamped(9, i + 1, key_in(4))
    st = h.m.state
    assert st.clock.now - T0 <= int(MAX_RATE * 9.0 * 1000) + 1
    assert all(s in st.shards[s % NSHARDS].sessions for s in live) and 7 in st.shards[3].sessions
    # time goes on: they were idle for real now, and expire
    t.pass_(3.0)
    stamped(9, 1001, key_in(4))
    assert not any(s in st.shards[s % NSHARDS].sessions for s in live)
    # a backwards jump: the stamps stand still, never behind the applied clock
    now = st.clock.now
    t.wall -= 2 * 365 * 24 * 3600
    t.pass_(1.0)
    assert clock.stamp(now) == now
    h.close()


def test_leader_clock_rules():
    t = FakeTime(T0 / 1000)
    c = LeaderClock(wall=lambda: t.wall, mono=lambda: t.mono)
    assert c.stamp(0) == T0                              # no time yet: the wall clock
    t.pass_(1.0)
    assert c.stamp(T0) == T0 + 1000                      # follows the wall clock
    # a new leader: another's stamps applied since; it starts from them (the wall is ahead)
    t.pass_(60.0)
    assert c.stamp(T0 + 5000) == T0 + 5000
    t.pass_(10.0)
    assert c.stamp(T0 + 5000) == T0 + 5000 + 11_000      # catching up at most 10% fast


def test_a_snapshot_holds_the_same_sessions_and_they_expire_the_same(tmp_path):
    src, dst = Harness(tmp_path / "src"), Harness(tmp_path / "dst")
    src.apply(encode_config(ALL))
    for i in range(30):                                  # uses spread over time
        src.apply(write(1000 + i, 1, (PUT, key_in(i % NSHARDS), b"v", 1), at=T0 + 500 * i))
        if i == 20:                                      # 1000 used again
            src.apply(write(1000, 2, (PUT, key_in(0), b"w", 2), at=T0 + 500 * i))
    dst.apply(b"")
    dst.install_snapshot_from(src)
    assert sessions(dst.m.state) == sessions(src.m.state)
    assert dst.m.state.clock == src.m.state.clock
    for st in (src.m.state, dst.m.state):    # in last-use order (ties may differ: a sweep takes them all)
        for sh in st.shards:
            used = [s.last_used for s in sh.sessions.values()]
            assert used == sorted(used)
    last = write(5, 1, (PUT, key_in(9), b"z", 1), at=T0 + 19_000)      # expires 1001..1017
    assert src.apply(last) == dst.apply(last)
    assert sessions(dst.m.state) == sessions(src.m.state)
    left = {c for sh in src.m.state.shards for c in sh.sessions}
    assert left == {1000, 5} | {1000 + i for i in range(18, 30)}
    src.close()
    dst.close()


def test_load_state_rebuilds_the_use_order(tmp_path):
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL), write(9, 1, (PUT, K, b"a", 1), at=T0 + 2),
            write(8, 1, (PUT, K, b"a", 1), at=T0 + 1))        # stamped behind: used at T0 + 2
    h.apply(write(7, 1, (PUT, K, b"a", 1), at=T0 + 3))
    h.apply(write(9, 2, (PUT, K, b"a", 2), at=T0 + 4))
    assert list(h.m.state.shards[3].sessions) == [8, 7, 9]
    assert list(load_state(h.g, GID).shards[3].sessions) == [8, 7, 9]
    h.close()


# ---------------------------------------------------------------- the clerk

class FakeKV:
    """A KVBatch stub whose answers a test scripts: a list of functions req -> BatchResponse."""

    def __init__(self, answers) -> None:
        self.answers = list(answers)
        self.requests: list[kvpb.BatchRequest] = []

    async def Batch(self, req, timeout=None):
        self.requests.append(kvpb.BatchRequest.FromString(req.SerializeToString()))
        return self.answers.pop(0)(req)


def _clerk(fake: FakeKV) -> Clerk:
    kv = Clerk(["127.0.0.1:1"], total_timeout=5, backoff=(0.001, 0.002))
    cfg = config(1, [GID] * NSHARDS, {GID: ("127.0.0.1:2",)})

    async def latest(seen, timeout=None):
        return cfg
    kv._ctl.latest = latest
    kv.stub = lambda addr: fake
    return kv


def _codes(*codes):
    return lambda req: kvpb.BatchResponse(codes=list(codes), values=[b""] * len(codes))


async def test_clerk_resends_a_never_applied_write_in_a_new_session():
    """An idle clerk's next write finds its session expired: never sent before, so it goes
    again in a new session, as its opening write; the caller sees nothing."""
    fake = FakeKV([_codes(kvpb.OK), _codes(kvpb.SESSION_EXPIRED), _codes(kvpb.OK)])
    async with _clerk(fake) as kv:
        await kv.put(K, b"a")
        old = kv.session
        await kv.append(K, b"b")
        assert kv.session != old
    first, expired, again = fake.requests
    assert (first.session, list(first.seqs), list(first.opened)) == (old, [1], [False])
    assert (expired.session, list(expired.seqs), list(expired.opened)) == (old, [2], [True])
    assert again.session == kv.session and list(again.seqs) == [3] and list(again.opened) == [False]


async def test_clerk_reports_a_retried_write_of_an_expired_session_as_unknown():
    """An attempt went unanswered (it may have applied), the retry finds the session gone:
    ShardKVSessionExpired, in plain words; not sent again."""
    fake = FakeKV([lambda req: kvpb.BatchResponse(err="ErrTimeout"),
                   _codes(kvpb.SESSION_EXPIRED), _codes(kvpb.OK)])
    async with _clerk(fake) as kv:
        with pytest.raises(ShardKVSessionExpired) as e:
            await kv.append(K, b"b")
        assert "whether it was stored is unknown" in str(e.value)
        assert "Err" not in str(e.value).replace("ErrSession", "")
        assert len(fake.requests) == 2
        await kv.put(K, b"c")                              # the new session works
        assert fake.requests[2].session == kv.session != fake.requests[0].session


async def test_clerk_batches_hold_one_session():
    """Ops of the old session still in flight go on in it; a batch never mixes sessions."""
    kv = _clerk(FakeKV([]))
    loop = asyncio.get_running_loop()
    lane = clerk_mod._Lane(kv, GID, ["127.0.0.1:2"])
    sent = []

    async def send(ops):
        sent.append([o.session for o in ops])
        for o in ops:
            o.settle((kvpb.OK, b"", ""))
        lane.inflight -= 1
    lane._send = send
    for s in (1, 1, 2, 2):
        lane.queue.append(clerk_mod._Op(PUT, K, b"", 1, loop.time() + 5, 3, session=s))
    lane.pump()
    await asyncio.sleep(0)
    lane.pump()
    await asyncio.sleep(0)
    assert sent == [[1, 1], [2, 2]]
    await kv.close()


def test_sessions_that_arrive_with_a_shard_count_as_used_then_and_expire_once_it_serves(tmp_path):
    """A PULLING shard's arriving sessions, from a chunk that says no idle time (as from
    before idle_ms), are used when they arrive and are not swept until
    the shard is served (GCING); then the next stamped entry sweeps them, at the same clock
    as before (a replica restored in between does the same)."""
    from eraftd._pb import shardmigration_pb2 as migpb
    from eraftd.node.storage import encode_chunk
    from eraftd.shardkv.machine import encode_insert
    from eraftd.shardkv.state import GCING, PULLING
    h = Harness(tmp_path / "d")
    h.apply(encode_config(config(1, [300 if i == 3 else GID for i in range(NSHARDS)])),
            encode_config(config(2, [GID] * NSHARDS)),
            write(9, 1, (PUT, key_in(4), b"x", 1), at=T0))
    assert h.m.state.shards[3].status == PULLING
    first = migpb.PullShardResponse(kvs=encode_chunk(()), next=b"e", done=False,
                                    sessions=[migpb.Session(client=50, floor=3, applied=[3])])
    assert h.apply(encode_insert(2, 3, b"", first)) == [OK]
    assert h.m.state.shards[3].sessions[50] == Session(3, {3}, T0)
    h.apply(write(9, 2, (PUT, key_in(4), b"x", 2), at=T0 + TTL + 1))
    assert 50 in h.m.state.shards[3].sessions               # not swept while PULLING
    last = migpb.PullShardResponse(kvs=encode_chunk([(K, b"v")]), next=b"k" + K, done=True)
    assert h.apply(encode_insert(2, 3, b"e", last)) == [OK]
    assert h.m.state.shards[3].status == GCING
    other = Harness(tmp_path / "o")
    other.apply(b"")
    other.install_snapshot_from(h)
    same_clock = write(9, 3, (PUT, key_in(4), b"x", 3), at=T0 + TTL + 1)
    assert h.apply(same_clock) == other.apply(same_clock)
    assert 50 not in h.m.state.shards[3].sessions and sessions(h.m.state) == sessions(other.m.state)
    h.close()
    other.close()


class MachineKV:
    """A KVBatch stub over a real machine: each call's writes apply as its leader logs them
    (stamped `now`, with `ttl`), and it answers as KVBatchService does, with its ttl.
    `lose(req)`: "applied" (the writes applied, the answer is lost: ErrTimeout instead, after
    which `then()` runs), "unapplied" (lost before it reached the leader), "untried" (a
    follower says it is not the leader: nothing proposed) or None (answered);
    `ttl_in_errors`: whether a lost answer still says the ttl."""

    def __init__(self, h: Harness, ttl: int) -> None:
        self.h, self.now, self.ttl = h, T0, ttl
        self.lose = lambda req: None
        self.then = lambda: None
        self.ttl_in_errors = True
        self.requests: list[kvpb.BatchRequest] = []
        self.resets = 0

    def apply(self, req: kvpb.BatchRequest) -> list:
        entry = encode_bounded(ENTRY_BATCH + req.SerializeToString(), 1 << 20)
        return self.h.apply(stamp_entry(self.now, self.ttl, entry))[0]

    async def Batch(self, req, timeout=None):
        from eraftd.shardkv.service import _CODE
        self.requests.append(kvpb.BatchRequest.FromString(req.SerializeToString()))
        lost = self.lose(req)
        if lost == "untried":                   # a follower's answer: nothing proposed
            return kvpb.BatchResponse(err="ErrWrongLeader", untried=True, session_ttl_ms=self.ttl)
        res = self.apply(req) if lost != "unapplied" else None
        if lost:
            self.then()
            return kvpb.BatchResponse(err="ErrTimeout",
                                      session_ttl_ms=self.ttl if self.ttl_in_errors else 0)
        return kvpb.BatchResponse(codes=[_CODE[e] for e, _ in res], values=[v for _, v in res],
                                  session_ttl_ms=self.ttl)

    def reset(self, key: bytes) -> None:
        """key back to empty, the requests forgotten (a test's next case)."""
        self.resets += 1
        self.requests.clear()
        self.apply(kvpb.BatchRequest(session=6, floor=self.resets, ops=[PUT], keys=[key],
                                     values=[b""], seqs=[self.resets]))

    def idle_past_ttl(self) -> None:
        """Time passes (another client writes): every session idle since now expires."""
        self.now += self.ttl + 1
        self.apply(kvpb.BatchRequest(session=5, floor=1, ops=[PUT], keys=[key_in(4)],
                                     values=[b"t"], seqs=[self.now]))


def _first_answer_lost(how: str):
    """MachineKV.lose for: the first call of each case loses its answer (`how`)."""
    calls = []
    return lambda req: how if not calls and not calls.append(req) else None


async def test_clerk_never_applies_twice_a_session_opening_write_retried_after_expiry(tmp_path):
    """The hole: a clerk's first write on a shard (it opens the session) applies but its answer
    is lost; the session expires before the retry arrives.  Sent as before (not opened) the
    retry would open a new session and the append would apply twice; sent opened (its first
    send is older than half the 1 s ttl by the time the retry can be proposed) it is refused
    as of unknown outcome."""
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL))
    m = MachineKV(h, ttl=1000)
    m.then = m.idle_past_ttl

    async def run(before_the_fix: bool) -> None:
        m.reset(K)
        m.lose = _first_answer_lost("applied")
        kv = _clerk(m)
        if before_the_fix:                          # a retry never says opened (the old clerk)
            kv.stale_before = lambda now: float("-inf")
        async with kv:
            await kv.append(K, b"b")
    await run(before_the_fix=True)                  # the test reproduces the double apply
    assert h.m.get(K) == b"bb"
    assert [list(r.opened) for r in m.requests] == [[False], [False]]
    with pytest.raises(ShardKVSessionExpired) as e:
        await run(before_the_fix=False)
    assert "whether it was stored is unknown" in str(e.value)
    assert h.m.get(K) == b"b"                        # applied once
    assert [list(r.opened) for r in m.requests] == [[False], [True]]
    h.close()


@pytest.mark.parametrize("how, ttl_in_errors, opened", [
    ("applied", True, [[False], [False]]),       # the ttl known: a quick retry, not opened
    ("applied", False, [[False], [True]]),       # no ttl known: opened, the session is there
    ("unapplied", False, [[False], [True], [False]]),   # opened, SESSION_EXPIRED, then not
])
async def test_clerk_a_young_retry_of_a_session_opening_write_still_goes_through(
        tmp_path, how, ttl_in_errors, opened):
    """The servers' ttl is an hour: a quick retry of a session-opening write applies once
    and the caller sees OK, whether the clerk knew the ttl (not opened) or not yet (the lost
    answer said none: opened; if the session is missing, the SESSION_EXPIRED answer brings
    the ttl and the write goes again, not opened, in the same session)."""
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL))
    m = MachineKV(h, ttl=3_600_000)
    m.reset(K)
    m.lose, m.ttl_in_errors = _first_answer_lost(how), ttl_in_errors
    async with _clerk(m) as kv:
        await kv.append(K, b"b")
        assert h.m.get(K) == b"b"
        assert [list(r.opened) for r in m.requests] == opened
        await kv.append(K, b"c")                      # the session is the clerk's still
        assert h.m.get(K) == b"bc" and len({r.session for r in m.requests}) == 1
    h.close()


def test_migrated_sessions_keep_their_idle_time_whatever_the_groups_clocks(tmp_path):
    """A session's last use moves with its shard as the time it had been idle at the old
    owner (the groups' clocks differ: here the new one's is 500 s ahead): idle 8 s of a 10 s
    ttl at the move, it lives 2 s more at the new owner, not a whole ttl; the table is in
    last-use order once the shard is in, and reads back the same."""
    from eraftd.shardkv.machine import encode_insert
    from eraftd.shardkv.state import BEPULLING, GCING, PULLING
    old, new = Harness(tmp_path / "old"), Harness(tmp_path / "new", gid=200)
    old.apply(encode_config(ALL), write(7, 1, (PUT, K, b"a", 1), at=T0),
              write(8, 1, (PUT, K, b"b", 1), at=T0 + 6000),
              write(9, 1, (PUT, key_in(4), b"x", 1), at=T0 + 8000))   # the old clock: T0 + 8 s
    c2 = config(2, [200 if i == 3 else GID for i in range(NSHARDS)], {GID: ("a",), 200: ("b",)})
    old.apply(encode_config(c2))
    assert old.m.state.shards[3].status == BEPULLING
    t1 = T0 + 500_000
    new.apply(encode_config(ALL), encode_config(c2),     # its clock started 20 s ago
              write(5, 1, (PUT, key_in(4), b"y", 1), at=t1 - 20_000),
              write(5, 2, (PUT, key_in(4), b"y", 2), at=t1))
    assert new.m.state.shards[3].status == PULLING and new.m.state.clock.now == t1
    cursor = b""
    while True:
        resp = old.m.pull_chunk(3, cursor, 1 << 20)
        assert new.apply(encode_insert(2, 3, cursor, resp)) == [OK]
        cursor = resp.next
        if resp.done:
            break
    got = new.m.state.shards[3]
    assert got.status == GCING
    assert {c: s.last_used for c, s in got.sessions.items()} == {7: t1 - 8000, 8: t1 - 2000}
    assert list(got.sessions) == [7, 8]
    assert list(load_state(new.g, 200).shards[3].sessions) == [7, 8]
    new.apply(write(5, 3, (PUT, key_in(4), b"y", 3), at=t1 + 2001))
    assert list(new.m.state.shards[3].sessions) == [8]           # 7: idle 10,001 ms in all
    new.apply(write(5, 4, (PUT, key_in(4), b"y", 4), at=t1 + 8001))
    assert not new.m.state.shards[3].sessions
    old.close()
    new.close()


async def test_clerk_an_answer_that_proposed_nothing_leaves_the_write_a_plain_retry(tmp_path):
    """A follower's ErrWrongLeader (untried: nothing of the call was proposed) is no unanswered
    attempt: with a 1 s ttl the retry of a session-opening write still goes not opened and
    applies (it is not reported as of unknown outcome)."""
    h = Harness(tmp_path / "d")
    h.apply(encode_config(ALL))
    m = MachineKV(h, ttl=1000)
    m.reset(K)
    m.lose = _first_answer_lost("untried")
    async with _clerk(m) as kv:
        await kv.append(K, b"b")
    assert h.m.get(K) == b"b" and [list(r.opened) for r in m.requests] == [[False], [False]]
    h.close()


async def test_a_write_whose_call_is_past_its_deadline_is_not_proposed():
    """KVBatch never proposes a call's writes once its client gave up on it (the clerk's rule
    on `opened` counts on it): the call is answered ErrTimeout, untried; in time, it applies."""
    from eraftd.shardkv.service import KVBatchService
    from eraftd.shardkv.state import Limits
    proposed = []
    group = SimpleNamespace(is_leader=lambda: True, leader_address="me",
                            sm=SimpleNamespace(state=SimpleNamespace(can_serve=lambda s: True,
                                                                     clock=AppliedClock())))

    async def propose_many(gid, datas):
        proposed.append(datas)
        return [[(OK, b"")] for _ in datas]
    driver = SimpleNamespace(groups={GID: group}, propose_many=propose_many)
    svc = KVBatchService(driver, GID, Limits())
    req = kvpb.BatchRequest(session=7, floor=1, ops=[PUT], keys=[K], values=[b"v"], seqs=[1])
    late = SimpleNamespace(time_remaining=lambda: 0.0)
    resp = await svc._batch(req, late)
    assert (resp.err, resp.untried, proposed) == ("ErrTimeout", True, [])
    resp = await svc._batch(req, SimpleNamespace(time_remaining=lambda: 1.5))
    assert (resp.err, list(resp.codes), len(proposed)) == ("", [kvpb.OK], 1)
