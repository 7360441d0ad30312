"""A node's metrics: what /metrics shows (Prometheus text format) and what NodeAdmin.Status
reports to the dashboard.

Cheap on the hot path by design:
* Raft state (term, role, commit / applied index, ...) is read from the driver when a scrape
  comes (`NodeCollector`), never pushed.
* The driver keeps plain integer counters on each Group (`proposed`, `entries_appended`,
  `entries_applied`, `elections`, `snapshots`, `leader_changes`), bumped once per round with
  the size of the round's batch -- no per-entry Python work; the collector reads them.
* One fsync histogram observation per round (`observe_fsync`), one latency observation per
  client call (`observe_request`, op "batch" for a native batch of many operations).

The registry is per process (a process is one node); tests that run services in-process only
add to it.  It also carries prometheus-client's process collector (process_cpu_seconds_total,
process_resident_memory_bytes, process_open_fds, process_start_time_seconds, ...) and
eraft_build_info{version}; the `_created` series of counters and histograms are not exported
(they double the series and no query uses them).
"""
from __future__ import annotations

from typing import Any, Iterable

import collections

from prometheus_client import (CollectorRegistry, Counter, Histogram, ProcessCollector,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from . import __version__
from .shardkv.state import STATUS_NAMES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROLES = ("Leader", "Follower", "Candidate")

disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=False)
ProcessCollector(registry=REGISTRY)

FSYNC_SECONDS = Histogram(
    "eraft_storage_write_seconds",
    "Time to write (and fsync) one driver round's WriteBatch",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY)

