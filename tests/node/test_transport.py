"""Transport on loopback: real grpc.aio servers on free 127.0.0.1 ports.

No sleeps for synchronisation: every wait is on an asyncio.Event with a timeout.
"""
from __future__ import annotations

import asyncio
import random
import socket
import time

import grpc
import grpc.aio
import pytest

from eraftd.node.transport import SNAPSHOT_CHUNK_BYTES, Transport, server_options
from eraftd.raft.messages import Entry, Message, MsgType, SnapshotMeta

TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """Collects delivered (group, Message) pairs; wait until a predicate holds."""

    def __init__(self):
        self.items: list[tuple[int, Message]] = []
        self.batches: list[int] = []
        self._changed = asyncio.Event()

    def __call__(self, items):
        self.items.extend(items)
        self.batches.append(len(items))
        self._changed.set()

    async def wait(self, pred, timeout=TIMEOUT):
        async def loop():
            while not pred(self.items):
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(loop(), timeout)

    async def wait_count(self, n, timeout=TIMEOUT):
        await self.wait(lambda items: len(items) >= n, timeout)


async def eventually(pred, timeout=TIMEOUT, interval=0.005):
    """Poll a condition that has no event of its own (never a fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(interval)


class Unreachable:
    def __init__(self):
        self.calls: list[str] = []
        self._changed = asyncio.Event()

    def __call__(self, addr):
        self.calls.append(addr)
        self._changed.set()

    async def wait_for(self, addr, timeout=TIMEOUT):
        async def loop():
            while addr not in self.calls:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(loop(), timeout)


class Node:
    def __init__(self, addr, transport, inbox, unreachable, snapshots):
        self.addr = addr
        self.t = transport
        self.inbox = inbox
        self.unreachable = unreachable
        self.snapshots = snapshots
        self.server: grpc.aio.Server | None = None


@pytest.fixture
async def net():
    """Factory of nodes; every server and transport is closed at the end."""
    nodes: list[Node] = []

    async def make(port=None, start=True, on_snapshot="collect", dial=None, addr=None, **kw):
        port = port or free_port()
        addr = addr or f"127.0.0.1:{port}"
        inbox, unreachable, snapshots = Inbox(), Unreachable(), []

        async def collect(group, msg, chunks):
            data = [c async for c in chunks]
            snapshots.append((group, msg, data))
            return True

        if on_snapshot == "collect":
            on_snapshot = collect
        kw.setdefault("rng", random.Random(1))
        t = Transport(addr, dial, inbox, on_snapshot, unreachable, **kw)
        node = Node(addr, t, inbox, unreachable, snapshots)
        node.port = port
        nodes.append(node)
        if start:
            await start_server(node)
        return node

    yield make
    for n in nodes:
        await n.t.close()
        if n.server is not None:
            await n.server.stop(None)


async def start_server(node: Node, transport: Transport | None = None):
    server = grpc.aio.server(options=server_options())
    (transport or node.t).add_to_server(server)
    assert server.add_insecure_port(f"127.0.0.1:{node.port}") == node.port
    await server.start()
    node.server = server
    return server


async def stop_server(node: Node):
    await node.server.stop(None)
    node.server = None


def hb(i, to=1, frm=0):
    return Message(MsgType.HEARTBEAT, to=to, frm=frm, term=1, commit=i)


def app(i, n=3):
    return Message(MsgType.APP, to=1, frm=0, term=2, log_term=2, index=i, commit=i,
                   entries=tuple(Entry(2, i + k + 1, bytes([k]) * (k + 1) + b"\x00\xff") for k in range(n)))


async def test_two_groups_delivered_in_order(net):
    a, b, c = await net(), await net(), await net()
    sent = {b.addr: [], c.addr: []}
    for i in range(300):
        for dst in (b, c):
            g = 1 + i % 2
            msgs = [app(i)] if i % 3 == 0 else [hb(i), hb(i + 1000)]
            a.t.send(dst.addr, g, msgs)
            sent[dst.addr].extend((g, m) for m in msgs)
    b.t.send(a.addr, 7, [hb(1, to=0, frm=1)])
    await b.inbox.wait_count(len(sent[b.addr]))
    await c.inbox.wait_count(len(sent[c.addr]))
    await a.inbox.wait_count(1)
    assert b.inbox.items == sent[b.addr]
    assert c.inbox.items == sent[c.addr]
    assert a.inbox.items == [(7, hb(1, to=0, frm=1))]
    # batched: far fewer batches than messages
    assert len(b.inbox.batches) < len(sent[b.addr]) / 4
    # the sender counts a batch once its write returns, which may be after delivery
    await eventually(lambda: {s.addr: s for s in a.t.stats()}[b.addr].sent_msgs == len(sent[b.addr]))
    st = {s.addr: s for s in a.t.stats()}
    assert st[b.addr].dropped == 0 and st[b.addr].connected


async def test_bytes_and_messages_counted_both_ways_per_peer(net):
    """The /metrics counters (eraftd/metrics.py TransportCollector): the bytes a sender counts
    are the serialised batches, so they equal what the receiver counts for that sender."""
    a, b, c = await net(), await net(), await net()
    for i in range(50):
        a.t.send(b.addr, 1, [app(i), hb(i)])
    c.t.send(b.addr, 2, [hb(1)])
    await b.inbox.wait_count(101)
    await eventually(lambda: {s.addr: s for s in a.t.stats()}[b.addr].sent_msgs == 100)
    await eventually(lambda: {s.addr: s for s in c.t.stats()}[b.addr].sent_msgs == 1)
    sa = {s.addr: s for s in a.t.stats()}[b.addr]
    sc = {s.addr: s for s in c.t.stats()}[b.addr]
    rx = b.t.received
    assert set(rx) == {a.addr, c.addr}
    assert (rx[a.addr].msgs, rx[a.addr].batches, rx[a.addr].bytes) == (100, sa.sent_batches, sa.sent_bytes)
    assert (rx[c.addr].msgs, rx[c.addr].bytes) == (1, sc.sent_bytes)
    assert sa.sent_bytes > sum(len(m.entries[0].data) for _, m in b.inbox.items if m.entries)
    assert sa.reconnects == 0


async def test_batches_bounded_by_max_batch_msgs(net):
    a, b = await net(max_batch_msgs=7), await net()
    msgs = [hb(i) for i in range(100)]
    a.t.send(b.addr, 3, msgs)
    await b.inbox.wait_count(100)
    assert [m for _, m in b.inbox.items] == msgs
    assert max(b.inbox.batches) <= 7


async def test_batches_bounded_by_bytes(net):
    a, b = await net(max_batch_bytes=10_000), await net()
    big = [Message(MsgType.APP, to=1, frm=0, term=1, index=i,
                   entries=(Entry(1, i + 1, bytes([i % 256]) * 4000),)) for i in range(20)]
    a.t.send(b.addr, 1, big)
    await b.inbox.wait_count(20)
    assert [m for _, m in b.inbox.items] == big
    assert max(b.inbox.batches) <= 2


async def test_down_peer_never_blocks_others(net):
    a = await net(max_queue=100)
    b = await net()
    dead = await net(start=False)  # nobody listens on its port
    elapsed = 0.0
    for r in range(20):  # rounds of 50 (b's queue holds 100 too)
        t0 = time.perf_counter()
        for i in range(50 * r, 50 * r + 50):
            a.t.send(dead.addr, 1, [hb(i)])
            a.t.send(b.addr, 1, [hb(i)])
        elapsed += time.perf_counter() - t0
        await b.inbox.wait_count(50 * r + 50)
    assert elapsed < 2.0, f"send() took {elapsed:.2f}s for 2000 calls: it must not block"
    assert [m.commit for _, m in b.inbox.items] == list(range(1000))
    await a.unreachable.wait_for(dead.addr)
    st = {s.addr: s for s in a.t.stats()}
    assert st[dead.addr].queued <= 100
    assert st[dead.addr].dropped >= 900
    assert not st[dead.addr].connected
    assert st[dead.addr].sent_msgs == 0
    assert b.addr not in a.unreachable.calls


async def test_peer_coming_up_later_gets_messages(net):
    a = await net(max_queue=50)
    late = await net(start=False)
    for i in range(200):
        a.t.send(late.addr, 1, [hb(i)])
    await a.unreachable.wait_for(late.addr)
    await start_server(late)
    for i in range(200, 210):
        a.t.send(late.addr, 2, [hb(i)])
    await late.inbox.wait(lambda items: any(m.commit == 209 for _, m in items))
    got = [m.commit for _, m in late.inbox.items]
    assert got == sorted(set(got)), "in order, no duplicates"
    assert set(range(200, 210)) <= set(got)        # sent after it came up: all delivered
    assert len([c for c in got if c < 200]) <= 50  # queued while down: bounded by max_queue


async def test_reconnect_after_peer_restart(net):
    a, b = await net(), await net()
    a.t.send(b.addr, 1, [hb(0)])
    await b.inbox.wait_count(1)
    await stop_server(b)
    # the stream is broken now; these are dropped or delivered, never duplicated
    for i in range(1, 20):
        a.t.send(b.addr, 1, [hb(i)])
    await a.unreachable.wait_for(b.addr)
    await start_server(b)
    a.t.send(b.addr, 1, [hb(100)])
    await b.inbox.wait(lambda items: items[-1][1].commit == 100)
    got = [m.commit for _, m in b.inbox.items]
    assert got == sorted(set(got))
    assert {s.addr: s for s in a.t.stats()}[b.addr].reconnects >= 1


async def test_dial_override(net):
    b = await net()
    a = await net(dial=lambda addr: {"node-b:7000": b.addr}.get(addr, addr))
    a.t.send("node-b:7000", 4, [hb(1), hb(2)])
    await b.inbox.wait_count(2)
    assert [g for g, _ in b.inbox.items] == [4, 4]


async def test_cluster_tag_mismatch_is_refused(net):
    a, b = await net(cluster_tag=1), await net(cluster_tag=2)
    a.t.send(b.addr, 1, [hb(1)])
    await a.unreachable.wait_for(b.addr)
    assert b.inbox.items == []
    ok = await a.t.send_snapshot(b.addr, 1, Message(MsgType.SNAP, snapshot=SnapshotMeta(1, 1)), [b"x"])
    assert ok is False and b.snapshots == []


async def test_snapshot_streaming_several_chunks(net):
    a, b = await net(), await net()
    rnd = random.Random(7)
    chunks = [rnd.randbytes(n) for n in (1, 0, 1000, SNAPSHOT_CHUNK_BYTES * 2 + 17, 65536)]
    snap = Message(MsgType.SNAP, to=1, frm=0, term=9, snapshot=SnapshotMeta(500, 8),
                   snapshot_data=object())

    async def agen():
        for c in chunks:
            yield c

    assert await a.t.send_snapshot(b.addr, 42, snap, agen()) is True
    assert await a.t.send_snapshot(b.addr, 43, snap, iter(chunks)) is True
    (g1, m1, d1), (g2, m2, d2) = b.snapshots
    assert (g1, g2) == (42, 43)
    assert m1.snapshot == SnapshotMeta(500, 8) and m1.term == 9 and m1.type == MsgType.SNAP
    assert m1.snapshot_data is None
    assert b"".join(d1) == b"".join(chunks) == b"".join(d2)
    assert len(d1) > len(chunks)  # the big chunk was split
    # messages keep flowing alongside
    a.t.send(b.addr, 1, [hb(1)])
    await b.inbox.wait_count(1)


async def test_snapshot_refused_or_failing(net):
    async def refuse(group, msg, chunks):
        async for _ in chunks:
            pass
        return False

    async def stop_early(group, msg, chunks):
        async for _ in chunks:
            return True  # accepts after the first chunk, without reading the rest

    async def boom(group, msg, chunks):
        raise RuntimeError("disk full")

    a = await net()
    r, e, x, n = (await net(on_snapshot=refuse), await net(on_snapshot=stop_early),
                  await net(on_snapshot=boom), await net(on_snapshot=None))
    dead = await net(start=False)
    snap = Message(MsgType.SNAP, snapshot=SnapshotMeta(5, 1))
    many = [b"y" * 100_000] * 50
    assert await a.t.send_snapshot(r.addr, 1, snap, [b"abc"] * 3) is False
    assert await a.t.send_snapshot(e.addr, 1, snap, many) is True
    assert await a.t.send_snapshot(x.addr, 1, snap, [b"abc"]) is False
    assert await a.t.send_snapshot(n.addr, 1, snap, [b"abc"]) is False
    assert await a.t.send_snapshot(dead.addr, 1, snap, [b"abc"]) is False
    await a.unreachable.wait_for(dead.addr)

    def broken_source():
        yield b"first"
        raise OSError("snapshot file vanished")

    assert await a.t.send_snapshot(r.addr, 1, snap, broken_source()) is False


async def test_on_messages_exception_does_not_kill_the_stream(net):
    a, b = await net(), await net()
    calls = []
    done = asyncio.Event()

    def flaky(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("driver bug")
        if any(m.commit == 2 for _, m in items):
            done.set()

    b.t._on_messages = flaky
    a.t.send(b.addr, 1, [hb(1)])
    await eventually(lambda: calls)  # the first batch landed (and raised)
    a.t.send(b.addr, 1, [hb(2)])
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert a.t.stats()[0].reconnects == 0


async def test_close_stops_everything(net):
    a, b = await net(), await net()
    dead = await net(start=False)
    a.t.send(b.addr, 1, [hb(1)])
    a.t.send(dead.addr, 1, [hb(1)])
    await b.inbox.wait_count(1)
    await a.t.close()
    assert all(p.task.done() for p in a.t._peers.values())
    a.t.send(b.addr, 1, [hb(2)])  # no-op, no error
    assert await a.t.send_snapshot(b.addr, 1, Message(MsgType.SNAP), [b""]) is False
    await a.t.close()  # idempotent


async def test_unreachable_is_rate_limited(net):
    a = await net(backoff_min=0.001, backoff_max=0.002, unreachable_interval=60.0)
    dead = await net(start=False)
    a.t.send(dead.addr, 1, [hb(0)])
    await a.unreachable.wait_for(dead.addr)
    peer = a.t._peers[dead.addr]
    # let it fail several more times
    a.t.send(dead.addr, 1, [hb(1)] * 100)
    await eventually(lambda: peer.failures >= 5 or not peer.queue)
    a.t.send(dead.addr, 1, [hb(2)] * 100)
    await eventually(lambda: peer.failures >= 5)
    assert a.unreachable.calls == [dead.addr]


async def test_newer_stream_supersedes_older_one(net):
    """Per-peer order across reconnects: a late batch on a sender's older stream is refused."""
    from eraftd._pb import raft_pb2 as pb, raft_pb2_grpc as pb_grpc
    from eraftd.node.codec import encode_batch

    b = await net()
    channel = grpc.aio.insecure_channel(b.addr)
    stub = pb_grpc.RaftTransportStub(channel)

    def open_stream(seq):
        return stub.Send(metadata=(("x-eraftd-from", "fake:1"), ("x-eraftd-stream", f"77.{seq}")))

    def batch(i):
        return encode_batch([(1, hb(i))], "fake:1")

    try:
        s1 = open_stream(1)
        await s1.initial_metadata()
        await s1.write(batch(1))
        await b.inbox.wait_count(1)
        s2 = open_stream(2)
        await s2.initial_metadata()
        await s2.write(batch(2))
        await b.inbox.wait_count(2)
        await s1.write(batch(3))  # stale stream: refused, not delivered
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s1
        assert e.value.code() == grpc.StatusCode.ABORTED
        s0 = open_stream(0)  # an even older one starting late: refused at once
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s0
        assert e.value.code() == grpc.StatusCode.ABORTED
        await s2.write(batch(4))
        await b.inbox.wait_count(3)
        assert [m.commit for _, m in b.inbox.items] == [1, 2, 4]
        await s2.done_writing()
        summary = await s2
        assert isinstance(summary, pb.SendSummary) and summary.msgs == 2
    finally:
        await channel.close()


