"""Shared helpers of the controller tests: the process fixture, eRaft's config check, and
reading a stopped node's stored controller state."""
from __future__ import annotations

from collections import Counter
from typing import Iterable

import pytest

from eraftd import config as config_mod
from eraftd.controller.machine import load_state
from eraftd.controller.state import NSHARDS, Config, ControllerState
from eraftd.node.storage import NodeStore
from eraftd.testing import Cluster, Node

CTRL = 0


@pytest.fixture
def cluster(tmp_path):
    """make(**kw) -> a Cluster of plain controller peers; every process is killed at the end."""
    clusters: list[Cluster] = []

    def make(**kw) -> Cluster:
        kw.setdefault("test_machine", None)
        c = Cluster(tmp_path / f"c{len(clusters)}", **kw)
        clusters.append(c)
        return c
    yield make
    for c in clusters:
        c.close()


def addresses(c: Cluster) -> list[str]:
    return [n.address for n in c.nodes]


def check_config(cfg: Config, gids: Iterable[int]) -> None:
    """eRaft's check(): exactly these groups, every shard on one of them, balanced."""
    gids = sorted(gids)
    assert sorted(cfg.groups) == gids, f"groups {sorted(cfg.groups)}, wanted {gids}"
    if gids:
        for s, g in enumerate(cfg.shards):
            assert g in cfg.groups, f"shard {s} -> invalid group {g} in {cfg}"
        counts = Counter(cfg.shards)
        loads = [counts[g] for g in gids]
        assert max(loads) <= min(loads) + 1, f"unbalanced: {dict(counts)} in {cfg}"
    else:
        assert cfg.shards == (0,) * NSHARDS


def stored_state(node: Node) -> ControllerState:
    """The controller state in a STOPPED node's data_dir, as a restart would load it."""
    assert not node.running(), f"{node.name} must be stopped to open its data_dir"
    cfg = config_mod.load(str(node.toml))
    store = NodeStore.open(cfg.node.data_dir, cfg.identity(), fsync=False)
    try:
        return load_state(store.group(CTRL))
    finally:
        store.close()
