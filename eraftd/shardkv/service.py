"""The shardkv gRPC services of one group, on top of the driver.

* ShardKVService (shardkvpb, eRaft's contract): Command, GetShardsData, DeleteShardsData,
  GetStatus.  A follower answers ErrWrongLeader at once, with the leader's address (when
  known) in the trailing metadata key "leader".
* KVBatch (eraftkvpb): eraftd's native path, many operations per call.  Its writes (put,
  append, delete, cas) go to the log as one entry (or a few, for big batches); its reads (get,
  exists) share one ReadIndex round.  Scan: one page of one shard's keys in key order, read
  by the leader after a ReadIndex barrier (machine.scan_shard, bounded by count and bytes).
* ShardMigration (eraftmigrationpb): PullShard, a shard's data in bounded chunks for its new
  owner; any replica that has reached the configuration can answer (the shard is frozen).

Writes are checked (limits, shard served here) before they are proposed and again when they
apply; reads wait for a ReadIndex barrier, then check that the shard is served here and read
the committed data: linearizable, and never through the log.
"""
from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, AsyncIterator

import grpc

from .._pb import kvbatch_pb2 as kvpb
from .._pb import kvbatch_pb2_grpc as kvpb_grpc
from .._pb import shardkv_pb2 as pb
from .._pb import shardkv_pb2_grpc as pb_grpc
from .._pb import shardmigration_pb2 as migpb
from .._pb import shardmigration_pb2_grpc as migpb_grpc
from ..metrics import observe_batch, observe_request
from ..controller.machine import send_leader_hint
from ..controller.state import NSHARDS, command_id_problem
from ..node.driver import NotLeader
from ..node.storage import chunk_counts
from ..metrics import observe_migration
from ..sessions import DEFAULT_TTL_MS, Stamper
from .machine import (ENTRY_BATCH, ENTRY_DELETE, encode_bounded, encode_commands,
                      encode_shard_op, shard_copy)
from .state import (BEPULLING, ERR_MISMATCH, ERR_NO_KEY, ERR_NOT_READY, ERR_OUTDATED,
                    ERR_SESSION_EXPIRED, ERR_TIMEOUT, ERR_WRONG_GROUP, ERR_WRONG_LEADER, GET, NATIVE_KINDS, OK,
                    READ_KINDS, STATUS_NAMES, UNARY_KINDS, Limits, key2shard)

COMMAND_TIMEOUT_S = 2.0
ENTRY_MAX_BYTES = 1 << 20          # a native batch's writes go to the log in entries about this big
PULL_MAX_BYTES = 4 << 20           # the most a PullShard answer carries, whatever is asked
SCAN_MAX_BYTES = 1 << 20           # the most a Scan page carries, whatever is asked
SCAN_MAX_KEYS = 10_000             # ... and the most pairs
BATCH_MAX_OPS = 10_000             # the most operations one Batch call takes (the Clerk sends <= 512)

_OP_NAMES = {pb.GET: "get", pb.PUT: "put", pb.APPEND: "append"}
_CODE = {OK: kvpb.OK, ERR_NO_KEY: kvpb.NO_KEY, ERR_WRONG_GROUP: kvpb.WRONG_GROUP,
         ERR_MISMATCH: kvpb.MISMATCH, ERR_SESSION_EXPIRED: kvpb.SESSION_EXPIRED}


class _Base:
    def __init__(self, driver: Any, gid: int, timeout: float) -> None:
        self.driver = driver
        self.gid = gid
        self.timeout = timeout

    @property
    def group(self) -> Any:
        return self.driver.groups[self.gid]

    def state(self) -> Any:
        return self.group.sm.state

    async def _same_cluster(self, context) -> None:
        """A migration call from a node of another cluster is refused (eraftd/node/cluster.py)."""
        cluster = getattr(self.driver, "cluster", None)
        why = cluster.check_call(context) if cluster is not None else ""
        if why:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)


