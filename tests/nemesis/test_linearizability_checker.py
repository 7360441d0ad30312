"""The checker on hand-made histories: linearizable ones are accepted; a stale read, a lost
acknowledged write, an append applied twice and a read going back in time are rejected; so are
a delete or cas whose answer no order explains."""
from __future__ import annotations

import math

import pytest

from .history import APPEND, CAS, DELETE, GET, PUT, Op
from .linearizability import check_key

U = None  # an unknown outcome


def hist(*rows) -> list[Op]:
    """rows: (kind, value_or_result, call, ret); ret None = unknown outcome.  A delete's
    value_or_result is whether it found the key; a cas's is (expected, new, swapped, found)."""
    ops = []
    for i, (kind, v, call, ret) in enumerate(rows):
        op = Op(i, f"c{i}", kind, "k", v if kind in (PUT, APPEND) else "", call=call,
                ret=math.inf if ret is None else ret, result=v if kind == GET else None,
                ok=None if ret is None else True)
        if kind == DELETE:
            op.hit = None if ret is None else v
        elif kind == CAS:
            op.expected, op.value, hit, found = v
            op.hit, op.result = (None, None) if ret is None else (hit, found)
        ops.append(op)
    return ops


def cas(expected, new, swapped=None, found=None):
    return (expected, new, swapped, found)


def ok(*rows) -> bool:
    r = check_key("k", hist(*rows))
    assert r.decided, r.detail
    return r.ok


def test_sequential_history():
    assert ok((GET, "", 0, 1), (PUT, "<a>", 2, 3), (APPEND, "<b>", 4, 5), (GET, "<a><b>", 6, 7))


def test_concurrent_writes_either_order():
    assert ok((APPEND, "<a>", 0, 10), (APPEND, "<b>", 1, 9), (GET, "<b><a>", 11, 12))
    assert ok((APPEND, "<a>", 0, 10), (APPEND, "<b>", 1, 9), (GET, "<a><b>", 11, 12))


def test_read_concurrent_with_write_may_see_either():
    assert ok((PUT, "<a>", 0, 1), (PUT, "<b>", 2, 10), (GET, "<a>", 3, 4), (GET, "<b>", 5, 6))


def test_unknown_write_may_apply_late_or_never():
    assert ok((APPEND, "<a>", 0, U), (GET, "", 1, 2), (GET, "<a>", 50, 51))
    assert ok((APPEND, "<a>", 0, U), (GET, "", 1, 2), (GET, "", 50, 51))
    assert ok((PUT, "<a>", 0, U), (APPEND, "<b>", 5, 6), (GET, "<a><b>", 7, 8))
    assert ok((PUT, "<a>", 0, U), (APPEND, "<b>", 5, 6), (GET, "<a>", 7, 8))   # put after append
    assert not ok((PUT, "<a>", 0, U), (APPEND, "<b>", 5, 6), (GET, "<b><a>", 7, 8))


def test_unknown_get_is_ignored():
    assert ok((PUT, "<a>", 0, 1), (GET, "nonsense", 2, U), (GET, "<a>", 3, 4))


def test_stale_read_rejected():
    assert not ok((PUT, "<a>", 0, 1), (PUT, "<b>", 2, 3), (GET, "<a>", 4, 5))


def test_lost_acknowledged_write_rejected():
    assert not ok((APPEND, "<a>", 0, 1), (APPEND, "<b>", 2, 3), (GET, "<a>", 4, 5))
    assert not ok((PUT, "<a>", 0, 1), (GET, "", 2, 3))


def test_append_applied_twice_rejected():
    assert not ok((APPEND, "<a>", 0, 1), (GET, "<a><a>", 2, 3))
    assert not ok((APPEND, "<a>", 0, U), (GET, "<a><a>", 2, 3))


def test_read_going_back_in_time_rejected():
    # both reads overlap the write, but the second starts after the first returned
    assert not ok((APPEND, "<a>", 0, 100), (GET, "<a>", 1, 2), (GET, "", 3, 4))


