"""Pure output formatting: tables, query's human form, status, bench, help; and --json objects.

Every function here takes plain data and returns text (or a JSON-able object); none prints,
none touches the cluster.  The status and bench records are defined here because they are
what those commands show; probe.py and bench.py fill them in.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from eraftd.controller.state import Config

DOWN = "down"


# ---------------------------------------------------------------- records

@dataclass(frozen=True)
class Member:
    """One Raft peer: a controller peer (gid 0) or a shardkv replica, and what it reported."""
    gid: int                  # 0: the controller group
    id: int                   # position in its group's peer list
    address: str
    role: str = DOWN          # "Leader", "Follower", "Candidate" or "down"
    term: int | None = None
    applied: int | None = None
    commit: int | None = None
    storage_bytes: int | None = None
    problem: str = ""         # why it is down
    learner: bool = False     # a member that receives the log but does not vote
    sessions: int | None = None   # a controller's client sessions (deduplication)

    @property
    def up(self) -> bool:
        return self.role != DOWN


@dataclass(frozen=True)
class ShardRow:
    shard: int
    gid: int                  # the owner in the latest configuration (0: nobody)
    status: str               # "Serving", "Pulling", "BePulling", "GCing", "unassigned", "unknown", "pending"
    keys: int | None = None
    bytes: int | None = None
    sessions: int | None = None   # client sessions kept for deduplication


@dataclass(frozen=True)
class ClusterStatus:
    config: Config
    controllers: tuple[Member, ...]
    replicas: tuple[Member, ...]
    shards: tuple[ShardRow, ...]
    leader: str | None = None         # the controller leader, when known
    problems: tuple[str, ...] = ()    # what nodes report about membership (a refused node, ...)

    def members(self) -> tuple[Member, ...]:
        return self.controllers + self.replicas


@dataclass(frozen=True)
class BenchResult:
    path: str                  # "native" or "unary"
    requests: int
    clients: int
    value_size: int
    reads_percent: int
    keys: int
    seconds: float
    ok: int
    reads: int
    writes: int
    errors: dict[str, int] = field(default_factory=dict)   # kind -> count
    latency_ms: dict[str, float] = field(default_factory=dict)   # p50, p95, p99, max
    interrupted: bool = False  # Ctrl-C stopped it
    removed: int = 0           # bench keys deleted at the end
    left: int = 0              # bench keys still there (--keep, or the clean-up failed/stopped)
    prefix: str = ""

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def issued(self) -> int:
        return self.reads + self.writes

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------- primitives

def dumps(obj: Any) -> str:
    """One JSON object on one line."""
    return json.dumps(obj, separators=(", ", ": "))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart; None shows as '-'; no trailing spaces."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def human_bytes(n: int | None) -> str | None:
    if n is None:
        return None
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """`[#########.........]  300/1000  30%` (no newline)."""
    frac = done / total if total else 1.0
    fill = int(frac * width)
    return f"[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {frac:4.0%}"


# ---------------------------------------------------------------- query

def query_json(cfg: Config) -> dict[str, Any]:
    d: dict[str, Any] = {"num": cfg.num, "shards": list(cfg.shards),
                         "groups": {str(g): list(s) for g, s in cfg.groups.items()}}
    if cfg.abandoned:        # only when some shard was abandoned (shard -> its configuration)
        d["abandoned"] = {str(s): n for s, n in cfg.abandoned.items()}
    return d


def abandoned_line(cfg: Config) -> str | None:
    """The shards `shard abandon` gave up, and when: one line, or None."""
    if not cfg.abandoned:
        return None
    return "abandoned (data given up): " + ", ".join(
        f"shard {s} at configuration {n}" for s, n in cfg.abandoned.items())


def format_query(cfg: Config) -> str:
    lines = [f"config {cfg.num}", "",
             table(("shard", "gid"), ((s, g or "-") for s, g in enumerate(cfg.shards)))]
    lines += ["", table(("gid", "shards", "servers"),
                        ((g, ",".join(map(str, cfg.shards_of(g))) or "-", ", ".join(s))
                         for g, s in cfg.groups.items()))
              if cfg.groups else "no groups"]
    if (line := abandoned_line(cfg)) is not None:
        lines += ["", line]
    return "\n".join(lines)


# ---------------------------------------------------------------- how many nodes

@dataclass(frozen=True)
class NodeCount:
    """Nodes are processes (distinct addresses); roles are counted separately: a node can be a
    controller peer and a replica at once."""
    up: int
    total: int
    controllers_up: int
    controllers: int
    replicas_up: int
    replicas: int


def count_nodes(controllers: Iterable[tuple[str, bool]], replicas: Iterable[tuple[str, bool]]) -> NodeCount:
    """(address, up) of every controller peer and every replica -> the one count shown
    everywhere (status, the toolbar, the demo banner, the dashboard).  A node with two roles
    is up if either answered."""
    ctrl, reps = list(controllers), list(replicas)
    nodes: dict[str, bool] = {}
    for addr, up in ctrl + reps:
        nodes[addr] = nodes.get(addr, False) or up
    return NodeCount(sum(nodes.values()), len(nodes), sum(u for _, u in ctrl), len(ctrl),
                     sum(u for _, u in reps), len(reps))


def status_count(st: "ClusterStatus") -> NodeCount:
    return count_nodes(((m.address, m.up) for m in st.controllers),
                       ((m.address, m.up) for m in st.replicas))


def format_count(c: NodeCount) -> str:
    """"6 nodes up (3 controller peers, 6 replicas)", or "5 of 6 nodes up (2 of 3 controller
    peers, 5 of 6 replicas)" when some are down."""
    def part(up: int, total: int, one: str, many: str) -> str:
        word = one if total == 1 else many
        return f"{total} {word}" if up == total else f"{up} of {total} {word}"
    return (part(c.up, c.total, "node", "nodes") + " up ("
            + part(c.controllers_up, c.controllers, "controller peer", "controller peers") + ", "
            + part(c.replicas_up, c.replicas, "replica", "replicas") + ")")