def stamper(driver: Any, gid: int, ttl_ms: int = DEFAULT_TTL_MS) -> Stamper:
    """The group's Stamper (eraftd/sessions.py): one per group, shared by its services."""
    return Stamper(ttl_ms, lambda: driver.groups[gid].sm.state.clock.now)


class ShardKVService(_Base, pb_grpc.ShardKVServiceServicer):
    def __init__(self, driver: Any, gid: int, limits: Limits, address: str,
                 timeout: float = COMMAND_TIMEOUT_S, stamp: Stamper | None = None) -> None:
        super().__init__(driver, gid, timeout)
        self.limits = limits
        self.address = address
        stamp = stamp or stamper(driver, gid)
        bounded = functools.partial(encode_commands, max_value_bytes=limits.max_value_bytes)
        self._join = lambda commands: stamp(bounded(commands))     # one function: one join

    async def Command(self, request: pb.CommandRequest, context) -> pb.CommandResponse:
        t0 = time.perf_counter()
        resp = await self._command(request, context)
        observe_request(_OP_NAMES.get(request.op, "other"), resp.err or "OK", time.perf_counter() - t0)
        return resp

    async def _command(self, request: pb.CommandRequest, context) -> pb.CommandResponse:
        key, value = request.key.encode(), request.value.encode()
        problem = (self.limits.refuse(request.op, key, value, kinds=UNARY_KINDS)
                   or request.op != GET and command_id_problem(request.command_id))
        if problem:
            return pb.CommandResponse(err=problem)
        shard = key2shard(key)
        g = self.group
        try:
            if not g.is_leader():
                raise NotLeader(g.leader_address)
            if request.op == GET:
                async with asyncio.timeout(self.timeout):
                    await self.driver.read_barrier(self.gid, joined=True)
                if not g.sm.state.can_serve(shard):
                    return pb.CommandResponse(err=ERR_WRONG_GROUP)
                v = g.sm.get(key)
                if v is None:
                    return pb.CommandResponse(err=ERR_NO_KEY)
                try:
                    return pb.CommandResponse(err=OK, value=v.decode())
                except UnicodeDecodeError:
                    return pb.CommandResponse(err=f"the value of {request.key!r} is not UTF-8 text "
                                                  f"(written through the native path); read it "
                                                  f"with eraftd's client")
            st = g.sm.state
            if not st.can_serve(shard):
                return pb.CommandResponse(err=ERR_WRONG_GROUP)
            sess = st.shards[shard].sessions.get(request.client_id) if request.client_id else None
            if sess is not None and sess.seen(request.command_id):
                return pb.CommandResponse(err=OK)     # a retry of an applied command
            async with asyncio.timeout(self.timeout):
                # the calls a round takes share one log entry (machine.encode_commands)
                res = await self.driver.propose_joined(self.gid, request.SerializeToString(),
                                                       self._join)
            return pb.CommandResponse(err=res[0][0])
        except NotLeader as e:      # also ProposalLost: outcome unknown, the client retries
            send_leader_hint(context, e.hint)
            return pb.CommandResponse(err=ERR_WRONG_LEADER)
        except asyncio.TimeoutError:
            return pb.CommandResponse(err=ERR_TIMEOUT)

    async def GetShardsData(self, request: pb.ShardOperationRequest, context) -> pb.ShardOperationResponse:
        """eRaft's pull: whole shards in one answer (eraftd groups use PullShard instead)."""
        await self._same_cluster(context)
        g = self.group
        if not g.is_leader():
            return pb.ShardOperationResponse(err=ERR_WRONG_LEADER)
        st = g.sm.state
        if st.config.num < request.config_num:
            return pb.ShardOperationResponse(err=ERR_NOT_READY)
        out = pb.ShardOperationResponse(err=OK, config_num=request.config_num)
        for shard in sorted(set(request.shard_ids)):
            if not 0 <= shard < NSHARDS:
                return pb.ShardOperationResponse(err=f"shard {shard} is outside 0..{NSHARDS - 1}")
            kv = out.shards[shard].kv
            cursor = b""
            while True:
                pairs, cursor, done = g.sm.scan_shard(shard, cursor, PULL_MAX_BYTES)
                for k, v in pairs:
                    kv[k.decode(errors="replace")] = v.decode(errors="replace")
                if done:
                    break
            for client, sess in st.shards[shard].sessions.items():
                ctx = out.last_operations[client]
                ctx.max_applied_command_id = max(ctx.max_applied_command_id, sess.max_applied())
                ctx.last_response.err = OK
        return out

    async def DeleteShardsData(self, request: pb.ShardOperationRequest, context) -> pb.ShardOperationResponse:
        """The new owner has these shards of configuration config_num: delete our copies."""
        await self._same_cluster(context)
        g = self.group
        try:
            if not g.is_leader():
                raise NotLeader(g.leader_address)
            num = g.sm.state.config.num
            if num > request.config_num:
                return pb.ShardOperationResponse(err=OK, config_num=request.config_num)
            if num < request.config_num:
                return pb.ShardOperationResponse(err=ERR_NOT_READY)
            st = g.sm.state
            if not any(0 <= s < NSHARDS and st.shards[s].status == BEPULLING
                       for s in request.shard_ids):
                # deleted already (only a deletion ends BEPULLING within a configuration):
                # a retry after an answer that came too late needs no commit, so a slow
                # group cannot keep the new owner asking for ever
                return pb.ShardOperationResponse(err=OK, config_num=request.config_num)
            async with asyncio.timeout(self.timeout):
                err = await self.driver.propose(
                    self.gid, encode_shard_op(ENTRY_DELETE, request.config_num, request.shard_ids))
            return pb.ShardOperationResponse(err=err, config_num=request.config_num)
        except NotLeader as e:
            send_leader_hint(context, e.hint)
            return pb.ShardOperationResponse(err=ERR_WRONG_LEADER)
        except asyncio.TimeoutError:
            return pb.ShardOperationResponse(err=ERR_TIMEOUT)

    async def GetStatus(self, request: pb.GetStatusRequest, context) -> pb.GetStatusResponse:
        g = self.group
        st = g.node.status()
        kv = g.sm.state
        return pb.GetStatusResponse(
            id=g.me, state=st.role.wire_name, term=st.term, last_applied=st.applied,
            commit_index=st.commit, storage_size=self.driver.store.size_bytes(),
            address=self.address, gid=self.gid,
            shards=[pb.ShardInfo(shard_id=i, status=STATUS_NAMES[kv.shards[i].status],
                                 keys=kv.shards[i].keys, bytes=kv.shards[i].bytes,
                                 sessions=len(kv.shards[i].sessions))
                    for i in kv.held()])


