"""The dashboard's pure parts: the ring buffer of the charts' history, p50/p99 from the deltas
of the nodes' latency histograms, the leader-change panel (only changes after the first look)
and the alerts."""
from __future__ import annotations

import math

from eraftd._pb import admin_pb2 as apb
from eraftd.dashboard.server import (Poller, Ring, alerts, histogram_delta, merge_histograms,
                                     node_histogram, quantile)

INF = math.inf


def test_ring_keeps_the_span_and_the_bound():
    r = Ring(span_s=10, maxlen=100)
    for t in range(30):
        r.add({"t": float(t), "v": t})
    assert [p["t"] for p in r.points] == [float(t) for t in range(19, 30)]   # t >= 29 - 10
    assert [p["v"] for p in r.since(27)] == [27, 28, 29]
    small = Ring(span_s=1000, maxlen=5)
    for t in range(30):
        small.add({"t": float(t)})
    assert len(small) == 5 and small.points[0]["t"] == 25.0


def test_quantile_interpolates_inside_the_bucket():
    # 100 requests: 50 at most 1 ms, 90 at most 10 ms, all at most 100 ms
    h = {0.001: 50, 0.01: 90, 0.1: 100, INF: 100}
    assert quantile(0.5, h) == 0.001
    assert math.isclose(quantile(0.9, h), 0.01)
    assert math.isclose(quantile(0.99, h), 0.01 + 0.09 * 9 / 10)
    assert math.isclose(quantile(0.25, h), 0.0005)            # from 0 in the first bucket
    assert quantile(0.5, {0.001: 0, INF: 0}) is None            # nothing observed
    assert quantile(0.99, {0.001: 1, 0.01: 1, INF: 10}) == 0.01  # in +Inf: the highest bound


def test_p50_p99_from_bucket_deltas_between_polls():
    def hist(counts, total):
        return apb.LatencyHistogram(op="get", bounds=[0.001, 0.01, 0.1], counts=counts,
                                    sum=0.0, count=total)
    before = node_histogram([hist([10, 10, 10], 10)])            # 10 fast ones, long ago
    after = node_histogram([hist([10, 10, 110], 110),             # then 100 slow gets
                            apb.LatencyHistogram(op="put", bounds=[0.001, 0.01, 0.1],
                                                 counts=[0, 0, 0], count=0)])
    d = histogram_delta(after, before)
    assert d == {0.001: 0, 0.01: 0, 0.1: 100, INF: 100}
    assert math.isclose(quantile(0.5, d), 0.055)                  # not the fast old ones
    assert histogram_delta(before, after) is None                 # the node restarted
    assert histogram_delta(after, None) is None                   # first look
    # a group's replicas merged: the leader's 100 slow, a follower's 100 fast
    fast = {0.001: 100, 0.01: 100, 0.1: 100, INF: 100}
    both = merge_histograms([d, fast])
    assert both == {0.001: 100, 0.01: 100, 0.1: 200, INF: 200}
    assert quantile(0.5, both) == 0.001 and math.isclose(quantile(0.99, both), 0.0982)
    # different bounds: a histogram lacking one counts what it has below it
    assert merge_histograms([{0.001: 1, INF: 2}, {0.01: 3, INF: 3}]) == {0.001: 1, 0.01: 4, INF: 5}


def test_leader_changes_only_after_the_first_look():
    p = Poller.__new__(Poller)
    p._leaders, p.events = {}, []
    p.markers = Ring(900, 100)
    p._leader_event(100, "a", 1.0)
    p._leader_event(101, None, 1.0, settled=False)     # no member answered yet: no baseline
    p._leader_event(101, "x", 2.0)
    assert p.events == []                              # both first looks
    p._leader_event(100, None, 3.0)                    # unknown for a while: no change
    p._leader_event(100, "a", 4.0)
    p._leader_event(100, "b", 5.0)
    assert [(e["gid"], e["previous"], e["leader"]) for e in p.events] == [(100, "a", "b")]
    assert [m["text"] for m in p.markers.points] == ["group 100: a -> b"]


