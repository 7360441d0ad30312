"""eraftd.controller.state: the classic scenarios, bad input, dedup, queries (pure, no I/O)."""
from __future__ import annotations

import itertools

import pytest
from ctrl_support import check_config
from hypothesis import given, settings
from hypothesis import strategies as hst

from eraftd.controller.state import (NSHARDS, OK, Abandon, Command, Config, ControllerState, Join,
                                     Leave, Move, SetServers, admit, check, last_handoff, rebalance)
from eraftd.names import MAX_GID, is_address


class Clerk:
    """A client of a ControllerState, numbering its commands like eRaft's clerk."""

    ids = itertools.count(1)

    def __init__(self, st: ControllerState) -> None:
        self.st = st
        self.client_id = next(Clerk.ids)
        self.command_id = 0

    def do(self, op) -> str:
        self.command_id += 1
        return self.st.apply(Command(op, self.client_id, self.command_id)).err

    def join(self, groups) -> str:
        return self.do(Join(groups))

    def leave(self, gids) -> str:
        return self.do(Leave(tuple(gids)))

    def move(self, shard, gid) -> str:
        return self.do(Move(shard, gid))

    def set_servers(self, gid, servers) -> str:
        return self.do(SetServers(gid, tuple(servers)))


@pytest.fixture
def st():
    return ControllerState()


def test_config_zero(st):
    c = st.query(-1)
    assert c == Config(0, (0,) * NSHARDS, {}) and c.num == 0
    check_config(c, [])


def test_basic_join_leave_and_historical_queries(st):
    ck = Clerk(st)
    history = [st.query(-1)]
    assert ck.join({1: ["x", "y", "z"]}) == OK
    check_config(st.latest, [1])
    history.append(st.latest)
    assert ck.join({2: ["a", "b", "c"]}) == OK
    check_config(st.latest, [1, 2])
    history.append(st.latest)
    assert st.latest.groups == {1: ("x", "y", "z"), 2: ("a", "b", "c")}
    assert ck.leave([1]) == OK
    check_config(st.latest, [2])
    history.append(st.latest)
    # the last group may not leave (eRaft would hand every shard to gid 0 and delete the data)
    assert ck.leave([2]).startswith("leave: gid 2 would leave no group to serve the shards")
    assert st.latest == history[-1]
    assert [c.num for c in history] == [0, 1, 2, 3]
    for c in history:
        assert st.query(c.num) == c
    assert st.query(-1) == st.query(99) == st.query(-7) == history[-1]


def test_multi_group_join_leave(st):
    ck = Clerk(st)
    assert ck.join({1: ["x", "y", "z"], 2: ["a", "b", "c"]}) == OK
    check_config(st.latest, [1, 2])
    assert ck.join({3: ["j", "k", "l"]}) == OK
    check_config(st.latest, [1, 2, 3])
    assert st.latest.groups[3] == ("j", "k", "l")
    assert ck.leave([1, 3]) == OK
    check_config(st.latest, [2])
    assert st.latest.groups == {2: ("a", "b", "c")}


def test_minimal_transfers_after_joins_and_leaves(st):
    ck = Clerk(st)
    for gid in range(1, 11):
        ck.join({gid: [f"{gid}a"]})
    c1 = st.latest
    check_config(c1, range(1, 11))
    for gid in range(11, 16):
        ck.join({gid: [f"{gid}a", f"{gid}b", f"{gid}b"]})   # eRaft's test repeats a server
    c2 = st.latest
    check_config(c2, range(1, 16))
    for s in range(NSHARDS):                     # old groups only ever lose shards
        if c2.shards[s] <= 10:
            assert c1.shards[s] == c2.shards[s]
    for gid in range(11, 16):
        ck.leave([gid])
    c3 = st.latest
    check_config(c3, range(1, 11))
    for s in range(NSHARDS):                     # and keep what they had
        if c2.shards[s] <= 10:
            assert c3.shards[s] == c2.shards[s]


def test_minimal_moves_on_join_into_a_balanced_config(st):
    ck = Clerk(st)
    ck.join({1: ["a"], 2: ["b"]})
    before = st.latest.shards
    ck.join({3: ["c"]})
    moved = [s for s in range(NSHARDS) if st.latest.shards[s] != before[s]]
    assert len(moved) == 3 and all(st.latest.shards[s] == 3 for s in moved)


def test_more_groups_than_shards(st):
    ck = Clerk(st)
    ck.join({g: [f"s{g}"] for g in range(1, 13)})
    c = st.latest
    check_config(c, range(1, 13))
    assert sorted(c.shards) == list(range(1, 11))     # the 10 lowest gids get one each
    assert c.shards_of(11) == c.shards_of(12) == []
    # a group with a shard leaves: an idle group takes exactly that shard
    s = c.shards_of(4)[0]
    ck.leave([4])
    after = st.latest
    check_config(after, [g for g in range(1, 13) if g != 4])
    assert [i for i in range(NSHARDS) if after.shards[i] != c.shards[i]] == [s]
    assert after.shards[s] == 11


