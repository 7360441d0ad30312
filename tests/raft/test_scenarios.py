"""Classic Raft scenarios (after the MIT 6.824 lab tests) on the deterministic harness tests/sim.

Every test uses a fixed seed, so it replays exactly; the harness checks the safety invariants
(tests/sim/invariants.py) after every step, on top of each test's own assertions.  Time is in
the harness's units: one tick = TICK units, one election timeout c.eto = election_tick ticks
(randomised by the core to [1, 2) x that).  The 6.824 "one second" is about 5 election timeouts.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from eraftd.raft.messages import NONE, Role  # noqa: E402
from sim.scripted import elect, figure8  # noqa: E402
from sim.sim import TICK, Cluster, SimConfig  # noqa: E402


# ------------------------------------------------------------------ 6.824-style helpers
def make(n: int = 3, seed: int = 1, **kw) -> Cluster:
    return Cluster(SimConfig(n=n, **kw), seed)


def second(c: Cluster) -> int:
    return 5 * c.eto


def check_one_leader(c: Cluster) -> int:
    """Exactly one leader among the connected nodes, in the highest term that has one."""
    for _ in range(10):
        c.run_for(c.rng.randint(c.eto // 2, c.eto))
        by_term: dict[int, list[int]] = {}
        for i in range(c.n):
            if c.connected(i) and c.role(i) == Role.LEADER:
                by_term.setdefault(c.term(i), []).append(i)
        for term, lds in by_term.items():
            assert len(lds) == 1, f"term {term} has {len(lds)} leaders: {lds}"
        if by_term:
            return by_term[max(by_term)][0]
    pytest.fail(f"expected one leader, got none\n{c.describe()}")


def check_terms(c: Cluster) -> int:
    terms = {c.term(i) for i in range(c.n) if c.connected(i)}
    assert len(terms) == 1, f"servers disagree on term: {sorted(terms)}"
    return terms.pop()


def check_no_leader(c: Cluster) -> None:
    for i in range(c.n):
        if c.connected(i):
            assert c.role(i) != Role.LEADER, f"node {i} leads but should not\n{c.describe()}"


def n_committed(c: Cluster, index: int) -> tuple[int, bytes | None]:
    """How many up nodes have applied `index`, and its data (state machine safety across nodes
    is checked by the harness itself)."""
    return c.n_applied(index), c.applied_data(index)


def one(c: Cluster, cmd: bytes, expected: int, retry: bool = True) -> int:
    """Get cmd committed on at least `expected` nodes through whichever node leads."""
    t0 = c.now
    start = 0
    while c.now - t0 < 10 * second(c):
        index = None
        for _ in range(c.n):
            start = (start + 1) % c.n
            if c.connected(start) and c.role(start) == Role.LEADER:
                index = c.propose(start, cmd)
                if index is not None:
                    break
        if index is not None:
            t1 = c.now
            while c.now - t1 < 2 * second(c):
                nd, data = n_committed(c, index)
                if nd > 0 and nd >= expected and data == cmd:
                    return index
                c.run_for(2 * TICK)
            if not retry:
                pytest.fail(f"one({cmd!r}) failed to reach agreement\n{c.describe()}")
        else:
            c.run_for(5 * TICK)
    pytest.fail(f"one({cmd!r}) failed to reach agreement\n{c.describe()}")


def wait_applied(c: Cluster, index: int, nodes, timeout: int) -> None:
    ok = c.run_until(lambda: all(c.nodes[i].up and c.applied_index(i) >= index for i in nodes),
                     timeout)
    assert ok, f"nodes {list(nodes)} did not apply {index}\n{c.describe()}"


def rand_cmd(r: random.Random) -> bytes:
    return b"c%d" % r.getrandbits(40)


# ------------------------------------------------------------------ elections
def test_initial_election() -> None:
    c = make(3, seed=11)
    check_one_leader(c)
    c.run_for(c.eto // 2)
    term1 = check_terms(c)
    assert term1 >= 1
    # no failure: the leader and the term stay put
    c.run_for(2 * second(c))
    assert check_terms(c) == term1, "term changed with no failures"
    check_one_leader(c)


def test_reelection() -> None:
    c = make(3, seed=12)
    leader1 = check_one_leader(c)
    c.disconnect(leader1)
    check_one_leader(c)
    # the old leader rejoins: still one leader
    c.connect(leader1)
    leader2 = check_one_leader(c)
    # no quorum: no leader
    c.disconnect(leader2)
    c.disconnect((leader2 + 1) % 3)
    c.run_for(2 * c.eto * 2)
    check_no_leader(c)
    # a quorum again
    c.connect((leader2 + 1) % 3)
    check_one_leader(c)
    c.connect(leader2)
    check_one_leader(c)


def test_many_elections() -> None:
    c = make(7, seed=13)
    r = random.Random(13)
    check_one_leader(c)
    for _ in range(10):
        out = r.sample(range(7), 3)
        for i in out:
            c.disconnect(i)
        check_one_leader(c)
        for i in out:
            c.connect(i)
    check_one_leader(c)


# ------------------------------------------------------------------ agreement
def test_basic_agree() -> None:
    c = make(3, seed=21)
    check_one_leader(c)
    last = 0
    for k in range(1, 4):
        nd, _ = n_committed(c, last + 1 + 1)
        assert nd == 0, "some have committed before propose"
        index = one(c, b"basic%d" % k, 3, retry=False)
        assert index > last
        last = index


def test_fail_agree() -> None:
    c = make(3, seed=22)
    one(c, b"101", 3)
    leader = check_one_leader(c)
    c.disconnect((leader + 1) % 3)
    for k in (102, 103, 104, 105):
        one(c, b"%d" % k, 2)
    c.connect((leader + 1) % 3)
    one(c, b"106", 3)
    one(c, b"107", 3)


def test_fail_no_agree() -> None:
    c = make(5, seed=23)
    one(c, b"10", 5)
    leader = check_one_leader(c)
    for k in (1, 2, 3):
        c.disconnect((leader + k) % 5)
    index = c.propose(leader, b"20")
    assert index is not None
    c.run_for(2 * c.eto * 2)
    nd, _ = n_committed(c, index)
    assert nd == 0, f"{nd} committed but no majority"
    for k in (1, 2, 3):
        c.connect((leader + k) % 5)
    # the disconnected majority may have chosen a leader among themselves, forgetting index
    leader2 = check_one_leader(c)
    index2 = c.propose(leader2, b"30")
    assert index2 is not None
    assert index2 >= 2
    one(c, b"1000", 5)


def test_concurrent_starts() -> None:
    c = make(3, seed=24)
    leader = check_one_leader(c)
    term = c.term(leader)
    idxs = []
    for k in range(5):  # five clients at once, before any of them commits
        idx = c.propose(leader, [b"conc%d" % k])
        assert idx is not None
        idxs.append(idx)
    assert idxs == list(range(idxs[0], idxs[0] + 5))
    wait_applied(c, idxs[-1], range(3), second(c))
    assert c.term(leader) == term
    assert [c.applied_data(i) for i in idxs] == [b"conc%d" % k for k in range(5)]


def test_rejoin() -> None:
    c = make(3, seed=25)
    one(c, b"101", 3)
    leader1 = check_one_leader(c)
    c.disconnect(leader1)
    # the old leader accepts entries it can never commit
    for k in (102, 103, 104):
        c.propose(leader1, b"%d" % k)
    one(c, b"103b", 2)
    leader2 = check_one_leader(c)
    c.disconnect(leader2)
    c.connect(leader1)
    one(c, b"104b", 2)
    c.connect(leader2)
    one(c, b"105", 3)
    # the entries of the deposed leader were discarded everywhere
    applied = {c.applied_data(i) for i in range(1, c.applied_index(0) + 1)}
    assert b"102" not in applied and b"104" not in applied


def test_backup() -> None:
    """A leader brings back followers whose logs diverge by many entries (fast back-off)."""
    c = make(5, seed=26)
    r = random.Random(26)
    one(c, rand_cmd(r), 5)
    # put leader and one follower in a partition
    leader1 = check_one_leader(c)
    for k in (2, 3, 4):
        c.disconnect((leader1 + k) % 5)
    # lots of entries that won't commit
    for _ in range(50):
        c.propose(leader1, rand_cmd(r))
    c.run_for(c.eto // 2)
    c.disconnect((leader1 + 0) % 5)
    c.disconnect((leader1 + 1) % 5)
    # allow the other partition to recover
    for k in (2, 3, 4):
        c.connect((leader1 + k) % 5)
    for _ in range(50):
        one(c, rand_cmd(r), 3)
    # now another partitioned leader and one follower
    leader2 = check_one_leader(c)
    other = (leader1 + 2) % 5
    if leader2 == other:
        other = (leader2 + 1) % 5
    c.disconnect(other)
    # lots more that won't commit
    for _ in range(50):
        c.propose(leader2, rand_cmd(r))
    c.run_for(c.eto // 2)
    # bring the original leader back to life
    for i in range(5):
        c.disconnect(i)
    c.connect((leader1 + 0) % 5)
    c.connect((leader1 + 1) % 5)
    c.connect(other)
    for _ in range(50):
        one(c, rand_cmd(r), 3)
    for i in range(5):
        c.connect(i)
    one(c, rand_cmd(r), 5)


# ------------------------------------------------------------------ persistence
def crash_restart(c: Cluster, i: int) -> None:
    c.crash(i)
    c.restart(i)


def test_persist1() -> None:
    c = make(3, seed=31)
    one(c, b"11", 3)
    for i in range(3):  # crash and re-start all
        crash_restart(c, i)
    one(c, b"12", 3)
    leader1 = check_one_leader(c)
    crash_restart(c, leader1)
    one(c, b"13", 3)
    leader2 = check_one_leader(c)
    c.crash(leader2)
    i14 = one(c, b"14", 2)
    c.restart(leader2)
    wait_applied(c, i14, [leader2], second(c))  # the restarted node catches up
    i3 = (check_one_leader(c) + 1) % 3
    c.crash(i3)
    one(c, b"15", 2)
    c.restart(i3)
    one(c, b"16", 3)


def test_persist2() -> None:
    c = make(5, seed=32)
    index = 1
    for it in range(5):
        one(c, b"10-%d" % index, 5)
        index += 1
        leader1 = check_one_leader(c)
        c.crash((leader1 + 1) % 5)
        c.crash((leader1 + 2) % 5)
        one(c, b"10-%d" % index, 3)
        index += 1
        c.crash((leader1 + 0) % 5)
        c.crash((leader1 + 3) % 5)
        c.crash((leader1 + 4) % 5)
        c.restart((leader1 + 1) % 5)
        c.restart((leader1 + 2) % 5)
        c.run_for(c.eto)
        c.restart((leader1 + 3) % 5)
        one(c, b"10-%d" % index, 3)
        index += 1
        c.restart((leader1 + 4) % 5)
        c.restart((leader1 + 0) % 5)
    one(c, b"1000", 5)


def test_persist3() -> None:
    """A partitioned leader and a follower crash; the leader restarts and the cluster goes on."""
    c = make(3, seed=33)
    one(c, b"101", 3)
    leader = check_one_leader(c)
    c.disconnect((leader + 2) % 3)
    one(c, b"102", 2)
    c.crash((leader + 0) % 3)
    c.crash((leader + 1) % 3)
    c.connect((leader + 2) % 3)
    c.restart((leader + 0) % 3)
    one(c, b"103", 2)
    c.restart((leader + 1) % 3)
    one(c, b"104", 3)


def test_crash_with_unpersisted_ready() -> None:
    """Torn crashes (a node dies after sending a Ready's early messages, before its write) on
    every node in turn while the cluster works: nothing committed is lost."""
    c = make(3, seed=34)
    r = random.Random(34)
    one(c, b"start", 3)
    c.set_net(torn=0.05)
    for k in range(40):
        ld = c.leader()
        if ld is not None:
            c.propose(ld, [rand_cmd(r)])
        c.run_for(r.randint(1, 3) * TICK)
        for i in range(3):
            if not c.nodes[i].up:
                c.restart(i)
    assert c.stats["torn"] > 0
    c.set_net(torn=0.0)
    for i in range(3):
        c.restart(i)
    one(c, b"end", 3)


# ------------------------------------------------------------------ Figure 8
def _figure8(unreliable: bool, seed: int, iters: int) -> None:
    c = make(5, seed=seed)
    r = random.Random(seed)
    if unreliable:
        c.set_net(drop=0.1, dup=0.05, delay_max=2 * TICK)
    one(c, rand_cmd(r), 1)
    nup = 5
    for it in range(iters):
        if unreliable and it == iters // 5:
            c.set_net(long_delay=0.1, long_delay_max=c.eto * 2, reorder=0.3)
        leader = -1
        for i in range(5):
            if c.nodes[i].up and (not unreliable or c.connected(i)):
                if c.propose(i, rand_cmd(r)) is not None:
                    leader = i
        if r.randrange(1000) < 100:
            c.run_for(r.randint(0, c.eto * 5 // 2))
        else:
            c.run_for(r.randint(0, 13 * TICK // 10 + 1))
        if unreliable:
            if leader != -1 and r.random() < 0.5:
                c.disconnect(leader)
                nup -= 1
            if nup < 3:
                s = r.randrange(5)
                if not c.connected(s):
                    c.connect(s)
                    nup += 1
        else:
            if leader != -1:
                c.crash(leader)
                nup -= 1
            if nup < 3:
                s = r.randrange(5)
                if not c.nodes[s].up:
                    c.restart(s)
                    nup += 1
    c.set_net(drop=0.0, dup=0.0, long_delay=0.0, reorder=0.0, delay_max=5)
    for i in range(5):
        c.restart(i)
        c.connect(i)
    one(c, rand_cmd(r), 5)


def test_figure8_scripted() -> None:
    """The exact interleaving of the paper's Figure 8 (see tests/sim/scripted.py): an entry of
    an old term on a majority is not committed by counting replicas, so the node that could
    have overwritten it cannot be elected."""
    c, i = figure8(seed=40)
    assert c.leader() is None  # S4 could not win in step (d)
    elect(c, 0)
    c.propose(0, b"end")
    last = c.nodes[0].storage.last_index()
    wait_applied(c, last, range(5), 200 * TICK)
    assert c.applied_data(i) == b"A"


def test_figure8_reliable() -> None:
    _figure8(False, seed=41, iters=1000)


def test_figure8_unreliable() -> None:
    _figure8(True, seed=42, iters=1000)


def test_figure8_unreliable_more_seeds() -> None:
    for seed in (43, 44, 45):
        _figure8(True, seed=seed, iters=400)


# ------------------------------------------------------------------ churn
def _churn(unreliable: bool, seed: int, rounds: int = 30) -> None:
    c = make(5, seed=seed, snap_every=25, keep=5)
    r = random.Random(seed)
    if unreliable:
        c.set_net(drop=0.1, dup=0.05, reorder=0.1, delay_max=2 * TICK)
    acked: list[tuple[int, bytes]] = []   # values a client saw committed
    pending: list[tuple[int, bytes]] = []

    def client(cid: int) -> None:
        # propose at whoever leads; remember what the client sees applied (committed)
        if not active[0]:
            return
        c.schedule(r.randint(1, 3) * TICK, lambda: client(cid), f"client{cid}")
        for idx, data in list(pending):
            if c.applied_data(idx) is not None:
                pending.remove((idx, data))
                if c.applied_data(idx) == data:
                    acked.append((idx, data))
        for i in r.sample(range(5), 5):
            if c.nodes[i].up and c.role(i) == Role.LEADER:
                data = rand_cmd(r)
                idx = c.propose(i, data)
                if idx is not None:
                    pending.append((idx, data))
                break

    active = [True]
    for cid in range(3):
        client(cid)
    for it in range(rounds):
        if r.random() < 0.2:
            c.disconnect(r.randrange(5))
        if r.random() < 0.5:
            i = r.randrange(5)
            if not c.nodes[i].up:
                c.restart(i)
            c.connect(i)
        if r.random() < 0.2:
            i = r.randrange(5)
            if c.nodes[i].up:
                c.crash(i)
        if r.random() < 0.2 and c.leader() is not None:
            c.crash(c.leader())
        c.run_for(second(c) * 7 // 10)
    c.run_for(c.eto)
    active[0] = False
    c.set_net(drop=0.0, dup=0.0, reorder=0.0, delay_max=5)
    for i in range(5):
        c.restart(i)
        c.connect(i)
    c.run_for(second(c))
    last = one(c, rand_cmd(r), 5)
    wait_applied(c, last, range(5), second(c))
    assert len(acked) > 5, f"too few values committed under churn: {len(acked)}"
    for idx, data in acked:
        assert c.applied_data(idx) == data


def test_churn_reliable() -> None:
    _churn(False, seed=51)


def test_churn_unreliable() -> None:
    _churn(True, seed=52)


# ------------------------------------------------------------------ snapshots
def test_snapshot_install() -> None:
    """A disconnected follower falls behind the leader's compacted log and is brought back
    by a snapshot."""
    c = make(3, seed=61, snap_every=10, keep=0)
    one(c, b"first", 3)
    leader = check_one_leader(c)
    f = (leader + 1) % 3
    c.disconnect(f)
    for k in range(60):
        one(c, b"s%d" % k, 2)
    ld = check_one_leader(c)
    assert c.nodes[ld].storage.first_index() > c.nodes[f].storage.last_index() + 1
    installed = c.stats["snaps_installed"]
    c.connect(f)
    last = one(c, b"after", 3)
    wait_applied(c, last, range(3), second(c))
    assert c.stats["snaps_installed"] > installed
    assert c.nodes[f].storage.snap.index > 0


def test_snapshot_install_over_divergent_log() -> None:
    """The follower left behind was a deposed leader holding uncommitted entries: the snapshot
    replaces its divergent log."""
    c = make(3, seed=62, snap_every=10, keep=2)
    one(c, b"first", 3)
    old = check_one_leader(c)
    c.disconnect(old)
    for k in range(20):
        c.propose(old, b"lost%d" % k)
    for k in range(50):
        one(c, b"s%d" % k, 2)
    c.connect(old)
    last = one(c, b"after", 3)
    wait_applied(c, last, range(3), second(c))
    applied = {c.applied_data(i) for i in range(1, last + 1)}
    assert not any(d and d.startswith(b"lost") for d in applied)


def test_snapshot_install_across_crash() -> None:
    c = make(3, seed=63, snap_every=10, keep=0)
    one(c, b"first", 3)
    leader = check_one_leader(c)
    f = (leader + 1) % 3
    c.crash(f)
    for k in range(40):
        one(c, b"a%d" % k, 2)
    installed = c.stats["snaps_installed"]
    c.restart(f)
    last = one(c, b"b", 3)
    wait_applied(c, last, range(3), second(c))
    assert c.stats["snaps_installed"] > installed
    snap_f = c.nodes[f].storage.snap.index
    assert snap_f > 0
    # restart from the installed snapshot: the state machine comes back from its data
    # (the restart re-applies the committed entries after the snapshot at once; the harness
    # checks that each apply follows the snapshot's index and chained hash)
    c.crash(f)
    c.restart(f)
    assert c.applied_index(f) >= snap_f
    assert c.nodes[f].sm_hash == c.inv.applied[c.applied_index(f)][2]
    # the leader too restarts from its own snapshot, and everyone goes on
    ld = check_one_leader(c)
    c.crash(ld)
    c.restart(ld)
    assert c.nodes[ld].storage.snap.index > 0
    assert c.nodes[ld].sm_hash == c.inv.applied[c.applied_index(ld)][2]
    for k in range(30):
        one(c, b"c%d" % k, 3)
    # crash everyone, restart: every state machine catches up to the same point
    for i in range(3):
        c.crash(i)
    for i in range(3):
        c.restart(i)
    last = one(c, b"d", 3)
    wait_applied(c, last, range(3), second(c))
    assert len({c.nodes[i].sm_hash for i in range(3)}) == 1


def test_snapshot_unreliable() -> None:
    c = make(5, seed=64, snap_every=7, keep=1, drop=0.1, dup=0.05, reorder=0.1, delay_max=15)
    r = random.Random(64)
    for it in range(30):
        ld = c.leader()
        if ld is not None:
            c.propose(ld, [rand_cmd(r) for _ in range(r.randint(1, 5))])
        if r.random() < 0.3:
            i = r.randrange(5)
            c.crash(i)
            c.schedule(r.randint(1, 30) * TICK, lambda i=i: c.restart(i), "restart")
        c.run_for(r.randint(1, 20) * TICK)
    c.set_net(drop=0.0, dup=0.0, reorder=0.0)
    for i in range(5):
        c.restart(i)
    last = one(c, b"end", 5)
    wait_applied(c, last, range(5), second(c))
    assert c.stats["snaps_installed"] > 0


# ------------------------------------------------------------------ pre-vote / check-quorum
def test_prevote_rejoin_does_not_disrupt() -> None:
    """A follower cut off for a long time does not bump its term (pre-vote fails), so when it
    comes back the leader keeps its term and its leadership."""
    c = make(3, seed=71, pre_vote=True, check_quorum=False)
    one(c, b"x", 3)
    leader = check_one_leader(c)
    term = c.term(leader)
    f = (leader + 1) % 3
    c.disconnect(f)
    c.run_for(10 * c.eto)
    assert c.term(f) == term, "a pre-voting node raised its term while partitioned"
    assert c.role(f) == Role.PRE_CANDIDATE or c.role(f) == Role.FOLLOWER
    c.connect(f)
    c.run_for(5 * c.eto)
    assert c.leader() == leader and c.term(leader) == term
    one(c, b"y", 3)
    assert c.term(leader) == term


def test_without_prevote_rejoin_disrupts() -> None:
    """The contrast case: without pre-vote (and without check-quorum) the rejoining node's
    inflated term deposes the leader."""
    c = make(3, seed=72, pre_vote=False, check_quorum=False)
    one(c, b"x", 3)
    leader = check_one_leader(c)
    term = c.term(leader)
    f = (leader + 1) % 3
    c.disconnect(f)
    c.run_for(10 * c.eto)
    assert c.term(f) > term
    c.connect(f)
    c.run_for(5 * c.eto)
    assert max(c.term(i) for i in range(3)) > term
    one(c, b"y", 3)


def test_check_quorum_leader_steps_down() -> None:
    """A leader cut off from the majority steps down within two election timeouts.

    etcd-style check-quorum: every election_tick ticks the leader checks that a quorum was
    active since the previous check, so activity just before the cut counts for one more
    period; the bound is 2 x election timeout, reached when the cut falls just before a check.
    """
    c = make(5, seed=73, check_quorum=True, pre_vote=True)
    one(c, b"x", 5)
    leader = check_one_leader(c)
    c.run_for(c.rng.randint(0, c.eto))  # any phase of the leader's check-quorum period
    c.disconnect(leader)
    t0 = c.now
    ok = c.run_until(lambda: c.role(leader) != Role.LEADER, 3 * c.eto)
    assert ok, "isolated leader never stepped down"
    waited = c.now - t0
    assert waited <= 2 * c.eto + TICK, f"stepped down after {waited} > two election timeouts"
    # the majority elects a new leader meanwhile
    assert c.run_until(lambda: c.leader() not in (None, leader), 5 * c.eto)


def test_check_quorum_many_phases() -> None:
    for seed in range(74, 84):
        c = make(3, seed=seed, check_quorum=True, election_tick=5)
        one(c, b"x", 3)
        leader = check_one_leader(c)
        c.run_for(c.rng.randint(0, c.eto))
        c.partition([leader])
        t0 = c.now
        assert c.run_until(lambda: c.role(leader) != Role.LEADER, 3 * c.eto)
        assert c.now - t0 <= 2 * c.eto + TICK, f"seed {seed}: {c.now - t0}"


def test_without_check_quorum_isolated_leader_stays() -> None:
    c = make(5, seed=85, check_quorum=False)
    one(c, b"x", 5)
    leader = check_one_leader(c)
    c.disconnect(leader)
    c.run_for(5 * c.eto)
    assert c.role(leader) == Role.LEADER


def test_check_quorum_leader_ignores_disruptive_vote() -> None:
    """With check-quorum, a node whose term went up (no pre-vote) cannot depose a leader that
    its peers still hear from; it is brought back by the stale-term reply."""
    c = make(3, seed=86, check_quorum=True, pre_vote=False)
    one(c, b"x", 3)
    leader = check_one_leader(c)
    f = (leader + 1) % 3
    c.disconnect(f)
    c.run_for(6 * c.eto)
    assert c.term(f) > c.term(leader)
    c.connect(f)
    one(c, b"y", 3)
    c.run_for(3 * c.eto)
    ld = check_one_leader(c)
    one(c, b"z", 3)
    assert check_terms(c) == c.term(ld)


# ------------------------------------------------------------------ read index
def test_read_index_basic() -> None:
    c = make(3, seed=91)
    idx = one(c, b"w1", 3)
    leader = check_one_leader(c)
    for i in range(3):
        ctx = c.read_index(i)
        assert c.run_until(lambda: c.read_result(i, ctx) is not None, c.eto)
        assert c.read_result(i, ctx) >= idx


def test_read_index_deposed_leader() -> None:
    """A leader cut off with a minority keeps believing it leads (no check-quorum); the
    majority elects a new leader that commits a write.  No read index that the old leader (or
    its minority follower) hands out is below that write: the harness checks every ReadState
    against every commit reported before the read was issued."""
    c = make(5, seed=92, check_quorum=False, pre_vote=True)
    one(c, b"x", 5)
    l1 = check_one_leader(c)
    f1 = (l1 + 1) % 5
    majority = [i for i in range(5) if i not in (l1, f1)]
    c.partition([l1, f1], majority)
    assert c.run_until(lambda: any(c.role(i) == Role.LEADER for i in majority), 10 * c.eto)
    l2 = next(i for i in majority if c.role(i) == Role.LEADER)
    iy = c.propose(l2, b"y")
    wait_applied(c, iy, majority, 5 * c.eto)
    assert c.role(l1) == Role.LEADER  # still believes it
    stale = [c.read_index(l1), c.read_index(f1)]
    c.run_for(5 * c.eto)
    for ctx, i in zip(stale, (l1, f1)):
        assert c.nodes[i].read_results.get(ctx) is None, "the minority answered a read"
    fresh = c.read_index(l2)
    fwd = c.read_index(majority[0] if majority[0] != l2 else majority[1])
    assert c.run_until(lambda: c.read_result(l2, fresh) is not None, 2 * c.eto)
    assert c.read_result(l2, fresh) >= iy
    j = majority[0] if majority[0] != l2 else majority[1]
    assert c.run_until(lambda: c.read_result(j, fwd) is not None, 2 * c.eto)
    assert c.read_result(j, fwd) >= iy
    # heal: the old leader steps down; anything it answers now is checked by the harness
    c.heal()
    c.run_for(5 * c.eto)
    assert c.role(l1) != Role.LEADER
    for ctx, i in zip(stale, (l1, f1)):
        got = c.nodes[i].read_results.get(ctx)
        assert got is None or got >= iy
    ctx = c.read_index(l1)
    assert c.run_until(lambda: c.read_result(l1, ctx) is not None, 3 * c.eto)
    assert c.read_result(l1, ctx) >= iy


def test_read_index_new_leader_waits_for_its_term() -> None:
    """A new leader answers reads only once an entry of its own term is committed (its commit
    index may lag what the previous leader committed)."""
    c = make(3, seed=93, delay_max=3)
    one(c, b"x", 3)
    l1 = check_one_leader(c)
    c.crash(l1)
    ok = c.run_until(lambda: c.leader() not in (None, l1), 10 * c.eto)
    assert ok
    l2 = c.leader()
    ctx = c.read_index(l2)  # right after the election: the no-op may not be committed yet
    assert c.run_until(lambda: c.read_result(l2, ctx) is not None, 2 * c.eto)
    idx = c.read_result(l2, ctx)
    assert c.nodes[l2].storage.term(idx) >= 1
    assert c.term(l2) == c.nodes[l2].sm_term or c.applied_index(l2) >= idx


def test_read_index_unreliable() -> None:
    c = make(5, seed=94, drop=0.1, dup=0.1, reorder=0.2, delay_max=20)
    r = random.Random(94)
    asked = []
    for it in range(60):
        ld = c.leader()
        if ld is not None:
            c.propose(ld, [rand_cmd(r)])
        i = r.randrange(5)
        asked.append((i, c.read_index(i)))
        if r.random() < 0.1:
            c.partition(r.sample(range(5), 2))
        elif r.random() < 0.2:
            c.heal()
        c.run_for(r.randint(1, 10) * TICK)
    c.heal()
    c.set_net(drop=0.0, dup=0.0, reorder=0.0)
    c.run_for(5 * c.eto)
    answered = sum(1 for i, ctx in asked if c.nodes[i].read_results.get(ctx) is not None)
    assert answered > len(asked) // 3, f"only {answered} of {len(asked)} reads answered"
    assert c.stats["read_states"] >= answered


# ------------------------------------------------------------------ leadership transfer
def test_transfer_leader() -> None:
    c = make(3, seed=101)
    one(c, b"x", 3)
    l1 = check_one_leader(c)
    t = (l1 + 1) % 3
    c.transfer_leader(l1, t)
    assert c.run_until(lambda: c.leader() == t and c.stable_leader() == t, 2 * c.eto)
    assert c.role(l1) == Role.FOLLOWER
    one(c, b"y", 3)


def test_transfer_leader_from_follower() -> None:
    """A follower asked to transfer forwards the request to the leader."""
    c = make(3, seed=102)
    one(c, b"x", 3)
    l1 = check_one_leader(c)
    t = (l1 + 2) % 3
    c.transfer_leader((l1 + 1) % 3, t)
    assert c.run_until(lambda: c.leader() == t, 2 * c.eto)


def test_transfer_leader_to_lagging_follower() -> None:
    """The transferee first catches up; proposals are refused while the transfer runs."""
    c = make(3, seed=103, max_inflight_msgs=1, max_size_per_msg=64)
    one(c, b"x", 3)
    l1 = check_one_leader(c)
    t = (l1 + 1) % 3
    c.disconnect(t)
    for k in range(30):
        one(c, b"a%d" % k, 2)
    behind = c.nodes[l1].storage.last_index() - c.nodes[t].storage.last_index()
    assert behind >= 30
    c.connect(t)
    c.transfer_leader(l1, t)
    assert c.propose(l1, b"during") is None, "proposal accepted during a transfer"
    assert c.run_until(lambda: c.leader() == t, 3 * c.eto), c.describe()
    # the new leader holds everything the old one had
    assert c.nodes[t].storage.last_index() > c.nodes[l1].storage.hard_state.commit
    one(c, b"y", 3)


def test_transfer_leader_to_down_node_gives_up() -> None:
    c = make(3, seed=104)
    one(c, b"x", 3)
    l1 = check_one_leader(c)
    t = (l1 + 1) % 3
    c.crash(t)
    c.transfer_leader(l1, t)
    assert c.propose(l1, b"during") is None
    c.run_for(2 * c.eto + 2 * TICK)  # the transfer is abandoned after an election timeout
    assert c.role(l1) == Role.LEADER
    assert c.propose(l1, b"after") is not None
    c.restart(t)
    one(c, b"y", 3)


def test_transfer_to_self_and_unknown_is_ignored() -> None:
    c = make(3, seed=105)
    one(c, b"x", 3)
    l1 = check_one_leader(c)
    term = c.term(l1)
    c.transfer_leader(l1, l1)
    c.transfer_leader(l1, 17)
    c.transfer_leader(l1, NONE)
    c.run_for(2 * c.eto)
    assert c.leader() == l1 and c.term(l1) == term
    assert c.propose(l1, b"y") is not None


def test_read_index_forwarded_twice_reaches_the_requester() -> None:
    """Node 2 still believes node 0 leads, but leadership has moved to node 1: 2's read goes
    2 -> 0 -> 1, and the answer must come back to node 2 (the requester), not to node 0.
    (etcd keeps the original sender when a follower forwards: send() only fills an empty From.)
    """
    c = make(3, seed=106, election_tick=100, check_quorum=False, pre_vote=False)
    elect(c, 0)
    one(c, b"x", 3)
    c.cut_one_way(0, 2)  # node 2 stops hearing from anyone but keeps believing 0 leads
    c.cut_one_way(1, 2)
    c.cut_one_way(2, 1)
    c.transfer_leader(0, 1)
    assert c.run_until(lambda: c.leader() == 1 and c.nodes[0].raw.lead == 1, 50 * TICK)
    assert c.nodes[2].raw.lead == 0
    c.heal()
    ctx = c.read_index(2)  # node 2 still believes 0 leads: the request goes to node 0
    assert c.run_until(lambda: c.read_result(2, ctx) is not None, 50 * TICK)
    assert ctx not in c.nodes[0].read_results, "node 0 received node 2's read state"


def test_transfer_leader_to_follower_needing_a_snapshot() -> None:
    """The transferee is behind the leader's compacted log: it gets a snapshot, catches up,
    and only then takes over."""
    c = make(3, seed=107, snap_every=5, keep=0)
    one(c, b"x", 3)
    l1 = check_one_leader(c)
    t = (l1 + 1) % 3
    c.disconnect(t)
    for k in range(30):
        one(c, b"a%d" % k, 2)
    assert c.nodes[l1].storage.first_index() > c.nodes[t].storage.last_index() + 1
    installed = c.stats["snaps_installed"]
    c.connect(t)
    c.transfer_leader(l1, t)
    assert c.run_until(lambda: c.leader() == t, 3 * c.eto), c.describe()
    assert c.stats["snaps_installed"] > installed
    one(c, b"y", 3)


def test_read_index_on_lagging_follower_waits_for_apply() -> None:
    """A follower behind the leader gets a read index above its applied index: the read is
    served only once it has applied that far (read_result is None until then)."""
    c = make(3, seed=108, max_inflight_msgs=1, max_size_per_msg=32)
    one(c, b"x", 3)
    l1 = check_one_leader(c)
    f = (l1 + 1) % 3
    c.disconnect(f)
    for k in range(40):
        one(c, b"a%d" % k, 2)
    c.connect(f)
    # (a read asked while f knows no leader is dropped: wait for the first heartbeat)
    assert c.run_until(lambda: c.nodes[f].raw.lead == l1, 2 * c.eto)
    ctx = c.read_index(f)
    seen_unapplied = False
    end = c.now + 5 * c.eto
    while c.now < end and c.read_result(f, ctx) is None:
        c.step()
        got = c.nodes[f].read_results.get(ctx)
        if got is not None and c.applied_index(f) < got:
            seen_unapplied = True
    assert c.read_result(f, ctx) is not None
    assert c.read_result(f, ctx) >= c.nodes[l1].storage.hard_state.commit - 1
    assert seen_unapplied, "the follower had already caught up: the test lost its point"


def test_repeated_transfer_requests_do_not_hold_off_check_quorum() -> None:
    """An isolated leader kept busy with transfer requests (alternating targets) still steps
    down: the transfer has its own timer, so it does not reset the check-quorum period."""
    c = make(3, seed=107, check_quorum=True)
    one(c, b"x", 3)
    leader = check_one_leader(c)
    c.disconnect(leader)
    others = [i for i in range(3) if i != leader]
    stepped_down = False
    for k in range(40):  # 40 requests, one every half election timeout: 20 election timeouts
        c.transfer_leader(leader, others[k % 2])
        if c.run_until(lambda: c.role(leader) != Role.LEADER, c.eto // 2):
            stepped_down = True
            break
    assert stepped_down, "isolated leader kept office while transfer requests kept coming"


def test_read_index_lone_leader_waits_for_its_term_after_power_loss() -> None:
    """A one-node group acknowledged writes 1..5, but the hard state that recorded their commit
    did not reach the disk before the power went (the round answers proposers before its fsync;
    the entries themselves were durable).  Restarted with commit 2, its first read index must
    not be below 5: the lone leader, like every leader, first commits an entry of its term."""
    from eraftd.raft.messages import Entry, HardState
    from eraftd.raft.options import RaftOptions
    from eraftd.raft.rawnode import RawNode
    from eraftd.raft.storage import MemoryStorage

    st = MemoryStorage()
    st.append([Entry(1, i, b"w%d" % i) for i in range(1, 6)])
    st.set_hard_state(HardState(term=1, vote=0, commit=2))          # the commit cut back
    rn = RawNode(RaftOptions(id=0, peers=(0,), applied=2), st, random.Random(7))
    rn.campaign()
    assert rn.role == Role.LEADER
    rn.read_index(b"r1")
    rd = rn.ready()
    assert rd.read_states == [], "answered before an entry of its term committed"
    st.append(rd.entries)                                           # the no-op becomes durable
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    rn.advance(rd)
    states = []
    while rn.has_ready():
        rd = rn.ready()
        states += rd.read_states
        st.append(rd.entries)
        rn.advance(rd)
    assert [(s.index, s.context) for s in states] == [(6, b"r1")]
    rn.read_index(b"r2")                                            # later reads: at once
    assert [s.index for s in rn.ready().read_states] == [6]