def group(gid, up, n, leader="l", down=()):
    return {"gid": gid, "name": "controller" if gid == 0 else f"group {gid}", "replicas": n,
            "up": up, "leader": leader, "members": [f"n{gid}-{i}" for i in range(n)],
            "down": list(down)}


def test_alerts_name_the_group_or_node_and_what_to_run():
    groups = [group(0, 3, 3), group(100, 3, 3, leader=None),
              group(101, 0, 3, leader=None, down=["n101-0", "n101-1", "n101-2"]), group(102, 3, 3)]
    nodes = [{"address": f"n101-{i}", "up": False} for i in range(3)] + [
        {"address": "n102-1", "up": False}]
    ns = apb.NodeStatus(groups=[apb.GroupStatus(group=102, problem="refused by n102-0: it came back "
                                                                   "with an empty disk")])
    migrations = [{"shard": 3, "state": "pulling", "age_s": 75.0, "from": 101, "to": 100, "keys": 4}]
    leader = apb.NodeStatus(groups=[apb.GroupStatus(group=102, refused=[
        "n102-1 came back with an empty disk: run `eraftd member replace 102 n102-1`",
        "n102-9 came back with an empty disk"])])
    got = alerts(groups, nodes, migrations, {"n102-1": ns, "n102-0": leader},
                 {"n102-2": (100 << 20, 120.0)})
    kinds = [(a["kind"], a["target"]) for a in got]
    assert kinds == [("leader", "group 100"), ("quorum", "group 101"), ("node", "n102-1"),
                     ("refused", "n102-1 (group 102)"), ("refused", "n102-9 (group 102)"),
                     ("migration", "shard 3"),
                     ("storage", "n102-2")]
    by = {a["kind"]: a for a in reversed(got)}          # the first of each kind
    assert "0/3 replicas up" in by["quorum"]["text"] and "eraftd run --config" in by["quorum"]["fix"]
    assert by["refused"]["fix"] == "eraftd member replace 102 n102-1"
    assert "group 101" in by["migration"]["fix"]
    assert by["quorum"]["severity"] == "critical"


def test_migration_progress_records(monkeypatch):
    from eraftd import metrics
    monkeypatch.setattr(metrics, "migrations", {})
    monkeypatch.setattr(metrics, "MIGRATIONS_KEPT", 2)
    rec = metrics.migration_started(101, 5, 2, 100, (0, 0), now=10.0)
    assert (rec["keys"], rec["total_keys"], rec["done"]) == (0, -1, False)
    before = metrics.MIGRATION_KEYS.labels("5", "in")._value.get()
    metrics.migration_chunk(rec, (3, 30), (3, 30), (10, 100), False, now=11.0)
    metrics.migration_chunk(rec, (7, 70), (10, 100), (10, 100), True, now=12.0)
    assert (rec["keys"], rec["bytes"], rec["total_keys"], rec["chunks"], rec["done"]) == (10, 100, 10, 2, True)
    assert metrics.MIGRATION_KEYS.labels("5", "in")._value.get() - before == 10
    # a new leader picks the pull up where the group's state is, not from zero
    again = metrics.migration_started(101, 6, 2, 100, (4, 40), now=13.0)
    assert again["keys"] == 4 and metrics.migration_started(101, 6, 2, 100, (9, 9), 14.0) is again
    # finished records are kept, the latest MIGRATIONS_KEPT of them
    for shard in (7, 8, 9):
        r = metrics.migration_started(101, shard, 2, 100, (0, 0), now=20.0 + shard)
        metrics.migration_chunk(r, (1, 1), (1, 1), (1, 1), True, now=20.0 + shard)
    metrics.migration_started(101, 0, 3, 100, (0, 0), now=40.0)
    assert sorted(s for _, s in metrics.migrations) == [0, 6, 8, 9]
