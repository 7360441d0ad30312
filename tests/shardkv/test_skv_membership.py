"""A shardkv group changes its replicas under a write load, with real processes: grow 3 -> 5
(two nodes started with `join = true`, added and promoted), shrink 5 -> 3 (two of the founders
removed, the leader among them), with nothing acknowledged lost; the controller's server list
for the gid follows the group's voters, so clients route to the new replicas.
"""
from __future__ import annotations

import threading

import pytest

from eraftd import Client
from eraftd.testing import change_member, leader_of, wait_caught_up, wait_for

from skv_support import sharded  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

GID = 101


class Writer(threading.Thread):
    """Puts unique keys one after another; remembers the acknowledged ones."""

    def __init__(self, controllers: list[str]) -> None:
        super().__init__(daemon=True)
        self.controllers = controllers
        self.acked: dict[str, str] = {}
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with Client(self.controllers, timeout=30) as kv:
            i = 0
            while not self.stop.is_set():
                k, v = f"k{i:05d}", f"v{i}"
                try:
                    kv.put(k, v)
                    self.acked[k] = v
                except Exception as e:  # noqa: BLE001 - an unknown outcome is allowed, not a loss
                    self.errors.append(f"{k}: {e}")
                i += 1


def servers_listed(c, kv) -> tuple[str, ...]:
    return tuple(kv.query().groups.get(GID, ()))


def test_grow_to_five_and_shrink_to_three_under_writes(sharded):
    c = sharded(gids=(GID,)).start()
    ctrl = c.controller_addresses()
    nodes = lambda: c.group(GID)  # noqa: E731
    with Client(ctrl, timeout=30) as kv:
        kv.join({GID: c.addresses(GID)})
        w = Writer(ctrl)
        w.start()
        try:
            wait_for(lambda: len(w.acked) >= 50, 60, "the writer to get going")
            # grow: 3 -> 5
            for _ in range(2):
                n = c.add_replica(GID).start().wait_serving()
                r = change_member(nodes, GID, "add", n.address)
                wait_caught_up(nodes, GID, n.address)
                change_member(nodes, GID, "promote", node_id=r.node_id)
            five = tuple(x.address for x in c.group(GID))
            wait_for(lambda: servers_listed(c, kv) == five, 60,
                     "the controller to list the five voters")
            # shrink: 5 -> 3, the leader first
            ld = wait_for(lambda: leader_of(nodes(), GID), 60, "a leader")
            gone = [ld] + [x for x in c.group(GID)[:3] if x is not ld][:1]
            for x in gone:
                change_member(nodes, GID, "remove", x.address)
            three = tuple(x.address for x in c.group(GID) if x not in gone)
            wait_for(lambda: servers_listed(c, kv) == three, 60,
                     "the controller to list the three voters left")
            for x in gone:   # they serve nothing for the group now
                x.kill()
            before = len(w.acked)
            wait_for(lambda: len(w.acked) >= before + 30, 60, "writes after the shrink")
        finally:
            w.stop.set()
            w.join(60)
    # every acknowledged write is there, read by a fresh client
    with Client(ctrl, timeout=30) as kv2:
        missing = {k: v for k, v in w.acked.items() if kv2.get(k) != v.encode()}
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {list(missing.items())[:3]}"
    assert len(w.acked) > 100


def test_add_a_fourth_controller_peer_and_remove_one(sharded):
    from eraftd.testing import Node, free_port
    c = sharded(gids=(GID,)).start()
    ctrl = c.controller_addresses()
    ctrls = lambda: c.controllers  # noqa: E731
    with Client(ctrl, timeout=30) as kv:
        kv.join({GID: c.addresses(GID)})
        kv.put("before", "1")
        base = c.controllers[0].config
        addr = f"127.0.0.1:{free_port()}"
        n = Node("c3", c.base, {"node": {**base["node"], "listen": addr},
                                "controller": {"peers": ctrl, "join": True},
                                "raft": base["raft"], "log": base["log"]})
        c.controllers.append(n)
        n.start().wait_serving()
        r = change_member(ctrls, 0, "add", addr)
        wait_caught_up(ctrls, 0, addr)
        change_member(ctrls, 0, "promote", node_id=r.node_id)
        # the new peer answers queries with the whole history
        with Client([addr], timeout=30) as only_new:
            assert only_new.query().groups[GID] == tuple(c.addresses(GID))
        # remove a founder (the leader), stop it; the others carry on, the new one included
        ld = wait_for(lambda: leader_of(ctrls(), 0), 60, "a controller leader")
        change_member(ctrls, 0, "remove", ld.address)
        ld.kill()
        kv.put("after", "2")
        assert kv.get("before") == b"1" and kv.get("after") == b"2"
    # the three peers left (the new one among them) commit a configuration change
    with Client([x.address for x in c.controllers if x is not ld], timeout=30) as kv2:
        before = kv2.query()
        after = kv2.join({202: ["127.0.0.1:9"]}, force=True)
        assert after.num == before.num + 1 and 202 in kv2.query().groups