def test_leave_of_every_group_is_refused_and_changes_nothing(st):
    ck = Clerk(st)
    ck.join({1: ["a"], 2: ["b"], 3: ["c"]})
    before = st.latest
    assert ck.leave([3, 1, 2]) == ("leave: gids 1, 2, 3 would leave no group to serve the shards, "
                                   "and their values would be deleted; join another group first")
    assert st.latest == before
    assert ck.leave([3, 1]) == OK and st.latest.groups == {2: ("b",)}   # all but one: fine


def test_a_gid_keeps_its_servers_across_leave_and_join(st):
    """A re-join of a gid with new servers would replay its history on them and wedge its
    shards: refused; the same servers may come back."""
    ck = Clerk(st)
    ck.join({1: ["a"], 2: ["b"]})
    assert ck.leave([1]) == OK
    before = st.latest
    err = ck.join({1: ["c"]})
    assert err == ("join: gid 1 was served by other servers before (a); a gid keeps its servers: "
                   "change them with `eraftd member`, or join the new servers under a new gid")
    assert st.latest == before
    assert ck.join({1: ["a"]}) == OK and st.latest.groups[1] == ("a",)
    # still refused after a restart (the history is rebuilt from the configurations)
    again = ControllerState(st.configs)
    assert again.apply(Command(Join({1: ("c",)}))).err.startswith("join: gid 1 is already present")
    again.apply(Command(Leave((1,))))
    assert again.apply(Command(Join({1: ("c",)}))).err.startswith("join: gid 1 was served by other")


def test_move_hands_one_shard_and_does_not_rebalance(st):
    ck = Clerk(st)
    ck.join({1: ["a"], 2: ["b"]})
    for s in range(NSHARDS):
        before = st.latest
        assert ck.move(s, 1) == OK
        if before.shards[s] != 1:
            assert st.latest.num == before.num + 1
        else:                                     # already there: no new configuration
            assert st.latest is before
        assert st.latest.shards[s] == 1
        assert all(st.latest.shards[i] == before.shards[i] for i in range(NSHARDS) if i != s)
    assert st.latest.shards == (1,) * NSHARDS
    ck.join({3: ["c"]})                          # the next join rebalances from there
    check_config(st.latest, [1, 2, 3])


def test_join_of_a_present_gid(st):
    ck = Clerk(st)
    ck.join({1: ["a", "b"]})
    before = st.latest
    assert ck.join({1: ["a", "b"]}) == OK         # same servers: a no-op answered OK
    assert st.latest is before
    err = ck.join({1: ["a", "c"]})
    assert "gid 1 is already present with other servers (a, b)" in err
    assert st.latest is before
    err = ck.join({2: ["x"], 1: ["zz"]})          # one bad gid: nothing of it applies
    assert "gid 1" in err and st.latest is before
    assert ck.join({1: ["a", "b"], 2: ["x"]}) == OK   # the present one is ignored
    assert st.latest.num == before.num + 1 and st.latest.groups == {1: ("a", "b"), 2: ("x",)}


def test_set_servers_keeps_the_shards_and_changes_one_gid(st):
    ck = Clerk(st)
    ck.join({1: ["a", "b", "c"], 2: ["x"]})
    ck.move(0, 2)                                 # an unbalanced config: set-servers keeps it as it is
    before = st.latest
    assert ck.set_servers(1, ["a", "b", "d"]) == OK
    after = st.latest
    assert after.num == before.num + 1 and after.shards == before.shards
    assert after.groups == {1: ("a", "b", "d"), 2: ("x",)}
    assert st.query(before.num) == before         # history unchanged
    assert ck.set_servers(1, ["a", "b", "d"]) == OK and st.latest is after   # no change: no config
    assert ck.set_servers(1, ["a", "b", "d", "e"]) == OK and st.latest.groups[1] == ("a", "b", "d", "e")


def test_set_servers_decides_which_servers_a_rejoin_must_name(st):
    """After set-servers the gid's servers are the new ones: a re-join with them is accepted,
    with the old ones refused, also after a restart (rebuilt from the configurations)."""
    ck = Clerk(st)
    ck.join({1: ["a"], 2: ["b"]})
    assert ck.set_servers(1, ["a2", "a3"]) == OK
    assert ck.join({1: ["a"]}).startswith("join: gid 1 is already present with other servers (a2, a3)")
    assert ck.leave([1]) == OK
    before = st.latest
    assert ck.join({1: ["a"]}) == ("join: gid 1 was served by other servers before (a2, a3); a gid "
                                   "keeps its servers: change them with `eraftd member`, or join the new servers "
                                   "under a new gid")
    assert st.latest is before
    again = ControllerState(st.configs)
    assert again.apply(Command(Join({1: ("a",)}))).err.startswith("join: gid 1 was served by other")
    assert again.apply(Command(Join({1: ("a2", "a3")}))).err == OK
    assert ck.join({1: ["a2", "a3"]}) == OK and st.latest.groups[1] == ("a2", "a3")


