"""Admission: how much a node takes from its clients at once.

Request bytes.  Every client request (the methods in a service's ADMITTED table: eRaft's
Command, the native Batch and Scan, the controller's Command) is checked by its size, as
received, BEFORE it is decoded: AdmittingServer hands the method the raw bytes, and only
a request that fits in both budgets is parsed and run.  The budgets are the bytes of admitted
requests not yet answered, per connection (`[node] max_inflight_bytes_per_connection`) and for
the whole node (`[node] max_inflight_bytes`).  Beyond them the answer is the method's "busy"
answer (see the services' ADMITTED tables: ErrTimeout on eRaft's contracts, which every eRaft
clerk retries; a plain-words err on the native path, which the Clerk retries with back-off),
and nothing else is done: the request is never decoded nor proposed.  A request bigger than
a connection's whole budget could never be admitted and is refused in words instead.  Why:
decoding, checking and proposing a request run in the event loop that also sends the group's
heartbeats, and a request costs several times its size in memory on its way to the log
(decoded, encoded as entries, sent to each follower, written); without a bound, 8 concurrent
40 MiB batches cost 1.67 GB and a run of elections.

Connections.  gRPC's own per-server cap (`grpc.max_allowed_incoming_connections`: a
connection beyond it is closed at once) is set below the process's descriptor limit
(RLIMIT_NOFILE, its soft limit raised to the hard one at start) minus a reserve for storage
(RocksDB keeps at most STORAGE_OPEN_FILES files open) and the node's own descriptors (peer
channels, the HTTP endpoint, logs, gRPC's and asyncio's internals).  An idle client connection
is closed after `[node] connection_idle_ms` (grpc.max_connection_idle_ms: no call for that
long; a peer's stream is a call, so peers are never idle), one that never completes its HTTP/2
handshake after HANDSHAKE_TIMEOUT_MS.  ConnectionWatch logs, at most once a minute, when the
connections open on the listen port reach the cap.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import resource
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from .storage import STORAGE_OPEN_FILES

log = logging.getLogger("eraftd.admission")

MiB = 1 << 20
HANDSHAKE_TIMEOUT_MS = 10_000                    # a connection that never speaks HTTP/2
STORAGE_RESERVE = STORAGE_OPEN_FILES + 32        # ... plus its WAL, MANIFEST, LOG, LOCK, temporaries
NODE_RESERVE = 128                               # peers, HTTP, logs, stdio, gRPC/asyncio internals
MIN_CONNECTIONS = 32
LOG_EVERY_S = 60.0

# Busy answers: a method's answer given the refusal's words and whether retrying can help
# (busy) or not (the request is bigger than a connection's whole budget).
Answer = Callable[[str, bool], Any]


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n % MiB else f"{n // MiB} MiB"


class Admission:
    """The request bytes in flight, per connection and for the node."""

    def __init__(self, max_bytes: int, per_connection: int) -> None:
        self.max_bytes = max_bytes
        self.per_connection = min(per_connection, max_bytes)
        self.inflight = 0
        self.by_connection: dict[str, int] = {}
        self.refused_busy = 0
        self.refused_too_big = 0
        self._logged = 0.0
        self._unlogged = 0

    def admit(self, conn: str, size: int) -> tuple[str, bool]:
        """("", False) when the request is admitted (release() it when answered), else the
        refusal in words and whether it may be retried (True: busy now)."""
        mine = self.by_connection.get(conn, 0)
        if size > self.per_connection:
            self.refused_too_big += 1
            return (f"a request of {_mib(size)} is more than this node takes from one connection "
                    f"({_mib(self.per_connection)}, [node] max_inflight_bytes_per_connection); "
                    f"send smaller batches"), False
        if mine + size > self.per_connection or self.inflight + size > self.max_bytes:
            self.refused_busy += 1
            mine_full = mine + size > self.per_connection
            why = (f"node busy: {_mib(mine if mine_full else self.inflight)} of requests in flight "
                   + (f"on this connection (limit {_mib(self.per_connection)}, [node] "
                      f"max_inflight_bytes_per_connection)" if mine_full else
                      f"(limit {_mib(self.max_bytes)}, [node] max_inflight_bytes)")
                   + "; retry after a pause")
            self._note(why)
            return why, True
        self.inflight += size
        self.by_connection[conn] = mine + size
        return "", False

    def release(self, conn: str, size: int) -> None:
        self.inflight -= size
        left = self.by_connection.get(conn, 0) - size
        if left > 0:
            self.by_connection[conn] = left
        else:
            self.by_connection.pop(conn, None)

    def _note(self, why: str) -> None:
        """One log line a minute while requests are refused as busy."""
        now = time.monotonic()
        if now - self._logged < LOG_EVERY_S:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more since the last line)" if self._unlogged else ""
        log.warning("refusing client requests: %s%s", why, more)
        self._logged, self._unlogged = now, 0


class AdmittingServer:
    """The grpc.aio server as the services see it: the methods of `answers` (full method name
    -> busy answer) get the raw request, are refused by size before decoding, and release their
    bytes when answered; every other method (peer streams, migration, admin) runs as it is.

    The wrapping is done once, where a service registers its handlers (each generic handler
    is wrapped; a method's wrapped handler is made once and kept), not by a server
    interceptor: an interceptor costs every call of every method an extra coroutine and
    handler look-up, on the event loop the group's rounds run on.  Everything else is the
    server's (start, stop, ports)."""

    def __init__(self, server: grpc.aio.Server, admission: Admission,
                 answers: Mapping[str, Answer]) -> None:
        self._server = server
        self.admission = admission
        self.answers = dict(answers)
        self._wrapped: dict[Any, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers([_Admitting(h, self) for h in handlers])

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        # (the generated code registers both ways; gRPC takes a registered handler first)
        self._server.add_registered_method_handlers(
            service, {name: self.handler(f"/{service}/{name}", h) for name, h in handlers.items()})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)

    def handler(self, method: str, handler: Any) -> Any:
        """`handler` of `method` as it runs: wrapped when the method is admitted."""
        answer = self.answers.get(method)
        if handler is None or answer is None or handler.unary_unary is None:
            return handler
        wrapped = self._wrapped.get(handler)
        if wrapped is None:
            wrapped = self._wrapped[handler] = self._wrap(handler, answer)
        return wrapped

    def _wrap(self, handler: Any, answer: Answer) -> Any:
        admission = self.admission
        inner, decode = handler.unary_unary, handler.request_deserializer

        async def unary(raw: bytes, context: Any) -> Any:
            conn = context.peer()
            size = len(raw)
            why, busy = admission.admit(conn, size)
            if why:
                return answer(why, busy)
            try:
                try:
                    request = decode(raw) if decode is not None else raw
                except DecodeError:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                        "the request is not a valid message of this method")
                out = inner(request, context)
                return await out if inspect.isawaitable(out) else out
            finally:
                admission.release(conn, size)
        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=None, response_serializer=handler.response_serializer)


