"""Helpers of the /metrics tests (test_metric_names.py, test_grafana_json.py): a small live
cluster with traffic on every path /metrics reports, and the names a scrape exports."""
from __future__ import annotations

from dash_support import http_get
from prometheus_client.parser import text_string_to_metric_families

from eraftd.controller.client import ControllerClient
from eraftd.shardkv.clerk import Clerk
from eraftd.testing import ShardedCluster, wait_for

G = 100
# the series each family type stands for in a scrape (the parser strips counters' _total)
SERIES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
          "summary": ("", "_sum", "_count"), "gauge": ("",), "info": ("_info",),
          "unknown": ("",)}


def scrape(c: ShardedCluster, node) -> str:
    status, text = http_get(f"http://{c.http[node.name]}/metrics", timeout=10)
    assert status == 200, (node.name, status, text)
    return text


def samples(text: str, name: str) -> list:
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == name]


def exported_names(text: str) -> set[str]:
    """Every series name the scrape `text` declares or has samples of (a labelled family with
    no samples yet, say a counter of migrations before the first one, is still exported)."""
    out = set()
    for fam in text_string_to_metric_families(text):
        out.update(fam.name + suffix for suffix in SERIES.get(fam.type, ("",)))
        out.update(s.name for s in fam.samples)
    return out


async def busy_cluster(make) -> ShardedCluster:
    """One controller peer and a shardkv group of two replicas (so peer traffic both ways),
    group G joined, a put and a get served, every replica at configuration >= 1."""
    c = make(gids=(G,), controllers=1, replicas=2)
    c.start()
    ctrl = c.controller_addresses()
    async with ControllerClient(ctrl) as ctl, Clerk(ctrl, total_timeout=30) as kv:
        await ctl.join({G: c.addresses(G)})
        await kv.put("k", "v")
        assert await kv.get("k") == b"v"
    for node in c.group(G):
        # a replica learns configuration 1 (the join) when it polls the controller
        wait_for(lambda: any(s.value >= 1 for s in samples(scrape(c, node), "eraft_config_number")),
                 60, f"{node.name}'s eraft_config_number to reach 1")
    return c
