"""`eraftd dashboard`: a live web view of the cluster, and the JSON behind it (/api/cluster).

Every `interval` one poll: the latest configuration from the controllers (ControllerClient),
then, all at once and each with a short deadline, every controller peer's and replica's status
(repl/probe.Probe: roles, terms, indexes, shards) and every node's NodeAdmin.Status (counters:
client operations, leader changes).  Rates are counter deltas between two polls; a node that
does not answer is shown as down, never left out.  The page (static/, shipped in the package)
fetches /api/cluster on its own and redraws; nothing is fetched from outside.

Beside the snapshot, the poller keeps the last SERIES_SPAN_S (15 minutes) of points in a
ring buffer (/api/series: ops/s per group and in total, p50/p99 request latency per group from
the deltas of the nodes' latency histograms, leader changes and elections as markers), so a
reloaded page shows the history; and it raises alerts (`alerts`: a group without a leader or
quorum, a node down, a migration older than a minute, a refused member, storage growing fast),
each naming the group or node and what to run.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import deque
from dataclasses import asdict
from importlib import resources
from typing import Any, Callable, Sequence

import grpc
from aiohttp import web

from .. import metrics
from .._pb import admin_pb2 as apb
from .._pb import admin_pb2_grpc as apb_grpc
from ..controller.client import ControllerClient
from ..controller.state import Config
from ..tls import TlsFiles, channel
from repl.output import format_count, status_count   # the shell's one count of nodes
from repl.probe import group_members, membership_problems, scrub

log = logging.getLogger("eraftd.dashboard")

RECENT_EVENTS = 20
STATIC_FILES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "application/javascript"),
                "/style.css": ("style.css", "text/css")}
SERIES_SPAN_S = 15 * 60          # the history kept in the dashboard process (/api/series)
MIGRATION_ALERT_S = 60.0         # a shard moving for longer than this raises an alert
MIGRATIONS_SHOWN_S = 10 * 60     # a finished migration stays in the table this long
STORAGE_WINDOW_S = 5 * 60        # storage growing fast: within this window, by more than
STORAGE_GROWTH_BYTES = 64 << 20  #   this many bytes and
STORAGE_GROWTH_RATIO = 0.5       #   this share of the size at the window's start
MOVING = ("Pulling", "BePulling", "GCing")


class Ring:
    """The points of the last `span_s` seconds, oldest first (each a dict with its time "t");
    at most `maxlen` of them whatever their times."""

    def __init__(self, span_s: float, maxlen: int) -> None:
        self.span_s = span_s
        self.points: deque[dict[str, Any]] = deque(maxlen=max(2, maxlen))

    def add(self, point: dict[str, Any]) -> None:
        self.points.append(point)
        while self.points and self.points[0]["t"] < point["t"] - self.span_s:
            self.points.popleft()

    def since(self, t: float) -> list[dict[str, Any]]:
        return [p for p in self.points if p["t"] >= t]

    def __len__(self) -> int:
        return len(self.points)


Histogram = dict[float, int]     # bucket upper bound -> cumulative count; math.inf -> the count


def node_histogram(hs: Sequence[apb.LatencyHistogram]) -> Histogram:
    """One node's latency histograms (one per operation) merged into one."""
    return merge_histograms([{**dict(zip(h.bounds, h.counts)), float("inf"): h.count} for h in hs])


def merge_histograms(hs: Sequence[Histogram]) -> Histogram:
    """The sum of cumulative histograms; where one lacks a bound another has, its count at
    its next lower bound is taken (an under-count inside that bucket, never more)."""
    bounds = sorted({b for h in hs for b in h})
    out: Histogram = {}
    for b in bounds:
        total = 0
        for h in hs:
            below = [c for hb, c in h.items() if hb <= b]
            total += max(below) if below else 0
        out[b] = total
    return out


def histogram_delta(now: Histogram, before: Histogram | None) -> Histogram | None:
    """What was observed between two looks at one node's histogram; None when the node
    restarted (its count went down) or there is no earlier look."""
    if before is None or now.get(float("inf"), 0) < before.get(float("inf"), 0):
        return None
    return {b: c - before.get(b, 0) for b, c in now.items()}


