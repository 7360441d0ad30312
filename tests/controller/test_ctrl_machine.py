"""eraftd.controller.machine: byte formats, persistence in the GroupStore, reload after a
restart and after a snapshot is installed (a real NodeStore, no processes)."""
from __future__ import annotations

import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eraftd._pb import shardctrler_pb2 as pb
from eraftd.controller.machine import (BadRequest, ControllerMachine, command_from_pb,
                                       config_from_pb, config_to_pb, decode_command,
                                       encode_command, load_state)
from eraftd.controller.state import OK, Abandon, Applied, Command, Config, Join, Leave, Move, SetServers
from eraftd.node.storage import NodeStore
from eraftd.raft.messages import Entry

IDENT = {"advertise": "127.0.0.1:7001", "roles": ["controller"]}
CTRL = 0


class Replica:
    """A NodeStore + ControllerMachine driven like the driver does: append, apply, applied."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.open()
        self.index = self.gs.applied_index()

    def open(self) -> None:
        self.store = NodeStore.open(self.path, IDENT, fsync=False)
        self.gs = self.store.group(CTRL)
        self.sm = ControllerMachine(self.gs)

    def reopen(self) -> None:
        self.store.close()
        self.open()

    def round(self, datas: list[bytes]) -> list:
        entries = [Entry(1, self.index + 1 + i, d) for i, d in enumerate(datas)]
        self.index += len(entries)
        batch = self.store.new_batch()
        self.gs.stage_append(batch, entries)
        out = self.sm.apply(entries, batch)
        self.gs.stage_applied(batch, entries[-1].index)
        self.store.write(batch)
        return out

    def install_snapshot_from(self, other: "Replica") -> None:
        meta, chunks = other.gs.snapshot_chunks(max_bytes=64)      # several small chunks
        restore = self.gs.begin_restore()
        for c in chunks:
            restore.add_chunk(c)
        batch = self.store.new_batch()
        assert self.gs.stage_install_snapshot(batch, restore, meta)
        self.store.write(batch)
        self.sm.restored()
        self.index = meta.index

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def replicas(tmp_path):
    made: list[Replica] = []

    def make(name="r") -> Replica:
        r = Replica(tmp_path / name)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def cmd(op, client=7, command=1) -> bytes:
    return encode_command(Command(op, client, command))


def snapshot_of(sm: ControllerMachine):
    return list(sm.state.configs), dict(sm.state.sessions)


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("c", [
    Command(Join({3: ("a", "b"), 1: ("c",)}), 1, 1),
    Command(Join({5: ("x", "x")}), -(1 << 63), (1 << 63) - 1),
    Command(Leave((4, 2, 9)), 1 << 62, 0),
    Command(Move(0, 1)),
    Command(Move(9, 2_000_000_000), 3, 4),
    Command(SetServers(100, ("b", "a")), 5, 6),
    Command(Abandon((7, 2)), 5, 6),
])
def test_commands_round_trip_and_never_encode_empty(c):
    data = encode_command(c)
    assert data and data[:1] == b"\x01"
    assert decode_command(data) == c
    assert encode_command(decode_command(data)) == data        # deterministic bytes


@pytest.mark.parametrize("data, msg", [
    (b"\x02abc", "not a controller log entry"),
    (b"\x01\xff\xff\xff", "undecodable controller log entry"),
    (b"\x01" + pb.CommandRequest(op=pb.QUERY).SerializeToString(), "query is not a log command"),
    (b"\x01" + pb.CommandRequest(op=7).SerializeToString(), "unknown op 7"),
    (b"\x01" + pb.CommandRequest(op=pb.SET_SERVERS).SerializeToString(),
     "set-servers: give exactly one gid and its servers, got 0 gids"),
    (b"\x01" + pb.CommandRequest(op=pb.SET_SERVERS, servers={1: pb.Servers(servers=["a"]),
                                                              2: pb.Servers(servers=["b"])}).SerializeToString(),
     "got 2 gids"),
])
def test_bad_entries_are_refused(data, msg):
    with pytest.raises(BadRequest, match=msg):
        decode_command(data)


def test_configs_round_trip_through_pb():
    c = Config(4, [1, 1, 2, 2, 3, 3, 1, 2, 3, 0], {3: ("c",), 1: ("a", "b"), 2: ("d",)})
    assert config_from_pb(config_to_pb(c)) == c
    assert config_from_pb(pb.Config()) == Config()              # an empty message is config 0
    assert command_from_pb(pb.CommandRequest(op=pb.MOVE, shard=3, gid=4)) == Command(Move(3, 4))
    # eraftd's additive field: an abandoned record travels; eRaft's fields are untouched
    a = Config(5, [1] * 10, {1: ("a",)}, {7: 5, 2: 4})
    m = config_to_pb(a)
    assert config_from_pb(m) == a and dict(m.abandoned) == {2: 4, 7: 5}
    assert config_from_pb(pb.Config.FromString(config_to_pb(c).SerializeToString())).abandoned == {}


def test_force_is_not_part_of_the_logged_command():
    req = pb.CommandRequest(op=pb.JOIN, servers={1: pb.Servers(servers=["a"])}, force=True)
    assert not pb.CommandRequest.FromString(encode_command(command_from_pb(req))[1:]).force


# ---------------------------------------------------------------- the machine

def test_apply_persists_and_a_restart_reloads_everything(replicas):
    r = replicas()
    out = r.round([b"", cmd(Join({1: ["a"], 2: ["b"]}), 7, 1), cmd(Leave((1,)), 8, 1),
                   cmd(Leave((1,)), 8, 1), cmd(Move(3, 9), 7, 2)])
    assert out[0] is None                                       # the leader's no-op
    assert [(a.err, a.num) for a in out[1:4]] == [(OK, 1), (OK, 2), (OK, 2)]
    move_err = out[4].err
    assert move_err == "move: gid 9 is not in configuration 2"
    out = r.round([b"\x09junk"])                                 # same answer on every replica
    assert out == [Applied("not a controller log entry (format byte b'\\t')", 2)]
    before = snapshot_of(r.sm)
    r.reopen()
    assert snapshot_of(r.sm) == before
    assert r.sm.query(1).groups == {1: ("a",), 2: ("b",)} and r.sm.query(-1).num == 2
    # the reloaded dedup table still answers a retry with its first outcome
    r.round([cmd(Join({9: ["z"]}), 8, 2)])
    again = r.round([cmd(Move(3, 9), 7, 2)])[0]
    assert (again.err, again.num) == (move_err, 2) and r.sm.query(-1).shards[3] != 9


def test_restored_reloads_from_an_installed_snapshot(replicas):
    a, b = replicas("a"), replicas("b")
    b.round([cmd(Join({50: ["old"]}), 99, 1)])                  # b's stale state, replaced
    for i in range(1, 30):
        a.round([cmd(Join({i: [f"s{i}"]}), 1, 2 * i), cmd(Move(i % 10, i), 2, i)])
    b.install_snapshot_from(a)
    assert snapshot_of(b.sm) == snapshot_of(a.sm)
    assert 99 not in b.sm.state.sessions and 50 not in b.sm.query(-1).groups
    # both go on from the same state, and b's data on disk agrees with its memory
    more = [cmd(Leave((3, 4)), 1, 100), cmd(Join({1: ["s1"]}), 1, 100), cmd(Move(0, 9), 5, 1)]
    assert [x.err for x in a.round(more)] == [x.err for x in b.round(more)]
    assert snapshot_of(b.sm) == snapshot_of(a.sm)
    b.reopen()
    assert snapshot_of(b.sm) == snapshot_of(a.sm)


OPS = st.one_of(
    st.dictionaries(st.integers(0, 6), st.sampled_from([("a",), ("b",), ()]), max_size=2).map(Join),
    st.builds(SetServers, st.integers(0, 6), st.sampled_from([("a",), ("c", "d"), ()])),
    st.lists(st.integers(0, 6), max_size=2).map(lambda g: Leave(tuple(g))),
    st.builds(Move, st.integers(-1, 10), st.integers(0, 6)),
)


@settings(max_examples=30, deadline=None)
@given(rounds=st.lists(st.lists(st.tuples(OPS, st.integers(0, 3), st.integers(0, 4)),
                                min_size=1, max_size=6), max_size=8))
def test_memory_and_disk_always_agree(rounds):
    with tempfile.TemporaryDirectory() as d:
        r = Replica(d)
        try:
            for cmds in rounds:
                r.round([encode_command(Command(op, c, i)) for op, c, i in cmds])
                assert snapshot_of(r.sm) == (lambda s: (s.configs, s.sessions))(load_state(r.gs))
        finally:
            r.close()
