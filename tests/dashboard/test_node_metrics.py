"""/metrics, /healthz, /readyz on real `eraftd run` nodes ([node] http): the counters move
when client operations run, /readyz turns ready once every group knows its leader."""
from __future__ import annotations

import asyncio
import re

import pytest
from dash_support import cluster, http_get  # noqa: F401

from eraftd._pb import shardkv_pb2 as skvpb
from eraftd._pb import shardkv_pb2_grpc as skvpb_grpc
from eraftd.controller.client import ControllerClient
from eraftd.shardkv.clerk import Clerk
from eraftd.testing import wait_for

pytestmark = pytest.mark.e2e
G = 100


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text `text` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", re.M)
    for m in pat.finditer(text):
        have = m.group(1) or ""
        if all(f'{k}="{v}"' in have.split(",") for k, v in labels.items()) or have == want:
            return float(m.group(2))
    return 0.0


async def test_metrics_move_and_readyz(cluster):  # noqa: F811
    c = cluster(gids=(G,), controllers=1, replicas=3)
    # readyz: 503 before the group has a leader is possible but not guaranteed; ready after
    c.start()
    ctrl = c.controller_addresses()
    for n in c.nodes:
        status, body = http_get(f"http://{c.http[n.name]}/healthz")
        assert (status, body) == (200, "ok\n"), (n.name, status, body)
    for n in c.nodes:
        wait_for(lambda: http_get(f"http://{c.http[n.name]}/readyz")[0] == 200, 60,
                 f"{n.name} /readyz to turn ready")

    async with ControllerClient(ctrl) as ctl, Clerk(ctrl, total_timeout=30) as kv:
        await ctl.join({G: c.addresses(G)})
        await kv.put("warm", "up")
        leader = c.wait_leader(G)
        url = f"http://{c.http[leader.name]}/metrics"
        status, before = http_get(url)
        assert status == 200
        assert "eraft_raft_term" in before and 'eraft_raft_role{group="100",role="Leader"} 1.0' in before
        await asyncio.gather(*(kv.put(f"k{i}", f"v{i}") for i in range(20)))
        await asyncio.gather(*(kv.get(f"k{i}") for i in range(10)))
        # eRaft's unary Command path: one request, one latency observation each
        stub = skvpb_grpc.ShardKVServiceStub(leader.channel())
        for i in range(3):
            r = stub.Command(skvpb.CommandRequest(key="u", value=str(i), op=skvpb.APPEND,
                                                  client_id=7, command_id=i + 1), timeout=10)
            assert r.err == "OK", r
        assert stub.Command(skvpb.CommandRequest(key="nope", op=skvpb.GET), timeout=10).err == "ErrNoKey"
        _, after = http_get(url)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("eraft_client_operations_total", op="put", result="OK") >= 20, after
    assert moved("eraft_client_request_seconds_count", op="batch", result="OK") >= 1
    assert moved("eraft_client_operations_total", op="get", result="OK") >= 10
    assert moved("eraft_client_request_seconds_count", op="append", result="OK") == 3
    assert moved("eraft_client_request_seconds_count", op="get", result="ErrNoKey") == 1
    assert moved("eraft_raft_proposals_total", group=str(G)) >= 1
    assert moved("eraft_raft_entries_applied_total", group=str(G)) >= 1
    assert moved("eraft_storage_write_seconds_count") >= 1
    assert sample(after, "eraft_raft_applied_index", group=str(G)) > sample(before, "eraft_raft_applied_index", group=str(G))
    assert sample(after, "eraft_storage_bytes") > 0
    # the shards this group serves, with their keys
    assert sum(sample(after, "eraft_shard_keys", group=str(G), shard=str(s)) for s in range(10)) >= 21
    assert 'eraft_shard_status{group="100",shard="0",status="Serving"} 1.0' in after
    # a follower's readyz stays ready, and the controller node too
    for n in c.nodes:
        status, body = http_get(f"http://{c.http[n.name]}/readyz")
        assert status == 200, (n.name, body)

    # a group that lost its majority has no leader: its nodes are not ready, though alive
    g = c.group(G)
    g[1].kill()
    g[2].kill()
    wait_for(lambda: http_get(f"http://{c.http[g[0].name]}/readyz")[0] == 503, 60,
             "the lone replica's /readyz to say not ready")
    status, body = http_get(f"http://{c.http[g[0].name]}/readyz")
    assert "no leader known" in body, body
    assert http_get(f"http://{c.http[g[0].name]}/healthz")[0] == 200


def test_http_port_taken_is_a_clear_startup_error(tmp_path):
    """[node] http on a port already in use: one line naming the key, exit 1, nothing served;
    a clean SIGTERM stop also closes the HTTP side (exit 0)."""
    import socket

    from eraftd.testing import Node, free_port
    addr = f"127.0.0.1:{free_port()}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        n = Node("n", tmp_path, {"node": {"listen": addr, "data_dir": "data", "http": busy},
                                 "controller": {"peers": [addr]}})
        try:
            n.start()
            wait_for(lambda: n.exit_code() is not None, 30, "the node to give up")
            assert n.exit_code() == 1
            assert f"cannot listen on {busy} for HTTP" in n.log_text()
            assert "[node] http" in n.log_text()
        finally:
            n.kill()
    http = f"127.0.0.1:{free_port()}"
    n2 = Node("n2", tmp_path, {"node": {"listen": f"127.0.0.1:{free_port()}", "data_dir": "data",
                                        "http": http},
                               "controller": {"peers": [f"127.0.0.1:{free_port()}"]}})
    n2.config["controller"]["peers"] = [n2.address]
    from eraftd.config import dump_toml
    n2.toml.write_text(dump_toml(n2.config))
    try:
        n2.start().wait_serving(30)
        wait_for(lambda: http_get(f"http://{http}/readyz")[0] == 200, 30, "a lone controller ready")
        assert n2.stop() == 0
        assert http_get(f"http://{http}/healthz")[0] == 0
    finally:
        n2.kill()