def quantile(q: float, h: Histogram) -> float | None:
    """Prometheus's histogram_quantile of cumulative histogram h (bound -> count, +Inf included):
    metrics.quantile, the one implementation; None with no observations."""
    bounds = tuple(sorted(h))
    if not bounds or bounds[-1] != float("inf"):
        return None
    return metrics.quantile(q, bounds, [h[b] for b in bounds])


class Poller:
    def __init__(self, controllers: Sequence[str], interval_s: float, timeout_s: float = 1.0,
                 dial: Callable[[str], str] | None = None, tls: TlsFiles | None = None) -> None:
        from repl.probe import Probe       # the shell's probe: one way to ask every node
        self.interval_s = interval_s
        self.dial = dial or (lambda a: a)  # a --config file's [node.dial] map
        self.tls = tls
        self.ctl = ControllerClient(list(controllers), total_timeout=max(1.0, min(interval_s, 3.0)),
                                    call_timeout=timeout_s, dial=dial, tls=tls)
        self.probe = Probe(self.ctl, timeout=timeout_s, dial=dial, tls=tls)
        self.timeout_s = timeout_s
        self.config = Config()
        self.snapshot: dict[str, Any] = {"ready": False, "error": "first poll in progress",
                                         "interval_ms": int(interval_s * 1000)}
        self._prev_ops: dict[str, tuple[float, int]] = {}
        self._leaders: dict[int, str] = {}
        self.events: list[dict[str, Any]] = []
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.updated = asyncio.Event()
        self.series = Ring(SERIES_SPAN_S, int(SERIES_SPAN_S / interval_s) + 2)   # one point a poll
        self.markers = Ring(SERIES_SPAN_S, 2000)     # leader changes and elections, for the charts
        self._prev_hist: dict[str, Histogram] = {}
        self._prev_cpu: dict[str, tuple[float, float, float]] = {}
        self._prev_elections: dict[tuple[str, int], int] = {}
        self._storage: dict[str, deque[tuple[float, int]]] = {}
        self._moving_since: dict[int, float] = {}

    async def close(self) -> None:
        await self.probe.close()
        await self.ctl.close()
        chans, self._channels = self._channels, {}
        for ch in chans.values():
            await ch.close()

    async def _admin(self, addr: str) -> apb.NodeStatus:
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = channel(self.dial(addr), self.tls, name=addr)
        return await apb_grpc.NodeAdminStub(ch).Status(apb.StatusRequest(), timeout=self.timeout_s)

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception as e:        # never let one bad poll stop the page
                log.exception("poll failed")
                self.snapshot = {**self.snapshot, "error": f"poll failed: {scrub(str(e))}"}
            self.updated.set()
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> dict[str, Any]:
        error = ""
        try:
            self.config = await self.ctl.query()
        except Exception as e:
            error = f"controllers: {scrub(str(e)) or type(e).__name__}"
        cfg = self.config
        addresses = list(dict.fromkeys(
            list(self.ctl.addresses) + [a for servers in cfg.groups.values() for a in servers]))
        status, admins = await asyncio.gather(
            self.probe.status(cfg, membership=True),
            asyncio.gather(*(self._admin(a) for a in addresses), return_exceptions=True))
        now = time.time()
        admin = {a: r for a, r in zip(addresses, admins) if not isinstance(r, BaseException)}
        self.snapshot = self._build(cfg, status, admin, addresses, now, error)
        return self.snapshot

    def _rate(self, addr: str, ops: int, now: float) -> float | None:
        prev = self._prev_ops.get(addr)
        self._prev_ops[addr] = (now, ops)
        if prev is None or ops < prev[1] or now <= prev[0]:
            return None                       # first sight, or the node restarted
        return (ops - prev[1]) / (now - prev[0])

    def _build(self, cfg: Config, status: Any, admin: dict[str, apb.NodeStatus],
               addresses: list[str], now: float, error: str) -> dict[str, Any]:
        rates = {a: self._rate(a, s.operations, now) for a, s in admin.items()}
        for a in addresses:
            if a not in admin:
                self._prev_ops.pop(a, None)
        leader_changes = {(g.group, a): g.leader_changes for a, s in admin.items() for g in s.groups}
        _, learners = group_members(admin)

        def member(m: Any) -> dict[str, Any]:
            d = asdict(m)
            d["up"] = m.up
            d["leader_changes"] = leader_changes.get((m.gid, m.address))
            d["learner"] = (m.gid, m.address) in learners
            return d

        controllers = [member(m) for m in status.controllers]
        replicas = [member(m) for m in status.replicas]
        latency = self._latency(cfg, admin)
        elections = self._elections(admin, now)
        groups = []
        for gid, servers in [(0, tuple(self.ctl.addresses))] + list(cfg.groups.items()):
            ms = controllers if gid == 0 else [m for m in replicas if m["gid"] == gid]
            leader = next((m["address"] for m in ms if m["role"] == "Leader"), None)
            up = sum(1 for m in ms if m["up"])
            self._leader_event(gid, leader, now, settled=leader is not None or (ms and up == len(ms)))
            ops = [rates.get(a) for a in servers] if gid else []
            known = [r for r in ops if r is not None]
            p50, p99 = latency.get(gid, (None, None))
            groups.append({"gid": gid, "name": group_name(gid),
                           "leader": leader, "replicas": len(servers), "up": up,
                           "members": [m["address"] for m in ms],
                           "down": [m["address"] for m in ms if not m["up"]],
                           "ops_per_s": round(sum(known), 1) if known else None,
                           "p50_ms": p50, "p99_ms": p99, "elections": elections.get(gid, 0),
                           "shards": [s for s, g in enumerate(cfg.shards) if g == gid] if gid else []})
        kv_groups = [g for g in groups if g["gid"] and g["ops_per_s"] is not None]
        storage = {a: s.storage_size for a, s in admin.items()}
        nodes = [self._node(a, admin.get(a), rates.get(a), now) for a in addresses]
        shards = [asdict(r) for r in status.shards]
        migrations = self._migrations(admin, shards, now)
        count = status_count(status)         # the one count: processes, roles apart
        ops_total = round(sum(g["ops_per_s"] for g in kv_groups), 1) if kv_groups else None
        self.series.add({"t": now, "ops_total": ops_total,
                         "ops": {str(g["gid"]): g["ops_per_s"] for g in kv_groups},
                         "p50_ms": {str(g["gid"]): g["p50_ms"] for g in groups if g["p50_ms"] is not None},
                         "p99_ms": {str(g["gid"]): g["p99_ms"] for g in groups if g["p99_ms"] is not None}})
        return {
            "ready": True, "error": error, "time": now, "interval_ms": int(self.interval_s * 1000),
            "config": {"num": cfg.num, "shards": list(cfg.shards),
                       "groups": {str(g): list(s) for g, s in cfg.groups.items()}},
            "controller_leader": status.leader,
            "controllers": controllers, "replicas": replicas, "groups": groups,
            "nodes": nodes, "shards": shards, "migrations": migrations,
            "alerts": alerts(groups, nodes, migrations, admin, self._storage_growth(storage, now)),
            # membership: what nodes report (refused for an empty disk, waiting to be added)
            "problems": list(membership_problems(admin)),
            "metrics": {
                "config_num": cfg.num,
                "nodes_total": count.total, "nodes_healthy": count.up,
                "nodes_summary": format_count(count),
                "storage_bytes_total": sum(storage.values()),
                "storage_bytes": storage,
                "ops_per_s_by_group": {str(g["gid"]): g["ops_per_s"] for g in kv_groups},
                "ops_per_s_total": ops_total,
                "ops_per_s_avg": (round(ops_total / len(kv_groups), 1) if kv_groups else None),
                "leader_changes_total": sum(v for v in leader_changes.values()),
                "recent_leader_changes": list(reversed(self.events)),
                "migrating_shards": sum(1 for r in shards if r["status"] in MOVING),
            },
        }

    def series_json(self) -> dict[str, Any]:
        """/api/series: the ring buffer's points and markers (the last SERIES_SPAN_S)."""
        return {"span_s": SERIES_SPAN_S, "interval_ms": int(self.interval_s * 1000),
                "points": list(self.series.points), "markers": list(self.markers.points)}

    def _latency(self, cfg: Config, admin: dict[str, apb.NodeStatus]) -> dict[int, tuple[Any, Any]]:
        """gid -> (p50, p99) in ms of the requests its replicas served since the last poll
        (their histograms' deltas merged: the leader serves most); (None, None) if none."""
        deltas: dict[str, Histogram] = {}
        for a, s in admin.items():
            h = node_histogram(s.latency)
            d = histogram_delta(h, self._prev_hist.get(a))
            self._prev_hist[a] = h
            if d is not None:
                deltas[a] = d
        for a in list(self._prev_hist):
            if a not in admin:
                del self._prev_hist[a]
        out: dict[int, tuple[Any, Any]] = {}
        for gid, servers in cfg.groups.items():
            h = merge_histograms([deltas[a] for a in servers if a in deltas])
            p50, p99 = quantile(0.5, h), quantile(0.99, h)
            out[gid] = (None if p50 is None else round(p50 * 1000, 3),
                        None if p99 is None else round(p99 * 1000, 3))
        return out

    def _elections(self, admin: dict[str, apb.NodeStatus], now: float) -> dict[int, int]:
        """gid -> campaigns its members started since the last poll (each a chart marker)."""
        out: dict[int, int] = {}
        for a, s in admin.items():
            for g in s.groups:
                before = self._prev_elections.get((a, g.group))
                self._prev_elections[(a, g.group)] = g.elections
                if before is not None and g.elections > before:
                    out[g.group] = out.get(g.group, 0) + g.elections - before
        for gid, n in sorted(out.items()):
            self.markers.add({"t": now, "gid": gid, "kind": "election",
                              "text": f"{group_name(gid)}: {n} election{'s' if n > 1 else ''}"})
        return out

    def _node(self, a: str, s: apb.NodeStatus | None, rate: float | None, now: float) -> dict[str, Any]:
        if s is None:
            self._prev_cpu.pop(a, None)
            return {"address": a, "up": False, "roles": [], "storage_bytes": None, "ops_per_s": None,
                    "cpu_percent": None, "rss_bytes": None, "open_files": None, "uptime_s": None}
        before = self._prev_cpu.get(a)
        self._prev_cpu[a] = (now, s.cpu_seconds, s.start_time)
        cpu = None
        if before and before[2] == s.start_time and now > before[0] and s.cpu_seconds >= before[1]:
            cpu = round(100 * (s.cpu_seconds - before[1]) / (now - before[0]), 1)
        return {"address": a, "up": True, "roles": list(s.roles), "storage_bytes": s.storage_size,
                "ops_per_s": None if rate is None else round(rate, 1), "cpu_percent": cpu,
                "rss_bytes": s.rss_bytes or None, "open_files": s.open_files or None,
                "uptime_s": round(now - s.start_time) if s.start_time else None}

    def _migrations(self, admin: dict[str, apb.NodeStatus], shards: list[dict[str, Any]],
                    now: float) -> list[dict[str, Any]]:
        """Per moving shard (and those finished in the last MIGRATIONS_SHOWN_S): keys and bytes
        moved of the total, rate, age; from the pulling leaders' records (the one furthest
        along when several replicas led it), and the shard table for a move none reports."""
        rows = {r["shard"]: r for r in shards}
        for shard, r in rows.items():
            if r["status"] in MOVING:
                self._moving_since.setdefault(shard, now)
            else:
                self._moving_since.pop(shard, None)
        best: dict[tuple[int, int], apb.MigrationProgress] = {}
        for s in admin.values():
            for m in s.migrations:
                k = (m.shard, m.config_num)
                if k not in best or (m.done, m.keys, m.updated) > (best[k].done, best[k].keys, best[k].updated):
                    best[k] = m
        out = []
        for (shard, num), m in sorted(best.items()):
            row = rows.get(shard, {})
            pulling = row.get("gid") == m.to_group and row.get("status") == "Pulling"
            state = "done" if m.done else "pulling" if pulling else "stopped"
            if state != "pulling" and (now - m.updated > MIGRATIONS_SHOWN_S
                                       or m.done and m.total_keys <= 0 and m.keys == 0):
                continue                       # long done, or an empty shard: nothing moved
            if state == "stopped" and any(k[0] == shard and k[1] > num for k in best):
                continue                       # a later move of the shard replaces it
            end = m.updated if m.done else now
            since = min(m.started, self._moving_since.get(shard, m.started)) if pulling else m.started
            took = max(end - m.started, 1e-3)
            out.append({"shard": shard, "config_num": num, "from": m.from_group, "to": m.to_group,
                        "state": state, "keys": m.keys, "bytes": m.bytes,
                        "total_keys": m.total_keys if m.total_keys >= 0 else None,
                        "total_bytes": m.total_bytes if m.total_bytes >= 0 else None,
                        "chunks": m.chunks, "age_s": round(max(end, now if pulling else end) - since, 1),
                        "keys_per_s": round(m.keys / took, 1), "bytes_per_s": round(m.bytes / took)})
        listed = {m["shard"] for m in out if m["state"] == "pulling"}
        for shard, since in sorted(self._moving_since.items()):
            if shard not in listed and rows[shard]["status"] == "Pulling":
                out.append({"shard": shard, "config_num": None, "from": None, "to": rows[shard]["gid"],
                            "state": "pulling", "keys": 0, "bytes": 0, "total_keys": None,
                            "total_bytes": None, "chunks": 0, "age_s": round(now - since, 1),
                            "keys_per_s": 0.0, "bytes_per_s": 0})
        return out

    def _storage_growth(self, storage: dict[str, int], now: float) -> dict[str, tuple[int, float]]:
        """address -> (bytes grown, seconds) for the nodes whose storage grew by more than
        STORAGE_GROWTH_BYTES and STORAGE_GROWTH_RATIO within STORAGE_WINDOW_S."""
        out = {}
        for a in list(self._storage):
            if a not in storage:
                del self._storage[a]
        for a, size in storage.items():
            h = self._storage.setdefault(a, deque())
            h.append((now, size))
            while h and h[0][0] < now - STORAGE_WINDOW_S:
                h.popleft()
            t0, s0 = min(h, key=lambda p: p[1])
            grown = size - s0
            if grown > STORAGE_GROWTH_BYTES and grown > STORAGE_GROWTH_RATIO * s0:
                out[a] = (grown, now - t0)
        return out

    def _leader_event(self, gid: int, leader: str | None, now: float, settled: bool = True) -> None:
        """A change of group gid's leader (old -> new), seen after the first look; the first
        look that saw a leader (or every member answering without one) is where things stood."""
        if gid not in self._leaders:
            if leader or settled:
                self._leaders[gid] = leader or ""
            return
        before = self._leaders[gid]
        if leader and leader != before:
            self._leaders[gid] = leader
            self.events.append({"time": now, "gid": gid, "leader": leader, "previous": before or None})
            del self.events[:-RECENT_EVENTS]
            self.markers.add({"t": now, "gid": gid, "kind": "leader",
                              "text": f"{group_name(gid)}: {before or 'none'} -> {leader}"})