class KVBatchService(_Base, kvpb_grpc.KVBatchServicer):
    def __init__(self, driver: Any, gid: int, limits: Limits,
                 timeout: float = COMMAND_TIMEOUT_S, stamp: Stamper | None = None) -> None:
        super().__init__(driver, gid, timeout)
        self.limits = limits
        self.stamp = stamp or stamper(driver, gid)

    async def Batch(self, req: kvpb.BatchRequest, context) -> kvpb.BatchResponse:
        t0 = time.perf_counter()
        resp = await self._batch(req, context)
        resp.session_ttl_ms = self.stamp.ttl_ms    # what this node stamps as leader (the clerk's retries)
        observe_batch(resp.err or "OK", time.perf_counter() - t0, req.ops, resp.codes)
        return resp

    async def _batch(self, req: kvpb.BatchRequest, context) -> kvpb.BatchResponse:
        g = self.group
        if not g.is_leader():
            return kvpb.BatchResponse(err=ERR_WRONG_LEADER, leader=g.leader_address, untried=True)
        ops, keys, values, seqs, expected = req.ops, req.keys, req.values, req.seqs, req.expected
        n = len(ops)
        if n > BATCH_MAX_OPS:
            # each op costs the event loop (which also sends the heartbeats) some microseconds
            return kvpb.BatchResponse(err=f"a batch of {n} operations is more than one call takes "
                                          f"({BATCH_MAX_OPS}); send smaller batches", untried=True)
        if (len(keys) != n or len(values) not in (0, n) or len(seqs) not in (0, n)
                or len(expected) not in (0, n) or len(req.opened) not in (0, n)):
            return kvpb.BatchResponse(err=f"malformed batch: {n} ops, {len(keys)} keys, "
                                          f"{len(values)} values, {len(seqs)} seqs, "
                                          f"{len(expected)} expected, {len(req.opened)} opened",
                                      untried=True)
        codes = [kvpb.OK] * n
        out_values = [b""] * n
        messages: dict[int, str] = {}
        st = g.sm.state
        reads: list[int] = []
        writes: list[int] = []
        refuse, limits = self.limits.refuse, self.limits
        max_key, max_value = limits.max_key_bytes, limits.max_value_bytes
        session = req.session
        for i in range(n):
            op, key = ops[i], keys[i]
            read = op in READ_KINDS
            if op not in NATIVE_KINDS or len(key) > max_key or not read and (
                    values and len(values[i]) > max_value
                    or expected and len(expected[i]) > max_value):
                codes[i] = kvpb.REFUSED
                messages[i] = refuse(op, key, values[i] if values else b"",
                                     expected[i] if expected else b"")
            elif session and not read and (not seqs or seqs[i] == 0):
                codes[i] = kvpb.REFUSED
                messages[i] = "a write in a session needs a seq above 0; nothing stored"
            elif not st.can_serve(key2shard(key)):
                codes[i] = kvpb.WRONG_GROUP
            elif read:
                reads.append(i)
            else:
                writes.append(i)
        left = context.time_remaining() if writes and context is not None else None
        if left is not None and left <= 0:
            # the client has given up on this call: never propose it late (its retry may be
            # on its way, and the clerk's rule on `opened` counts on when a call can propose)
            return kvpb.BatchResponse(err=ERR_TIMEOUT, leader=g.leader_address, untried=True)
        try:
            async with asyncio.timeout(self.timeout):
                if writes and reads:
                    written, _ = await asyncio.gather(self._write(req, writes), self._barrier(reads))
                else:
                    written = await self._write(req, writes) if writes else []
                    await self._barrier(reads)
        except NotLeader as e:
            return kvpb.BatchResponse(err=ERR_WRONG_LEADER, leader=e.hint)
        except asyncio.TimeoutError:
            return kvpb.BatchResponse(err=ERR_TIMEOUT, leader=g.leader_address)
        for i, (err, v) in zip(writes, written):
            codes[i] = _CODE.get(err, kvpb.REFUSED)
            if codes[i] == kvpb.REFUSED:
                messages[i] = err          # refused when it applied (e.g. an append too long)
            if v:
                out_values[i] = v          # a CAS's MISMATCH: the current value
        if reads:
            st = g.sm.state
            get = g.sm.get
            for i in reads:
                key = keys[i]
                if not st.can_serve(key2shard(key)):
                    codes[i] = kvpb.WRONG_GROUP
                    continue
                v = get(key)
                if v is None:
                    codes[i] = kvpb.NO_KEY
                elif ops[i] == GET:
                    out_values[i] = v
        return kvpb.BatchResponse(codes=codes, values=out_values, messages=messages)

    async def _write(self, req: kvpb.BatchRequest, writes: list[int]) -> list[Any]:
        if not writes:
            return []
        n = len(req.ops)
        if len(writes) == n and req.ByteSize() <= ENTRY_MAX_BYTES:
            entries = [ENTRY_BATCH + req.SerializeToString()]
        else:
            entries = []
            values = req.values or [b""] * n
            seqs = req.seqs or [0] * n
            expected = req.expected or [b""] * n
            opened = req.opened or [False] * n
            part = kvpb.BatchRequest(session=req.session, floor=req.floor)
            size = 0
            for i in writes:
                part.ops.append(req.ops[i])
                part.keys.append(req.keys[i])
                part.values.append(values[i])
                part.seqs.append(seqs[i])
                part.expected.append(expected[i])
                part.opened.append(opened[i])
                size += len(req.keys[i]) + len(values[i]) + len(expected[i]) + 16
                if size >= ENTRY_MAX_BYTES:
                    entries.append(ENTRY_BATCH + part.SerializeToString())
                    part = kvpb.BatchRequest(session=req.session, floor=req.floor)
                    size = 0
            if part.ops:
                entries.append(ENTRY_BATCH + part.SerializeToString())
        bound, stamp = self.limits.max_value_bytes, self.stamp
        results = await self.driver.propose_many(self.gid, [stamp(encode_bounded(e, bound))
                                                            for e in entries])
        return [r for res in results for r in res]

    async def _barrier(self, reads: list[int]) -> None:
        if reads:
            await self.driver.read_barrier(self.gid)

    async def Scan(self, req: kvpb.ScanRequest, context) -> kvpb.ScanResponse:
        t0 = time.perf_counter()
        resp = await self._scan(req)
        observe_request("scan", resp.err or kvpb.Code.Name(resp.code), time.perf_counter() - t0)
        return resp

    async def _scan(self, req: kvpb.ScanRequest) -> kvpb.ScanResponse:
        g = self.group
        if not g.is_leader():
            return kvpb.ScanResponse(err=ERR_WRONG_LEADER, leader=g.leader_address)
        if not 0 <= req.shard < NSHARDS:
            return kvpb.ScanResponse(code=kvpb.REFUSED,
                                     message=f"shard {req.shard} is outside 0..{NSHARDS - 1}")
        if len(req.prefix) > self.limits.max_key_bytes:
            return kvpb.ScanResponse(code=kvpb.REFUSED, message=(
                f"prefix of {len(req.prefix)} bytes is longer than the limit of "
                f"{self.limits.max_key_bytes} bytes (max_key_bytes)"))
        if req.cursor and not req.cursor.startswith(b"k"):
            return kvpb.ScanResponse(code=kvpb.REFUSED, message="not a scan cursor (use the "
                                     "`next` of the previous page, or empty to start)")
        try:
            async with asyncio.timeout(self.timeout):
                await self.driver.read_barrier(self.gid)
        except NotLeader as e:
            return kvpb.ScanResponse(err=ERR_WRONG_LEADER, leader=e.hint)
        except asyncio.TimeoutError:
            return kvpb.ScanResponse(err=ERR_TIMEOUT, leader=g.leader_address)
        if not g.sm.state.can_serve(req.shard):
            return kvpb.ScanResponse(code=kvpb.WRONG_GROUP)
        pairs, nxt, done = g.sm.scan_shard(
            req.shard, req.cursor, min(req.max_bytes or SCAN_MAX_BYTES, SCAN_MAX_BYTES),
            req.prefix, min(req.limit or SCAN_MAX_KEYS, SCAN_MAX_KEYS))
        return kvpb.ScanResponse(code=kvpb.OK, keys=[k for k, _ in pairs],
                                 values=[v for _, v in pairs], more=not done, next=nxt)


