"""Every series every node's /metrics exports (the controller peer's and each shardkv
replica's) follows Prometheus' naming conventions -- snake_case, an eraft_ (or the process
collector's process_) prefix, help text, counters end in _total and nothing else does, units as
base-unit suffixes (_seconds, _bytes), histograms with a unit and a +Inf bucket equal to their
count, no _created -- and the series issue 15 asks for are there: the process collector,
eraft_build_info, eraft_config_number, a one-hot eraft_shard_status, the peer transport
counters, the per-operation latency histogram."""
from __future__ import annotations

import re

import pytest
from dash_support import cluster, http_get  # noqa: F401
from metrics_support import G, busy_cluster, exported_names, samples, scrape
from prometheus_client.parser import text_string_to_metric_families

import eraftd
from eraftd.shardkv.state import STATUS_NAMES, key2shard
from eraftd.testing import wait_for

pytestmark = pytest.mark.e2e
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
PREFIXES = ("eraft_", "process_")
# words that name a unit in some other form than Prometheus' base unit suffix
NOT_BASE_UNITS = ("_milliseconds", "_ms", "_microseconds", "_us", "_kilobytes", "_megabytes",
                  "_kb", "_mb", "_percent", "_minutes", "_hours")
UNITS = ("seconds", "bytes")


def convention_problems(text: str) -> list[str]:
    """One line per metric family or sample of the exposition `text` that breaks a convention."""
    problems = []
    for fam in text_string_to_metric_families(text):
        name = fam.name
        if not SNAKE.match(name):
            problems.append(f"{name}: not snake_case")
        if not name.startswith(PREFIXES):
            problems.append(f"{name}: not in the eraft_ namespace")
        if not fam.documentation.strip():
            problems.append(f"{name}: no help text")
        if any(name.endswith(u) or f"{u}_" in name for u in NOT_BASE_UNITS):
            problems.append(f"{name}: a unit that is not a base unit (seconds, bytes)")
        words = name.split("_")
        base = name[:-len("_info")] if name.endswith("_info") else name
        for unit in UNITS:
            if unit in words and not base.endswith("_" + unit):
                problems.append(f"{name}: the unit {unit} is not the suffix")
        if fam.type == "counter" and name.endswith("_total"):
            problems.append(f"{name}: counter family named with _total (the parser strips it)")
        if fam.type == "histogram":
            if not base.endswith(tuple("_" + u for u in UNITS)):
                problems.append(f"{name}: a histogram without a unit suffix")
            problems += histogram_problems(fam)
        for s in fam.samples:
            if s.name.endswith("_created"):
                problems.append(f"{s.name}: a _created series")
            if fam.type == "counter" and not s.name.endswith("_total"):
                problems.append(f"{s.name}: a counter sample not ending in _total")
            if fam.type != "counter" and s.name.endswith("_total"):
                problems.append(f"{s.name}: a {fam.type} ending in _total")
            for label in s.labels:
                if not SNAKE.match(label):
                    problems.append(f"{s.name}: label {label} not snake_case")
    return problems


