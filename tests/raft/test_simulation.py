"""Seeded chaos simulation of the Raft core (eraftd/raft) on the deterministic harness tests/sim.

Each seed picks a cluster (3 or 5 nodes, a few 4 and 7), core options, network quality and a
mix of faults (crashes and restarts, torn crashes between send and write, partitions, isolation,
one-way cuts, drops, duplicates, delays, reordering, leadership transfers, forced campaigns)
under a stream of proposals and read-index requests; the safety invariants of
tests/sim/invariants.py are checked after every step, and liveness once everything heals (see
tests/sim/chaos.py).

CI mode (default): 1,000 seeds x 5,000 steps, spread over 2 worker processes.

Long mode / knobs (environment variables):
    ERAFT_SIM_SEEDS=5000          seeds 0..4999      (or a range: ERAFT_SIM_SEEDS=10000:20000)
    ERAFT_SIM_STEPS=20000         steps per seed before the heal + liveness phase
    ERAFT_SIM_JOBS=2              worker processes (1 = run in the pytest process)
    ERAFT_SIM_SEED=1234           replay one seed (prints its summary with -s)
    ERAFT_SIM_TRACE=400           events shown in a failure report (default 60)
e.g. a night's run:
    ERAFT_SIM_SEEDS=0:20000 ERAFT_SIM_STEPS=20000 \
        .venv/bin/pytest tests/raft/test_simulation.py -q -x
A failure prints the seed, the violated property, the cluster state, the last events and the
one-line replay command.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from sim.chaos import replay_command, run_seed_safe  # noqa: E402

CI_SEEDS = 1000
CI_STEPS = 5000


def _seeds() -> list[int]:
    one = os.environ.get("ERAFT_SIM_SEED")
    if one:
        return [int(one)]
    spec = os.environ.get("ERAFT_SIM_SEEDS")
    if not spec:
        return list(range(CI_SEEDS))
    if ":" in spec:
        lo, hi = spec.split(":")
        return list(range(int(lo), int(hi)))
    return list(range(int(spec)))


SEEDS = _seeds()
STEPS = int(os.environ.get("ERAFT_SIM_STEPS", CI_STEPS))
TRACE = int(os.environ.get("ERAFT_SIM_TRACE", 60))
JOBS = int(os.environ.get("ERAFT_SIM_JOBS", 2))

_summaries: dict[int, dict] = {}


class _Pool:
    """Runs the selected seeds ahead of the tests, a batch at a time, in JOBS worker processes
    (the CI machines have 2 cores and pytest uses one).  Batches keep every test's share of the
    work small (pytest-timeout applies per test) and let -x stop early."""

    BATCH = 64

    def __init__(self, seeds: list[int]) -> None:
        self.seeds = seeds
        self.pos = {s: i for i, s in enumerate(seeds)}
        self.done: dict[int, tuple] = {}
        # spawn, not fork: the session may hold threads (grpc) that a fork would copy mid-flight
        self.ex = ProcessPoolExecutor(JOBS, mp_context=multiprocessing.get_context("spawn"))

    def get(self, seed: int):
        if seed not in self.done and seed in self.pos and self.ex is not None:
            i = self.pos[seed]
            batch = [s for s in self.seeds[i:i + self.BATCH * JOBS] if s not in self.done]
            try:
                self.done.update(self.ex.map(run_seed_safe, [(s, STEPS, TRACE) for s in batch],
                                             chunksize=4))
            except BrokenProcessPool:  # a worker died: run in this process from now on
                self.close()
        return self.done.get(seed)

    def close(self) -> None:
        if self.ex is not None:
            self.ex.shutdown(cancel_futures=True)
            self.ex = None


@pytest.fixture(scope="module")
def sim_pool(request):
    seeds = [it.callspec.params["seed"] for it in request.session.items
             if it.module is request.module and hasattr(it, "callspec")
             and "seed" in it.callspec.params]
    if JOBS <= 1 or len(seeds) < 8 or os.environ.get("PYTEST_XDIST_WORKER"):
        yield None
        return
    p = _Pool(seeds)
    yield p
    p.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_seed(seed: int, sim_pool: _Pool | None) -> None:
    res = sim_pool.get(seed) if sim_pool is not None else None
    if res is None:
        res = run_seed_safe((seed, STEPS, TRACE))[1]
    ok, payload = res
    if not ok:
        pytest.fail(f"simulation seed {seed} failed:\n{payload}\n"
                    f"replay: {replay_command(seed, STEPS)}", pytrace=False)
    _summaries[seed] = payload
    if len(SEEDS) == 1:
        print(f"\nseed {seed}: {payload}")


def test_fault_coverage() -> None:
    """The CI seeds together really exercise what they claim to (a harness regression guard)."""
    if len(_summaries) < 100:
        pytest.skip("needs the CI seed set")
    tot: dict[str, int] = {}
    for s in _summaries.values():
        for k, v in s.items():
            if isinstance(v, int):
                tot[k] = tot.get(k, 0) + v
        for k, v in s["faults"].items():
            tot["fault_" + k] = tot.get("fault_" + k, 0) + v
    n5 = sum(1 for s in _summaries.values() if s["n"] == 5)
    assert 0 < n5 < len(_summaries)
    for key in ("crashes", "torn", "restarts", "snaps_sent", "snaps_installed", "read_states",
                "dropped", "dup", "dropped_proposals", "fault_partition", "fault_isolate",
                "fault_oneway", "fault_transfer", "fault_campaign", "fault_net"):
        assert tot.get(key, 0) > 0, f"no {key} in {len(_summaries)} seeds: {tot}"
    assert tot["leaders"] > 3 * len(_summaries), tot  # many elections per seed on average