@pytest.mark.parametrize("op, want", [
    (SetServers(7, ("a",)), "set-servers: gid 7 is not in configuration 1"),
    (SetServers(0, ("a",)), "set-servers: gid 0 is not valid: group ids are 1..2147483647"),
    (SetServers(1, ()), "set-servers: gid 1 has an empty server list"),
    (SetServers(1, ("a", "")), "set-servers: gid 1 has an empty server address"),
    (SetServers(1, ("a", "b", "a")), "set-servers: gid 1 lists server a twice"),
])
def test_set_servers_bad_input_is_refused_and_changes_nothing(st, op, want):
    ck = Clerk(st)
    ck.join({1: ["a"]})
    configs = list(st.configs)
    assert ck.do(op) == want
    assert st.configs == configs and st.servers_of == {1: ("a",)}


@pytest.mark.parametrize("op, want", [
    (Join({}), "join: no groups given"),
    (Join({0: ["a"]}), "join: gid 0 is not valid: group ids are 1..2147483647"),
    (Join({1 << 31: ["a"]}), "join: gid 2147483648 is not valid: group ids are 1..2147483647"),
    (Leave((1 << 40,)), "leave: gid 1099511627776 is not valid"),
    (Move(0, 1 << 31), "move: gid 2147483648 is not valid"),
    (Join({-3: ["a"]}), "join: gid -3 is not valid"),
    (Join({4: []}), "join: gid 4 has an empty server list"),
    (Join({4: ["a", ""]}), "join: gid 4 has an empty server address"),
    (Leave(()), "leave: no gids given"),
    (Leave((0,)), "leave: gid 0 is not valid"),
    (Leave((9,)), "leave: gid 9 is not in configuration 1"),
    (Leave((1, 1)), "leave: gid 1 is listed twice"),
    (Leave((1, 9)), "leave: gid 9 is not in configuration 1"),
    (Move(10, 1), "move: shard 10 is outside 0..9"),
    (Move(-1, 1), "move: shard -1 is outside 0..9"),
    (Move(3, 0), "move: gid 0 is not valid"),
    (Move(3, 7), "move: gid 7 is not in configuration 1"),
])
def test_bad_input_is_refused_and_changes_nothing(st, op, want):
    ck = Clerk(st)
    ck.join({1: ["a"]})
    configs = list(st.configs)
    err = ck.do(op)
    assert want in err and err != OK
    assert "\n" not in err
    assert st.configs == configs


def test_duplicate_command_applies_once_with_the_same_outcome(st):
    st.apply(Command(Join({1: ["a"]}), 7, 1))
    r = st.apply(Command(Join({2: ["b"]}), 7, 2))
    assert (r.err, r.num) == (OK, 2) and r.config is not None
    st.apply(Command(Leave((2,)), 8, 1))          # another client moves on
    assert st.latest.num == 3
    again = st.apply(Command(Join({2: ["b"]}), 7, 2))   # the retry: not applied again
    assert (again.err, again.num, again.config, again.session) == (OK, 2, None, None)
    assert st.latest.num == 3 and 2 not in st.latest.groups
    old = st.apply(Command(Join({5: ["e"]}), 7, 1))     # older than the last: OK, nothing done
    assert (old.err, old.num, old.config) == (OK, 3, None)
    assert st.latest.num == 3


def test_duplicate_of_a_refused_command_gets_the_same_refusal(st):
    first = st.apply(Command(Leave((5,)), 7, 1))
    assert first.err.startswith("leave: gid 5")
    st.apply(Command(Join({5: ["e"]}), 8, 1))
    again = st.apply(Command(Leave((5,)), 7, 1))
    assert again.err == first.err and 5 in st.latest.groups


def test_client_id_0_is_never_deduplicated(st):
    st.apply(Command(Join({1: ["a"]}), 0, 0))
    st.apply(Command(Join({2: ["b"]}), 0, 0))
    assert sorted(st.latest.groups) == [1, 2] and st.sessions == {}


def test_sessions_are_per_client(st):
    st.apply(Command(Join({1: ["a"]}), 1, 5))
    st.apply(Command(Join({2: ["b"]}), 2, 5))
    assert sorted(st.latest.groups) == [1, 2]
    assert {c: (s.command_id, s.err, s.num) for c, s in st.sessions.items()} == {
        1: (5, OK, 1), 2: (5, OK, 2)}