class _Admitting(grpc.GenericRpcHandler):
    def __init__(self, inner: Any, server: AdmittingServer) -> None:
        self.inner = inner
        self.server = server

    def service(self, details: Any) -> Any:
        return self.server.handler(details.method, self.inner.service(details))


# ---------------------------------------------------------------- connections and descriptors

@dataclass(frozen=True)
class ConnectionBudget:
    cap: int                # client connections gRPC accepts at once
    limit: int              # RLIMIT_NOFILE's soft limit, after raising it
    reserve: int            # descriptors kept for storage and the node itself


def raise_descriptor_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit (when allowed); the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_budget(configured: int) -> ConnectionBudget | str:
    """The connection cap: `configured` ([node] max_connections; 0 = as many as the descriptor
    limit allows), at most the limit minus the reserve.  A string: the limit is too low."""
    limit = raise_descriptor_limit()
    reserve = STORAGE_RESERVE + NODE_RESERVE
    room = limit - reserve
    if room < MIN_CONNECTIONS:
        return (f"the open-file limit of {limit} descriptors (ulimit -n) leaves {max(room, 0)} for "
                f"client connections after the {reserve} kept for storage and peers; at least "
                f"{MIN_CONNECTIONS} are needed: raise it (e.g. ulimit -n 4096)")
    cap = min(configured, room) if configured > 0 else room
    if configured > room:
        log.warning("[node] max_connections = %d is more than the open-file limit of %d allows "
                    "after the %d descriptors kept for storage and peers: capping client "
                    "connections at %d (raise ulimit -n)", configured, limit, reserve, cap)
    return ConnectionBudget(cap, limit, reserve)


def server_options(budget: ConnectionBudget, idle_ms: int) -> list[tuple[str, int]]:
    """The grpc.aio server options of connection admission (beside transport.server_options())."""
    return [
        ("grpc.max_allowed_incoming_connections", budget.cap),
        ("grpc.max_connection_idle_ms", idle_ms),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
    ]


def _port_hex(listen: str) -> str:
    return f":{int(listen.rsplit(':', 1)[1]):04X}"


def open_connections(listen: str) -> int:
    """TCP connections established to the listen port (the port is this node's alone: no
    SO_REUSEPORT), from /proc/net/tcp and tcp6; -1 where /proc is not there."""
    port, n = _port_hex(listen), 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    fields = line.split(None, 4)
                    if len(fields) > 3 and fields[3] == "01" and fields[1].endswith(port):
                        n += 1
        except OSError:
            return -1 if path.endswith("tcp") else n
    return n


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 1 << 30          # unknown: look at the connections


class ConnectionWatch:
    """Looks every `every` seconds at the connections open on the listen port; at the cap,
    one warning a minute says so."""

    def __init__(self, listen: str, budget: ConnectionBudget, idle_ms: int,
                 every: float = 2.0) -> None:
        self.listen, self.budget, self.idle_ms, self.every = listen, budget, idle_ms, every
        self.hits = 0                     # looks that found the cap reached
        self._logged = -LOG_EVERY_S

    def look(self) -> None:
        if _open_descriptors() < self.budget.cap:
            return              # fewer descriptors than the cap: fewer connections (cheap to know)
        n = open_connections(self.listen)
        if n < self.budget.cap:
            return
        self.hits += 1
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY_S:
            self._logged = now
            log.warning("connection cap reached: %d connections open on %s, the cap is %d "
                        "([node] max_connections; open-file limit %d, %d descriptors kept for "
                        "storage and peers): new connections are closed at once until some "
                        "close (idle ones after %d ms, [node] connection_idle_ms)",
                        n, self.listen, self.budget.cap, self.budget.limit, self.budget.reserve,
                        self.idle_ms)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.look()
