"""The controller's sessions expire (eraftd/sessions.py): stamped commands fed to the machine,
persistence of the last use and the clock, a snapshot that expires the same, the service's
stamps."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from ctrl_support import CTRL, addresses, cluster, stored_state  # noqa: F401
from test_ctrl_machine import Replica

from eraftd.controller.client import ControllerClient
from eraftd.controller.state import NSHARDS
from eraftd.metrics import sessions_expired
from eraftd.testing import wait_for

from eraftd.controller.machine import encode_command
from eraftd.controller.state import OK, Command, Join, Move
from eraftd.sessions import AppliedClock, stamp_entry

TTL = 10_000
T0 = 1_700_000_000_000


def cmd(client: int, cid: int, op=None, at: int | None = None) -> bytes:
    entry = encode_command(Command(op or Move(0, 1), client, cid))
    return entry if at is None else stamp_entry(at, TTL, entry)


def test_idle_controller_sessions_expire_on_apply_and_after_a_restart_or_a_snapshot(tmp_path):
    a = Replica(tmp_path / "a")
    a.round([cmd(0, 0, Join({1: ("h:1",)})), cmd(7, 1, at=T0), cmd(8, 1, at=T0)])   # unstamped first
    assert a.round([cmd(7, 1, at=T0 + 6000)])[0].err == OK          # a duplicate: a use
    assert a.sm.state.sessions[7].last_used == T0 + 6000
    a.round([cmd(9, 1, at=T0 + TTL + 1)])                           # 8 idle longer than ttl
    st = a.sm.state
    assert set(st.sessions) == {7, 9} and st.expired == 1
    assert st.clock == AppliedClock(T0 + TTL + 1, T0)
    assert sessions_expired(SimpleNamespace(sm=a.sm)) == 1      # eraft_sessions_expired_total{group="0"}
    a.reopen()
    assert a.sm.state.sessions == st.sessions and list(a.sm.state.sessions) == [7, 9]
    assert a.sm.state.clock == st.clock
    b = Replica(tmp_path / "b")
    b.install_snapshot_from(a)
    assert b.sm.state.sessions == a.sm.state.sessions
    late = [cmd(9, 2, at=T0 + 6000 + TTL + 1)]                      # 7 goes too, on both
    a.round(late)
    b.round(late)
    assert set(a.sm.state.sessions) == set(b.sm.state.sessions) == {9}
    # a clock going back changes nothing: 7 is not revived, 9 is used at the max
    a.round([cmd(9, 3, at=T0)])
    assert a.sm.state.sessions[9].last_used == T0 + 6000 + TTL + 1 and 7 not in a.sm.state.sessions
    a.store.close()
    b.store.close()


def test_sessions_recorded_before_expiry_read_as_used_at_the_first_stamp(tmp_path):
    a = Replica(tmp_path / "a")
    a.round([cmd(0, 0, Join({1: ("h:1",)})), cmd(7, 1)])             # no stamps yet
    a.reopen()
    assert a.sm.state.sessions[7].last_used == 0
    a.round([cmd(8, 1, at=T0), cmd(8, 2, at=T0 + TTL)])
    assert 7 in a.sm.state.sessions                                  # counts as used at T0
    a.round([cmd(8, 3, at=T0 + TTL + 1)])
    assert 7 not in a.sm.state.sessions
    a.store.close()


@pytest.mark.e2e
async def test_controller_sessions_expire_alike_on_every_peer(cluster):  # noqa: F811
    """Three real controller peers with a 1 s ttl: a client that went away loses its session
    once another's commands have moved the clock past it, on every peer, which then hold the
    same sessions and clock (read from each data_dir at one applied index)."""
    c = cluster(controller={"session_ttl_ms": 1000}).start()
    addrs = addresses(c)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    async with ControllerClient(addrs) as gone:
        await gone.join({1: ("x:1",)}, force=True)
    async with ControllerClient(addrs) as busy:
        await busy.join({2: ("x:2",)}, force=True)

        async def sessions() -> int:
            return max(s.sessions for s in await asyncio.gather(*(busy.status(a, timeout=5)
                                                                   for a in addrs)))
        n = 0
        while await sessions() > 1:
            assert loop.time() < deadline, "the gone client's session never expired"
            n += 1
            await busy.move(n % NSHARDS, 1 + n % 2)
            await asyncio.sleep(0.05)           # pacing: one command per 50 ms until it expires
        assert n > 5                            # it lived a while (the ttl is 1 s)

    def same_index():
        applied = {n.group_status(CTRL, timeout=5).last_applied for n in c.nodes}
        return len(applied) == 1
    await asyncio.to_thread(wait_for, same_index, 60, "the peers to apply the same index")
    for node in c.nodes:
        await asyncio.to_thread(node.stop)
    states = [stored_state(node) for node in c.nodes]
    assert all(s.sessions == states[0].sessions and s.clock == states[0].clock for s in states)
    assert list(states[0].sessions) == [busy.client_id]
