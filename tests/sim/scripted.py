"""Hand-scripted interleavings that random schedules rarely hit (used by the scenario tests and
by the harness's mutation tests)."""
from __future__ import annotations

from eraftd.raft.messages import Role

from .sim import TICK, Cluster, SimConfig


def elect(c: Cluster, i: int, timeout_ticks: int = 200) -> None:
    """Make node i the leader by forcing campaigns (the others' timeouts are long)."""
    deadline = c.now + timeout_ticks * TICK
    while c.now < deadline:
        if c.role(i) == Role.LEADER:
            return
        c.campaign(i)
        c.run_until(lambda: c.role(i) == Role.LEADER, 5 * TICK)
    raise AssertionError(f"node {i} could not be elected\n{c.describe()}")


def figure8(seed: int = 1) -> tuple[Cluster, int]:
    """The paper's Figure 8, step by step, on 5 nodes (one entry per APP message).

    (a) S0 leads and replicates A at index i to S1 only;        S0 crashes.
    (b) S4 is elected by S2, S3; appends its no-op (i, T2) and is cut off before sending it.
    (c) S0 restarts and is elected by S1, S2 (term T3); it ships A to S2: A is now on a
        majority, but it is from an old term, so S0 must NOT count it committed until its
        own no-op (i+1, T3) is on a majority.  We crash S0 the moment its commit reaches i.
    (d) S4 restarts and campaigns with S2, S3: if S0 had committed A without its no-op (the bug
        Figure 8 is about), S2 holds only (i, T1), S4 wins and overwrites the committed A.
        With a correct core S2 holds (i+1, T3) and S4 cannot win.
    Returns the cluster (healed, everyone up) and i.
    """
    c = Cluster(SimConfig(n=5, election_tick=1000, pre_vote=False, check_quorum=False,
                          max_size_per_msg=1, max_inflight_msgs=1, delay_min=1, delay_max=1),
                seed)
    elect(c, 0)
    assert c.run_until(lambda: c.n_applied(1) == 5, 50 * TICK)
    # (a)
    c.partition([0, 1], [2], [3], [4])
    i = c.propose(0, b"A")
    assert i is not None
    assert c.run_until(lambda: c.nodes[1].storage.last_index() >= i, 50 * TICK)
    c.crash(0)
    # (b)
    c.partition([2, 3, 4], [0], [1])
    elect(c, 4)
    c.isolate(4)
    c.run_for(5 * TICK)
    c.crash(4)
    c.connect(4)
    # (c)
    c.restart(0)
    c.partition([0, 1, 2], [3], [4])
    elect(c, 0)
    assert c.run_until(lambda: c.nodes[0].raw.commit >= i, 100 * TICK), c.describe()
    c.crash(0)
    c.crash(1)
    # (d)
    c.restart(4)
    c.partition([2, 3, 4], [0], [1])
    for _ in range(5):
        c.campaign(4)
        c.run_for(10 * TICK)
    # epilogue: heal, everyone up, the cluster agrees on one history with A at i
    c.heal()
    c.restart(0)
    c.restart(1)
    return c, i
