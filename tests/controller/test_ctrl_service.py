"""The controller's gRPC service on real `eraftd run` peers: a client that knows only the
generated shardctrler stubs (as an eRaft client does), ErrWrongLeader with the leader hint,
ErrTimeout, bad input over the wire, and ControllerClient's leader finding and giving up."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from ctrl_support import addresses, cluster  # noqa: F401  (cluster is a fixture)

from eraftd._pb import shardctrler_pb2 as pb
from eraftd._pb import shardctrler_pb2_grpc as pb_grpc
from eraftd.controller.client import ControllerClient, ControllerError, ControllerUnavailable
from eraftd.testing import free_port, wait_for

pytestmark = pytest.mark.e2e


class StubClerk:
    """eRaft's clerk, on the generated stubs only: rotate on ErrWrongLeader / ErrTimeout / RPC
    errors until an answer comes."""

    def __init__(self, addrs: list[str], client_id: int = 4242) -> None:
        self.channels = [grpc.insecure_channel(a) for a in addrs]
        self.stubs = [pb_grpc.ShardCtrlerServiceStub(ch) for ch in self.channels]
        self.leader = 0
        self.client_id = client_id
        self.command_id = 0

    def close(self) -> None:
        for ch in self.channels:
            ch.close()

    def call(self, req: pb.CommandRequest, timeout: float = 60) -> pb.CommandResponse:
        def attempt():
            try:
                r = self.stubs[self.leader].Command(req, timeout=3)
            except grpc.RpcError:
                r = None
            if r is None or r.err in ("ErrWrongLeader", "ErrTimeout"):
                self.leader = (self.leader + 1) % len(self.stubs)
                return None
            return r
        return wait_for(attempt, timeout, f"an answer to {req.op}", interval=0.02)

    def command(self, **kw) -> pb.CommandResponse:
        """A JOIN / LEAVE / MOVE with this clerk's ids; the id advances once it is answered."""
        r = self.call(pb.CommandRequest(client_id=self.client_id, command_id=self.command_id, **kw))
        self.command_id += 1
        return r

    def query(self, num: int = -1) -> pb.Config:
        r = self.call(pb.CommandRequest(op=pb.QUERY, num=num))
        assert r.err == "OK", r.err
        return r.config


@pytest.fixture
def clerks():
    made: list[StubClerk] = []

    def make(addrs, **kw) -> StubClerk:
        made.append(StubClerk(addrs, **kw))
        return made[-1]
    yield make
    for c in made:
        c.close()


def statuses(addrs) -> dict[str, pb.GetStatusResponse]:
    out = {}
    for a in addrs:
        with grpc.insecure_channel(a) as ch:
            out[a] = pb_grpc.ShardCtrlerServiceStub(ch).GetStatus(pb.GetStatusRequest(), timeout=2)
    return out


def leader_of(addrs) -> str | None:
    st = statuses(addrs)
    leaders = [a for a, s in st.items() if s.state == "Leader"]
    return max(leaders, key=lambda a: st[a].term) if leaders else None