async def test_full_queue_drops_oldest_and_reports_later(net):
    a = await net(max_queue=5)
    dead = await net(start=False)
    a.t.send(dead.addr, 1, [hb(i) for i in range(12)])
    assert a.unreachable.calls == []  # never called from inside send()
    peer = a.t._peers[dead.addr]
    assert peer.dropped == 7
    assert [m.commit for _, m in peer.queue] == [7, 8, 9, 10, 11]  # the newest are kept
    await a.unreachable.wait_for(dead.addr)


async def test_close_ends_a_sender_that_is_reconnecting_fast():
    """close() returns even when the cancel meets a connect attempt just as it fails (on 3.11
    asyncio.wait_for swallowed such a cancel and the sender retried forever: ~2.5% of closes
    hung, so 150 tries catch it almost surely)."""
    rng = random.Random(7)
    for i in range(150):
        t = Transport(f"127.0.0.1:{free_port()}", None, lambda batch: None, None, lambda a: None,
                      backoff_min=0.001, backoff_max=0.002, rng=random.Random(i))
        t.send(f"127.0.0.1:{free_port()}", 1, [hb(i)])
        await asyncio.sleep(rng.uniform(0.005, 0.03))      # let it fail and retry a few times
        await asyncio.wait_for(t.close(), 10)


async def test_founding_views_go_on_a_streams_first_batch_and_after_a_change(net):
    mine = {"views": {1: ("a:1", "b:2")}}
    seen: list[tuple[str, dict]] = []
    b = await net(on_views=lambda addr, v: seen.append((addr, v)))
    a = await net(views=lambda: mine["views"])
    for i in range(5):                                   # five batches
        a.t.send(b.addr, 1, [hb(i)])
        await b.inbox.wait_count(i + 1)
    assert len(b.inbox.batches) == 5
    assert seen == [(a.addr, {1: ("a:1", "b:2")})]      # once for the stream, not per batch
    mine["views"] = {1: ("a:1", "b:2"), 2: ("c:3",)}     # a new dict: a change
    a.t.send(b.addr, 1, [hb(5)])
    await b.inbox.wait_count(6)
    assert seen[1:] == [(a.addr, {1: ("a:1", "b:2"), 2: ("c:3",)})]
