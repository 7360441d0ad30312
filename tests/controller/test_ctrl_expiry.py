"""The controller's sessions expire (eraftd/sessions.py): stamped commands fed to the machine,
persistence of the last use and the clock, a snapshot that expires the same, the service's
stamps."""
from __future__ import annotations

from test_ctrl_machine import Replica

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
