"""The native KVBatch path on the wire: parallel arrays in, one code per op out, mixed reads
and writes in one call, refusals with their reasons, the leader hint, and a whole batch sent
again (a client retry) applying once."""
from __future__ import annotations

import pytest
from skv_support import key_in, sharded  # noqa: F401

from eraftd._pb import kvbatch_pb2 as kvpb
from eraftd._pb import kvbatch_pb2_grpc as kvpb_grpc
from eraftd.controller.client import ControllerClient
from eraftd.testing import wait_for

pytestmark = pytest.mark.e2e

G1, G2 = 100, 101


def batch(session: int, floor: int, *ops) -> kvpb.BatchRequest:
    return kvpb.BatchRequest(session=session, floor=floor, ops=[o[0] for o in ops],
                             keys=[o[1] for o in ops], values=[o[2] for o in ops],
                             seqs=[o[3] for o in ops])


async def test_native_batches(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2), controllers=1).start()
    async with ControllerClient(c.controller_addresses()) as ctl:
        await ctl.join({G1: c.addresses(G1), G2: c.addresses(G2)})
        cfg = await ctl.query()
    leader = c.wait_leader(G1)
    stub = kvpb_grpc.KVBatchStub(leader.channel())
    mine, other = cfg.shards_of(G1), cfg.shards_of(G2)
    a, b = key_in(mine[0], "a"), key_in(mine[1], "b")

    def call(req: kvpb.BatchRequest) -> kvpb.BatchResponse:
        # until G1 has taken the configurations (a WRONG_GROUP for a key it will serve)
        return wait_for(lambda: (lambda r: r if r.codes[:1] != [kvpb.WRONG_GROUP] else None)(
            stub.Batch(req, timeout=5)), 30, "group 100 to serve")

    r = call(batch(7, 1, (kvpb.PUT, a, b"1", 1), (kvpb.APPEND, a, b"2", 2), (kvpb.GET, a, b"", 0),
                   (kvpb.GET, b, b"", 0), (kvpb.PUT, key_in(other[0]), b"x", 3),
                   (kvpb.PUT, b"k" * 5000, b"x", 4), (kvpb.APPEND, b, b"x", 0), (7, b, b"", 5)))
    assert r.err == ""
    codes = list(r.codes)
    assert codes[:2] + codes[3:] == [kvpb.OK, kvpb.OK, kvpb.NO_KEY, kvpb.WRONG_GROUP,
                                     kvpb.REFUSED, kvpb.REFUSED, kvpb.REFUSED]
    # a batch's reads and writes are concurrent operations: either order is linearizable
    assert (codes[2], r.values[2]) in ((kvpb.NO_KEY, b""), (kvpb.OK, b"12"))
    assert "key of 5000 bytes is longer than the limit of 4096 bytes" in r.messages[5]
    assert "needs a seq above 0" in r.messages[6] and "unknown op 7" in r.messages[7]
    assert set(r.messages) == {5, 6, 7}

    # the same batch again (a retry after a lost answer): applied once
    again = batch(7, 1, (kvpb.APPEND, a, b"3", 3), (kvpb.APPEND, b, b"4", 4))
    assert list(call(again).codes) == [kvpb.OK, kvpb.OK]
    assert list(call(again).codes) == [kvpb.OK, kvpb.OK]
    r = call(batch(0, 0, (kvpb.GET, a, b"", 0), (kvpb.GET, b, b"", 0)))
    assert list(r.values) == [b"123", b"4"]

    # no session: no deduplication
    for _ in range(2):
        call(batch(0, 0, (kvpb.APPEND, b, b"!", 0)))
    assert call(batch(0, 0, (kvpb.GET, b, b"", 0))).values[0] == b"4!!"

    r = stub.Batch(kvpb.BatchRequest(ops=[kvpb.GET], keys=[]), timeout=5)
    assert r.err.startswith("malformed batch") and not r.codes

    follower = next(n for n in c.group(G1) if n is not leader)
    r = kvpb_grpc.KVBatchStub(follower.channel()).Batch(batch(0, 0, (kvpb.GET, a, b"", 0)), timeout=5)
    assert (r.err, r.leader) == ("ErrWrongLeader", leader.address)