def test_unknown_write_cannot_apply_before_its_call():
    assert not ok((GET, "<a>", 0, 1), (APPEND, "<a>", 2, U))


def test_read_of_a_value_never_written_rejected():
    assert not ok((GET, "<z>", 0, 1))


def test_long_history_decided_quickly():
    """300 appends, 3 at a time, a read after every 10: decided without blowing up, and one
    missing token in one read is found."""
    def rows(drop: int | None):
        out, t, val = [], 0.0, ""
        for i in range(300):
            out.append((APPEND, f"<{i}>", t, t + 2.5))
            val += f"<{i}>"
            t += 1
            if i % 10 == 9:
                t += 3
                out.append((GET, val.replace(f"<{drop}>", "") if drop else val, t, t + 0.5))
                t += 1
        return out
    r = check_key("k", hist(*rows(None)))
    assert r.ok and r.decided, r.detail
    r = check_key("k", hist(*rows(150)))
    assert not r.ok and r.decided, r.detail


def test_wide_concurrent_appends_decided_by_the_prefix_rule():
    """8 appends at a time (the burst of the crash test), a read after every 24: the prefix
    rule keeps it small; a read missing one token or with two swapped is rejected."""
    def rows(tamper):
        out, t, val = [], 0.0, ""
        for w in range(25):
            wave = [f"<{w}.{j}>" for j in range(8)]
            for j, tok in enumerate(wave):
                out.append((APPEND, tok, t + j * 0.01, t + 1 + (7 - j) * 0.01))
            val += "".join(reversed(wave))               # any order inside a wave
            t += 2
            if w % 3 == 2:
                out.append((GET, tamper(val), t, t + 0.5))
                t += 1
        return out
    r = check_key("k", hist(*rows(lambda v: v)), max_states=200_000)
    assert r.ok and r.decided, r.detail
    r = check_key("k", hist(*rows(lambda v: v.replace("<4.3>", ""))), max_states=200_000)
    assert not r.ok and r.decided, r.detail
    r = check_key("k", hist(*rows(lambda v: v.replace("<1.0>", "<X>").replace("<4.0>", "<1.0>")
                                  .replace("<X>", "<4.0>"))), max_states=200_000)
    assert not r.ok and r.decided, r.detail


def test_a_read_missing_an_append_is_explained_by_a_put_that_may_land_late():
    """Why the short run's self-check skips appends a put may follow: with a put of unknown
    outcome (it may land at any time after its call), a read without the append is fine."""
    assert ok((PUT, "<p>", 0.0, None), (APPEND, "<a>", 1.0, 2.0), (GET, "<p>", 3.0, 4.0))
    assert not ok((PUT, "<p>", 0.0, 0.5), (APPEND, "<a>", 1.0, 2.0), (GET, "<p>", 3.0, 4.0))


def test_the_short_runs_self_check_picks_a_tamper_no_put_can_explain():
    from .history import History
    from .test_nemesis_short import tampered_copy_is_rejected
    h = History()
    # a put of unknown outcome may land after any later append: no tamper is safe to demand
    h.ops = hist((PUT, "<p>", 0.0, None), (APPEND, "<a>", 1.0, 2.0), (GET, "<p><a>", 3.0, 4.0))
    with pytest.raises(AssertionError, match="no acknowledged append was ever read back"):
        tampered_copy_is_rejected(h)
    # a put acknowledged before the append: the read without the append must be rejected
    h.ops = hist((PUT, "<p>", 0.0, 0.5), (APPEND, "<a>", 1.0, 2.0), (GET, "<p><a>", 3.0, 4.0))
    tampered_copy_is_rejected(h)