REQUEST_SECONDS = Histogram(
    "eraft_client_request_seconds",
    "Client requests served by this node, by operation and result (count = requests)",
    ["op", "result"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY)

OPERATIONS = Counter(
    "eraft_client_operations",
    "Client operations served by this node, by operation and result (a native batch counts each item)",
    ["op", "result"], registry=REGISTRY)

# plain mirrors for NodeAdmin.Status: "op result" -> count, and client operations in total
request_counts: dict[str, int] = {}
operations = 0


def observe_fsync(seconds: float) -> None:
    FSYNC_SECONDS.observe(seconds)


# (op, result) -> the labelled series and the request_counts key: labels() looks its child up
# under a lock on every call, and a unary call's server side is a few hundred microseconds
_REQUEST_SERIES: dict[tuple[str, str], tuple[Any, Any, str]] = {}


def observe_request(op: str, result: str, seconds: float) -> None:
    """One unary client call (eRaft's Command) served: one operation."""
    global operations
    series = _REQUEST_SERIES.get((op, result))
    if series is None:      # (op names are few; result is an err code or a refusal's words)
        series = (REQUEST_SECONDS.labels(op, result), OPERATIONS.labels(op, result),
                  f"{op} {result}")
        if len(_REQUEST_SERIES) < 256:
            _REQUEST_SERIES[(op, result)] = series
    series[0].observe(seconds)
    series[1].inc()
    request_counts[series[2]] = request_counts.get(series[2], 0) + 1
    operations += 1


_BATCH_OPS = ("put", "append", "get", "delete", "exists", "cas", "cas_absent")
_BATCH_CODES = ("OK", "ErrNoKey", "ErrWrongGroup", "Refused", "ErrMismatch")


def observe_batch(result: str, seconds: float, ops: Any, codes: Any) -> None:
    """One native batch served: the call's latency, and its items by (op, code) -- counted
    with collections.Counter (C speed), one metric update per distinct pair."""
    global operations
    REQUEST_SECONDS.labels("batch", result).observe(seconds)
    key = f"batch {result}"
    request_counts[key] = request_counts.get(key, 0) + 1
    operations += len(ops)
    if codes:
        for (op, code), n in collections.Counter(zip(ops, codes)).items():
            name = _BATCH_OPS[op] if 0 <= op < len(_BATCH_OPS) else "other"
            res = _BATCH_CODES[code] if 0 <= code < len(_BATCH_CODES) else str(code)
            OPERATIONS.labels(name, res).inc(n)
            k = f"{name} {res}"
            request_counts[k] = request_counts.get(k, 0) + n


# the Group attributes the collector reads as counters: attribute -> (metric name, help)
GROUP_COUNTERS = {
    "proposed": ("eraft_raft_proposals", "Entries proposed by this node as leader"),
    "entries_appended": ("eraft_raft_entries_appended", "Entries written to this node's log"),
    "entries_applied": ("eraft_raft_entries_applied", "Committed entries applied to the state machine"),
    "elections": ("eraft_raft_elections", "Campaigns (pre-vote or vote) this node started"),
    "snapshots": ("eraft_raft_snapshots", "Snapshots installed from the leader or sent to followers"),
    "leader_changes": ("eraft_raft_leader_changes", "Role or leader changes this node observed"),
}


def config_number(g: Any) -> int | None:
    """The configuration number group g's replica knows: the controller group's latest, or a
    shardkv group's current one; None for a group with neither."""
    state = getattr(getattr(g, "sm", None), "state", None)
    if state is None:
        return None
    if hasattr(state, "held"):
        return state.config.num
    if hasattr(state, "latest"):
        return state.latest.num
    return None


class NodeCollector(Collector):
    """Reads the driver's groups, the storage size and the shards at scrape time."""

    def __init__(self, driver: Any, store: Any) -> None:
        self.driver = driver
        self.store = store

    def collect(self) -> Iterable[Any]:
        groups = list(self.driver.groups.values())
        gauges = {
            "term": GaugeMetricFamily("eraft_raft_term", "Current Raft term", labels=["group"]),
            "commit": GaugeMetricFamily("eraft_raft_commit_index", "Commit index", labels=["group"]),
            "applied": GaugeMetricFamily("eraft_raft_applied_index", "Applied index", labels=["group"]),
            "last": GaugeMetricFamily("eraft_raft_last_index", "Last log index", labels=["group"]),
            "leader": GaugeMetricFamily("eraft_raft_leader_known",
                                        "1 when this node knows the group's leader", labels=["group"]),
            "voters": GaugeMetricFamily("eraft_raft_voters", "Voting members of the group",
                                        labels=["group"]),
            "learners": GaugeMetricFamily("eraft_raft_learners",
                                          "Learners (non-voting members catching up) of the group",
                                          labels=["group"]),
            "refused": GaugeMetricFamily("eraft_raft_refused_members",
                                         "Members whose messages this node refuses (back with an "
                                         "empty disk: to be replaced)", labels=["group"]),
            "problem": GaugeMetricFamily("eraft_raft_member_problem",
                                         "1 when this node cannot take part in the group (waiting "
                                         "to be added, or refused by its peers)", labels=["group"]),
            "config": GaugeMetricFamily("eraft_config_number",
                                        "Configuration number this replica knows (the controller "
                                        "group's latest, a shardkv group's current)",
                                        labels=["group"]),
        }
        role = GaugeMetricFamily("eraft_raft_role", "1 for this node's current role in the group",
                                 labels=["group", "role"])
        counters = {attr: CounterMetricFamily(name, help_, labels=["group"])
                    for attr, (name, help_) in GROUP_COUNTERS.items()}
        shard_keys = GaugeMetricFamily("eraft_shard_keys", "Keys in a shard held by this node",
                                       labels=["group", "shard"])
        shard_bytes = GaugeMetricFamily("eraft_shard_bytes", "Bytes of keys and values in a shard",
                                        labels=["group", "shard"])
        shard_sessions = GaugeMetricFamily("eraft_shard_sessions",
                                           "Client sessions a held shard keeps for deduplication",
                                           labels=["group", "shard"])
        ctrl_sessions = GaugeMetricFamily("eraft_controller_sessions",
                                          "Client sessions the controller group keeps for deduplication",
                                          labels=["group"])
        shard_status = GaugeMetricFamily("eraft_shard_status",
                                         "1 for a held shard's current status, 0 for the others "
                                         "(Serving, Pulling, BePulling, GCing)",
                                         labels=["group", "shard", "status"])
        for g in groups:
            gid = str(g.gid)
            st = g.node.status()
            gauges["term"].add_metric([gid], st.term)
            gauges["commit"].add_metric([gid], st.commit)
            gauges["applied"].add_metric([gid], st.applied)
            gauges["last"].add_metric([gid], st.last_index)
            gauges["leader"].add_metric([gid], 1 if st.lead >= 0 else 0)
            m = g.members
            gauges["voters"].add_metric([gid], len(m.voters))
            gauges["learners"].add_metric([gid], len(m.learners))
            gauges["refused"].add_metric([gid], len(g.refused))
            gauges["problem"].add_metric([gid], 1 if member_problem(self.driver, g) else 0)
            num = config_number(g)
            if num is not None:
                gauges["config"].add_metric([gid], num)
            name = st.role.wire_name
            for r in ROLES:
                role.add_metric([gid, r], 1 if r == name else 0)
            for attr, fam in counters.items():
                fam.add_metric([gid], getattr(g, attr, 0))
            n = controller_sessions(g)
            if n is not None:
                ctrl_sessions.add_metric([gid], n)
            for shard, status, keys, nbytes, sessions in held_shards(g):
                shard_keys.add_metric([gid, str(shard)], keys)
                shard_bytes.add_metric([gid, str(shard)], nbytes)
                shard_sessions.add_metric([gid, str(shard)], sessions)
                for s in STATUS_NAMES:
                    shard_status.add_metric([gid, str(shard), s], 1 if s == status else 0)
        yield from gauges.values()
        yield role
        yield from counters.values()
        yield shard_keys
        yield shard_bytes
        yield shard_sessions
        yield ctrl_sessions
        yield shard_status
        size = GaugeMetricFamily("eraft_storage_bytes", "Size of this node's RocksDB on disk")
        size.add_metric([], self.store.size_bytes())
        yield size
        build = GaugeMetricFamily("eraft_build_info", "eraftd's version (the value is always 1)",
                                  labels=["version"])
        build.add_metric([__version__], 1)
        yield build


def member_problem(driver: Any, g: Any) -> str:
    """Why this node cannot take part in group g ("" if it can): refused by its peers (it came
    back with an empty disk), removed from the group, or waiting to be added."""
    if getattr(driver, "problem", ""):
        return driver.problem
    if getattr(g, "problem", ""):
        return g.problem
    if getattr(g, "members_problem", ""):
        return g.members_problem
    if getattr(g, "waiting", False):
        if g.me >= 0 and g.me not in g.members.addrs and g.node.conf_state.voters:
            return "removed from the group: it serves nothing for it (stop this node)"
        return "waiting to be added to the group (eraftd member add)"
    return ""


def held_shards(g: Any) -> list[tuple[int, str, int, int, int]]:
    """(shard, status, keys, bytes, sessions) of every shard a shardkv group's replica holds;
    [] otherwise."""
    state = getattr(getattr(g, "sm", None), "state", None)
    if state is None or not hasattr(state, "held"):
        return []
    return [(i, STATUS_NAMES[state.shards[i].status], state.shards[i].keys, state.shards[i].bytes,
             len(state.shards[i].sessions)) for i in state.held()]


def controller_sessions(g: Any) -> int | None:
    """The sessions of the controller group's state machine; None for other groups."""
    state = getattr(getattr(g, "sm", None), "state", None)
    if state is None or hasattr(state, "held") or not isinstance(getattr(state, "sessions", None), dict):
        return None
    return len(state.sessions)


def install(driver: Any, store: Any) -> None:
    """Register the node's collector (once per process)."""
    REGISTRY.register(NodeCollector(driver, store))


def exposition() -> bytes:
    return generate_latest(REGISTRY)


def readiness(driver: Any) -> tuple[bool, list[str]]:
    """/readyz's rule: ready when, for every group this node hosts, (1) a leader is known in
    the current term, and (2) this node has applied everything it knows to be committed
    (applied >= the commit index its last round knew: one stepped in since is applied by the
    next round, and is no lag).  A follower learns the commit index from the leader's appends and
    heartbeats, so (2) means it has caught up with the leader's last known commit.  Returns
    (ready, one reason per group that is not)."""
    problems = []
    for g in driver.groups.values():
        st = g.node.status()
        why = member_problem(driver, g)
        if why:
            problems.append(f"{g.name}: {why}")
        elif st.lead < 0:
            problems.append(f"{g.name}: no leader known (term {st.term}, {st.role.wire_name.lower()})")
        elif st.applied < getattr(g, "round_commit", st.commit):
            problems.append(f"{g.name}: applied {st.applied} < commit {g.round_commit} "
                            f"(catching up)")
    return not problems, problems