def test_a_stub_only_client_works(cluster, clerks):
    c = cluster(n=3).start()
    addrs = addresses(c)
    ck = clerks(addrs)
    c0 = ck.query()
    assert (c0.num, list(c0.shards), dict(c0.groups)) == (0, [0] * 10, {})

    r = ck.command(op=pb.JOIN, servers={1: pb.Servers(servers=["x:1", "y:1", "z:1"])}, force=True)
    assert r.err == "OK" and r.config.num == 1
    ck.command_id -= 1                                 # the same command again: applied once
    r = ck.command(op=pb.JOIN, servers={1: pb.Servers(servers=["x:1", "y:1", "z:1"])}, force=True)
    assert r.err == "OK" and r.config.num == 1
    r = ck.command(op=pb.JOIN, servers={2: pb.Servers(servers=["a:1"]), 3: pb.Servers(servers=["b:1"])}, force=True)
    assert r.err == "OK" and r.config.num == 2
    c2 = ck.query()
    assert c2.num == 2 and sorted(c2.groups) == [1, 2, 3]
    assert list(c2.groups[1].servers) == ["x:1", "y:1", "z:1"]
    assert sorted(list(c2.shards).count(g) for g in (1, 2, 3)) == [3, 3, 4]
    assert ck.command(op=pb.LEAVE, gids=[1]).err == "OK"
    assert ck.command(op=pb.MOVE, shard=0, gid=3).err == "OK"
    c4 = ck.query()
    assert c4.num == 4 and c4.shards[0] == 3 and sorted(c4.groups) == [2, 3]
    assert ck.query(1).num == 1 and list(ck.query(1).shards) == [1] * 10
    assert ck.query(99).num == 4

    # eRaft's plain join (no `force`, which an eRaft client never sets) is checked first: no
    # server of gid 9 answers as gid 9, so it is refused and no configuration is made
    r = ck.command(op=pb.JOIN, servers={9: pb.Servers(servers=["127.0.0.1:1", "127.0.0.1:2"])})
    assert r.err == ("join: no server of gid 9 answers as a replica of gid 9 (127.0.0.1:1 does "
                     "not answer, 127.0.0.1:2 does not answer); start the group's servers first, "
                     "or pass --force to join anyway")
    assert ck.query().num == 4

    # GetStatus: every peer answers; one leader; the eRaft field meanings
    def settled():
        st = statuses(addrs)
        return st if sum(s.state == "Leader" for s in st.values()) == 1 else None
    st = wait_for(settled, 30, "exactly one leader")
    assert sorted(s.id for s in st.values()) == [0, 1, 2]
    for a, s in st.items():
        assert s.id == addrs.index(a)
        assert s.state in ("Leader", "Follower") and s.term >= 1
        assert 0 < s.last_applied <= s.commit_index and s.storage_size > 0


def test_a_follower_answers_err_wrong_leader_with_a_hint(cluster):
    c = cluster(n=3).start()
    addrs = addresses(c)

    def ask_a_follower():
        leader = leader_of(addrs)
        if leader is None:
            return None
        follower = next(a for a in addrs if a != leader)
        with grpc.insecure_channel(follower) as ch:
            stub = pb_grpc.ShardCtrlerServiceStub(ch)
            out = []
            for req in (pb.CommandRequest(op=pb.QUERY, num=-1),
                        pb.CommandRequest(op=pb.JOIN, servers={7: pb.Servers(servers=["s:1"])},
                                          client_id=1, command_id=1, force=True)):
                t0 = time.monotonic()
                resp, call = stub.Command.with_call(req, timeout=5)
                out.append((resp.err, dict(call.trailing_metadata()).get("leader"),
                            time.monotonic() - t0))
        # a leader change between the two looks would name another node: ask again
        return out if all(hint == leader for _, hint, _ in out) else None
    answers = wait_for(ask_a_follower, 30, "a follower naming the leader")
    for err, _hint, took in answers:
        assert err == "ErrWrongLeader" and took < 1.0        # at once, not after a timeout

    async def latest():
        async with ControllerClient(addrs) as ctl:
            return await ctl.query()
    assert asyncio.run(latest()).num == 0                   # the follower's join was not applied


