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
* Per-operation latency (`eraft_client_operation_seconds{op}`: count = operations, a native
  batch's items each observed with the batch's latency) is counted in plain lists, one bisect
  per distinct op of a call (`OperationLatency`), and exposed by a collector.
* Peer transport counters are plain ints on the Transport, bumped once per batch
  (`TransportCollector` reads them).

The registry is per process (a process is one node); tests that run services in-process only
add to it.  It also carries prometheus-client's process collector (process_cpu_seconds_total,
process_resident_memory_bytes, process_open_fds, process_start_time_seconds, ...) and
eraft_build_info{version}; the `_created` series of counters and histograms are not exported
(they double the series and no query uses them).
"""
from __future__ import annotations

from typing import Any, Iterable

import bisect
import collections
import math

from prometheus_client import (CollectorRegistry, Counter, Histogram, ProcessCollector,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
    OPERATION_SECONDS.observe(op, seconds)
    series[1].inc()
    request_counts[series[2]] = request_counts.get(series[2], 0) + 1
    operations += 1


_BATCH_OPS = ("put", "append", "get", "delete", "exists", "cas", "cas_absent")
_BATCH_CODES = ("OK", "ErrNoKey", "ErrWrongGroup", "Refused", "ErrMismatch", "SessionExpired")


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
            name = _batch_op(op)
            res = _BATCH_CODES[code] if 0 <= code < len(_BATCH_CODES) else str(code)
            OPERATIONS.labels(name, res).inc(n)
            OPERATION_SECONDS.observe(name, seconds, n)
            k = f"{name} {res}"
            request_counts[k] = request_counts.get(k, 0) + n
    else:               # refused as a whole (not the leader, malformed): each item answered
        for op, n in collections.Counter(ops).items():
            OPERATION_SECONDS.observe(_batch_op(op), seconds, n)


def _batch_op(op: int) -> str:
    return _BATCH_OPS[op] if 0 <= op < len(_BATCH_OPS) else "other"


# ---------------------------------------------------------------- per-operation latency, transport
# (issue 15: eraft_client_operation_seconds, latency_snapshot, eraft_transport_*)

OPERATION_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                     1.0, 2.5, 5.0)


class OperationLatency:
    """A histogram by op whose observe(op, seconds, n) counts n operations of one latency in one
    bisect: prometheus_client's Histogram would take n observe() calls (~0.6 us each; at 30k
    ops/s in batches of 100 that is 300x the work).  Bucket semantics are Prometheus' (le)."""

    def __init__(self, bounds: tuple[float, ...] = OPERATION_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts: dict[str, list[int]] = {}    # op -> per-bucket counts (not cumulative), +Inf last
        self.sums: dict[str, float] = {}

    def observe(self, op: str, seconds: float, n: int = 1) -> None:
        c = self.counts.get(op)
        if c is None:
            c = self.counts[op] = [0] * (len(self.bounds) + 1)
            self.sums[op] = 0.0
        c[bisect.bisect_left(self.bounds, seconds)] += n
        self.sums[op] += seconds * n

    def snapshot(self) -> dict[str, tuple[tuple[float, ...], list[int], float]]:
        """op -> (upper bounds, +Inf last; cumulative counts, one per bound; sum of seconds)."""
        bounds = self.bounds + (math.inf,)
        out = {}
        for op, c in self.counts.items():
            acc, cum = 0, []
            for x in c:
                acc += x
                cum.append(acc)
            out[op] = (bounds, cum, self.sums[op])
        return out


OPERATION_SECONDS = OperationLatency()


def latency_snapshot() -> dict[str, tuple[tuple[float, ...], list[int], float]]:
    """eraft_client_operation_seconds now: op -> (bucket upper bounds with +Inf last, cumulative
    counts (the last = operations), sum of seconds).  Quantiles as Prometheus computes them:
    `quantile()`."""
    return OPERATION_SECONDS.snapshot()


def quantile(q: float, bounds: tuple[float, ...], cumulative: list[int]) -> float | None:
    """histogram_quantile(q) over one op's buckets (linear inside a bucket, as Prometheus does;
    the highest finite bound when it falls in +Inf); None without observations."""
    total = cumulative[-1] if cumulative else 0
    if total == 0:
        return None
    rank = q * total
    i = bisect.bisect_left(cumulative, rank)
    if i >= len(bounds) - 1:
        return bounds[-2] if len(bounds) > 1 else None
    lo = bounds[i - 1] if i > 0 else 0.0
    below = cumulative[i - 1] if i > 0 else 0
    inside = cumulative[i] - below
    return lo + (bounds[i] - lo) * ((rank - below) / inside if inside else 0.0)


class OperationCollector(Collector):
    """Exposes OPERATION_SECONDS as the histogram eraft_client_operation_seconds{op}."""

    def collect(self) -> Iterable[Any]:
        fam = HistogramMetricFamily(
            "eraft_client_operation_seconds",
            "Client operations served by this node, by operation (count = operations; each item "
            "of a native batch is observed with its batch's latency)", labels=["op"])
        for op, (bounds, cum, total) in sorted(latency_snapshot().items()):
            fam.add_metric([op], [(floatToGoString(b), c) for b, c in zip(bounds, cum)], total)
        yield fam


REGISTRY.register(OperationCollector())


class TransportCollector(Collector):
    """The node's peer transport counters (eraftd/node/transport.py), by peer address."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def collect(self) -> Iterable[Any]:
        peer = ["peer"]
        sent_msgs = CounterMetricFamily("eraft_transport_sent_messages",
                                        "Raft messages sent to a peer", labels=peer)
        sent_bytes = CounterMetricFamily("eraft_transport_sent_bytes",
                                         "Bytes of message batches sent to a peer", labels=peer)
        dropped = CounterMetricFamily("eraft_transport_dropped_messages",
                                      "Raft messages to a peer dropped (its queue full, or lost "
                                      "with a failed write)", labels=peer)
        reconnects = CounterMetricFamily("eraft_transport_reconnects",
                                         "Streams to a peer opened again after the first",
                                         labels=peer)
        failures = CounterMetricFamily("eraft_transport_failures",
                                       "Failed connects to a peer and broken streams", labels=peer)
        connected = GaugeMetricFamily("eraft_transport_connected",
                                      "1 while the stream to a peer is open", labels=peer)
        recv_msgs = CounterMetricFamily("eraft_transport_received_messages",
                                        "Raft messages received from a peer", labels=peer)
        recv_bytes = CounterMetricFamily("eraft_transport_received_bytes",
                                         "Bytes of message batches received from a peer",
                                         labels=peer)
        for st in self.transport.stats():
            sent_msgs.add_metric([st.addr], st.sent_msgs)
            sent_bytes.add_metric([st.addr], st.sent_bytes)
            dropped.add_metric([st.addr], st.dropped)
            reconnects.add_metric([st.addr], st.reconnects)
            failures.add_metric([st.addr], st.failures)
            connected.add_metric([st.addr], 1 if st.connected else 0)
        for addr, rx in list(self.transport.received.items()):
            recv_msgs.add_metric([addr], rx.msgs)
            recv_bytes.add_metric([addr], rx.bytes)
        yield from (sent_msgs, sent_bytes, dropped, reconnects, failures, connected, recv_msgs,
                    recv_bytes)


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
        expired = CounterMetricFamily("eraft_sessions_expired",
                                      "Client sessions this replica dropped, idle longer than "
                                      "session_ttl_ms, since it started", labels=["group"])
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
            n = sessions_expired(g)
            if n is not None:
                expired.add_metric([gid], n)
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
        yield expired
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


def sessions_expired(g: Any) -> int | None:
    """The sessions group g's state machine dropped as expired (ShardKVState.expired,
    ControllerState.expired); None for a group without sessions."""
    n = getattr(getattr(getattr(g, "sm", None), "state", None), "expired", None)
    return n if isinstance(n, int) else None


def install(driver: Any, store: Any) -> None:
    """Register the node's collector (once per process)."""
    REGISTRY.register(NodeCollector(driver, store))
    if getattr(driver, "transport", None) is not None and hasattr(driver.transport, "received"):
        REGISTRY.register(TransportCollector(driver.transport))


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


