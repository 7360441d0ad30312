"""`eraftd run`: one node's life, top to bottom.

signals -> the listen port bound -> storage (identity checked) -> transport -> Raft groups -> services
-> ready line -> wait for SIGTERM/SIGINT -> stop accepting, finish the round, flush, exit 0.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import signal
import sys
from typing import Any, Callable

import grpc

from .. import __version__
from ..config import Config
from ..controller.machine import ControllerMachine
from ..controller.service import ADMITTED as CONTROLLER_ADMITTED, ShardCtrlerService
from ..raft.options import RaftOptions
from ..shardkv.node import ShardKVNode
from ..shardkv.service import ADMITTED as SHARDKV_ADMITTED
from ..tls import TlsError, host_of
from .access import Access, AccessInterceptor
from .admission import (Admission, AdmittingServer, ConnectionWatch, connection_budget,
                        server_options as admission_options)
from .cluster import ClusterIdentity
from .admin import AdminService
from .driver import Driver, GroupSpec
from .statemachine import TEST_MACHINES
from .storage import NodeStore, StorageError, uid_text
from .transport import Transport, server_options

log = logging.getLogger("eraftd.node")

EXIT_OK, EXIT_FAIL = 0, 1
CONTROLLER_GROUP = 0


class StartupError(Exception):
    """A problem that stops the node before it serves: one line for the user."""


RPC_WIND_DOWN_S = 2.0


async def _let_tasks_finish(timeout: float) -> None:
    """Give the tasks still alive (gRPC's own per-call tasks, finishing the calls its shutdown
    cancelled) a moment to end by themselves.  asyncio.run would cancel them, and grpc.aio logs a
    cancelled call task as "Exception not handled" with a traceback."""
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me]
    if not others:
        return
    _, pending = await asyncio.wait(others, timeout=timeout)
    if pending:
        log.debug("%d task(s) still running at exit: %s", len(pending),
                  sorted(t.get_name() for t in pending))


def _warn_if_open(cfg: Config) -> None:
    """Safe defaults: say so when anyone who reaches the port may do anything."""
    host = host_of(cfg.node.listen)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if cfg.tls is None and not loopback:
        log.warning("listening on %s without TLS: anyone who reaches this port can read and write "
                    "every key and change the cluster; add a [tls] section (README, \"Running with "
                    "TLS\")", cfg.node.listen)
    elif cfg.tls is not None and not cfg.tls.require_client_auth:
        log.warning("[tls] client_auth = \"none\": connections are encrypted but no caller is "
                    "authenticated, so anyone who reaches %s can read and write every key and change "
                    "the cluster; use client_auth = \"require\" beyond a trusted network",
                    cfg.node.listen)


def _driver_failure(exc: BaseException | None) -> str:
    """The one line that says why the driver stopped: a StorageError says it in words."""
    if isinstance(exc, StorageError):
        return str(exc)
    return f"the raft driver failed: {exc!r}"


def event_loop_runner():
    """asyncio.run with uvloop's loop where uvloop is installed (a dependency on Linux and
    macOS): fewer and cheaper loop turns per call and per peer message (a lone put ~10% faster,
    benchmarks/vs_etcd.py); the stock loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def serve(cfg: Config, test_machine: str | None = None) -> int:
    try:
        return event_loop_runner()(_serve(cfg, test_machine))
    except (StartupError, StorageError) as e:    # StorageError: a group's records, read later
        print(f"eraftd: {e}", file=sys.stderr)
        return EXIT_FAIL


def _state_machines(cfg: Config, test_machine: str | None,
                    shardkv: ShardKVNode | None) -> dict[int, Callable[[Any], Any]]:
    """Which state machine each hosted group runs."""
    if test_machine is not None:
        make = TEST_MACHINES[test_machine]
        groups: dict[int, Callable[[Any], Any]] = {}
        if cfg.controller:
            groups[CONTROLLER_GROUP] = make
        if cfg.shardkv:
            groups[cfg.shardkv.gid] = make
        return groups
    groups = {}
    if cfg.controller:
        groups[CONTROLLER_GROUP] = ControllerMachine
    if cfg.shardkv:
        groups[cfg.shardkv.gid] = shardkv.make_machine
    return groups


def group_specs(cfg: Config, machines: dict[int, Callable[[Any], Any]],
                uid: int = 0) -> list[GroupSpec]:
    specs = []
    addr = cfg.node.advertise
    if cfg.controller:
        specs.append(GroupSpec(CONTROLLER_GROUP, cfg.controller.peers, cfg.controller.id,
                               machines[CONTROLLER_GROUP], addr, uid))
    if cfg.shardkv:
        specs.append(GroupSpec(cfg.shardkv.gid, cfg.shardkv.peers, cfg.shardkv.id,
                               machines[cfg.shardkv.gid], addr, uid))
    return specs