class ShardMigrationService(_Base, migpb_grpc.ShardMigrationServicer):
    async def PullShard(self, req: migpb.PullShardRequest, context) -> migpb.PullShardResponse:
        await self._same_cluster(context)
        st = self.state()
        if st.config.num < req.config_num:
            return migpb.PullShardResponse(err=ERR_NOT_READY)
        if (st.config.num > req.config_num or not 0 <= req.shard < NSHARDS
                or st.shards[req.shard].status != BEPULLING):
            return migpb.PullShardResponse(err=ERR_OUTDATED)
        limit = min(max(req.max_bytes, 1), PULL_MAX_BYTES)
        resp = self.group.sm.pull_chunk(req.shard, req.cursor, limit, req.chunked_sessions)
        sh = st.shards[req.shard]
        resp.total_keys, resp.total_bytes = sh.keys, sh.bytes      # the puller's progress
        observe_migration(req.shard, "out", *chunk_counts(resp.kvs))
        return resp


class ShardBackupService(_Base, migpb_grpc.ShardBackupServicer):
    async def ReadShard(self, req: migpb.ReadShardRequest, context) -> AsyncIterator[migpb.ReadShardChunk]:
        """A point-in-time copy of one shard (`eraftd backup`): after a read barrier (so every
        write acknowledged before this call has applied here), one pinned view of the group's
        data (a SnapshotReader: writes that apply meanwhile are not in it, and the group keeps
        serving them); whether the group serves the shard, and at which configuration, is read
        from that same view; then its pairs, chunk after chunk."""
        g = self.group
        if not 0 <= req.shard < NSHARDS:
            yield migpb.ReadShardChunk(err=f"shard {req.shard} is outside 0..{NSHARDS - 1}")
            return
        try:
            if not g.is_leader():
                raise NotLeader(g.leader_address)
            async with asyncio.timeout(self.timeout):
                barrier = await self.driver.read_barrier(self.gid)
        except NotLeader as e:
            yield migpb.ReadShardChunk(err=ERR_WRONG_LEADER, leader=e.hint)
            return
        except asyncio.TimeoutError:
            yield migpb.ReadShardChunk(err=ERR_TIMEOUT, leader=g.leader_address)
            return
        view = g.sm.store.snapshot_reader()
        try:
            if view.meta.index < barrier:       # never: the barrier ends after the write
                yield migpb.ReadShardChunk(err=ERR_TIMEOUT, leader=g.leader_address)
                return
            copy = shard_copy(view, self.gid, req.shard, min(max(req.max_bytes, 1), PULL_MAX_BYTES))
            if copy is None:
                yield migpb.ReadShardChunk(err=ERR_WRONG_GROUP)
                return
            st, chunks = copy
            yield migpb.ReadShardChunk(err=OK, config_num=st.config.num, index=view.meta.index,
                                       term=view.meta.term, keys=st.shards[req.shard].keys)
            for chunk in chunks:
                yield migpb.ReadShardChunk(kvs=chunk)
            yield migpb.ReadShardChunk(done=True)
        finally:
            view.close()


