"""Property tests of rebalancing and of applying command sequences (hypothesis)."""
from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from eraftd.controller.state import (NSHARDS, OK, Command, ControllerState, Join, Leave, Move,
                                     SetServers, check, next_config, rebalance)

GIDS = st.integers(min_value=1, max_value=20)
OWNERS = st.integers(min_value=0, max_value=25)       # includes 0 and gids that are not live


def fewest_moves(shards, gids) -> int:
    """The fewest shards any balanced assignment over `gids` must move (computed apart from
    rebalance): groups keep up to `base`, and `extra` of those holding more keep one more."""
    if not gids:
        return sum(1 for g in shards if g != 0)
    base, extra = divmod(len(shards), len(gids))
    counts = Counter(shards)
    kept = sum(min(counts[g], base) for g in gids)
    kept += min(extra, sum(1 for g in gids if counts[g] > base))
    return len(shards) - kept


@settings(max_examples=500, deadline=None)
@given(shards=st.lists(OWNERS, min_size=NSHARDS, max_size=NSHARDS),
       gids=st.sets(GIDS, max_size=14), data=st.data())
def test_rebalance_is_balanced_minimal_and_deterministic(shards, gids, data):
    out = rebalance(shards, gids)
    assert len(out) == NSHARDS
    if not gids:
        assert out == (0,) * NSHARDS
        return
    assert all(g in gids for g in out)
    counts = Counter(out)
    loads = [counts[g] for g in gids]
    assert max(loads) - min(loads) <= 1
    moved = sum(1 for a, b in zip(shards, out) if a != b)
    assert moved == fewest_moves(shards, gids)
    # a shard only moves away from a dead owner or from a group over its share
    for s, (a, b) in enumerate(zip(shards, out)):
        if a != b and a in gids:
            assert Counter(shards)[a] > NSHARDS // len(gids)
    # the same answer whatever the order the groups come in
    order = data.draw(st.permutations(sorted(gids)))
    assert rebalance(list(shards), order) == out
    assert rebalance(tuple(shards), iter(order)) == out


def any_op():
    """Any operation on a few gids, valid or not."""
    gid = st.integers(-1, 6)
    servers = st.sampled_from([("x",), (), ("",)])
    return st.one_of(
        st.dictionaries(gid, servers, max_size=3).map(Join),
        st.lists(gid, max_size=2).map(lambda g: Leave(tuple(g))),
        st.builds(Move, st.integers(-1, NSHARDS), gid),
        st.builds(SetServers, gid, st.sampled_from([("x",), (), ("",), ("x", "x"), ("y", "z")])),
    )


def likely_op(data, cfg):
    """Mostly operations that apply to `cfg` (joins of new gids, leaves and moves of present
    ones), sometimes anything at all."""
    present = sorted(cfg.groups)
    kind = data.draw(st.sampled_from(["join", "join", "leave", "move", "set", "any"]))
    if kind == "join":
        gids = data.draw(st.lists(st.integers(1, 15), min_size=1, max_size=3))
        return Join({g: cfg.groups.get(g, (f"s{g}", "t")) for g in gids})
    if kind == "leave" and present:
        gids = data.draw(st.lists(st.sampled_from(present), min_size=1, max_size=2, unique=True))
        return Leave(tuple(gids))
    if kind == "move" and present:
        return Move(data.draw(st.integers(0, NSHARDS - 1)), data.draw(st.sampled_from(present)))
    if kind == "set" and present:
        gid = data.draw(st.sampled_from(present))
        return SetServers(gid, data.draw(st.sampled_from([cfg.groups[gid], (f"s{gid}",), (f"n{gid}", "t")])))
    return data.draw(any_op())


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(0, 40))
def test_apply_keeps_every_invariant(data, n):
    st_ = ControllerState()
    last: dict[int, int] = {}
    for _ in range(n):
        op = likely_op(data, st_.latest)
        client = data.draw(st.integers(0, 3))
        # mostly the client's next id; sometimes a retry or an older one
        cid = last[client] = last.get(client, 0) + data.draw(st.sampled_from([1, 1, 1, 0, -1]))
        before = st_.latest
        prior = st_.sessions.get(client)
        duplicate = client != 0 and prior is not None and cid <= prior.command_id
        err = check(before, op, st_.servers_of)
        r = st_.apply(Command(op, client, cid))
        latest = st_.latest
        if duplicate:
            assert r.config is None and latest is before
            assert r.err == (prior.err if cid == prior.command_id else OK)
            continue
        assert r.err == (err or OK)
        assert r.num == latest.num
        if err:                                   # refused: nothing changed
            assert latest is before and r.config is None
            assert "\n" not in err
        else:
            want = next_config(before, op)
            assert (r.config is None) == (want is None)
            if want is not None:
                assert latest == want and latest.num == before.num + 1
                moved = sum(1 for a, b in zip(before.shards, latest.shards) if a != b)
                if isinstance(op, Move):
                    assert moved == 1
                elif isinstance(op, SetServers):      # same shards, one gid's servers changed
                    assert moved == 0 and latest.groups == {**before.groups, op.gid: op.servers}
                    assert before.groups[op.gid] != op.servers
                else:                             # balanced over live groups, fewest moves
                    counts = Counter(latest.shards)
                    loads = [counts[g] for g in latest.groups] or [0]
                    assert max(loads) - min(loads) <= 1
                    assert all(g in latest.groups for g in latest.shards) or not latest.groups
                    assert moved == fewest_moves(before.shards, sorted(latest.groups))
        if client:
            assert st_.sessions[client].command_id == cid
        # the servers a gid keeps are the ones of the last configuration it was in
        assert st_.servers_of == {g: s for c in st_.configs for g, s in c.groups.items()}
    assert [c.num for c in st_.configs] == list(range(len(st_.configs)))


@settings(max_examples=200, deadline=None)
@given(groups=st.dictionaries(st.integers(1, 30), st.just(("s",)), min_size=1, max_size=12),
       data=st.data())
def test_join_result_does_not_depend_on_dict_order(groups, data):
    a, b = ControllerState(), ControllerState()
    order = data.draw(st.permutations(sorted(groups)))
    a.apply(Command(Join(groups)))
    b.apply(Command(Join({g: groups[g] for g in order})))
    assert a.latest == b.latest
    leave = data.draw(st.lists(st.sampled_from(sorted(groups)), unique=True, min_size=1))
    a.apply(Command(Leave(tuple(leave))))
    b.apply(Command(Leave(tuple(reversed(leave)))))
    assert a.latest == b.latest
