"""Peer-to-peer transport: long-lived gRPC streams carrying batches of Raft messages.

One node runs one Transport.  For every peer node it talks to there is

* a bounded queue (collections.deque with maxlen: when full, the OLDEST
  queued message is dropped; Raft tolerates loss and the caller is never
  blocked), and
* a sender task, created lazily by the first send(), that opens a
  client stream (RaftTransport.Send) on its own channel and writes
  everything queued as one MessageBatch per write (bounded by
  max_batch_msgs / max_batch_bytes).

A dead or slow peer only affects its own queue and task.  A broken stream
makes the task close its channel, report the peer through on_unreachable
(rate-limited), sleep an exponential, jittered back-off (20 ms doubling to
1 s) and reconnect with a fresh channel.  A message is delivered in order per
peer, or dropped; the transport never resends, so never duplicates (a batch
whose write failed is lost, not retried).

"Connected" means the peer's servicer accepted the stream: it sends its
initial metadata right away and the client waits for that (connect_timeout)
before writing, so a refused or unreachable peer is noticed quickly and
batches are not thrown into a stream that never opened.

Counters for /metrics (eraftd/metrics.py's TransportCollector reads them at scrape time):
per peer, messages, batches and bytes sent (the serialised MessageBatch: the stream carries
bytes we serialise ourselves, so counting them costs nothing), messages dropped and reconnects;
per sender, messages, batches and bytes received (the server reads the raw bytes and parses them
itself).  Plain ints bumped once per batch, never a metric call per message.

Snapshots use a separate stream (RaftTransport.InstallSnapshot) on a channel
of their own, so a big transfer does not delay heartbeats behind it in one
TCP connection.

The servers: the lead creates the grpc.aio server (one per node, also
hosting the client-facing services) and calls transport.add_to_server(server).
Create it with `options=server_options()` so that 64 MiB messages and the
client keepalive pings are accepted.

Everything here runs in one asyncio event loop: send() and the callbacks
are called in the loop's thread; send() must be called from within the
running loop (it may create the peer's task).
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import random
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator

import grpc
import grpc.aio

from eraftd._pb import raft_pb2 as pb
from eraftd._pb import raft_pb2_grpc as pb_grpc
from eraftd.node.codec import add_message, approx_size, decode_batch, decode_message, encode_message
from eraftd.raft.messages import Message
from eraftd.tls import channel as tls_channel

__all__ = ["Transport", "PeerStats", "Received", "channel_options", "server_options",
           "MAX_MESSAGE_BYTES", "SENDER_METADATA"]

log = logging.getLogger("eraftd.transport")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SNAPSHOT_CHUNK_BYTES = 1024 * 1024        # chunks bigger than this are split before sending
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000

_EOF = grpc.aio.EOF
SENDER_METADATA = "x-eraftd-from"   # the sender's advertised address (access.py checks it under TLS)
_MD_FROM = SENDER_METADATA
_MD_STREAM = "x-eraftd-stream"  # "<process nonce>.<connect seq>": orders a sender's streams
_SERVICE = "eraftpb.RaftTransport"
_SEND = f"/{_SERVICE}/Send"


def channel_options() -> list[tuple[str, int]]:
    """Options for a channel to a peer (also what Transport uses)."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # each connection attempt is a fresh channel with its own subchannel: our back-off, not
        # a shared subchannel's (which may sit in its own back-off for up to 2 minutes)
        ("grpc.use_local_subchannel_pool", 1),
        # the transport never resends; no transparent retries either
        ("grpc.enable_retries", 0),
        # for long-lived channels built with these options elsewhere (shardkv migration): come
        # back within a second of a peer's restart, not after gRPC's default of up to 2 minutes
        ("grpc.initial_reconnect_backoff_ms", 20),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def server_options() -> list[tuple[str, int]]:
    """Options for the node's grpc.aio server: big messages and our clients' keepalive pings;
    no SO_REUSEPORT (gRPC's default), so a second process cannot bind a running node's address."""
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
        ("grpc.http2.max_ping_strikes", 0),
    ]


