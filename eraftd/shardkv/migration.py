"""The leader's background work: follow configurations, pull arriving shards, collect garbage.

Every `poll_s` the group's leader looks at its applied state:

* every shard SERVING: ask the controllers for configuration num + 1 (a read, nothing is
  written anywhere when there is none) and propose it, as ours or not (state.is_ours: does it
  list our gid with our own servers?);
* a PULLING shard: pull it from its previous owner in bounded chunks (PullShard, any of its
  replicas that reached the configuration; its sessions first, then its data, each chunk
  within chunk_bytes whatever their number: machine.pull_chunk) and propose each chunk
  (InsertChunk, applied only if it follows the last chunk inserted, so a retried or doubled
  chunk changes nothing);
* GCING shards: tell the previous owner to delete them (DeleteShardsData, which deletes
  through its log), then propose GC_DONE (GCING -> SERVING);
* while some shard waits (not SERVING), every `abandon_check_s`: ask for the latest
  configuration and, if it abandoned a shard we wait on after our configuration, propose
  ABANDONED for those (state.apply_abandoned: stop waiting on a lost group).

Each step depends only on the replicated state and is idempotent, so a new leader, a restart
or a lost message just repeats a step.  One task per (configuration, shard) pull and per
(configuration, previous owner) collection; they end when the group's state has moved on or
this node stops leading.

Every wait on the way, and its bound (none grows without limit; none needs an event to end):

* the step loop sleeps `poll_s` (POLL_S, 0.1 s) between looks at the applied state; a step
  that fails (not leading, no controller, a timeout, a bug) is dropped and the next one
  starts over from the state, so a leader elected after a configuration applied, or a task
  that died, is picked up by the next look;
* the configuration poll (only while settled): ControllerClient.query with its own bounds
  (node.py: CONTROLLER_CALL_S per RPC, CONTROLLER_TOTAL_S in all, back-off 20 ms to 0.5 s
  inside); its channels reconnect within a second of a controller's return
  (transport.channel_options), not after gRPC's default back-off of up to 2 minutes;
* a pull or a deletion that got no answer sleeps poll_s, doubling to RETRY_MAX_S (1 s), and
  goes back to poll_s after every answer: never longer than a second between tries;
* a pull that got no answer asks for half as much next time (down to MIN_CHUNK_BYTES, 16 KB;
  back up to CHUNK_BYTES, doubling, after each answer that came within a quarter of
  PULL_CALL_S): a chunk too big to be read and sent in time on a loaded machine does not
  make every retry fail the same way;
* one PullShard (a read, any replica of the old owner) gets PULL_CALL_S per replica tried,
  one DeleteShardsData GC_CALL_S; a replica that has not answered within HEDGE_S (1 s) is
  still waited for while the next is asked too (Peers.call), so a stopped replica costs a
  second, not the deadline;
* GC_CALL_S is longer than the old owner's own wait for its deletion to commit
  (service.COMMAND_TIMEOUT_S), so its answer (OK, or ErrTimeout) comes back rather than our
  deadline, and a retry of a deletion that has applied is answered at once without another
  commit (service.DeleteShardsData), so a slow old owner cannot keep the handshake going
  round for ever;
* our own proposals (a configuration, a chunk, GC_DONE) wait up to PROPOSE_TIMEOUT_S; the
  driver ends the wait at once (NotLeader / ProposalLost) when this node stops leading, so the
  bound is only a last resort.  Giving up earlier on a proposal that would still commit (a
  loaded group) only re-pulls the chunk and proposes it again, which applies as ErrOutDated:
  more work at the moment the group has least time for it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Iterable, Sequence

import grpc

from .. import metrics
from .._pb import shardkv_pb2 as pb
from .._pb import shardkv_pb2_grpc as pb_grpc
from .._pb import shardmigration_pb2 as migpb
from .._pb import shardmigration_pb2_grpc as migpb_grpc
from ..config import ShardKVSection
from ..controller.client import ControllerError, ControllerUnavailable
from ..controller.machine import LEADER_METADATA_KEY
from ..errors import rpc_problem
from ..node.driver import NotLeader
from ..node.storage import chunk_counts
from ..node.transport import channel_options
from ..tls import TlsFiles, channel
from .machine import (ENTRY_ABANDONED, ENTRY_GC_DONE, encode_config, encode_insert,
                      encode_shard_op)
from .service import COMMAND_TIMEOUT_S
from .state import ERR_WRONG_LEADER, GCING, OK, PULLING, is_ours

log = logging.getLogger("eraftd.shardkv")

POLL_S = 0.1
RETRY_MAX_S = 1.0
CHUNK_BYTES = ShardKVSection.migration_chunk_bytes   # [shardkv] migration_chunk_bytes' default
ABANDON_CHECK_S = 1.0
MIN_CHUNK_BYTES = 16 << 10
PULL_CALL_S = 2.0
GC_CALL_S = COMMAND_TIMEOUT_S + 3.0
PROPOSE_TIMEOUT_S = 30.0
HEDGE_S = 1.0


class Peers:
    """Channels to other groups' replicas (shared, one per address), and one call that tries a
    group's servers in turn, the one that answered last time first, following leader hints."""

    def __init__(self, dial: Callable[[str], str] = lambda a: a, hedge_s: float = HEDGE_S,
                 tls: TlsFiles | None = None) -> None:
        self._dial = dial
        self.tls = tls
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._last_good: dict[tuple[str, ...], str] = {}
        self.hedge_s = hedge_s
        self.cluster: Any = None            # the node's ClusterIdentity (ShardKVNode sets it)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call carries: this node's cluster id (eraftd/node/cluster.py)."""
        return self.cluster.metadata() if self.cluster is not None else ()

    def channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = channel(self._dial(addr), self.tls, channel_options(),
                                                name=addr)
        return ch

    async def close(self) -> None:
        chans, self._channels = self._channels, {}
        for ch in chans.values():
            await ch.close()

    async def call(self, servers: Sequence[str], method: Callable[[grpc.aio.Channel], Any],
                   request: Any, timeout: float,
                   unusable: Callable[[Any], str] = lambda resp: "") -> tuple[Any | None, str]:
        """The first answer with err OK from one of `servers` (None if none), and what the
        last attempt said.  Each server gets `timeout`; one that has not answered after
        `hedge_s` stays asked while the next is asked too (a stopped leader costs hedge_s,
        not the whole timeout; a slow one's answer still counts).  unusable(resp): why an
        OK answer cannot be used ("" = it can); the next server is asked instead."""
        servers = tuple(servers)
        good = self._last_good.get(servers)
        order = ([good] if good in servers else []) + [s for s in servers if s != good]
        last = "no servers"
        tried: set[str] = set()
        asking: dict[asyncio.Task, str] = {}

        async def ask(addr: str) -> tuple[Any, str]:
            call = method(self.channel(addr))(request, timeout=timeout, metadata=self.metadata())
            resp = await call
            hint = ""
            if resp.err == ERR_WRONG_LEADER:
                hint = dict(await call.trailing_metadata() or ()).get(LEADER_METADATA_KEY, "")
            return resp, hint

        def ask_next() -> None:
            while order:
                addr = order.pop(0)
                if addr not in tried:
                    tried.add(addr)
                    asking[asyncio.get_running_loop().create_task(ask(addr))] = addr
                    return
        try:
            ask_next()
            while asking:
                done, _ = await asyncio.wait(asking, timeout=self.hedge_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    addr = asking.pop(t)
                    try:
                        resp, hint = t.result()
                    except grpc.aio.AioRpcError as e:
                        last = f"{addr}: {rpc_problem(e, self.tls is not None)}"
                        continue
                    why = unusable(resp) if resp.err == OK else resp.err
                    if not why:
                        self._last_good[servers] = addr
                        return resp, f"{addr}: OK"
                    last = f"{addr}: {why}"
                    if hint in servers and hint not in tried:
                        order.insert(0, hint)
                ask_next()          # after an answer that was not OK, or hedge_s of silence
            return None, last
        finally:
            for t in asking:
                t.cancel()
            await asyncio.gather(*asking, return_exceptions=True)


SET_SERVERS_EVERY_S = 1.0   # at most this often, the leader asks the controller to list its voters


def _misread(cursor: bytes, resp: migpb.PullShardResponse) -> str:
    """Why a PullShard answer is of no use: a session cursor (machine.pull_chunk) answered by
    a replica from before chunked sessions, which took it for a key."""
    if cursor[:1] in (b"d", b"e") and not resp.chunked_sessions:
        return "this replica predates chunked sessions; asking another"
    return ""


class Migrator:
    def __init__(self, driver: Any, gid: int, controller: Any, peers: Peers,
                 poll_s: float = POLL_S, chunk_bytes: int = CHUNK_BYTES,
                 pull_call_s: float = PULL_CALL_S, gc_call_s: float = GC_CALL_S,
                 propose_timeout: float = PROPOSE_TIMEOUT_S,
                 own: Callable[[], Iterable[str]] = lambda: (),
                 abandon_check_s: float = ABANDON_CHECK_S) -> None:
        self.driver = driver
        self.gid = gid
        self.own = own   # the group's own servers now: its members' addresses and TOML peers
        self.abandon_check_s = abandon_check_s
        self._abandon_checked = float("-inf")
        self.controller = controller        # ControllerClient (query)
        self.peers = peers
        self.poll_s = poll_s
        self.chunk_bytes = chunk_bytes
        self.pull_call_s = pull_call_s
        self.gc_call_s = gc_call_s
        self.propose_timeout = propose_timeout
        self._tasks: dict[tuple, asyncio.Task] = {}
        self._servers_asked = float("-inf")

    @property
    def group(self) -> Any:
        return self.driver.groups[self.gid]

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.step()
                except (NotLeader, asyncio.TimeoutError, ControllerUnavailable):
                    pass
                except Exception:       # keep following; the next poll retries
                    log.exception("group %d: configuration / migration step failed", self.gid)
                await asyncio.sleep(self.poll_s)
        finally:
            for t in list(self._tasks.values()):
                t.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def step(self) -> None:
        g = self.group
        cluster = getattr(self.driver, "cluster", None)
        if cluster is not None and not cluster.value:
            await self.controller.query(-1)     # every replica asks until it knows its cluster
            self._our_controllers()
        if not g.is_leader():
            return
        st = g.sm.state
        await self._follow_membership(g, st)
        if st.settled():
            await self._next_config(st.config.num)
            return
        num = st.config.num
        for shard in st.shards_in(PULLING):
            self._ensure(("pull", num, shard), lambda s=shard: self._pull(num, s))
        by_owner: dict[int, list[int]] = {}
        for shard in st.shards_in(GCING):
            by_owner.setdefault(st.previous_owner(shard), []).append(shard)
        for owner, shards in sorted(by_owner.items()):
            self._ensure(("gc", num, owner, tuple(shards)), lambda o=owner, s=shards: self._gc(num, o, s))
        now = asyncio.get_running_loop().time()
        if now - self._abandon_checked >= self.abandon_check_s:
            self._abandon_checked = now
            self._ensure(("abandoned", num), lambda: self._abandoned(num))

    async def _abandoned(self, num: int) -> None:
        """Stop waiting on the shards the latest configuration abandoned after ours."""
        try:
            latest = await self.controller.query(-1)
        except ControllerUnavailable:
            return                          # the next check asks again
        st = self.group.sm.state
        if st.config.num != num:
            return
        shards = st.abandoned_here(latest)
        if shards and await self._propose(encode_shard_op(ENTRY_ABANDONED, num, shards)) == OK:
            log.warning("group %d: shards %s were abandoned (configuration %s): no longer "
                        "waiting on their lost group; served empty where ours",
                        self.gid, shards, ", ".join(str(latest.abandoned[s]) for s in shards))

    def _ensure(self, key: tuple, make: Callable[[], Awaitable[None]]) -> None:
        t = self._tasks.get(key)
        if t is None or t.done():
            t = self._tasks[key] = asyncio.get_running_loop().create_task(make())
            t.add_done_callback(lambda t, k=key: self._done(k, t))

    def _done(self, key: tuple, t: asyncio.Task) -> None:
        if self._tasks.get(key) is t:
            del self._tasks[key]
        if not t.cancelled() and t.exception() is not None and not isinstance(
                t.exception(), (NotLeader, asyncio.TimeoutError)):
            log.warning("group %d: %s task failed: %r", self.gid, key[0], t.exception())

    async def _propose(self, data: bytes) -> Any:
        # not wait_for: it can swallow a cancel (3.11)
        async with asyncio.timeout(self.propose_timeout):
            return await self.driver.propose(self.gid, data)

    async def _follow_membership(self, g: Any, st: Any) -> None:
        """The controller's server list for our gid follows the group's voters (`member`
        commands change them): every client, eRaft's too, then routes to the new replicas.
        The leader asks for it (SetServers) until a configuration it has taken says so."""
        voters = g.members.voter_addresses()
        listed = st.config.groups.get(self.gid)
        if not voters or listed is None or tuple(listed) == voters:
            return
        now = asyncio.get_running_loop().time()
        if now - self._servers_asked < SET_SERVERS_EVERY_S:
            return
        self._servers_asked = now
        try:
            cfg = await self.controller.set_servers(self.gid, voters)
        except ControllerError as e:   # e.g. the gid left meanwhile: nothing to follow
            log.debug("group %d: the controller would not list %s: %s", self.gid, voters, e)
            return
        log.info("group %d: the controller lists its servers as %s (configuration %d)",
                 self.gid, ", ".join(cfg.groups.get(self.gid, ())), cfg.num)

    async def _next_config(self, num: int) -> None:
        cfg = await self.controller.query(num + 1)
        if not self._our_controllers():
            return
        if cfg.num != num + 1:
            return
        st = self.group.sm.state
        if st.config.num != num or not st.settled():
            return
        own = frozenset(self.own())
        ours = not own or is_ours(cfg, self.gid, own)
        if not ours:
            log.warning("group %d: configuration %d lists gid %d with servers %s, not this "
                        "group's (%s): taking it owning nothing", self.gid, cfg.num, self.gid,
                        ", ".join(cfg.groups[self.gid]), ", ".join(sorted(own)))
        err = await self._propose(encode_config(cfg, ours))
        if err != OK:
            log.debug("group %d: configuration %d not taken: %s", self.gid, cfg.num, err)

    def _our_controllers(self) -> bool:
        """The controllers answer with their cluster id: a node that knows none takes it; one
        of another cluster follows none of their configurations (logged once a minute)."""
        cluster = getattr(self.driver, "cluster", None)
        if cluster is None:
            return True
        return not cluster.learn(getattr(self.controller, "cluster_id", 0),
                                 f"the controllers ({', '.join(self.controller.addresses)})")

    def _current(self, num: int, shard: int, status: int) -> bool:
        g = self.group
        st = g.sm.state
        return g.is_leader() and st.config.num == num and st.shards[shard].status == status

    async def _pull(self, num: int, shard: int) -> None:
        """Pull one arriving shard, chunk after chunk, until it is in (or things moved on)."""
        delay = self.poll_s
        chunks = 0
        size = self.chunk_bytes
        progress = None                 # the dashboard's record (metrics.migrations), once leading
        while self._current(num, shard, PULLING):
            st = self.group.sm.state
            owner = st.previous_owner(shard)
            progress = progress or metrics.migration_started(
                self.gid, shard, num, owner, (st.shards[shard].keys, st.shards[shard].bytes), time.time())
            servers = st.prev.groups.get(owner, ())
            cursor = st.shards[shard].cursor
            req = migpb.PullShardRequest(config_num=num, shard=shard, cursor=cursor,
                                         max_bytes=size, gid=self.gid, chunked_sessions=True)
            loop = asyncio.get_running_loop()
            asked = loop.time()
            resp, last = await self.peers.call(
                servers, lambda ch: migpb_grpc.ShardMigrationStub(ch).PullShard, req,
                self.pull_call_s, lambda r, c=cursor: _misread(c, r))
            if resp is None:
                log.debug("group %d: pull of shard %d (config %d) from group %d: %s",
                          self.gid, shard, num, owner, last)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                size = max(size // 2, min(MIN_CHUNK_BYTES, self.chunk_bytes))
                continue
            delay = self.poll_s
            if loop.time() - asked < self.pull_call_s / 4:     # quick: ask for more again
                size = min(size * 2, self.chunk_bytes)
            if not self._current(num, shard, PULLING):
                return
            if await self._propose(encode_insert(num, shard, cursor, resp)) != OK:
                continue                    # someone else's chunk got there first: re-read
            chunks += 1
            sh = self.group.sm.state.shards[shard]
            metrics.migration_chunk(progress, chunk_counts(resp.kvs), (sh.keys, sh.bytes),
                                    (resp.total_keys, resp.total_bytes), resp.done, time.time())
            if resp.done:
                log.info("group %d: shard %d (config %d) arrived from group %d (%d chunks)",
                         self.gid, shard, num, owner, chunks)

    async def _gc(self, num: int, owner: int, shards: list[int]) -> None:
        """Tell the previous owner to delete the shards we have, then stop tracking them."""
        delay = self.poll_s
        while all(self._current(num, s, GCING) for s in shards):
            servers = self.group.sm.state.prev.groups.get(owner, ())
            req = pb.ShardOperationRequest(config_num=num, shard_ids=shards)
            resp, last = await self.peers.call(
                servers, lambda ch: pb_grpc.ShardKVServiceStub(ch).DeleteShardsData, req, self.gc_call_s)
            if resp is None:
                log.debug("group %d: delete of shards %s (config %d) at group %d: %s",
                          self.gid, shards, num, owner, last)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            await self._propose(encode_shard_op(ENTRY_GC_DONE, num, shards))
            log.info("group %d: group %d deleted shards %s (config %d)", self.gid, owner, shards, num)
            return