# Admission (eraftd/node/admission.py): each client method's answer when its request is not
# admitted.  busy: ErrTimeout on eRaft's contract (eRaft's clerks retry it), the words on the
# native path (the Clerk retries a failed batch with back-off); too big: the words.
ADMITTED = {
    "/shardkvpb.ShardKVService/Command":
        lambda why, busy: pb.CommandResponse(err=ERR_TIMEOUT if busy else why),
    "/eraftkvpb.KVBatch/Batch": lambda why, busy: kvpb.BatchResponse(err=why, untried=True),
    "/eraftkvpb.KVBatch/Scan": lambda why, busy: kvpb.ScanResponse(err=why),
}


def add_services(server: grpc.aio.Server, driver: Any, gid: int, limits: Limits,
                 address: str, session_ttl_ms: int = DEFAULT_TTL_MS) -> None:
    stamp = stamper(driver, gid, session_ttl_ms)
    pb_grpc.add_ShardKVServiceServicer_to_server(
        ShardKVService(driver, gid, limits, address, stamp=stamp), server)
    kvpb_grpc.add_KVBatchServicer_to_server(KVBatchService(driver, gid, limits, stamp=stamp), server)
    migpb_grpc.add_ShardMigrationServicer_to_server(ShardMigrationService(driver, gid, COMMAND_TIMEOUT_S),
                                                   server)
    migpb_grpc.add_ShardBackupServicer_to_server(ShardBackupService(driver, gid, COMMAND_TIMEOUT_S),
                                                server)
