"""ShardKVNode: everything a shardkv replica adds to `eraftd run`, in one object.

    skv = ShardKVNode(cfg)
    machines[cfg.shardkv.gid] = skv.make_machine      # the group's state machine
    ... driver built ...
    skv.add_to_server(server, driver)                 # ShardKVService, KVBatch, ShardMigration
    skv.start()                                       # configuration poller / migration
    ...
    await skv.stop()                                  # before the driver stops
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import grpc

from ..config import Config
from ..controller.client import ControllerClient
from ..controller.service import COMMAND_TIMEOUT_S as CONTROLLER_COMMAND_S
from .machine import ShardKVMachine
from .migration import Migrator, Peers
from .service import add_services
from .state import Limits

log = logging.getLogger("eraftd.shardkv")

# the configuration poll's query: each RPC outlasts the controller's own wait for its answer
# (its ReadIndex), so that a loaded controller's answer is taken, not asked for again and again
# (a stopped controller leader costs this long before the next controller is asked);
# CONTROLLER_TOTAL_S in all, then the next poll asks again
CONTROLLER_CALL_S = CONTROLLER_COMMAND_S + 0.5
CONTROLLER_TOTAL_S = 2 * CONTROLLER_CALL_S


class ShardKVNode:
    def __init__(self, cfg: Config) -> None:
        assert cfg.shardkv is not None
        self.cfg = cfg
        self.gid = cfg.shardkv.gid
        self.limits = Limits(cfg.shardkv.max_key_bytes, cfg.shardkv.max_value_bytes)
        self.driver: Any = None
        self._compactions: set[asyncio.Future] = set()
        self._task: asyncio.Task | None = None
        self._peers: Peers | None = None
        self._controller: ControllerClient | None = None
        self._stopping = False

    def make_machine(self, store: Any) -> ShardKVMachine:
        return ShardKVMachine(store, self.gid, on_cleared=self._compact_later)

    def _compact_later(self, fn: Callable[[], None]) -> None:
        """Reclaim the disk space of deleted shards in a thread (RocksDB releases the GIL);
        inline once stopping, so that none runs when the store closes."""
        if self._stopping:
            fn()
            return
        fut = asyncio.get_running_loop().run_in_executor(None, fn)
        self._compactions.add(fut)

        def done(f: asyncio.Future) -> None:
            self._compactions.discard(f)
            if not f.cancelled() and f.exception() is not None:
                log.warning("group %d: compaction after a shard deletion failed: %s",
                            self.gid, f.exception())
        fut.add_done_callback(done)

    def add_to_server(self, server: grpc.aio.Server, driver: Any) -> None:
        self.driver = driver
        add_services(server, driver, self.gid, self.limits, self.cfg.node.advertise,
                     self.cfg.shardkv.session_ttl_ms)

    def start(self) -> None:
        dial = self.cfg.node.dial_address
        tls = self.cfg.tls.files if self.cfg.tls else None     # the node's own certificate
        self._peers = Peers(dial, tls=tls)
        self._peers.cluster = getattr(self.driver, "cluster", None)
        self._controller = ControllerClient(list(self.cfg.shardkv.controllers), dial=dial, tls=tls,
                                            total_timeout=CONTROLLER_TOTAL_S,
                                            call_timeout=CONTROLLER_CALL_S)
        self._task = asyncio.get_running_loop().create_task(
            Migrator(self.driver, self.gid, self._controller, self._peers,
                     chunk_bytes=self.cfg.shardkv.migration_chunk_bytes,
                     own=self._own_servers).run())

    def _own_servers(self) -> tuple[str, ...]:
        """The group's servers as this node knows them: its members (which change with
        `member` commands) and the TOML's founding peers."""
        g = self.driver.groups.get(self.gid)
        members = tuple(g.members.addrs.values()) if g is not None else ()
        return members + tuple(self.cfg.shardkv.peers)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._controller is not None:
            await self._controller.close()
        if self._peers is not None:
            await self._peers.close()
        if self._compactions:
            await asyncio.gather(*self._compactions, return_exceptions=True)