def group_name(gid: int) -> str:
    return "controller" if gid == 0 else f"group {gid}"


def _member_ref(gid: int) -> str:
    return "ctrl" if gid == 0 else str(gid)


def alerts(groups: list[dict[str, Any]], nodes: list[dict[str, Any]], migrations: list[dict[str, Any]],
           admin: dict[str, apb.NodeStatus], growth: dict[str, tuple[int, float]]) -> list[dict[str, str]]:
    """What needs a person, worst first: each names the group or node and what to run."""
    out: list[dict[str, str]] = []

    def alert(severity: str, kind: str, target: str, text: str, fix: str) -> None:
        out.append({"severity": severity, "kind": kind, "target": target, "text": text, "fix": fix})
    covered: set[str] = set()
    for g in groups:
        name, n, up = g["name"], g["replicas"], g["up"]
        if n and up <= n // 2:
            covered |= set(g["down"])
            alert("critical", "quorum", name,
                  f"{name} has lost its quorum: {up}/{n} replicas up"
                  + (f" ({', '.join(g['down'])} down)" if g["down"] else "")
                  + ("; its shards cannot be read or written" if g["gid"] else
                     "; no configuration can change"),
                  "restart its nodes, each with its own config (eraftd run --config NODE.toml), "
                  "then look with: eraftd status")
        elif n and g["leader"] is None:
            alert("critical", "leader", name, f"{name} has no leader ({up}/{n} up)",
                  "an election should end within seconds; if not, look with: eraftd status "
                  f"and eraftd member list {_member_ref(g['gid'])}, and the nodes' logs")
    where: dict[str, str] = {}
    for g in groups:
        for a in g["members"]:
            where.setdefault(a, g["name"])
    for nd in nodes:
        a = nd["address"]
        if not nd["up"] and a not in covered:
            alert("warning", "node", a, f"node {a} ({where.get(a, 'no group')}) does not answer",
                  "restart it with its config (eraftd run --config NODE.toml); eraftd status "
                  "shows it")
    seen: set[tuple[int, str]] = set()
    for a, s in admin.items():
        if s.problem:
            alert("warning", "refused", a, f"{a}: {scrub(s.problem)}",
                  "look with: eraftd status (a node of another cluster, or a wrong data_dir)")
        for g in s.groups:
            gref, gname = _member_ref(g.group), group_name(g.group)
            if g.problem and (g.group, a) not in seen:
                seen.add((g.group, a))
                p = g.problem
                fix = (f"eraftd member replace {gref} {a}" if "empty disk" in p else
                       f"eraftd member add {gref} {a}" if "waiting to be added" in p else
                       "stop this node" if "removed" in p else f"eraftd member list {gref}")
                alert("warning", "refused", f"{a} ({gname})", f"{a} ({gname}): {scrub(p)}", fix)
            for line in g.refused:
                who = line.split()[0].rstrip(":") if line.strip() else "?"   # "ADDR came back ..."
                if (g.group, who) not in seen:
                    seen.add((g.group, who))
                    alert("warning", "refused", f"{who} ({gname})", f"{gname} refuses: {scrub(line)}",
                          f"eraftd member replace {gref} {who}")
    for m in migrations:
        if m["state"] == "pulling" and m["age_s"] > MIGRATION_ALERT_S:
            src = f"group {m['from']}" if m["from"] else "its previous owner"
            alert("warning", "migration", f"shard {m['shard']}",
                  f"shard {m['shard']} has been moving to group {m['to']} for {m['age_s']:.0f} s "
                  f"({m['keys']} keys in so far)",
                  f"check that {src} is up and has quorum: eraftd status")
    for a, (grown, secs) in sorted(growth.items()):
        alert("warning", "storage", a, f"storage of {a} grew by {grown / (1 << 20):.0f} MiB in "
              f"{secs / 60:.0f} min",
              "look at which group writes (ops/s) and at shard sizes: eraftd status; add a group "
              "to spread the shards: eraftd join GID=ADDR,...")
    return sorted(out, key=lambda a: a["severity"] != "critical")


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def make_app(poller: Poller) -> web.Application:
    async def cluster(request: web.Request) -> web.Response:
        return web.json_response(poller.snapshot)

    def page(name: str, ctype: str):
        body = _static(name)

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type=ctype, charset="utf-8",
                                headers={"Cache-Control": "no-cache"})
        return handler

    app = web.Application()
    async def series(request: web.Request) -> web.Response:
        return web.json_response(poller.series_json())

    app.router.add_get("/api/cluster", cluster)
    app.router.add_get("/api/series", series)
    for path, (name, ctype) in STATIC_FILES.items():
        app.router.add_get(path, page(name, ctype))
    return app


