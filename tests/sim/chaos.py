"""Random fault schedules for the seeded simulation (tests/raft/test_simulation.py).

run_seed(seed, steps) derives everything from the seed: cluster size (3 or 5; 4 and 7 for two
seeds in 25), core options (pre-vote, check-quorum, tick counts, message size and in-flight
limits), network quality (delays, long delays, drops, duplicates, reordering), snapshot
frequency, and which faults happen and how often (crash/restart, torn crash between send and
write, symmetric partitions, isolation, one-way cuts, network changes, leadership transfers,
forced campaigns), with a steady stream of client proposals and read-index requests.  After
`steps` steps everything heals (every node up, no partition, no loss, no reordering, delays
<= 1/10 election timeout) and liveness is checked:
  * a stable leader within 10 election timeouts (the longest randomised one, 2 x election_tick
    ticks: elections are probabilistic, and with small election_tick values split votes are
    frequent),
  * then a proposal applied on every node within 10 more,
  * then a read index answered on every node within 10 more,
  * then, once every message sent before the heal has arrived (a stale TIMEOUT_NOW of an
    abandoned transfer legitimately starts an election), no election at all (same leader,
    same term everywhere) for 10 more.
Safety invariants (tests/sim/invariants.py) are checked after every step throughout.

Membership (about 2 seeds in 5, drawn from a stream of their own so the other seeds keep their
plans): one or two spare nodes that know no membership, and the fault "member", which at the
leader adds a non-member as a learner (a node no one counts as a member may first lose its
disk), promotes a learner, or removes a voter (the leader itself, sometimes).  Liveness is then
judged on the members the final leader sees.  Membership seeds run with check-quorum (a
removed node that missed its removal would disrupt a group without it).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .invariants import Violation
from .sim import EV_DELIVER, TICK, Cluster, SimConfig

from eraftd.raft.messages import ConfChangeOp

FAULTS = ("crash", "restart", "partition", "isolate", "oneway", "heal", "net", "transfer",
          "campaign", "member")


@dataclass
class Plan:
    faults: tuple[str, ...]
    weights: tuple[int, ...]
    fault_gap: int          # mean time between faults
    client_gap: int         # max time between proposal batches
    max_batch: int
    read_gap: int           # max time between read requests
    drop: float
    dup: float
    long_delay: float
    reorder: float
    torn: float
    auto_restart: float     # probability that a crashed node is restarted later by itself

    def describe(self) -> str:
        return (f"faults={','.join(self.faults) or '-'} fault_gap={self.fault_gap} "
                f"torn={self.torn} drop={self.drop} dup={self.dup} long_delay={self.long_delay} "
                f"reorder={self.reorder}")


def make_config(seed: int, n: int | None = None) -> tuple[SimConfig, Plan]:
    """Seed -> cluster, core options, network and fault plan.  Sizes: even seeds 3 nodes, odd
    seeds 5, except seeds 23 and 24 mod 25 (4 and 7 nodes)."""
    r = random.Random(seed * 7 + 12345)
    if n is None:
        k = seed % 25
        n = 4 if k == 23 else 7 if k == 24 else 3 if seed % 2 == 0 else 5
    et = r.choice([3, 5, 10, 10])
    hb = r.choice([1, 1, 2]) if et > 3 else 1
    cfg = SimConfig(
        n=n,
        election_tick=et,
        heartbeat_tick=hb,
        pre_vote=r.random() < 0.7,
        check_quorum=r.random() < 0.7,
        max_size_per_msg=r.choice([40, 200, 1 << 20]),
        max_inflight_msgs=r.choice([1, 2, 8, 256]),
        max_committed_per_ready=r.choice([40, 1 << 22]),
        delay_min=1,
        delay_max=r.choice([2, 5, 10, 5 * et]),
        long_delay_max=r.choice([30, 100, 300]) * et // 5 + 10,
        snap_every=r.choice([0, 5, 10, 25, 60]),
        keep=r.choice([0, 0, 2, 10]),
        report_unreachable=r.random() < 0.8,
    )
    faults = tuple(f for f in FAULTS if f != "member" and r.random() < 0.6)
    weights = tuple(r.choice([1, 2, 4]) for _ in faults)
    rm = random.Random(seed * 101 + 4242)  # membership: its own stream
    if rm.random() < 0.4:
        cfg.voters = n
        cfg.n = n + rm.choice([1, 2])
        faults += ("member",)
        weights += (rm.choice([2, 4, 8]),)
        # a removed node that missed its removal campaigns on; only check-quorum's lease keeps
        # it from disrupting the group (thesis 4.2.3; pre-vote alone does not when its log is
        # as long as the others'): eraftd runs it by default
        cfg.check_quorum = True
    plan = Plan(
        faults=faults,
        weights=weights,
        fault_gap=r.choice([et * TICK // 2, et * TICK * 2, et * TICK * 6]),
        client_gap=r.choice([5, 20, 60]),
        max_batch=r.choice([1, 3, 10]),
        read_gap=r.choice([20, 100, 400]),
        drop=r.choice([0.0, 0.0, 0.01, 0.05, 0.2]),
        dup=r.choice([0.0, 0.0, 0.02, 0.1]),
        long_delay=r.choice([0.0, 0.0, 0.02, 0.1]),
        reorder=r.choice([0.0, 0.0, 0.01, 0.1, 1.0]),
        torn=r.choice([0.0, 0.0, 0.0, 0.002, 0.01]),
        auto_restart=r.choice([0.5, 0.9, 1.0]),
    )
    cfg.drop, cfg.dup, cfg.long_delay = plan.drop, plan.dup, plan.long_delay
    cfg.reorder, cfg.torn = plan.reorder, plan.torn
    return cfg, plan


class Liveness(Violation):
    pass


class Chaos:
    def __init__(self, seed: int, cfg: SimConfig | None = None, plan: Plan | None = None,
                 n: int | None = None, **cluster_kw) -> None:
        if cfg is None or plan is None:
            c2, p2 = make_config(seed, n)
            cfg = cfg or c2
            plan = plan or p2
        self.seed = seed
        self.cfg = cfg
        self.plan = plan
        self.c = Cluster(cfg, seed, **cluster_kw)
        self.r = random.Random(seed * 31 + 7)  # the workload's own stream
        self.active = True
        self.props = 0
        self.counts = {f: 0 for f in FAULTS}
        c = self.c
        c.schedule(self.r.randint(1, plan.client_gap), self._client, "client")
        c.schedule(self.r.randint(1, plan.read_gap), self._reader, "reader")
        if plan.faults:
            c.schedule(self.r.randint(1, 2 * plan.fault_gap), self._fault, "fault")

    # ------------------------------------------------------------ workload
    def _client(self) -> None:
        if not self.active:
            return
        c, r = self.c, self.r
        c.schedule(r.randint(1, self.plan.client_gap), self._client, "client")
        lds = c.leaders()
        if lds and r.random() < 0.9:
            i = r.choice(lds)
        else:
            i = r.randrange(c.n)
        k = r.randint(1, self.plan.max_batch)
        datas = []
        for _ in range(k):
            self.props += 1
            datas.append(b"s%d-p%d" % (self.seed, self.props))
        c.propose(i, datas)

    def _reader(self) -> None:
        if not self.active:
            return
        c, r = self.c, self.r
        c.schedule(r.randint(1, self.plan.read_gap), self._reader, "reader")
        c.read_index(r.randrange(c.n))

    def _fault(self) -> None:
        if not self.active:
            return
        c, r, plan = self.c, self.r, self.plan
        c.schedule(r.randint(1, 2 * plan.fault_gap), self._fault, "fault")
        kind = r.choices(plan.faults, plan.weights)[0]
        self.counts[kind] += 1
        n = c.n
        up = [i for i in range(n) if c.nodes[i].up]
        down = [i for i in range(n) if not c.nodes[i].up]
        if kind == "crash" and up:
            lds = c.leaders()
            i = r.choice(lds) if lds and r.random() < 0.5 else r.choice(up)
            c.crash(i)
            if r.random() < plan.auto_restart:
                c.schedule(r.randint(1, 20 * c.cfg.election_tick) * TICK // 2,
                           lambda i=i: self.active and c.restart(i), "restart")
        elif kind == "restart" and down:
            c.restart(r.choice(down))
        elif kind == "partition" and n > 1:
            order = list(range(n))
            r.shuffle(order)
            k = r.randint(1, n - 1)
            if r.random() < 0.3 and n == 5:  # three groups
                k2 = r.randint(k + 1, n) if k + 1 < n else n
                c.partition(order[:k], order[k:k2])
            else:
                c.partition(order[:k])
        elif kind == "isolate":
            lds = c.leaders()
            i = r.choice(lds) if lds and r.random() < 0.5 else r.randrange(n)
            c.isolate(i)
            c.schedule(r.randint(1, 10 * c.cfg.election_tick) * TICK,
                       lambda i=i: self.active and c.connect(i), "connect")
        elif kind == "oneway" and n > 1:
            a = r.randrange(n)
            b = r.choice([j for j in range(n) if j != a])
            c.cut_one_way(a, b)
        elif kind == "heal":
            c.heal()
        elif kind == "net":
            c.set_net(drop=r.choice([0.0, plan.drop, 0.3]), dup=r.choice([0.0, plan.dup, 0.2]),
                      long_delay=r.choice([0.0, plan.long_delay, 0.2]),
                      reorder=r.choice([0.0, plan.reorder, 0.3]))
        elif kind == "transfer" and n > 1:
            lds = c.leaders()
            if lds:
                i = r.choice(lds)
                c.transfer_leader(i, r.choice([j for j in range(n) if j != i]))
        elif kind == "campaign" and up:
            c.campaign(r.choice(up))
        elif kind == "member":
            self._member()

    def _member(self) -> None:
        c, r = self.c, self.r
        ld = c.leader()
        if ld is None:
            return
        cs = c.conf(ld)
        others = [i for i in range(c.n) if i not in cs]
        x = r.random()
        if cs.learners and x < 0.5:
            c.conf_change(ld, ConfChangeOp.PROMOTE, r.choice(cs.learners))
        elif others and (x < 0.75 or len(cs.voters) <= 1):
            i = r.choice(others)
            # reusing an id with a wiped disk is safe only for a node that no disk counts as
            # a member (the real system gives a replaced disk a new id)
            if r.random() < 0.5 and all(i not in c.conf(j) for j in range(c.n)):
                c.wipe(i)
            c.conf_change(ld, ConfChangeOp.ADD_LEARNER, i)
        elif len(cs.voters) > 1:
            i = ld if r.random() < 0.3 else r.choice(cs.voters)
            c.conf_change(ld, ConfChangeOp.REMOVE, i)

    # ------------------------------------------------------------ phases
    def run(self, steps: int) -> dict:
        c = self.c
        while c.steps < steps:
            if not c.step():
                break
        self.check_liveness()
        return self.summary()

    def check_liveness(self) -> None:
        c = self.c
        self.active = False
        # messages already in flight from the faulty period (long delays, reordering) still
        # arrive after the heal; stability is judged only once they are all delivered
        stale_until = max((ev[0] for ev in c._q if ev[2] == EV_DELIVER), default=c.now)
        c.heal()
        # a healthy network: no loss, no reordering, delays well below an election timeout
        # (Raft's timing requirement: broadcast time << election timeout)
        c.set_net(drop=0.0, dup=0.0, long_delay=0.0, reorder=0.0, torn=0.0,
                  delay_max=max(c.cfg.delay_min, min(c.cfg.delay_max, c.eto // 10)))
        for i in range(c.n):
            c.restart(i)
        # "an election timeout" here is the longest randomised one: 2 x election_tick ticks
        eto = 2 * c.eto
        t0 = c.now
        if not c.run_until(lambda: c.stable_leader() is not None, 10 * eto):
            raise Liveness(f"liveness: no stable leader {10 * eto} time units (10 election "
                           f"timeouts) after the network healed at t={t0}\n{c.describe()}")
        self.t_leader = c.now - t0
        # a proposal must be applied everywhere: 10 election timeouts, plus the time the
        # configured flow control needs to ship the backlog (B entries, `window` per round trip)
        t1 = c.now
        cfg = c.cfg
        backlog = (max(sn.storage.last_index() for sn in c.nodes)
                   - min(sn.storage.last_index() for sn in c.nodes) + 1)
        window = max(1, cfg.max_size_per_msg // 30) * cfg.max_inflight_msgs
        rtt = 2 * cfg.delay_max + cfg.heartbeat_tick * TICK
        allowance = -(-backlog // window) * rtt
        markers: list[tuple[int, bytes]] = []
        state = {"proposed_to": None}

        def committed_everywhere() -> bool:
            for idx, data in markers:
                if c.applied_data(idx) == data and c.n_applied(idx, c.members()) == len(c.members()):
                    return True
            ld = c.leader()
            if ld is not None and state["proposed_to"] != (ld, c.term(ld)):
                # one marker per leadership: a deposed leader's may be lost
                data = b"s%d-live%d" % (self.seed, len(markers))
                idx = c.propose(ld, [data])
                if idx is not None:
                    state["proposed_to"] = (ld, c.term(ld))
                    markers.append((idx, data))
            return False

        if not c.run_until(committed_everywhere, 10 * eto + allowance):
            raise Liveness(f"liveness: no proposal applied on every node within "
                           f"{10 * eto}+{allowance} time units of a stable leader (t={t1}; "
                           f"markers {markers}; backlog {backlog})\n{c.describe()}")
        self.t_commit = c.now - t1
        # a read index on every node
        t2 = c.now
        asked: dict[int, list[bytes]] = {i: [] for i in range(c.n)}
        rstate = {"next": c.now}

        def reads_done() -> bool:
            members = c.members()  # (a change proposed before the heal may apply during it)
            done = all(any(c.read_result(i, ctx) is not None for ctx in asked[i])
                       for i in members)
            if done:
                return True
            if c.now >= rstate["next"]:
                rstate["next"] = c.now + 2 * eto
                for i in members:
                    if not any(c.read_result(i, ctx) is not None for ctx in asked[i]):
                        ctx = c.read_index(i)
                        if ctx is not None:
                            asked[i].append(ctx)
            return False

        if not c.run_until(reads_done, 10 * eto):
            missing = [i for i in c.members()
                       if not any(c.read_result(i, ctx) is not None for ctx in asked[i])]
            raise Liveness(f"liveness: read index not answered on nodes {missing} within "
                           f"{10 * eto} time units (asked since t={t2})\n{c.describe()}")
        # stability: on a healthy network nobody starts an election any more, as long as the
        # longest gap between two heartbeats (heartbeat period + delay jitter) stays below
        # election_tick - 1 ticks (a follower times out after >= election_tick silent ticks)
        cfg = c.cfg
        gap = cfg.heartbeat_tick * TICK + cfg.delay_max - cfg.delay_min
        if gap >= (cfg.election_tick - 1) * TICK:
            return
        if c.now < stale_until:
            c.run_for(stale_until - c.now)
            if not c.run_until(lambda: c.stable_leader() is not None, 10 * eto):
                raise Liveness(f"liveness: no stable leader {10 * eto} time units after the "
                               f"last stale message (t={stale_until})\n{c.describe()}")
        ld = c.leader()
        term = c.term(ld)
        members = c.members()
        t3 = c.now
        if c.run_until(lambda: c.leader() != ld or any(c.term(i) != term for i in members),
                       10 * eto):
            raise Liveness(f"stability: leader {ld} of term {term} lost its place on a healthy "
                           f"network (healed at t={t0}, stable since t={t3})\n{c.describe()}")

    def summary(self) -> dict:
        c = self.c
        inv = c.inv
        s = dict(c.stats)
        s.update(steps=c.steps, time=c.now, n=c.n,
                 max_term=max(c.term(i) for i in range(c.n)),
                 leaders=len(inv.leaders) if inv else 0,
                 committed=inv.max_commit if inv else 0,
                 faults=dict(self.counts))
        return s


def run_seed(seed: int, steps: int, **cluster_kw) -> dict:
    """Run one seeded simulation; raises Violation (or Liveness) with a trace on failure."""
    return Chaos(seed, **cluster_kw).run(steps)


def replay_command(seed: int, steps: int) -> str:
    return (f"ERAFT_SIM_SEED={seed} ERAFT_SIM_STEPS={steps} "
            f".venv/bin/pytest tests/raft/test_simulation.py -q -x")


def run_seed_safe(args: tuple) -> tuple[int, tuple[bool, object]]:
    """(seed, steps, trace_len) -> (seed, (True, summary) | (False, failure report)).
    Picklable entry point for worker processes; never raises for a simulation failure."""
    seed, steps, trace_len = args
    ch = Chaos(seed)
    try:
        return seed, (True, ch.run(steps))
    except Violation as e:
        head = str(e).split("\n", 1)[0]
        return seed, (False, f"{head}\nplan: {ch.plan.describe()}\n{ch.c.describe(trace_len)}")
