"""docs/grafana-eraftd.json: loads as a Grafana dashboard, every PromQL query in it (panel
targets, template variables, annotations) parses as far as a small tokenizer can tell, and every
metric it names is exported by a real node's /metrics (the union over a controller peer and two
replicas of one group, after some traffic)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dash_support import cluster  # noqa: F401
from metrics_support import busy_cluster, exported_names, scrape

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana-eraftd.json"

# PromQL words that are not metric names (operators, modifiers); functions and aggregations are
# known by the '(' after them
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "atan2", "inf", "nan"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
FUNCTIONS = {"abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max",
             "clamp_min", "day_of_month", "day_of_week", "delta", "deriv", "exp", "floor",
             "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate",
             "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
             "predict_linear", "rate", "resets", "round", "scalar", "sort", "sort_desc", "sqrt",
             "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
             "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time",
             "stddev_over_time", "last_over_time", "present_over_time",
             # Grafana's template-variable queries
             "label_values", "query_result", "metrics", "label_names"}
# by (...), without (...), on (...), ignoring (...), group_left (...), group_right (...): labels
LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")

# Added by the dashboard branch ("dash", issue 15 item 3); this branch does not export them.
# If the test fails only on these two names, that branch has not been merged yet.
ADDED_BY_THE_DASHBOARD_BRANCH = {"eraft_migration_keys_total", "eraft_migration_bytes_total"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not keywords, not
    followed by '(' (functions, aggregations), not label names (inside {...} or a by/on list),
    not numbers or durations ([5m]) or strings; raises AssertionError on what does not parse."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)   # strings
    assert s.count("(") == s.count(")"), f"unbalanced parentheses: {expr}"
    assert s.count("{") == s.count("}") and s.count("[") == s.count("]"), f"unbalanced: {expr}"
    s = re.sub(r"\{[^{}]*\}", " ", s)          # label matchers
    s = re.sub(r"\[[^\[\]]*\]", " ", s)        # range selectors, subqueries
    s = LABEL_LIST.sub(lambda m: m.group(1) + " ", s)
    s = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?(ms|[smhdwy])?\b", " ", s)   # numbers, durations
    names = set()
    for m in IDENT.finditer(s):
        word = m.group()
        rest = s[m.end():].lstrip()
        if word in KEYWORDS:
            continue
        if rest.startswith("("):
            assert word in FUNCTIONS | AGGREGATIONS, f"unknown function {word!r} in: {expr}"
            continue
        if word in AGGREGATIONS and re.match(r"(by|without)\b", rest):
            continue                              # sum by (x) (...): the clause came first
        names.add(word)
    return names


def queries(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every query of the dashboard."""
    out = []

    def panels(ps):
        for p in ps:
            for t in p.get("targets", []):
                out.append((f"panel {p['title']!r} target {t.get('refId')}", t["expr"]))
            panels(p.get("panels", []))
    panels(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", q))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append((f"annotation {a['name']!r}", a["expr"]))
    return out


def test_the_tokenizer_finds_metric_names_only():
    assert metric_names('sum by (group) (rate(eraft_a_total{op="x", group!="0"}[$__rate_interval]))'
                        ) == {"eraft_a_total"}
    assert metric_names("histogram_quantile(0.99, sum by (le, op) (rate(eraft_h_seconds_bucket[5m])))"
                        ) == {"eraft_h_seconds_bucket"}
    assert metric_names("a - on (group) group_left (instance) group by (instance, group) (b) > bool 1"
                        ) == {"a", "b"}
    assert metric_names("time() - process_start_time_seconds") == {"process_start_time_seconds"}
    assert metric_names("count by (version) (eraft_build_info) offset 5m") == {"eraft_build_info"}
    with pytest.raises(AssertionError, match="unknown function"):
        metric_names("rat(eraft_a_total[1m])")
    with pytest.raises(AssertionError, match="unbalanced"):
        metric_names("sum(rate(eraft_a_total[1m])")


def test_dashboard_json_is_a_grafana_dashboard():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    qs = queries(dash)
    assert len(qs) >= 30, len(qs)
    for where, q in qs:
        assert metric_names(q), f"{where}: names no metric: {q}"
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]   # chosen at import
            assert all(t["refId"] and t["expr"] for t in p["targets"]), p["title"]


async def test_every_metric_the_dashboard_queries_is_exported(cluster):  # noqa: F811
    dash = json.loads(DASHBOARD.read_text())
    wanted: dict[str, list[str]] = {}
    for where, q in queries(dash):
        for name in metric_names(q):
            wanted.setdefault(name, []).append(where)
    c = await busy_cluster(cluster)
    exported = set().union(*(exported_names(scrape(c, n)) for n in c.nodes))
    missing = {n: w for n, w in wanted.items() if n not in exported}
    others = {n: w for n, w in missing.items() if n not in ADDED_BY_THE_DASHBOARD_BRANCH}
    assert others == {}, others
    # ---- MERGE CHECK: the two migration counters come from the dashboard branch ("dash");
    # ---- until it is merged this assertion fails, naming only them.
    missing_migration = sorted(set(missing) & ADDED_BY_THE_DASHBOARD_BRANCH)
    assert not missing_migration, (
        f"{missing_migration}: not exported yet -- they are added by the dashboard branch "
        f"(eraftd/metrics.py, issue 15); merge it")