def histogram_problems(fam) -> list[str]:
    """Each labelled series of a histogram: a +Inf bucket, cumulative buckets, _count = +Inf."""
    by: dict[tuple, dict] = {}
    for s in fam.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        d = by.setdefault(key, {"buckets": []})
        if s.name.endswith("_bucket"):
            d["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            d["count"] = s.value
    out = []
    for key, d in by.items():
        b = sorted(d["buckets"])
        if not b or b[-1][0] != float("inf"):
            out.append(f"{fam.name}{dict(key)}: no +Inf bucket")
            continue
        if any(x[1] > y[1] for x, y in zip(b, b[1:])):
            out.append(f"{fam.name}{dict(key)}: buckets not cumulative")
        if d.get("count") != b[-1][1]:
            out.append(f"{fam.name}{dict(key)}: _count {d.get('count')} != +Inf bucket {b[-1][1]}")
    return out


def test_convention_problems_names_what_is_wrong():
    """The checker itself, on a made-up exposition with one mistake per family."""
    text = "\n".join([
        "# HELP eraft_a_seconds_total fine", "# TYPE eraft_a_seconds_total counter",
        "eraft_a_seconds_total 1",
        "# HELP eraft_latency_ms bad unit", "# TYPE eraft_latency_ms gauge", "eraft_latency_ms 1",
        "# HELP eraft_bytes_sent unit not last", "# TYPE eraft_bytes_sent gauge", "eraft_bytes_sent 1",
        "# HELP other_thing no namespace", "# TYPE other_thing gauge", "other_thing 1",
        "# HELP eraft_h_seconds h", "# TYPE eraft_h_seconds histogram",
        'eraft_h_seconds_bucket{le="1.0"} 2', "eraft_h_seconds_count 2", "eraft_h_seconds_sum 1",
        "# TYPE eraft_nohelp gauge", "eraft_nohelp 1", ""])
    got = convention_problems(text)
    assert got == ["eraft_latency_ms: a unit that is not a base unit (seconds, bytes)",
                   "eraft_bytes_sent: the unit bytes is not the suffix",
                   "other_thing: not in the eraft_ namespace",
                   "eraft_h_seconds{}: no +Inf bucket",
                   "eraft_nohelp: no help text"], got


async def test_metric_names_follow_conventions_and_new_series(cluster):  # noqa: F811
    c = await busy_cluster(cluster)
    controller = c.controllers[0]
    replicas = c.group(G)

    for node in c.nodes:                       # every node: the controller peer, each replica
        text = scrape(c, node)
        assert convention_problems(text) == [], (node.name, convention_problems(text))
        names = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
        for want in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                     "process_open_fds", "process_start_time_seconds", "eraft_build_info",
                     "eraft_config_number", "eraft_storage_write_seconds_count",
                     "eraft_sessions_expired_total"):
            assert want in names, (node.name, want)
        assert not any(n.endswith("_created") for n in exported_names(text))
        build = samples(text, "eraft_build_info")
        assert [(s.labels, s.value) for s in build] == [({"version": eraftd.__version__}, 1.0)]
        assert samples(text, "process_start_time_seconds")[0].value > 0
        assert all(s.value >= 1 for s in samples(text, "eraft_config_number")), node.name

    # peer transport: each replica sent to and received from the other, by peer address
    for node, other in ((replicas[0], replicas[1]), (replicas[1], replicas[0])):
        text = scrape(c, node)
        for name in ("eraft_transport_sent_bytes_total", "eraft_transport_sent_messages_total",
                     "eraft_transport_received_bytes_total",
                     "eraft_transport_received_messages_total"):
            by_peer = {s.labels["peer"]: s.value for s in samples(text, name)}
            assert by_peer.get(other.address, 0) > 0, (node.name, name, by_peer)
        assert other.address in {s.labels["peer"]
                                 for s in samples(text, "eraft_transport_reconnects_total")}

    # per-operation latency: the leader served the put and the get (count = operations)
    ops: dict[str, float] = {}
    for node in replicas:
        for s in samples(scrape(c, node), "eraft_client_operation_seconds_count"):
            ops[s.labels["op"]] = ops.get(s.labels["op"], 0) + s.value
    assert ops.get("put", 0) >= 1 and ops.get("get", 0) >= 1, ops

    # one-hot shard status: every held shard has one sample per status, exactly one of them 1
    status = samples(scrape(c, replicas[0]), "eraft_shard_status")
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
    assert [s.value for s in samples(scrape(c, controller), "eraft_controller_sessions")] >= [1.0]
    for node in replicas:      # a follower has it once it learns the put's commit
        wait_for(lambda: any(s.labels["shard"] == str(key2shard(b"k")) and s.value >= 1
                             for s in samples(scrape(c, node), "eraft_shard_sessions")),
                 60, f"{node.name} to keep the put's session")