def https_context(tls: TlsFiles | None) -> Any:
    """The page is HTTPS when the TLS files include a certificate and key (served to the
    browsers; no client certificates asked for), plain HTTP otherwise."""
    return tls.ssl_context(server=True) if tls is not None and tls.cert_file else None


async def serve(controllers: Sequence[str], listen: str, interval_s: float,
                dial: Callable[[str], str] | None = None, tls: TlsFiles | None = None) -> None:
    """tls: the files the cluster is dialled with; with a certificate and key, also the HTTPS
    of the page (https_context)."""
    ssl_context = https_context(tls)
    poller = Poller(controllers, interval_s, dial=dial, tls=tls)
    runner = web.AppRunner(make_app(poller), access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    try:
        await web.TCPSite(runner, host.strip("[]") or None, int(port), ssl_context=ssl_context).start()
    except OSError as e:
        await runner.cleanup()
        await poller.close()
        raise OSError(f"cannot listen on {listen}: {e.strerror or e}") from None
    task = asyncio.create_task(poller.run())
    print(f"eraftd dashboard: serving {'https' if ssl_context else 'http'}://{listen}/ (controllers {', '.join(controllers)}, "
          f"every {interval_s:g}s)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        task.cancel()
        await runner.cleanup()
        await poller.close()