@dataclass(slots=True)
class PeerStats:
    addr: str
    connected: bool
    queued: int
    sent_msgs: int
    sent_batches: int
    dropped: int          # dropped from a full queue or lost in a failed write
    failures: int         # failed connects / broken streams
    reconnects: int       # successful connects after the first
    sent_bytes: int = 0   # serialised MessageBatch bytes written


@dataclass(slots=True)
class Received:
    """What one sender's streams delivered to this node (a batch refused is not counted)."""
    msgs: int = 0
    batches: int = 0
    bytes: int = 0


class _Peer:
    __slots__ = ("addr", "queue", "wake", "task", "connected", "sent_msgs", "sent_batches",
                 "sent_bytes", "dropped", "failures", "connects", "last_unreachable", "channel",
                 "call", "down_logged")

    def __init__(self, addr: str, max_queue: int):
        self.addr = addr
        self.queue: collections.deque = collections.deque(maxlen=max_queue)
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.connected = False
        self.sent_msgs = 0
        self.sent_batches = 0
        self.sent_bytes = 0
        self.dropped = 0
        self.failures = 0
        self.connects = 0
        self.last_unreachable = float("-inf")
        self.channel: grpc.aio.Channel | None = None
        self.call = None
        self.down_logged = False


class _PeerError(Exception):
    """The peer refused or ended our stream."""


