"""Fuzz of the request handlers (issue 17) against a real small cluster (one controller, one
shardkv replica of group 100, joined): random field values for KVBatch Batch and Scan,
ShardKVService Command and ShardCtrlerService Command.

Every call gets an answer or a clean error (never INTERNAL or UNKNOWN: an unhandled exception in
a handler; never a missed deadline), no node exits, and no node logs a traceback.  Bounded:
hypothesis max_examples per handler, derandomized; the whole test takes well under a minute."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eraftd._pb import kvbatch_pb2 as kvpb
from eraftd._pb import kvbatch_pb2_grpc as kvpb_grpc
from eraftd._pb import shardctrler_pb2 as cpb
from eraftd._pb import shardctrler_pb2_grpc as cpb_grpc
from eraftd._pb import shardkv_pb2 as pb
from eraftd._pb import shardkv_pb2_grpc as pb_grpc
from eraftd.controller.client import ControllerClient
from eraftd.testing import ShardedCluster

pytestmark = pytest.mark.e2e

G = 100
CALL_TIMEOUT = 30       # generous (2 shared cores): a handler answers in milliseconds
NOT_CLEAN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}

INT64 = (-(1 << 63), (1 << 63) - 1)
INT32 = (-(1 << 31), (1 << 31) - 1)
i64 = st.one_of(st.integers(-3, 5), st.integers(*INT64))
i32 = st.one_of(st.integers(-3, 12), st.integers(*INT32))
u32 = st.one_of(st.integers(0, 5), st.integers(0, (1 << 32) - 1))
u64 = st.one_of(st.integers(0, 5), st.integers(0, (1 << 64) - 1))
blob = st.one_of(st.binary(max_size=12), st.just(b""), st.binary(min_size=300, max_size=400))
text = st.one_of(st.text(max_size=12), st.sampled_from(["", "127.0.0.1:1", "a:0", "[::1]:80"]))
enum = st.one_of(st.integers(0, 7), st.integers(0, (1 << 31) - 1))


@st.composite
def batch_req(draw) -> kvpb.BatchRequest:
    """Mostly well-shaped (one key, value, seq per op, or none) so the items are looked at."""
    n = draw(st.integers(0, 5))

    def per_op(items):
        return draw(st.one_of(st.lists(items, min_size=n, max_size=n), st.just([]),
                              st.lists(items, max_size=5)))
    return kvpb.BatchRequest(
        session=draw(i64), floor=draw(u64), ops=draw(st.lists(st.one_of(st.integers(0, 6), enum),
                                                              min_size=n, max_size=n)),
        keys=draw(st.lists(blob, min_size=n, max_size=n)), values=per_op(blob),
        seqs=per_op(u64), expected=per_op(blob))


scan_req = st.builds(kvpb.ScanRequest, shard=i32, prefix=blob, cursor=blob, limit=u32,
                     max_bytes=u32)
command_req = st.builds(pb.CommandRequest, key=text, value=text, op=enum, client_id=i64,
                        command_id=i64)
servers = st.dictionaries(i32, st.builds(cpb.Servers, servers=st.lists(text, max_size=3)),
                          max_size=2)
ctrl_req = st.builds(
    cpb.CommandRequest, servers=servers, gids=st.lists(i32, max_size=3), shard=i32, gid=i32,
    num=i32, op=enum, client_id=i64, command_id=i64,
    abandon_shards=st.lists(i32, max_size=3), force=st.booleans())

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def answered(call, req) -> None:
    try:
        call(req, timeout=CALL_TIMEOUT)
    except grpc.RpcError as e:
        assert e.code() not in NOT_CLEAN, f"{e.code().name}: {e.details()} for {req!r}"
        assert "Traceback" not in (e.details() or "")


def fuzz(call, strategy) -> None:
    @SETTINGS
    @given(req=strategy)
    def one(req):
        answered(call, req)
    one()


def test_random_requests_get_answers_or_clean_errors(tmp_path):
    c = ShardedCluster(tmp_path, gids=(G,), replicas=1, controllers=1)
    try:
        c.start()
        c.wait_leader(0)
        c.wait_leader(G)

        async def join() -> None:
            async with ControllerClient(c.controller_addresses(), total_timeout=60) as ctl:
                await ctl.join({G: c.addresses(G)})
        asyncio.run(join())
        kv = c.group(G)[0].channel()
        ctrl = c.controllers[0].channel()
        batch = kvpb_grpc.KVBatchStub(kv).Batch
        scan = kvpb_grpc.KVBatchStub(kv).Scan
        command = pb_grpc.ShardKVServiceStub(kv).Command
        ctrl_command = cpb_grpc.ShardCtrlerServiceStub(ctrl).Command

        for call, strategy in ((batch, batch_req()), (scan, scan_req), (command, command_req),
                               (ctrl_command, ctrl_req)):
            fuzz(call, strategy)
            assert all(n.running() for n in c.nodes), [n.log_text()[-2000:] for n in c.nodes]
        for n in c.nodes:
            text_ = n.log_text()
            assert "Traceback" not in text_, f"{n.name}:\n{text_[-3000:]}"
    finally:
        c.close()