def test_rebalance_examples():
    assert rebalance((0,) * 10, []) == (0,) * 10
    assert rebalance((0,) * 10, [5]) == (5,) * 10
    assert rebalance((0,) * 10, [2, 1]) == (1,) * 5 + (2,) * 5
    # group 1 over target gives up its highest shards; group 3 joins
    assert rebalance((1,) * 4 + (2,) * 6, [1, 2, 3]) == (1, 1, 1, 3, 2, 2, 2, 2, 3, 3)
    # with equal loads the lower gid keeps the extra shard
    assert rebalance((1,) * 5 + (2,) * 5, [1, 2, 3]) == (1, 1, 1, 1, 3, 2, 2, 2, 3, 3)


def test_a_config_is_normalised_and_checked():
    c = Config(3, [1] * 10, {5: ["b"], 1: ["a"]})
    assert list(c.groups) == [1, 5] and c.groups[5] == ("b",) and isinstance(c.shards, tuple)
    with pytest.raises(ValueError, match="10 shards"):
        Config(1, [1] * 9, {1: ["a"]})
    with pytest.raises(ValueError, match="configuration 1 is numbered 2"):
        ControllerState([Config(), Config(2)])


# ---------------------------------------------------------------- abandon

def test_abandon_records_the_shards_and_every_later_configuration_keeps_the_record(st):
    ck = Clerk(st)
    assert ck.join({1: ["a"]}) == OK and ck.join({2: ["b"]}) == OK
    before = st.latest
    assert ck.do(Abandon((6, 5))) == OK
    c = st.latest
    assert (c.num, c.shards, c.groups) == (before.num + 1, before.shards, before.groups)
    assert c.abandoned == {5: c.num, 6: c.num}
    assert ck.leave([2]) == OK and ck.move(0, 1) == OK and ck.join({3: ["c"]}) == OK
    assert st.latest.abandoned == {5: c.num, 6: c.num}               # carried along
    assert ck.do(Abandon((6,))) == OK                                # again: the later number
    assert st.latest.abandoned == {5: c.num, 6: st.latest.num}
    assert st.query(c.num - 1).abandoned == {}                        # history unchanged


@pytest.mark.parametrize("op, want", [
    (Abandon(()), "shard abandon: no shards given"),
    (Abandon((10,)), "shard abandon: shard 10 is outside 0..9"),
    (Abandon((-1,)), "shard abandon: shard -1 is outside 0..9"),
    (Abandon((3, 3)), "shard abandon: shard 3 is listed twice"),
    (Abandon((3,)), "shard abandon: shard 3 is not assigned to any group in configuration 0: "
                    "nothing would serve it; join a group first"),
])
def test_bad_abandons_are_refused_and_change_nothing(st, op, want):
    assert Clerk(st).do(op) == want
    assert st.latest == Config()


def test_last_handoff_is_the_last_change_of_owner():
    cfgs = [Config(), Config(1, [1] * 10, {1: ("a",)}),
            Config(2, [1] * 5 + [2] * 5, {1: ("a",), 2: ("b",)}),
            Config(3, [1] * 10, {1: ("a",)}),
            Config(4, [1] * 10, {1: ("a",)}, {7: 4})]
    assert last_handoff(cfgs, 7) == (2, 1)          # 1 -> 2 (config 2), 2 -> 1 (config 3)
    assert last_handoff(cfgs, 0) == (0, 1)          # never moved between groups
    assert last_handoff(cfgs[:3], 7) == (1, 2)
    assert check(cfgs[-1], Abandon((7,))) is None


@settings(max_examples=200, deadline=None)
@given(hst.dictionaries(hst.integers(-5, (1 << 31) + 5),
                        hst.lists(hst.one_of(hst.text(max_size=12), hst.sampled_from(
                            ["127.0.0.1:1", "h:65535", "[::1]:7001", "h:0", "h" * 300 + ":1"])),
                            max_size=3), max_size=3),
       hst.integers(-(1 << 63), (1 << 63) - 1), hst.integers(-3, 3))
def test_admit_takes_only_valid_ids_gids_and_addresses(groups, client, command_id):
    """Random join requests: admit() answers a line or None, never raises, and admits only
    command ids >= 0, gids in 1..2^31-1 and HOST:PORT servers (issue 17)."""
    problem = admit(Command(Join(groups), client, command_id))
    assert problem is None or (isinstance(problem, str) and "\n" not in problem)
    ok = (command_id >= 0 and bool(groups) and all(
        1 <= g <= MAX_GID and servers and all(is_address(s) for s in servers)
        for g, servers in groups.items()))
    assert (problem is None) == ok, problem
