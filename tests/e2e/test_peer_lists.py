"""Peer lists that disagree (issue 17, item 8) with real processes.

A member's id is its position in the group's founding list (the TOML's peers), so a node whose
TOML lists the same peers in another order, or a node of another cluster whose TOML lists one
of ours, would take messages for another member's.  Every stream carries the sender's founding
lists; a group whose list differs refuses the sender's messages with one line naming both lists
(once per peer per minute), the refused node's status says why, and the group goes on."""
from __future__ import annotations

import pytest

from eraftd.config import dump_toml
from eraftd.testing import Cluster, Node, free_port, wait_for

pytestmark = pytest.mark.e2e

CTRL = 0


def differ_line(theirs: list[str], sender: str, ours: list[str], receiver: str) -> str:
    return (f"the founding members of controller differ: {sender} lists {theirs}, {receiver} "
            f"lists {ours}")


def test_a_node_that_lists_the_peers_in_another_order_is_refused_naming_both_lists(tmp_path):
    c = Cluster(tmp_path, n=3)
    try:
        addrs = [n.address for n in c.nodes]
        odd = c.nodes[2]
        wrong = [addrs[1], addrs[0], addrs[2]]
        odd.config["controller"]["peers"] = wrong
        odd.toml.write_text(dump_toml(odd.config))
        c.start()
        leader = c.wait_leader()
        assert leader is not odd
        line = differ_line(wrong, odd.address, addrs, leader.address)
        wait_for(lambda: line in leader.log_text(), 60, "the leader to refuse the odd node")
        wait_for(lambda: "refused by" in (odd.group_status(CTRL).problem or ""), 60,
                 "the odd node's status to say why it is refused")
        problem = odd.group_status(CTRL).problem
        assert f"lists {wrong}" in problem and f"lists {addrs}" in problem, problem
        # the two that agree go on; the odd one applies nothing of theirs
        last = c.propose(CTRL, [b"k=v"]).index
        c.wait_applied(CTRL, last, nodes=[n for n in c.nodes if n is not odd])
        assert odd.group_status(CTRL).last_applied < last
        assert any(line in r for r in leader.group_status(CTRL).refused)
        # one line per peer per minute, whatever the number of messages refused
        assert leader.log_text().count(f"refusing {odd.address}: {line}") == 1
        wait_for(lambda: f"this node is refused by {leader.address}: {line}" in odd.log_text(), 60,
                 "the odd node to log why it is refused")
        assert odd.log_text().count(f"this node is refused by {leader.address}: {line}") == 1
        for n in c.nodes:
            assert n.running() and "Traceback" not in n.log_text()
    finally:
        c.close()


def test_a_node_of_another_cluster_that_lists_ours_is_refused(tmp_path):
    c = Cluster(tmp_path, n=3)
    stray = None
    try:
        c.start()
        leader = c.wait_leader()
        victim = next(n for n in c.nodes if n is not leader)
        addr = f"127.0.0.1:{free_port()}"
        stray = Node("stray", tmp_path, {
            "node": {"listen": addr, "data_dir": "data", "testing": True},
            "controller": {"peers": [addr, victim.address]},
            "raft": {"heartbeat_ms": 50, "election_ms": 500}}, ["--test-state-machine", "register"])
        stray.start().wait_serving(60)
        ours = [n.address for n in c.nodes]
        line = differ_line([addr, victim.address], addr, ours, victim.address)
        wait_for(lambda: line in victim.log_text(), 60, "the victim to refuse the stray node")
        wait_for(lambda: "refused by" in (stray.group_status(CTRL).problem or ""), 60,
                 "the stray node's status to say why")
        assert c.wait_leader() is leader
        assert victim.group_status(CTRL).term == leader.group_status(CTRL).term
        last = c.propose(CTRL, [b"k=v"]).index
        c.wait_applied(CTRL, last)
        assert victim.log_text().count(line) == 1
    finally:
        if stray is not None:
            stray.kill()
        c.close()