BAD = [
    (dict(op=pb.JOIN), "join: no groups given"),
    (dict(op=pb.JOIN, servers={0: pb.Servers(servers=["a:1"])}), "join: gid 0 is not valid"),
    (dict(op=pb.JOIN, servers={-4: pb.Servers(servers=["a:1"])}), "join: gid -4 is not valid"),
    (dict(op=pb.JOIN, servers={5: pb.Servers()}), "join: gid 5 has an empty server list"),
    (dict(op=pb.JOIN, servers={1: pb.Servers(servers=["other:1"])}),
     "join: gid 1 is already present with other servers (a:1, b:1)"),
    (dict(op=pb.LEAVE), "leave: no gids given"),
    (dict(op=pb.LEAVE, gids=[3]), "leave: gid 3 is not in configuration 1"),
    (dict(op=pb.LEAVE, gids=[1, 1]), "leave: gid 1 is listed twice"),
    (dict(op=pb.MOVE, shard=10, gid=1), "move: shard 10 is outside 0..9"),
    (dict(op=pb.MOVE, shard=-1, gid=1), "move: shard -1 is outside 0..9"),
    (dict(op=pb.MOVE, shard=2, gid=8), "move: gid 8 is not in configuration 1"),
    (dict(op=pb.MOVE, shard=2, gid=0), "move: gid 0 is not valid"),
    (dict(op=9), "unknown op 9"),
    (dict(op=pb.SET_SERVERS), "set-servers: give exactly one gid and its servers, got 0 gids"),
    (dict(op=pb.SET_SERVERS, servers={1: pb.Servers(servers=["a:1"]), 2: pb.Servers(servers=["b:1"])}),
     "set-servers: give exactly one gid and its servers, got 2 gids"),
    (dict(op=pb.SET_SERVERS, servers={2: pb.Servers(servers=["a:1"])}),
     "set-servers: gid 2 is not in configuration 1"),
    (dict(op=pb.SET_SERVERS, servers={1: pb.Servers()}), "set-servers: gid 1 has an empty server list"),
    (dict(op=pb.SET_SERVERS, servers={1: pb.Servers(servers=["c:1", "c:1"])}),
     "set-servers: gid 1 lists server c:1 twice"),
    # servers that are not HOST:PORT (issue 17): the TOML's address rule, bounded length
    (dict(op=pb.JOIN, servers={6: pb.Servers(servers=["127.0.0.1:1", "not an address at all"])}, force=True),
     "join: gid 6: server 'not an address at all' is not an address: give HOST:PORT with a port "
     "in 1-65535, at most 261 characters"),
    (dict(op=pb.JOIN, servers={6: pb.Servers(servers=["h" * 100_000 + ":1"])}, force=True),
     "join: gid 6: server 'hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh'... "
     "(100002 characters) is not an address"),
    (dict(op=pb.JOIN, servers={6: pb.Servers(servers=["127.0.0.1:0"])}), "server '127.0.0.1:0' is not an address"),
    (dict(op=pb.SET_SERVERS, servers={1: pb.Servers(servers=["a:1", "b"])}),
     "set-servers: gid 1: server 'b' is not an address"),
]


def test_bad_input_gets_a_clear_err_and_changes_nothing(cluster, clerks):
    c = cluster(n=3).start()
    ck = clerks(addresses(c))
    assert ck.command(op=pb.JOIN, servers={1: pb.Servers(servers=["a:1", "b:1"])}, force=True).err == "OK"
    before = ck.query()
    for kw, want in BAD:
        err = ck.command(**kw).err
        assert want in err and "\n" not in err, (kw, err)
    assert ck.query() == before
    # the same gid with the same servers is harmless (a join retried by a fresh client)
    fresh = clerks(addresses(c), client_id=777)
    assert fresh.command(op=pb.JOIN, servers={1: pb.Servers(servers=["a:1", "b:1"])}, force=True).err == "OK"
    assert ck.query() == before


async def test_controller_client_finds_the_leader_and_raises_clear_errors(cluster):
    c = cluster(n=3).start()
    addrs = addresses(c)
    leader = await asyncio.to_thread(lambda: wait_for(lambda: leader_of(addrs), 30, "a leader"))
    followers_first = sorted(addrs, key=lambda a: a == leader)
    async with ControllerClient(followers_first, total_timeout=30) as ctl:
        cfg = await ctl.join({3: ["p:1", "q:1"]}, force=True)
        assert cfg.num == 1 and cfg.shards == (3,) * 10 and cfg.groups == {3: ("p:1", "q:1")}
        assert ctl.leader == leader                   # followed the hint and cached it
        assert (await ctl.query(0)).num == 0
        with pytest.raises(ControllerError, match="move: gid 4 is not in configuration 1"):
            await ctl.move(1, 4)
        st = await ctl.status(leader)
        assert st.state == "Leader"