# ---------------------------------------------------------------- status

def _member_dict(m: Member) -> dict[str, Any]:
    d = asdict(m)
    if not m.problem:
        d.pop("problem")
    if not m.learner:
        d.pop("learner")
    if m.sessions is None:
        d.pop("sessions")
    return d


def status_json(st: ClusterStatus) -> dict[str, Any]:
    c = status_count(st)
    return {"config": st.config.num, "leader": st.leader,
            "nodes": {"up": c.up, "total": c.total},
            "controllers": [_member_dict(m) for m in st.controllers],
            "replicas": [_member_dict(m) for m in st.replicas],
            "shards": [asdict(s) for s in st.shards], "problems": list(st.problems),
            **({"abandoned": query_json(st.config)["abandoned"]} if st.config.abandoned else {})}


def format_status(st: ClusterStatus) -> str:
    nodes = table(("group", "id", "address", "role", "term", "applied", "commit", "storage"),
                  (("ctrl" if m.gid == 0 else m.gid, m.id, m.address,
                    m.role + (", learner" if m.learner else ""), m.term, m.applied,
                    m.commit, human_bytes(m.storage_bytes)) for m in st.members()))
    shards = table(("shard", "gid", "status", "keys", "bytes", "sessions"),
                   ((s.shard, s.gid or "-", s.status, s.keys, s.bytes, s.sessions) for s in st.shards))
    lead = next((m for m in st.controllers if m.address == st.leader), None)
    sessions = f", {lead.sessions} controller sessions" if lead and lead.sessions is not None else ""
    head = (f"config {st.config.num}, controller leader {st.leader or 'unknown'}, "
            f"{format_count(status_count(st))}{sessions}")
    problems = ["", "problems:"] + ["  " + p for p in st.problems] if st.problems else []
    line = abandoned_line(st.config)
    return "\n".join([head, "", nodes] + problems + ["", shards] + (["", line] if line else []))