def test_delete_histories():
    assert ok((PUT, "<a>", 0, 1), (DELETE, True, 2, 3), (GET, "", 4, 5), (DELETE, False, 6, 7))
    assert ok((DELETE, False, 0, 1), (APPEND, "<a>", 2, 3), (GET, "<a>", 4, 5))
    # concurrent with the put: either order, but then the reads must agree with it
    assert ok((PUT, "<a>", 0, 10), (DELETE, False, 1, 9), (GET, "<a>", 11, 12))
    assert ok((PUT, "<a>", 0, 10), (DELETE, True, 1, 9), (GET, "", 11, 12))
    assert not ok((DELETE, True, 0, 1))                                   # nothing to find
    assert not ok((PUT, "<a>", 0, 1), (DELETE, True, 2, 3), (GET, "<a>", 4, 5))   # undone
    assert not ok((PUT, "<a>", 0, 1), (DELETE, False, 2, 3))              # it was there
    assert not ok((PUT, "<a>", 0, 10), (DELETE, True, 1, 9), (GET, "<a>", 11, 12))


def test_unknown_delete_may_apply_late_or_never():
    assert ok((PUT, "<a>", 0, 1), (DELETE, None, 2, U), (GET, "<a>", 3, 4), (GET, "", 5, 6))
    assert ok((PUT, "<a>", 0, 1), (DELETE, None, 2, U), (GET, "<a>", 3, 4))
    assert not ok((PUT, "<a>", 0, 1), (DELETE, None, 2, U), (GET, "", 3, 4), (GET, "<a>", 5, 6))
    assert not ok((PUT, "<a>", 0, 1), (GET, "", 2, 3), (DELETE, None, 4, U))   # not before its call


def test_an_unknown_write_read_by_nobody_still_counts_for_a_delete():
    """Why the unknown-write reduction is off on a key with a delete that found its key: the
    delete may have found just that write."""
    assert ok((APPEND, "<a>", 0, U), (DELETE, True, 1, 2), (GET, "", 3, 4))
    assert not ok((APPEND, "<a>", 5, U), (DELETE, True, 1, 2), (GET, "", 3, 4))


def test_cas_histories():
    assert ok((PUT, "<a>", 0, 1), (CAS, cas("<a>", "<b>", True), 2, 3), (GET, "<b>", 4, 5))
    assert ok((CAS, cas(None, "<a>", True), 0, 1), (CAS, cas(None, "<b>", False, "<a>"), 2, 3),
              (CAS, cas("<x>", "<c>", False, "<a>"), 4, 5), (GET, "<a>", 6, 7))
    assert ok((CAS, cas("<a>", "<b>", False, ""), 0, 1))                  # missing: not swapped
    # two create-if-missing at once: exactly one wins, the other finds the winner's value
    assert ok((CAS, cas(None, "<a>", True), 0, 10), (CAS, cas(None, "<b>", False, "<a>"), 1, 9))
    assert not ok((CAS, cas(None, "<a>", True), 0, 10), (CAS, cas(None, "<b>", True), 1, 9))
    assert not ok((PUT, "<a>", 0, 1), (CAS, cas("<x>", "<b>", True), 2, 3))       # wrong value
    assert not ok((PUT, "<a>", 0, 1), (CAS, cas("<a>", "<b>", False, "<a>"), 2, 3))  # it matched
    assert not ok((PUT, "<a>", 0, 1), (CAS, cas("<x>", "<b>", False, "<z>"), 2, 3))  # found what?
    assert not ok((PUT, "<a>", 0, 1), (CAS, cas("<a>", "<b>", True), 2, 3), (GET, "<a>", 4, 5))
    # a reset for the prefix rule: an append after the cas extends the cas's value
    assert ok((APPEND, "<a>", 0, 1), (CAS, cas("<a>", "<b>", True), 2, 3), (APPEND, "<c>", 4, 5),
              (GET, "<b><c>", 6, 7))


def test_unknown_cas_takes_effect_only_where_it_would_swap():
    assert ok((PUT, "<a>", 0, 1), (CAS, cas("<a>", "<b>"), 2, U), (GET, "<a>", 3, 4),
              (GET, "<b>", 5, 6))
    assert not ok((PUT, "<a>", 0, 1), (CAS, cas("<x>", "<b>"), 2, U), (GET, "<b>", 3, 4))
    assert not ok((PUT, "<a>", 0, 1), (CAS, cas(None, "<b>"), 2, U), (GET, "<b>", 3, 4))