# ---------------------------------------------------------------- dashboard: latency, process, migrations
# What NodeAdmin.Status adds for `eraftd dashboard` (node/admin.py) and the migration counters.

MIGRATION_KEYS = Counter(
    "eraft_migration_keys",
    "Keys of shards moved between groups: direction in (pulled and inserted here) or out "
    "(sent to a puller; a chunk sent again after a lost answer counts again)",
    ["shard", "direction"], registry=REGISTRY)
MIGRATION_BYTES = Counter(
    "eraft_migration_bytes",
    "Bytes (keys' and values') of shards moved between groups, by direction (see "
    "eraft_migration_keys_total)", ["shard", "direction"], registry=REGISTRY)

_PROCESS = ProcessCollector(registry=None)   # the same reader as /metrics' process_* series
MIGRATIONS_KEPT = 20                          # finished pulls still reported, the latest ones

# (gid, shard) -> MigrationProgress fields (a dict), the pulls this node led; see migration_progress
migrations: dict[tuple[int, int], dict[str, Any]] = {}


def latency_histograms() -> list[tuple[str, list[float], list[int], float, int]]:
    """Per-operation client latency (eraft_client_operation_seconds) for NodeAdmin.Status:
    (op, finite bucket upper bounds, their cumulative counts, sum of seconds, count)."""
    return [(op, list(bounds[:-1]), cum[:-1], total, cum[-1])
            for op, (bounds, cum, total) in sorted(latency_snapshot().items())]