class Transport:
    """Batched, per-peer streaming of Raft messages.  See the module docstring."""

    def __init__(
        self,
        self_addr: str,
        dial: Callable[[str], str] | None,
        on_messages: Callable[[list[tuple[int, Message]]], None],
        on_snapshot: Callable[[int, Message, AsyncIterator[bytes]], Awaitable[bool]] | None,
        on_unreachable: Callable[[str], None] | None = None,
        max_batch_msgs: int = 512,
        max_queue: int = 10_000,
        *,
        max_batch_bytes: int = 4 * 1024 * 1024,
        cluster_tag: int = 0,
        cluster: Any = None,
        backoff_min: float = 0.02,
        backoff_max: float = 1.0,
        connect_timeout: float = 5.0,
        unreachable_interval: float = 1.0,
        rng: random.Random | None = None,
        tls: Any = None,
        self_uid: int = 0,
        check_peer: Callable[[str, int], str] | None = None,
        on_refused: Callable[[str, str], None] | None = None,
        pass_sender: bool = False,
        peer_uid: Callable[[str], int] | None = None,
        on_stranger: Callable[[str], None] | None = None,
        views: Callable[[], dict[int, tuple[str, ...]]] | None = None,
        on_views: Callable[[str, dict[int, tuple[str, ...]]], None] | None = None,
    ):
        """
        self_addr: this node's advertised address (sent with every batch).
        dial: advertised address -> address to dial (the [node.dial] overrides); None = identity.
        on_messages: called in the loop with the (group, Message) pairs of every received batch.
        on_snapshot: awaited for an incoming snapshot with (group, SNAP message, data chunks)
            (and the sender's address, with pass_sender); returns success, or a string: why it
            was refused.  None: incoming snapshots are refused.
        on_unreachable: called in the loop with a peer's advertised address when sending to it
            failed (a failed connect, a broken stream, messages dropped from a full queue, a
            failed snapshot); at most once per unreachable_interval seconds per peer; never
            from inside send() itself, and not after close().
        max_batch_msgs / max_batch_bytes: bounds of one MessageBatch (the byte bound uses an
            estimate; a single message is always sent whatever its size).
        max_queue: messages queued per peer; beyond that the oldest are dropped.
        cluster: the node's eraftd.node.cluster.ClusterIdentity (value: the id every batch and
            snapshot carries; learn(id, sender): "" to take a batch, else why it is refused).
            cluster_tag: a fixed id instead (tests); 0 on either side is "not known yet".
        rng: source of back-off jitter (seed it for reproducible tests).
        tls: eraftd.tls.TlsFiles to dial peers with mutual TLS (None: plaintext).
        self_uid: this node's data_dir uid, sent with every batch.
        check_peer: (from_addr, from_uid) -> "" to take a stream's messages, else why not (the
            stream is then ended with PERMISSION_DENIED and that reason).
        on_refused: called with (peer address, reason) when a peer ends our stream so.
        pass_sender: call on_messages(items, from_addr, to_me) instead of on_messages(items),
            and on_snapshot(..., from_addr); to_me: the sender named this node by its uid.
        peer_uid: address -> the uid we know that peer by (0: unknown), sent with each batch;
            a receiver with another uid drops the batch.
        on_stranger: called with the sender's address when a batch is dropped so (the sender
            knows another disk at our address).
        views: () -> this node's founding member list of each group it hosts (the same dict
            object until one changes): sent on each stream's first batch and after a change.
        on_views: called with (sender address, its views) when a batch carries them.
        """
        if max_batch_msgs < 1 or max_queue < 1:
            raise ValueError("max_batch_msgs and max_queue must be >= 1")
        self.self_addr = self_addr
        self._dial = dial or (lambda a: a)
        self._on_messages = on_messages
        self._on_snapshot = on_snapshot
        self._on_unreachable = on_unreachable
        self._max_batch_msgs = max_batch_msgs
        self._max_batch_bytes = max_batch_bytes
        self._max_queue = max_queue
        self._cluster = cluster if cluster is not None else _FixedCluster(cluster_tag)
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._unreachable_interval = unreachable_interval
        self._rng = rng or random.Random()
        self._tls = tls
        self._self_uid = self_uid
        self._check_peer = check_peer
        self._on_refused = on_refused
        self._pass_sender = pass_sender
        self._peer_uid = peer_uid or (lambda _a: 0)
        self._on_stranger = on_stranger
        self._views = views or (lambda: _NO_VIEWS)
        self._on_views = on_views
        self._peers: dict[str, _Peer] = {}
        self._snapshot_channels: set[grpc.aio.Channel] = set()
        self._closed = False
        # stream identity: (process nonce, connect sequence number); see _Servicer.Send
        self._nonce = random.SystemRandom().getrandbits(63)
        self._stream_seq = 0
        self._inbound: dict[str, tuple[int, int]] = {}  # from_addr -> its current stream
        self._servicer = _Servicer(self)
        self.received_msgs = 0
        self.received_batches = 0
        self.refused_batches = 0
        self.received: dict[str, Received] = {}   # sender's advertised address -> its counts

    # ---- server side ------------------------------------------------------------------------

    def servicer(self) -> pb_grpc.RaftTransportServicer:
        return self._servicer

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """The generated handlers, except that Send's batches come as bytes (the servicer parses
        them, and so knows their size for free)."""
        handlers = {
            "Send": grpc.stream_unary_rpc_method_handler(
                self._servicer.Send, request_deserializer=None,
                response_serializer=pb.SendSummary.SerializeToString),
            "InstallSnapshot": grpc.stream_unary_rpc_method_handler(
                self._servicer.InstallSnapshot, request_deserializer=pb.SnapshotChunk.FromString,
                response_serializer=pb.SnapshotAck.SerializeToString),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
        server.add_registered_method_handlers(_SERVICE, handlers)

    # ---- sending ----------------------------------------------------------------------------

    def send(self, addr: str, group: int, msgs: list[Message]) -> None:
        """Queue msgs (of `group`) for the peer at advertised address addr.  Never blocks.

        The transport takes the messages as they are: do not mutate them afterwards (they are
        encoded when the peer's sender task packs its next batch).  A SNAP message's
        snapshot_data is not sent: use send_snapshot for that.
        """
        if self._closed or not msgs:
            return
        peer = self._peers.get(addr)
        if peer is None:
            peer = self._start_peer(addr)
        q = peer.queue
        over = len(q) + len(msgs) - self._max_queue
        if over > 0:  # the deque drops the oldest by itself
            peer.dropped += over
            self._unreachable(peer, defer=True)
        if len(msgs) == 1:
            q.append((group, msgs[0]))
        else:
            q.extend([(group, m) for m in msgs])
        peer.wake.set()

    def _start_peer(self, addr: str) -> _Peer:
        peer = _Peer(addr, self._max_queue)
        self._peers[addr] = peer
        peer.task = asyncio.get_running_loop().create_task(self._run_peer(peer),
                                                             name=f"transport-send:{addr}")
        return peer

    def _new_channel(self, addr: str) -> grpc.aio.Channel:
        # the peer's certificate names its advertised address, whatever the dial map says
        return tls_channel(self._dial(addr), self._tls, channel_options(), name=addr)

    def _unreachable(self, peer: _Peer, defer: bool = False) -> None:
        """Report peer (rate-limited).  defer: from inside send(), so call it on the next loop
        iteration instead of re-entering the caller (the driver, mid-Ready)."""
        if self._on_unreachable is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - peer.last_unreachable < self._unreachable_interval:
            return
        peer.last_unreachable = now
        if defer:
            loop.call_soon(self._call_unreachable, peer.addr)
        else:
            self._call_unreachable(peer.addr)

    def _call_unreachable(self, addr: str) -> None:
        if self._closed or self._on_unreachable is None:
            return
        try:
            self._on_unreachable(addr)
        except Exception:
            log.exception("on_unreachable(%s) raised", addr)

    async def _connect(self, peer: _Peer):
        channel = peer.channel = self._new_channel(peer.addr)
        self._stream_seq += 1
        # the batches are written as bytes we serialise (see _run_peer): their size is counted
        send = channel.stream_unary(_SEND, request_serializer=None,
                                    response_deserializer=pb.SendSummary.FromString,
                                    _registered_method=True)
        call = peer.call = send(
            metadata=((_MD_FROM, self.self_addr), (_MD_STREAM, f"{self._nonce}.{self._stream_seq}")))
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that comes
            # as the awaited call finishes, and this task would then never end (close() hung)
            async with asyncio.timeout(self._connect_timeout):
                await call.initial_metadata()
        except asyncio.TimeoutError:
            raise _PeerError(f"no answer within {self._connect_timeout}s") from None
        if call.done():
            raise _PeerError(f"{_words(await call.code())}: {await call.details()}")
        return call

    async def _disconnect(self, peer: _Peer) -> None:
        call, channel = peer.call, peer.channel
        peer.call = peer.channel = None
        peer.connected = False
        if call is not None and not call.done():
            call.cancel()
        if channel is not None:
            await channel.close()

    async def _run_peer(self, peer: _Peer) -> None:
        q = peer.queue
        wake = peer.wake
        max_n = self._max_batch_msgs
        max_b = self._max_batch_bytes
        from_addr, uid, cluster = self.self_addr, self._self_uid, self._cluster
        views = self._views
        backoff = self._backoff_min
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not q:
                wake.clear()
                await wake.wait()
            connected_at = None
            call = None
            sent_views = None       # what this stream told the peer (see MessageBatch.views)
            try:
                call = await self._connect(peer)
                connected_at = loop.time()
                peer.connected = True
                peer.connects += 1
                if peer.down_logged:
                    peer.down_logged = False
                    log.info("peer %s: connected again", peer.addr)
                write = call.write
                call.add_done_callback(lambda _c: wake.set())  # notice a stream ending while idle
                while True:
                    if call.done():  # reconnect, keeping the queue intact
                        raise _PeerError(f"stream ended: {_words(await call.code())}: "
                                         f"{await call.details()}")
                    if not q:
                        wake.clear()
                        await wake.wait()
                        continue
                    batch = pb.MessageBatch(from_addr=from_addr, cluster_tag=cluster.value, from_uid=uid,
                                            to_uid=self._peer_uid(peer.addr))
                    if views() is not sent_views:
                        sent_views = views()
                        _add_views(batch, sent_views)
                    add = batch.msgs.add
                    n = size = 0
                    popleft = q.popleft
                    while q and n < max_n:
                        group, m = q[0]
                        if m.entries or len(m.context) > 64:
                            s = approx_size(m)
                            if n and size + s > max_b:
                                break
                            size += s
                        popleft()
                        add_message(add, group, m)
                        n += 1
                    data = batch.SerializeToString()
                    try:
                        await write(data)
                    except asyncio.CancelledError:
                        raise
                    except BaseException:
                        peer.dropped += n
                        raise
                    peer.sent_msgs += n
                    peer.sent_batches += 1
                    peer.sent_bytes += len(data)
            except asyncio.CancelledError:
                await self._disconnect(peer)
                raise
            except Exception as e:  # noqa: BLE001 - any failure: back off and reconnect
                peer.failures += 1
                await self._note_refusal(peer, call)
                if peer.down_logged:  # once per outage; the rest at debug level
                    log.debug("peer %s: %s", peer.addr, _describe(e))
                else:
                    peer.down_logged = True
                    log.warning("peer %s unreachable (retrying with back-off): %s", peer.addr,
                                _describe(e))
                await self._disconnect(peer)
                self._unreachable(peer)
            # a stream that lived a while resets the back-off; one that the peer accepts and then
            # ends at once (say, a cluster tag mismatch) keeps it growing
            if connected_at is not None and loop.time() - connected_at >= self._backoff_max:
                backoff = self._backoff_min
            delay = backoff * (0.5 + self._rng.random())
            backoff = min(backoff * 2, self._backoff_max)
            await asyncio.sleep(delay)

    async def _note_refusal(self, peer: _Peer, call: Any) -> None:
        """A stream the peer ended with PERMISSION_DENIED: tell on_refused why."""
        if call is None or self._on_refused is None or not call.done():
            return
        try:
            code = await call.code()
            details = await call.details()
        except Exception:  # noqa: BLE001 - no status to read
            return
        if code == grpc.StatusCode.PERMISSION_DENIED:
            self._on_refused(peer.addr, details or "refused")

    # ---- snapshots --------------------------------------------------------------------------

    async def send_snapshot(self, addr: str, group: int, msg: Message,
                            chunks: AsyncIterator[bytes] | Iterable[bytes] | Iterator[bytes]) -> bool:
        """Stream a snapshot to addr: msg (the SNAP message) as header, then chunks.

        Returns True when the receiver's on_snapshot returned true.  Any failure (peer down,
        refused, stream broken, the chunk source raising) returns False and is logged; the
        chunk source is not retried or rewound.
        """
        if self._closed:
            return False
        channel = self._new_channel(addr)
        self._snapshot_channels.add(channel)
        call = None
        try:
            call = pb_grpc.RaftTransportStub(channel).InstallSnapshot(
                metadata=((_MD_FROM, self.self_addr),))
            header = pb.SnapshotHeader(from_addr=self.self_addr, cluster_tag=self._cluster.value,
                                       msg=encode_message(group, msg))
            try:
                await call.write(pb.SnapshotChunk(header=header))
                if hasattr(chunks, "__aiter__"):
                    async for chunk in chunks:
                        for piece in _split(chunk):
                            await call.write(pb.SnapshotChunk(data=piece))
                else:
                    for chunk in chunks:
                        for piece in _split(chunk):
                            await call.write(pb.SnapshotChunk(data=piece))
                await call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                if not call.done():
                    raise
                # the receiver answered before reading everything: its answer counts
            ack = await call
            if not ack.ok:
                log.warning("snapshot for group %d to %s refused: %s", group, addr,
                            ack.error or "on_snapshot returned false")
            return bool(ack.ok)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            log.warning("snapshot for group %d to %s failed: %s", group, addr, _describe(e))
            peer = self._peers.get(addr)
            if peer is not None:
                self._unreachable(peer)
            else:
                self._call_unreachable(addr)
            return False
        finally:
            if call is not None and not call.done():
                call.cancel()
            self._snapshot_channels.discard(channel)
            await channel.close()

    # ---- lifecycle / introspection ----------------------------------------------------------

    def stats(self) -> list[PeerStats]:
        return [PeerStats(p.addr, p.connected, len(p.queue), p.sent_msgs, p.sent_batches,
                          p.dropped, p.failures, max(0, p.connects - 1), p.sent_bytes)
                for p in self._peers.values()]

    async def close(self) -> None:
        """Stop every sender task and close every channel.  send() is a no-op afterwards."""
        if self._closed:
            return
        self._closed = True
        tasks = [p.task for p in self._peers.values() if p.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for p in self._peers.values():
            await self._disconnect(p)
        for ch in list(self._snapshot_channels):
            await ch.close()


class _Servicer(pb_grpc.RaftTransportServicer):
    def __init__(self, t: Transport):
        self._t = t

    async def Send(self, request_iterator, context: grpc.aio.ServicerContext):
        t = self._t
        if t._closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "transport closed")
        # Per-peer order across reconnects: a sender's newer stream supersedes its older ones,
        # so a late batch of a dead stream is never delivered after the new stream's batches.
        md = dict(context.invocation_metadata() or ())
        sender = md.get(_MD_FROM, "")
        token = _parse_stream(md.get(_MD_STREAM, ""))
        inbound = t._inbound
        if token is not None:
            current = inbound.get(sender)
            if current is not None and current[0] == token[0] and current[1] > token[1]:
                await context.abort(grpc.StatusCode.ABORTED, "superseded by a newer stream")
            inbound[sender] = token
        await context.send_initial_metadata(())  # "accepted": the client starts writing
        on_messages = t._on_messages
        read = context.read
        learn = t._cluster.learn
        parse = pb.MessageBatch.FromString
        batches = msgs = 0
        rx = None                  # the sender's Received, found at its first batch
        while True:
            try:
                data = await read()
            except asyncio.CancelledError:
                # the server is stopping (its grace period is over): this stream ends here and
                # the peer reconnects with back-off; not an error worth a traceback in the log
                return pb.SendSummary(batches=batches, msgs=msgs)
            if data is _EOF:
                break
            try:
                batch = parse(data)
            except Exception:  # noqa: BLE001 - protobuf's DecodeError
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a batch that does not parse")
            if token is not None and inbound.get(sender) is not token:
                await context.abort(grpc.StatusCode.ABORTED, "superseded by a newer stream")
            if sender and batch.from_addr != sender:
                # under TLS the stream's sender is what the certificate was checked against
                t.refused_batches += 1
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"a batch from {batch.from_addr!r} on the stream of {sender!r}")
            if t._closed:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "transport closed")
            why = learn(batch.cluster_tag, batch.from_addr)
            if why:
                t.refused_batches += 1
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
            if t._check_peer is not None:
                why = t._check_peer(batch.from_addr, batch.from_uid)
                if why:
                    t.refused_batches += 1
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
            if batch.views and t._on_views is not None:
                t._on_views(batch.from_addr, {v.group: tuple(v.founders) for v in batch.views})
            if batch.to_uid and t._self_uid and batch.to_uid != t._self_uid:
                # meant for the node that had this address before (its disk was wiped): not us
                t.refused_batches += 1
                if t._on_stranger is not None:
                    t._on_stranger(batch.from_addr)
                continue
            items = decode_batch(batch)
            batches += 1
            msgs += len(items)
            t.received_batches += 1
            t.received_msgs += len(items)
            if rx is None:
                rx = t.received.get(batch.from_addr)
                if rx is None:
                    rx = t.received[batch.from_addr] = Received()
            rx.msgs += len(items)
            rx.batches += 1
            rx.bytes += len(data)
            try:
                if t._pass_sender:
                    on_messages(items, batch.from_addr, bool(batch.to_uid))
                else:
                    on_messages(items)
            except Exception as e:  # noqa: BLE001 - the driver validates; this is the last guard
                log.error("on_messages raised (batch from %s dropped): %s", batch.from_addr,
                          _describe(e))
        return pb.SendSummary(batches=batches, msgs=msgs)

    async def InstallSnapshot(self, request_iterator, context: grpc.aio.ServicerContext):
        t = self._t
        if t._closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "transport closed")
        first = await context.read()
        if first is _EOF or first.WhichOneof("chunk") != "header":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "InstallSnapshot: the first chunk must be the header")
        header = first.header
        sender = dict(context.invocation_metadata() or ()).get(_MD_FROM, "")
        if sender and header.from_addr != sender:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"a snapshot from {header.from_addr!r} on the stream of {sender!r}")
        why = t._cluster.learn(header.cluster_tag, header.from_addr)
        if why:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
        if t._on_snapshot is None:
            return pb.SnapshotAck(ok=False, error="this node does not accept snapshots")
        group, msg = decode_message(header.msg)

        async def data() -> AsyncIterator[bytes]:
            while True:
                chunk = await context.read()
                if chunk is _EOF:
                    return
                if chunk.WhichOneof("chunk") != "data":
                    raise ValueError("InstallSnapshot: a second header chunk")
                yield chunk.data

        try:
            if t._pass_sender:
                ok = t._on_snapshot(group, msg, data(), header.from_addr)
            else:
                ok = t._on_snapshot(group, msg, data())
            if inspect.isawaitable(ok):
                ok = await ok
        except Exception as e:  # noqa: BLE001 - reported to the sender
            log.error("on_snapshot for group %d from %s raised %s", group, header.from_addr,
                      _describe(e))
            return pb.SnapshotAck(ok=False, error=f"{type(e).__name__}: {e}")
        if isinstance(ok, str):     # a refusal, in words
            return pb.SnapshotAck(ok=False, error=ok)
        return pb.SnapshotAck(ok=bool(ok))


