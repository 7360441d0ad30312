"""The native KVBatch path on the wire: parallel arrays in, one code per op out, mixed reads
and writes in one call, refusals with their reasons, the leader hint, and a whole batch sent
again (a client retry) applying once; delete / exists / cas and Scan pages; eRaft's unary
Command refusing what is not eRaft's."""
from __future__ import annotations

import pytest
from skv_support import key_in, sharded  # noqa: F401

from eraftd._pb import kvbatch_pb2 as kvpb
from eraftd._pb import kvbatch_pb2_grpc as kvpb_grpc
from eraftd._pb import shardkv_pb2 as pb
from eraftd._pb import shardkv_pb2_grpc as pb_grpc
from eraftd.controller.client import ControllerClient
from eraftd.testing import wait_for

pytestmark = pytest.mark.e2e

G1, G2 = 100, 101


def batch(session: int, floor: int, *ops) -> kvpb.BatchRequest:
    """ops: (op, key, value, seq) or (op, key, value, seq, expected)."""
    req = kvpb.BatchRequest(session=session, floor=floor, ops=[o[0] for o in ops],
                            keys=[o[1] for o in ops], values=[o[2] for o in ops],
                            seqs=[o[3] for o in ops])
    if any(len(o) == 5 for o in ops):
        req.expected.extend(o[4] if len(o) == 5 else b"" for o in ops)
    return req


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

    # delete / exists / cas: codes, and a MISMATCH's current value
    r = call(batch(7, 5, (kvpb.EXISTS, a, b"", 0), (kvpb.DELETE, a, b"", 5),
                   (kvpb.CAS, b, b"new", 6, b"wrong"), (kvpb.CAS_ABSENT, b, b"x", 7),
                   (kvpb.CAS_ABSENT, a, b"fresh", 8), (kvpb.CAS, b, b"swapped", 9, b"4!!"),
                   (kvpb.CAS, b, b"z", 10, b"x" * ((1 << 20) + 1))))
    assert list(r.codes[1:6]) == [kvpb.OK, kvpb.MISMATCH, kvpb.MISMATCH, kvpb.OK, kvpb.OK]
    assert r.codes[0] == kvpb.OK and r.values[0] == b""          # exists ships no value
    assert list(r.values[2:4]) == [b"4!!", b"4!!"]
    assert r.codes[6] == kvpb.REFUSED
    assert r.messages[6].startswith("expected value of 1048577 bytes is longer than the limit")
    r = call(batch(7, 11, (kvpb.DELETE, a, b"", 5), (kvpb.GET, a, b"", 0), (kvpb.GET, b, b"", 0),
                   (kvpb.DELETE, key_in(mine[0], "none"), b"", 11)))
    # seq 5 deleted once: its retry is a duplicate (existed), and "fresh" stays
    assert list(r.codes) == [kvpb.OK, kvpb.OK, kvpb.OK, kvpb.NO_KEY]
    assert list(r.values[1:3]) == [b"fresh", b"swapped"]

    # Scan: pages of one shard in key order; WRONG_GROUP where the shard is not served
    keys = sorted(key_in(mine[1], "s%02d" % i) for i in range(25))
    call(batch(0, 0, *[(kvpb.PUT, k, k * 3, 0) for k in keys]))
    got, cursor = [], b""
    while True:
        page = stub.Scan(kvpb.ScanRequest(shard=mine[1], prefix=key_in(mine[1], "s"),
                                          cursor=cursor, limit=10), timeout=5)
        assert (page.err, page.code) == ("", kvpb.OK) and len(page.keys) <= 10
        got += list(zip(page.keys, page.values))
        if not page.more:
            break
        cursor = page.next
    assert got == [(k, k * 3) for k in keys]
    assert stub.Scan(kvpb.ScanRequest(shard=other[0]), timeout=5).code == kvpb.WRONG_GROUP
    bad = stub.Scan(kvpb.ScanRequest(shard=10), timeout=5)
    assert bad.code == kvpb.REFUSED and bad.message == "shard 10 is outside 0..9"

    # eRaft's Command keeps refusing anything but GET / PUT / APPEND
    cr = pb_grpc.ShardKVServiceStub(leader.channel()).Command(
        pb.CommandRequest(key=b.decode(), op=kvpb.DELETE, client_id=3, command_id=1), timeout=5)
    assert cr.err == "unknown op 3: expected PUT (0), APPEND (1) or GET (2)"

    follower = next(n for n in c.group(G1) if n is not leader)
    fstub = kvpb_grpc.KVBatchStub(follower.channel())
    r = fstub.Batch(batch(0, 0, (kvpb.GET, a, b"", 0)), timeout=5)
    assert (r.err, r.leader) == ("ErrWrongLeader", leader.address)
    r = fstub.Scan(kvpb.ScanRequest(shard=mine[0]), timeout=5)
    assert (r.err, r.leader) == ("ErrWrongLeader", leader.address)
