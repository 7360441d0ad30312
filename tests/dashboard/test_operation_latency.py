"""eraft_client_operation_seconds (eraftd/metrics.py OperationLatency): a native batch counts
each of its items, in Prometheus' bucket semantics, and latency_snapshot/quantile read it as
histogram_quantile would.  Pure: no node."""
from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eraftd import metrics
from eraftd.metrics import OperationLatency, quantile


def test_bulk_observe_counts_operations_like_n_single_observations():
    bounds = (0.001, 0.01, 0.1)
    mine = OperationLatency(bounds)
    reg = CollectorRegistry()
    ref = Histogram("ref_seconds", "reference", ["op"], buckets=bounds, registry=reg)
    for op, seconds, n in [("put", 0.0005, 100), ("put", 0.001, 3), ("put", 0.05, 7),
                           ("get", 0.2, 2), ("get", 0.01, 1)]:
        mine.observe(op, seconds, n)
        for _ in range(n):
            ref.labels(op).observe(seconds)
    snap = mine.snapshot()
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            op = s.labels["op"]
            b, cum, total = snap[op]
            if s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                assert cum[b.index(le)] == s.value, (op, le)
            elif s.name.endswith("_count"):
                assert cum[-1] == s.value
            elif s.name.endswith("_sum"):
                assert math.isclose(total, s.value)
    assert snap["put"][0] == bounds + (math.inf,)
    assert snap["put"][1] == [103, 103, 110, 110]


def test_quantile_as_histogram_quantile():
    bounds = (0.001, 0.01, 0.1, math.inf)
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None
    assert quantile(0.5, bounds, [10, 10, 10, 10]) == 0.0005            # inside the first bucket
    assert math.isclose(quantile(0.5, bounds, [0, 10, 10, 10]), 0.0055)  # linear in (0.001, 0.01]
    assert quantile(0.99, bounds, [0, 0, 0, 10]) == 0.1                 # in +Inf: the top bound


def test_a_native_batch_counts_each_item_and_a_unary_call_one():
    before = metrics.latency_snapshot()

    def count(snap, op):
        return snap[op][1][-1] if op in snap else 0

    # ops: 0 put, 2 get (eraftd/metrics.py _BATCH_OPS); codes all OK
    metrics.observe_batch("OK", 0.002, [0, 0, 0, 2], [0, 0, 0, 0])
    metrics.observe_batch("ErrWrongLeader", 0.001, [0, 2], [])      # refused whole: 2 answered
    metrics.observe_request("get", "OK", 0.004)
    after = metrics.latency_snapshot()
    assert count(after, "put") - count(before, "put") == 4
    assert count(after, "get") - count(before, "get") == 3
    text = metrics.exposition().decode()
    fam = {f.name: f for f in text_string_to_metric_families(text)}["eraft_client_operation_seconds"]
    assert fam.type == "histogram" and fam.documentation
    counts = {s.labels["op"]: s.value for s in fam.samples if s.name.endswith("_count")}
    assert counts["put"] == count(after, "put") and counts["get"] == count(after, "get")
