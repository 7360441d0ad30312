"""Admission's bookkeeping (eraftd/node/admission.py), without a server: the budgets per
connection and per node, the refusals' words, and the connection cap's arithmetic."""
from __future__ import annotations

import logging
import resource

from eraftd.node import admission
from eraftd.node.admission import Admission, ConnectionBudget, ConnectionWatch, MiB

A, B = "ipv4:127.0.0.1:1000", "ipv4:127.0.0.1:2000"


def test_requests_are_admitted_while_both_budgets_hold():
    adm = Admission(max_bytes=64 * MiB, per_connection=32 * MiB)
    assert adm.admit(A, 20 * MiB) == ("", False)
    why, busy = adm.admit(A, 20 * MiB)              # A's connection would hold 40 MiB
    assert busy and why.startswith("node busy: 20 MiB of requests in flight on this connection")
    assert "[node] max_inflight_bytes_per_connection" in why and why.endswith("retry after a pause")
    assert adm.admit(B, 30 * MiB) == ("", False)
    why, busy = adm.admit("ipv4:127.0.0.1:3000", 20 * MiB)   # the node would hold 70 MiB
    assert busy and "50 MiB of requests in flight (limit 64 MiB, [node] max_inflight_bytes)" in why
    adm.release(A, 20 * MiB)
    assert adm.admit("ipv4:127.0.0.1:3000", 20 * MiB) == ("", False)
    assert adm.inflight == 50 * MiB and A not in adm.by_connection
    assert adm.refused_busy == 2 and adm.refused_too_big == 0


def test_a_request_bigger_than_a_connections_budget_is_refused_for_good():
    adm = Admission(max_bytes=64 * MiB, per_connection=32 * MiB)
    why, busy = adm.admit(A, 60 * MiB)
    assert not busy and why == ("a request of 60 MiB is more than this node takes from one "
                                "connection (32 MiB, [node] max_inflight_bytes_per_connection); "
                                "send smaller batches")
    assert adm.inflight == 0 and adm.refused_too_big == 1


def test_busy_is_logged_once_a_minute(caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(admission.time, "monotonic", lambda: now[0])
    adm = Admission(max_bytes=2 * MiB, per_connection=2 * MiB)
    adm.admit(A, 2 * MiB)
    with caplog.at_level(logging.WARNING, "eraftd.admission"):
        for _ in range(5):
            adm.admit(B, MiB)
        now[0] += 61
        adm.admit(B, MiB)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("refusing client requests: node busy")
    assert lines[1].endswith("(4 more since the last line)")


def test_the_connection_cap_keeps_a_reserve_below_the_open_file_limit(monkeypatch):
    reserve = admission.STORAGE_RESERVE + admission.NODE_RESERVE
    monkeypatch.setattr(admission, "raise_descriptor_limit", lambda: 1024)
    assert admission.connection_budget(0) == ConnectionBudget(1024 - reserve, 1024, reserve)
    assert admission.connection_budget(100).cap == 100
    assert admission.connection_budget(5000).cap == 1024 - reserve
    monkeypatch.setattr(admission, "raise_descriptor_limit", lambda: 256)
    too_low = admission.connection_budget(0)
    assert isinstance(too_low, str) and too_low.startswith("the open-file limit of 256 descriptors")
    assert "raise it (e.g. ulimit -n 4096)" in too_low


def test_the_soft_limit_is_raised_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))
        got = admission.raise_descriptor_limit()
        assert got == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert hard == resource.RLIM_INFINITY or got == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_watch_logs_the_cap_once_a_minute(caplog, monkeypatch):
    now, open_now = [1000.0], [10]
    monkeypatch.setattr(admission.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(admission, "open_connections", lambda listen: open_now[0])
    monkeypatch.setattr(admission, "_open_descriptors", lambda: 20)
    watch = ConnectionWatch("127.0.0.1:7001", ConnectionBudget(10, 1024, 416), 300_000)
    with caplog.at_level(logging.WARNING, "eraftd.admission"):
        for _ in range(3):
            watch.look()
        now[0] += 61
        open_now[0] = 9
        watch.look()                   # below the cap: nothing
        open_now[0] = 10
        watch.look()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and watch.hits == 4
    assert lines[0].startswith("connection cap reached: 10 connections open on 127.0.0.1:7001, "
                               "the cap is 10 ([node] max_connections; open-file limit 1024")
