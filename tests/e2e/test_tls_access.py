"""A TLS cluster (real eraftd processes, certificates made by eraftd.certs) and who may do what.

Each refused case is tried directly over gRPC, the way an attacker with that credential would:
a plaintext client, a client certificate of another CA, a client certificate without admin
rights doing join/leave/move/member changes, a client certificate sending Raft messages,
installing a snapshot or pulling a shard, a node certificate that names another host.  Each is
refused with its plain-words reason and changes nothing (the configuration number stays)."""
from __future__ import annotations

import grpc
import pytest

from eraftd import certs
from eraftd._pb import admin_pb2 as apb
from eraftd._pb import admin_pb2_grpc as apb_grpc
from eraftd._pb import raft_pb2 as rpb
from eraftd._pb import raft_pb2_grpc as rpb_grpc
from eraftd._pb import shardctrler_pb2 as cpb
from eraftd._pb import shardctrler_pb2_grpc as cpb_grpc
from eraftd._pb import shardkv_pb2 as kpb
from eraftd._pb import shardkv_pb2_grpc as kpb_grpc
from eraftd._pb import shardmigration_pb2 as mpb
from eraftd._pb import shardmigration_pb2_grpc as mpb_grpc
from eraftd.testing import ShardedCluster, wait_for
from eraftd.tls import TlsFiles, sync_channel

pytestmark = pytest.mark.e2e

CTRL = 0
GID = 100


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    c = ShardedCluster(base, gids=(GID,), tls=True)
    try:
        c.start()
        c.wait_leader(CTRL)
        c.wait_leader(GID)
        d = base / "certs"
        certs.create_client(str(d), "app1")
        other = base / "other-ca"
        certs.create_ca(str(other))
        certs.create_client(str(other), "ops")          # an "ops" of another CA
        certs.create_node(str(other), ["127.0.0.1"])
        # a node certificate of our CA for another host (127.0.0.2)
        elsewhere = base / "elsewhere"
        elsewhere.mkdir()
        for name in (certs.CA_CERT, certs.CA_KEY):
            (elsewhere / name).write_bytes((d / name).read_bytes())
        certs.create_node(str(elsewhere), ["127.0.0.2:7001"])
        c.files = {
            "ops": c.tls,
            "app1": TlsFiles(str(d / "ca.crt"), str(d / "client.app1.crt"), str(d / "client.app1.key")),
            "foreign": TlsFiles(str(d / "ca.crt"), str(other / "client.ops.crt"), str(other / "client.ops.key")),
            "node": TlsFiles(str(d / "ca.crt"), str(d / "node.crt"), str(d / "node.key")),
            "node-elsewhere": TlsFiles(str(d / "ca.crt"), str(elsewhere / "node.crt"),
                                       str(elsewhere / "node.key")),
        }
        yield c
    finally:
        c.close()


def ctrl_call(c, files, req, timeout=10):
    """One controller Command at the controller leader with these client files."""
    leader = c.wait_leader(CTRL)
    with sync_channel(leader.address, files) as ch:
        return cpb_grpc.ShardCtrlerServiceStub(ch).Command(req, timeout=timeout)


def config_num(c) -> int:
    return ctrl_call(c, c.tls, cpb.CommandRequest(op=cpb.QUERY, num=-1)).config.num


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value


def test_peers_talk_mutual_tls_and_an_admin_may_join(tls_cluster):
    c = tls_cluster
    before = config_num(c)
    r = ctrl_call(c, c.files["ops"], cpb.CommandRequest(
        op=cpb.JOIN, servers={GID: cpb.Servers(servers=c.addresses(GID))}, client_id=7, command_id=1))
    assert r.err == "OK"
    assert config_num(c) == before + 1


def test_a_client_certificate_reads_but_may_not_change_the_cluster(tls_cluster):
    c = tls_cluster
    app1 = c.files["app1"]
    assert ctrl_call(c, app1, cpb.CommandRequest(op=cpb.QUERY, num=-1)).err == "OK"
    before = config_num(c)
    for req, word in [
            (cpb.CommandRequest(op=cpb.JOIN, servers={999: cpb.Servers(servers=["127.0.0.1:1"])}), "join"),
            (cpb.CommandRequest(op=cpb.LEAVE, gids=[GID]), "leave"),
            (cpb.CommandRequest(op=cpb.MOVE, shard=0, gid=GID), "move"),
            (cpb.CommandRequest(op=cpb.ABANDON, abandon_shards=[0]), "abandon")]:
        e = refused(lambda: ctrl_call(c, app1, req))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.details() == (f"permission denied: {word} needs an admin certificate (CN in [tls] "
                               f"admins); yours is CN=app1")
    leader = c.wait_leader(GID)
    with sync_channel(leader.address, app1) as ch:
        e = refused(lambda: apb_grpc.NodeAdminStub(ch).ChangeMember(
            apb.ChangeMemberRequest(group=GID, op="remove", address=c.addresses(GID)[1]), timeout=10))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "member change needs an admin certificate" in e.details()
        # reading the membership is any client's
        assert apb_grpc.NodeAdminStub(ch).Members(apb.MembersRequest(group=GID), timeout=10).members
    assert config_num(c) == before
    assert len(leader.group_status(GID).peers) == 3