def process_status() -> dict[str, float]:
    """This process's CPU seconds, resident bytes, open files and start time (Unix seconds),
    as prometheus-client's process collector reads them (0 where it cannot)."""
    names = {"process_cpu_seconds_total": "cpu_seconds", "process_resident_memory_bytes": "rss_bytes",
             "process_open_fds": "open_files", "process_start_time_seconds": "start_time"}
    out = dict.fromkeys(names.values(), 0.0)
    for fam in _PROCESS.collect():
        for s in fam.samples:
            if s.name in names:
                out[names[s.name]] = s.value
    return out


def migration_started(gid: int, shard: int, num: int, owner: int, have: tuple[int, int],
                      now: float) -> dict[str, Any]:
    """The progress record of a pull that starts (or starts again: a new leader, a retry);
    have: the keys and bytes the group already holds of it."""
    rec = migrations.get((gid, shard))
    if rec is None or rec["config_num"] != num:
        rec = migrations[(gid, shard)] = {
            "shard": shard, "config_num": num, "from_group": owner, "to_group": gid,
            "keys": have[0], "bytes": have[1], "total_keys": -1, "total_bytes": -1,
            "chunks": 0, "started": now,
            "updated": now, "done": False}
        finished = sorted((r["updated"], k) for k, r in migrations.items() if r["done"])
        for _, k in finished[:max(0, len(finished) - MIGRATIONS_KEPT)]:
            del migrations[k]
    return rec


def migration_chunk(rec: dict[str, Any], chunk: tuple[int, int], have: tuple[int, int],
                    total: tuple[int, int], done: bool, now: float) -> None:
    """One pulled chunk (keys, bytes) inserted into the group: counted in, and its record
    updated with what the group now holds of the shard and the old owner's total."""
    rec["keys"], rec["bytes"] = have
    rec["chunks"] += 1
    rec["total_keys"] = max(total[0], rec["keys"])
    rec["total_bytes"] = max(total[1], rec["bytes"])
    rec["updated"] = now
    rec["done"] = done
    observe_migration(rec["shard"], "in", *chunk)


def observe_migration(shard: int, direction: str, keys: int, nbytes: int) -> None:
    MIGRATION_KEYS.labels(str(shard), direction).inc(keys)
    MIGRATION_BYTES.labels(str(shard), direction).inc(nbytes)