def raft_options(cfg: Config) -> RaftOptions:
    """The tunables; the driver fills in the id, the membership and the applied index."""
    r = cfg.raft
    return RaftOptions(
        id=-1, peers=(),
        election_tick=max(2, r.election_ms // r.heartbeat_ms), heartbeat_tick=1,
        pre_vote=r.pre_vote, check_quorum=r.check_quorum,
        max_size_per_msg=r.max_batch_bytes, max_inflight_msgs=r.max_inflight)


async def _start_http(cfg: Config, driver: Driver, store: NodeStore) -> Any:
    """[node] http: /metrics, /healthz, /readyz (eraftd/node/http.py)."""
    from .. import metrics
    from .http import HttpServer
    metrics.install(driver, store)
    http = HttpServer(driver, cfg.node.http, tls=cfg.tls)
    try:
        await http.start()
    except OSError as e:
        raise StartupError(f"cannot listen on {cfg.node.http} for HTTP: {e.strerror or e}; free "
                           f"the port or change [node] http in {cfg.path}") from None
    return http


async def _serve(cfg: Config, test_machine: str | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # the port first: a node that cannot listen writes nothing (no data_dir, no identity)
    access = Access(cfg.tls, cfg.node.testing)
    budget = connection_budget(cfg.node.max_connections)
    if isinstance(budget, str):
        raise StartupError(budget)
    admission = Admission(cfg.node.max_inflight_bytes, cfg.node.max_inflight_bytes_per_connection)
    # (no interceptor without TLS: every call on this loop would pay for one)
    server = AdmittingServer(grpc.aio.server(
        options=server_options() + admission_options(budget, cfg.node.connection_idle_ms),
        interceptors=[AccessInterceptor(access)] if access.enforce else None),
        admission, {**SHARDKV_ADMITTED, **CONTROLLER_ADMITTED})
    try:
        if cfg.tls:
            try:
                creds = cfg.tls.files.server_credentials(cfg.tls.require_client_auth)
            except TlsError as e:
                raise StartupError(f"{e} ([tls] in {cfg.path})") from None
            port = server.add_secure_port(cfg.node.listen, creds)
        else:
            port = server.add_insecure_port(cfg.node.listen)
    except RuntimeError:
        port = 0
    if port == 0:
        raise StartupError(f"cannot listen on {cfg.node.listen}: the address is in use or not "
                           f"local; free the port or change [node] listen in {cfg.path}")

    try:
        store = NodeStore.open(cfg.node.data_dir, cfg.identity(), fsync=cfg.raft.fsync)
    except StorageError as e:
        raise StartupError(str(e)) from None

    cluster = ClusterIdentity(store)
    try:
        driver: Driver | None = None

        def on_messages(batch, from_addr, to_me):
            driver.on_messages(batch, from_addr, to_me)

        async def on_snapshot(group, msg, chunks, from_addr):
            return await driver.on_snapshot(group, msg, chunks, from_addr)

        def on_unreachable(addr):
            driver.on_unreachable(addr)

        def check_peer(addr, uid):
            return driver.check_peer(addr, uid)

        def on_refused(addr, why):
            driver.on_refused(addr, why)

        transport = Transport(cfg.node.advertise, cfg.node.dial_address, on_messages,
                              on_snapshot, on_unreachable, self_uid=store.node_uid,
                              check_peer=check_peer, on_refused=on_refused,
                              pass_sender=True, peer_uid=lambda a: driver.peer_uids.get(a, 0),
                              on_stranger=lambda a: driver.on_stranger(a),
                              views=lambda: driver.views,
                              on_views=lambda a, v: driver.on_views(a, v),
                              tls=cfg.tls.files if cfg.tls else None, cluster=cluster)
        transport.add_to_server(server)
        driver = Driver(store, transport, cfg.raft.heartbeat_ms)
        driver.cluster = cluster
        shardkv = ShardKVNode(cfg) if cfg.shardkv and test_machine is None else None
        seed = random.SystemRandom().randrange(1 << 62)
        for spec in group_specs(cfg, _state_machines(cfg, test_machine, shardkv), store.node_uid):
            driver.add_group(spec, raft_options(cfg), random.Random(seed + spec.gid),
                             cfg.raft.snapshot_entries)
        AdminService(cfg, driver, store, test_machine is not None, access).add_to_server(server)
        ctrl = None
        if cfg.controller and test_machine is None:
            ctrl = ShardCtrlerService(driver, CONTROLLER_GROUP, dial=cfg.node.dial_address,
                                      access=access, tls=cfg.tls.files if cfg.tls else None,
                                      session_ttl_ms=cfg.controller.session_ttl_ms)
            ctrl.add_to_server(server)
        if shardkv:
            shardkv.add_to_server(server, driver)

        http = await _start_http(cfg, driver, store) if cfg.node.http else None
        await server.start()
        run = asyncio.create_task(driver.run())
        watch = asyncio.create_task(
            ConnectionWatch(cfg.node.listen, budget, cfg.node.connection_idle_ms).run())
        keeper = asyncio.create_task(ctrl.keep_cluster_id(cluster)) if ctrl else None
        if shardkv:
            shardkv.start()
        roles = " + ".join(
            (["controller"] if cfg.controller else [])
            + ([f"shardkv gid {cfg.shardkv.gid}"] if cfg.shardkv else []))
        line = (f"eraftd {__version__} ready: listening on {cfg.node.listen}"
                + (f" (advertise {cfg.node.advertise})" if cfg.node.advertise != cfg.node.listen else "")
                + f", roles: {roles}, node uid {uid_text(store.node_uid)}, data_dir: {cfg.node.data_dir}")
        print(line, flush=True)
        log.info("%s", line)
        _warn_if_open(cfg)

        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
        failed = run in done             # the driver stopped by itself: a disk error (or a bug)
        if failed:
            waiter.cancel()
            log.critical("stopping: %s", _driver_failure(run.exception()))
        else:
            log.info("shutting down")
        watch.cancel()
        if keeper:
            keeper.cancel()
        await server.stop(grace=0.5)     # stop accepting; in-flight calls get half a second
        if http:
            await http.stop()
        if shardkv:
            await shardkv.stop()         # no more configuration polls or migration
        driver.stop()                    # the round in progress finishes, its batch is written
        if not failed:
            await run
        for g in driver.groups.values():
            g.fail_pending(ConnectionAbortedError("node shutting down"))
        await transport.close()
        await _let_tasks_finish(RPC_WIND_DOWN_S)
        return EXIT_FAIL if failed else EXIT_OK
    finally:
        store.close()