# ---------------------------------------------------------------- member

def _group_json(group: int) -> str | int:
    return "ctrl" if group == 0 else group


def members_json(ms: Any) -> dict[str, Any]:
    """`member list --json` (ms: eraftd.members.Membership)."""
    return {"group": _group_json(ms.group), "leader": ms.leader, "leader_id": ms.leader_id,
            "last_index": ms.last_index, "commit_index": ms.commit_index,
            "change_pending": ms.change_pending, "from_leader": ms.from_leader,
            "answered_by": ms.answered_by, "members": [asdict(r) for r in ms.rows]}


def format_members(ms: Any) -> str:
    """`member list`: a line about the group, then one row per member."""
    name = "ctrl" if ms.group == 0 else f"group {ms.group}"
    if ms.from_leader:
        head = (f"{name}: leader {ms.leader} (member {ms.leader_id}), last index {ms.last_index}, "
                f"commit {ms.commit_index}")
    else:
        head = (f"{name}: no leader answered; as {ms.answered_by} sees it (leader "
                f"{ms.leader or 'unknown'}; how far each member is: unknown)")
    if ms.change_pending:
        head += "; a membership change is in progress"
    voters = sum(r.role == "voter" for r in ms.rows)
    learners = len(ms.rows) - voters
    head += f"; {voters} voter{'s' if voters != 1 else ''}" + (
        f", {learners} learner{'s' if learners != 1 else ''}" if learners else "")
    rows = table(("id", "address", "role", "match", "lag", "state", "problem"),
                 ((r.id, r.address, r.role + (" (leader)" if r.leader else ""), r.match, r.lag,
                   r.state or None, r.problem or None) for r in ms.rows))
    return head + "\n\n" + rows


def member_done_json(done: Any) -> dict[str, Any]:
    """`member add|promote|remove|replace --json` (done: eraftd.members.Done)."""
    return {"ok": True, "group": _group_json(done.group), "id": done.id, "address": done.address,
            "role": done.role, "changed": done.changed, "steps": list(done.steps)}


# ---------------------------------------------------------------- bench

def bench_json(r: BenchResult) -> dict[str, Any]:
    d = asdict(r)
    d["failed"] = r.failed
    d["issued"] = r.issued
    d["throughput"] = round(r.throughput, 1)
    d["seconds"] = round(r.seconds, 3)
    d["latency_ms"] = {k: round(v, 3) for k, v in r.latency_ms.items()}
    return d


def format_bench(r: BenchResult) -> str:
    lat = r.latency_ms
    errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "none"
    return "\n".join([
        f"bench: {r.requests} requests ({r.reads} reads, {r.writes} writes) from {r.clients} "
        f"clients, {r.value_size}-byte values, {r.keys} keys, {r.path} path",
        f"time        {r.seconds:.2f} s",
        f"throughput  {r.throughput:,.0f} ops/s",
        "latency     " + "  ".join(f"{k} {lat[k]:.2f} ms" for k in ("p50", "p95", "p99", "max")
                                   if k in lat),
        f"ok          {r.ok}",
        f"errors      {errors}",
    ] + ([f"interrupted after {r.issued} of {r.requests} requests"] if r.interrupted else
         [f"stopped after {r.issued} of {r.requests} requests: a group did not answer in time"]
         if r.issued < r.requests else [])
      + ([f"cleanup     removed {r.removed} bench keys"] if r.removed and not r.left else [])
      + ([f"cleanup     left {r.left} bench keys (named D{r.prefix}I, D = 0-9)"] if r.left else []))


# ---------------------------------------------------------------- help

def format_help(commands: Sequence[tuple[str, str]]) -> str:
    """commands: (usage, one-line help) in order."""
    rows = table(("", ""), commands).split("\n")[1:]
    return "\n".join(["commands:"] + ["  " + r for r in rows]
                     + ["", "help COMMAND explains one; words are split like a shell's ('a b' is one word)"])
