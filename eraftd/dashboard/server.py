"""`eraftd dashboard`: a live web view of the cluster, and the JSON behind it (/api/cluster).

Every `interval` one poll: the latest configuration from the controllers (ControllerClient),
then, all at once and each with a short deadline, every controller peer's and replica's status
(repl/probe.Probe: roles, terms, indexes, shards) and every node's NodeAdmin.Status (counters:
client operations, leader changes).  Rates are counter deltas between two polls; a node that
does not answer is shown as down, never left out.  The page (static/, shipped in the package)
fetches /api/cluster on its own and redraws; nothing is fetched from outside.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import asdict
from importlib import resources
from typing import Any, Callable, Sequence

import grpc
from aiohttp import web

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
        groups = []
        for gid, servers in [(0, tuple(self.ctl.addresses))] + list(cfg.groups.items()):
            ms = controllers if gid == 0 else [m for m in replicas if m["gid"] == gid]
            leader = next((m["address"] for m in ms if m["role"] == "Leader"), None)
            self._leader_event(gid, leader, now)
            ops = [rates.get(a) for a in servers] if gid else []
            known = [r for r in ops if r is not None]
            groups.append({"gid": gid, "name": "controller" if gid == 0 else f"group {gid}",
                           "leader": leader, "replicas": len(servers),
                           "up": sum(1 for m in ms if m["up"]),
                           "ops_per_s": round(sum(known), 1) if known else None,
                           "shards": [s for s, g in enumerate(cfg.shards) if g == gid] if gid else []})
        kv_groups = [g for g in groups if g["gid"] and g["ops_per_s"] is not None]
        storage = {a: s.storage_size for a, s in admin.items()}
        nodes = []
        for a in addresses:
            s = admin.get(a)
            nodes.append({"address": a, "up": s is not None,
                          "roles": list(s.roles) if s else [],
                          "storage_bytes": s.storage_size if s else None,
                          "ops_per_s": None if rates.get(a) is None else round(rates[a], 1)})
        shards = [asdict(r) for r in status.shards]
        count = status_count(status)         # the one count: processes, roles apart
        return {
            "ready": True, "error": error, "time": now, "interval_ms": int(self.interval_s * 1000),
            "config": {"num": cfg.num, "shards": list(cfg.shards),
                       "groups": {str(g): list(s) for g, s in cfg.groups.items()}},
            "controller_leader": status.leader,
            "controllers": controllers, "replicas": replicas, "groups": groups,
            "nodes": nodes, "shards": shards,
            # membership: what nodes report (refused for an empty disk, waiting to be added)
            "problems": list(membership_problems(admin)),
            "metrics": {
                "config_num": cfg.num,
                "nodes_total": count.total, "nodes_healthy": count.up,
                "nodes_summary": format_count(count),
                "storage_bytes_total": sum(storage.values()),
                "storage_bytes": storage,
                "ops_per_s_by_group": {str(g["gid"]): g["ops_per_s"] for g in kv_groups},
                "ops_per_s_avg": (round(sum(g["ops_per_s"] for g in kv_groups) / len(kv_groups), 1)
                                  if kv_groups else None),
                "leader_changes_total": sum(v for v in leader_changes.values()),
                "recent_leader_changes": list(reversed(self.events)),
                "migrating_shards": sum(1 for r in shards if r["status"] in ("Pulling", "BePulling", "GCing")),
            },
        }

    def _leader_event(self, gid: int, leader: str | None, now: float) -> None:
        before = self._leaders.get(gid, "")
        if leader and leader != before:
            self._leaders[gid] = leader
            self.events.append({"time": now, "gid": gid, "leader": leader, "previous": before or None})
            del self.events[:-RECENT_EVENTS]


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
    app.router.add_get("/api/cluster", cluster)
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
