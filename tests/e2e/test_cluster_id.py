"""The cluster identity with real processes (TLS off: it guards against cross-wired clusters).

The controllers fix one random id in their log; every controller and every shardkv replica
learns it and keeps it across restarts; a Raft batch, a snapshot or a migration call that
carries another cluster's id is refused naming both ids; a node of another cluster that lists
one of our nodes as its peer is refused by it, with one log line, and our group carries on."""
from __future__ import annotations

import grpc
import pytest

from eraftd._pb import raft_pb2 as rpb
from eraftd._pb import raft_pb2_grpc as rpb_grpc
from eraftd._pb import shardmigration_pb2 as mpb
from eraftd._pb import shardmigration_pb2_grpc as mpb_grpc
from eraftd.node.cluster import METADATA_KEY, cluster_text
from eraftd.testing import Node, ShardedCluster, free_port, wait_for

pytestmark = pytest.mark.e2e

GID = 100


def cluster_ids(nodes) -> set[int]:
    ids = set()
    for n in nodes:
        try:
            ids.add(n.status(timeout=2).cluster_id)
        except grpc.RpcError:
            ids.add(-1)
    return ids


def learned(nodes) -> int:
    """The one cluster id every node of `nodes` knows (waits for it)."""
    def one():
        ids = cluster_ids(nodes)
        return next(iter(ids)) if len(ids) == 1 and 0 not in ids and -1 not in ids else None
    return wait_for(one, 60, f"every node of {[n.name for n in nodes]} to know one cluster id")


@pytest.fixture
def two(tmp_path):
    a = ShardedCluster(tmp_path / "a", gids=(GID,))
    b = ShardedCluster(tmp_path / "b", gids=(), controllers=1)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_the_controllers_fix_one_id_every_node_learns_and_keeps(two):
    a, _ = two
    a.start()
    cid = learned(a.nodes)
    assert cid > 0
    node = a.group(GID)[1]
    node.stop()
    node.start().wait_serving(60)
    assert node.status().cluster_id == cid
    assert f"belongs to cluster {cluster_text(cid)}" in a.controllers[0].log_text() or \
        any(f"belongs to cluster {cluster_text(cid)}" in n.log_text() for n in a.nodes)


def test_another_clusters_batches_and_migration_calls_are_refused(two):
    a, b = two
    a.start()
    b.start()
    ours, theirs = learned(a.nodes), learned(b.nodes)
    assert ours != theirs
    target = a.group(GID)[0]
    sender = a.addresses(GID)[1]
    with grpc.insecure_channel(target.address) as ch:
        stub = rpb_grpc.RaftTransportStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.Send(iter([rpb.MessageBatch(from_addr=sender, cluster_tag=theirs)]),
                      metadata=(("x-eraftd-from", sender),), timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.value.details() == (
            f"{sender} belongs to cluster {cluster_text(theirs)}, this node to cluster "
            f"{cluster_text(ours)}: a node of another cluster (check the peer and controller "
            f"lists in both TOML files)")
        with pytest.raises(grpc.RpcError) as e:
            mpb_grpc.ShardMigrationStub(ch).PullShard(
                mpb.PullShardRequest(config_num=1, shard=0, max_bytes=1024, gid=7),
                metadata=((METADATA_KEY, f"{theirs:x}"),), timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert cluster_text(theirs) in e.value.details() and cluster_text(ours) in e.value.details()
    # one log line for the one sender, however many attempts
    text = target.log_text()
    assert text.count(f"refused: {sender} belongs to cluster {cluster_text(theirs)}") == 1


def test_a_node_of_another_cluster_that_lists_ours_is_refused(two, tmp_path):
    a, b = two
    a.start()
    b.start()
    ours, theirs = learned(a.nodes), learned(b.nodes)
    victim = a.group(GID)[2]
    # a replica of cluster b's group 100 whose TOML names one of cluster a's replicas as a peer
    addr = f"127.0.0.1:{free_port()}"
    stray = Node("stray", tmp_path, {
        "node": {"listen": addr, "data_dir": "data"},
        "shardkv": {"gid": GID, "peers": [addr, victim.address], "controllers": b.controller_addresses()},
        "raft": {"heartbeat_ms": 50, "election_ms": 500}})
    b.groups[GID] = [stray]                         # b.close() kills it
    stray.start().wait_serving(60)
    wait_for(lambda: stray.status().cluster_id == theirs, 60, "the stray node to learn its cluster id")
    line = f"belongs to cluster {cluster_text(theirs)}, this node to cluster {cluster_text(ours)}"
    wait_for(lambda: line in victim.log_text(), 60, "the victim to refuse the stray node's batches")
    wait_for(lambda: "refused by" in stray.status().problem, 60, "the stray node to hear why")
    assert victim.log_text().count(line) == 1
    assert victim.status().cluster_id == ours
    assert a.wait_leader(GID) is not None
