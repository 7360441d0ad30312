"""Every series a real node's /metrics exports follows Prometheus' naming conventions
(snake_case, counters end in _total, units as suffixes, no _created), and the series issue 15
asks for are there: the process collector, eraft_build_info, eraft_config_number, a one-hot
eraft_shard_status."""
from __future__ import annotations

import re

import pytest
from dash_support import cluster, http_get  # noqa: F401
from prometheus_client.parser import text_string_to_metric_families

import eraftd
from eraftd.controller.client import ControllerClient
from eraftd.shardkv.clerk import Clerk
from eraftd.shardkv.state import STATUS_NAMES
from eraftd.testing import wait_for

pytestmark = pytest.mark.e2e
G = 100
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# words that name a unit in some other form than Prometheus' base unit suffix
NOT_BASE_UNITS = ("_milliseconds", "_ms", "_microseconds", "_us", "_kilobytes", "_megabytes",
                  "_kb", "_mb", "_percent", "_minutes", "_hours")


def convention_problems(text: str) -> list[str]:
    """One line per metric family or sample of the exposition `text` that breaks a convention."""
    problems = []
    for fam in text_string_to_metric_families(text):
        name = fam.name
        if not SNAKE.match(name):
            problems.append(f"{name}: not snake_case")
        if any(name.endswith(u) or f"{u}_" in name for u in NOT_BASE_UNITS):
            problems.append(f"{name}: a unit that is not a base unit (seconds, bytes)")
        if fam.type == "counter" and name.endswith("_total"):
            problems.append(f"{name}: counter family named with _total (the parser strips it)")
        if fam.type == "histogram" and not (name.endswith("_seconds") or name.endswith("_bytes")):
            problems.append(f"{name}: a histogram without a unit suffix")
        for s in fam.samples:
            if s.name.endswith("_created"):
                problems.append(f"{s.name}: a _created series")
            if fam.type == "counter" and not s.name.endswith("_total"):
                problems.append(f"{s.name}: a counter sample not ending in _total")
            if fam.type == "gauge" and s.name.endswith("_total"):
                problems.append(f"{s.name}: a gauge ending in _total")
            for label in s.labels:
                if not SNAKE.match(label):
                    problems.append(f"{s.name}: label {label} not snake_case")
    return problems


def samples(text: str, name: str) -> list:
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == name]


async def test_metric_names_follow_conventions_and_new_series(cluster):  # noqa: F811
    c = cluster(gids=(G,), controllers=1, replicas=1)
    c.start()
    ctrl = c.controller_addresses()
    leader = c.group(G)[0]
    controller = c.controllers[0]

    async with ControllerClient(ctrl) as ctl, Clerk(ctrl, total_timeout=30) as kv:
        await ctl.join({G: c.addresses(G)})
        await kv.put("k", "v")

    def scrape(node) -> str:
        status, text = http_get(f"http://{c.http[node.name]}/metrics", timeout=10)
        assert status == 200, (node.name, status, text)
        return text

    # the shardkv replica learns configuration 1 (the join) when it polls the controller
    wait_for(lambda: any(s.value >= 1 for s in samples(scrape(leader), "eraft_config_number")),
             60, "the shardkv group's eraft_config_number to reach 1")

    for node in (controller, leader):
        text = scrape(node)
        assert convention_problems(text) == [], (node.name, convention_problems(text))
        names = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
        for want in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                     "process_open_fds", "process_start_time_seconds", "eraft_build_info",
                     "eraft_config_number"):
            assert want in names, (node.name, want)
        assert not any(n.endswith("_created") for n in names)
        build = samples(text, "eraft_build_info")
        assert [(s.labels, s.value) for s in build] == [({"version": eraftd.__version__}, 1.0)]
        assert samples(text, "process_start_time_seconds")[0].value > 0
        assert all(s.value >= 1 for s in samples(text, "eraft_config_number")), node.name

    # one-hot shard status: every held shard has one sample per status, exactly one of them 1
    status = samples(scrape(leader), "eraft_shard_status")
    shards: dict[str, dict[str, float]] = {}
    for s in status:
        shards.setdefault(s.labels["shard"], {})[s.labels["status"]] = s.value
    assert shards, "no eraft_shard_status samples"
    for shard, by_status in shards.items():
        assert set(by_status) == set(STATUS_NAMES), (shard, by_status)
        assert sorted(by_status.values()) == [0.0] * (len(STATUS_NAMES) - 1) + [1.0], (shard, by_status)
    assert shards["0"]["Serving"] == 1.0
    # the deduplication sessions (issue 14): the controllers keep the join's, the shard of "k"
    # the put's
    assert [s.value for s in samples(scrape(controller), "eraft_controller_sessions")] >= [1.0]
    from eraftd.shardkv.state import key2shard
    kept = {s.labels["shard"]: s.value for s in samples(scrape(leader), "eraft_shard_sessions")}
    assert kept[str(key2shard(b"k"))] >= 1, kept