class _FixedCluster:
    """A cluster id that is given, not learned (Transport's cluster_tag)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def learn(self, cid: int, source: str) -> str:
        if cid and self.value and cid != self.value:
            return f"{source} belongs to cluster {cid:x}, this node to cluster {self.value:x}"
        return ""


_NO_VIEWS: dict[int, tuple[str, ...]] = {}


def _add_views(batch: pb.MessageBatch, views: dict[int, tuple[str, ...]]) -> None:
    add = batch.views.add
    for gid, founders in views.items():
        add(group=gid, founders=founders)


def _parse_stream(value: str) -> tuple[int, int] | None:
    try:
        nonce, seq = value.split(".")
        return int(nonce), int(seq)
    except ValueError:
        return None


def _split(chunk) -> Iterator[bytes]:
    n = len(chunk)
    if n <= SNAPSHOT_CHUNK_BYTES:
        yield bytes(chunk) if not isinstance(chunk, bytes) else chunk
        return
    mv = memoryview(chunk)
    for i in range(0, n, SNAPSHOT_CHUNK_BYTES):
        yield bytes(mv[i:i + SNAPSHOT_CHUNK_BYTES])


def _describe(e: BaseException) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{_words(e.code())}: {e.details()}"
    if isinstance(e, _PeerError):
        return str(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _words(code: Any) -> str:
    """A gRPC status code in plain words (eraftd/errors.py's), for the log."""
    from ..errors import STATUS_WORDS
    name = getattr(code, "name", str(code))
    return STATUS_WORDS.get(name, name.lower().replace("_", " "))