async def test_set_servers_through_the_client_keeps_shards_and_moves_the_gid_to_its_new_servers(cluster):
    c = cluster(n=3).start()
    async with ControllerClient(addresses(c), total_timeout=60) as ctl:
        await ctl.join({1: ["a1:1", "a2:1", "a3:1"]}, force=True)
        before = await ctl.join({2: ["b1:1"]}, force=True)
        after = await ctl.set_servers(1, ["a1:1", "a2:1", "a4:1"])
        assert after.num == before.num + 1 and after.shards == before.shards
        assert after.groups == {1: ("a1:1", "a2:1", "a4:1"), 2: ("b1:1",)}
        assert (await ctl.query()) == after                       # every replica applied it alike
        assert (await ctl.set_servers(1, ("a1:1", "a2:1", "a4:1"))) == after    # no change: no config
        with pytest.raises(ControllerError, match="^set-servers: gid 7 is not in configuration 3$"):
            await ctl.set_servers(7, ["x:1"])
        # a re-join must name the new servers
        await ctl.leave([1])
        with pytest.raises(ControllerError, match=r"gid 1 was served by other servers before \(a1:1, a2:1, a4:1\)"):
            await ctl.join({1: ["a1:1", "a2:1", "a3:1"]}, force=True)
        assert (await ctl.join({1: ["a1:1", "a2:1", "a4:1"]}, force=True)).groups[1] == ("a1:1", "a2:1", "a4:1")


async def test_controller_client_gives_up_naming_what_it_tried():
    nobody = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    async with ControllerClient(nobody, total_timeout=1.0) as ctl:
        t0 = time.monotonic()
        with pytest.raises(ControllerUnavailable) as ei:
            await ctl.query()
        assert time.monotonic() - t0 < 5
    msg = str(ei.value)
    assert "within 1s" in msg and all(a in msg for a in nobody) and "unreachable" in msg and "UNAVAILABLE" not in msg


def test_err_timeout_without_a_quorum_then_the_retry_applies_once(cluster, clerks):
    # check_quorum off: the leader keeps leading while its followers are frozen
    c = cluster(n=3, raft={"check_quorum": False}).start()
    addrs = addresses(c)
    ck = clerks(addrs)
    assert ck.command(op=pb.JOIN, servers={1: pb.Servers(servers=["a:1"])}, force=True).err == "OK"
    leader = wait_for(lambda: leader_of(addrs), 30, "a leader")
    followers = [n for n in c.nodes if n.address != leader]
    for n in followers:
        n.pause()
    try:
        with grpc.insecure_channel(leader) as ch:
            stub = pb_grpc.ShardCtrlerServiceStub(ch)
            join = pb.CommandRequest(op=pb.JOIN, servers={2: pb.Servers(servers=["b:1"])},
                                     client_id=99, command_id=1, force=True)
            t0 = time.monotonic()
            assert stub.Command(join, timeout=10).err == "ErrTimeout"
            assert 1.5 < time.monotonic() - t0 < 5
            assert stub.Command(pb.CommandRequest(op=pb.QUERY, num=-1), timeout=10).err == "ErrTimeout"
    finally:
        for n in followers:
            n.resume()
    # the timed-out join may commit now; its retry (same ids) is answered, never applied twice
    ck99 = clerks(addrs, client_id=99)
    ck99.command_id = 1
    r = ck99.command(op=pb.JOIN, servers={2: pb.Servers(servers=["b:1"])}, force=True)
    assert r.err == "OK" and r.config.num == 2
    assert ck.query().num == 2 and sorted(ck.query().groups) == [1, 2]