def test_plaintext_and_foreign_clients_are_refused_at_the_handshake(tls_cluster):
    c = tls_cluster
    leader = c.wait_leader(CTRL)
    for files in (None, c.files["foreign"], TlsFiles(c.tls.ca_file)):
        with sync_channel(leader.address, files) as ch:
            e = refused(lambda: cpb_grpc.ShardCtrlerServiceStub(ch).Command(
                cpb.CommandRequest(op=cpb.QUERY, num=-1), timeout=5))
            assert e.code() == grpc.StatusCode.UNAVAILABLE


def _raft_batch(sender: str) -> rpb.MessageBatch:
    # a heartbeat of a made-up leader at a huge term: it would depose the group's leader
    return rpb.MessageBatch(from_addr=sender, msgs=[])


@pytest.mark.parametrize("who", ["app1", "ops", "node-elsewhere"])
def test_only_a_node_certificate_naming_the_sender_may_send_raft_messages(tls_cluster, who):
    c = tls_cluster
    target = c.group(GID)[0]
    sender = c.addresses(GID)[1]                 # pretends to be a replica of the group
    term = target.group_status(GID).term
    with sync_channel(target.address, c.files[who]) as ch:
        stub = rpb_grpc.RaftTransportStub(ch)
        e = refused(lambda: stub.Send(iter([_raft_batch(sender)]), metadata=(("x-eraftd-from", sender),),
                                      timeout=10))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        if who == "node-elsewhere":
            assert "the certificate names 127.0.0.2, not that address's host" in e.details()
        else:
            assert "need a node certificate (one that names the node's address)" in e.details()
            assert f"CN={who}" in e.details()
        header = rpb.SnapshotHeader(from_addr=sender)
        e = refused(lambda: stub.InstallSnapshot(iter([rpb.SnapshotChunk(header=header)]),
                                                 metadata=(("x-eraftd-from", sender),), timeout=10))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        e = refused(lambda: stub.Send(iter([_raft_batch(sender)]), timeout=10))   # no sender named
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert target.group_status(GID).term == term
    assert target.log_text().count("refused a call from") >= 1


@pytest.mark.parametrize("who", ["app1", "ops"])
def test_a_client_certificate_may_not_pull_or_delete_a_shard(tls_cluster, who):
    c = tls_cluster
    target = c.wait_leader(GID)
    with sync_channel(target.address, c.files[who]) as ch:
        e = refused(lambda: mpb_grpc.ShardMigrationStub(ch).PullShard(
            mpb.PullShardRequest(config_num=1, shard=0, max_bytes=1 << 20, gid=GID), timeout=10))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "pulling a shard need a node certificate" in e.details()
        kv = kpb_grpc.ShardKVServiceStub(ch)
        for method in (kv.GetShardsData, kv.DeleteShardsData):
            e = refused(lambda: method(kpb.ShardOperationRequest(config_num=1, shard_ids=[0]), timeout=10))
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_nodes_own_certificate_may_set_servers_but_not_join(tls_cluster):
    c = tls_cluster
    node = c.files["node"]
    e = refused(lambda: ctrl_call(c, node, cpb.CommandRequest(
        op=cpb.JOIN, servers={998: cpb.Servers(servers=["127.0.0.1:1"])})))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "yours is CN=node" in e.details()


def test_test_only_entry_points_are_not_served(tls_cluster):
    c = tls_cluster
    with sync_channel(c.controllers[0].address, c.files["ops"]) as ch:
        e = refused(lambda: apb_grpc.NodeAdminStub(ch).Propose(
            apb.ProposeRequest(group=CTRL, commands=[b"x"]), timeout=10))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "test-only entry point" in e.details() and "[node] testing = true" in e.details()
    wait_for(lambda: c.wait_leader(CTRL), 30, "the controllers still lead")
