"""Who may do what on a node's port: the one home of eraftd's authorization.

Without [tls] every caller may do everything, as in eRaft (the test-only entry points aside:
NodeAdmin Propose/Read are served only with `[node] testing = true`).  With [tls]:

* PEER (Raft streams, snapshots, shard migration: PullShard, GetShardsData, DeleteShardsData):
  only a *node certificate* of the cluster's CA: one issued by ca_file, usable as a server
  certificate (extended key usage serverAuth), whose subject alternative names cover the host
  of the address the caller says it is (the Raft stream's sender).  A client certificate of the
  same CA (clientAuth only, no SAN: what `eraftd cert create-client` makes) is refused there.
* ADMIN (join, leave, move, shard abandon, member changes): a client certificate of the CA
  whose common name is in `[tls] admins`.  Nodes themselves may SET_SERVERS (a shardkv leader
  reports its group's replicas) with their node certificate.
* CLIENT (everything else: put/get/append/delete/scan, query, status): the handshake already
  verified a certificate of the CA.

With client_auth = "none" gRPC asks no certificate of anyone (it cannot ask without requiring),
so no caller can be told apart: the connection is encrypted and everything is allowed, as without
TLS; the node warns at start and the config refuses `admins` with it.

Membership of the group a Raft message names is not required of its sender: Raft must answer a
vote request from a member it does not know yet (a lagging voter, docs/membership.md), and the
driver's own rules (members, refusals, node uids) apply to every message after this check.

A refusal is PERMISSION_DENIED with one plain line in its details, e.g. "permission denied: join
needs an admin certificate (CN in [tls] admins); yours is CN=app1".  The node logs refusals at
most once per caller per minute.
"""
from __future__ import annotations

import enum
import ipaddress
import logging
import time
from typing import Any, Callable

import grpc
import grpc.aio

from .transport import SENDER_METADATA

log = logging.getLogger("eraftd.access")

REFUSAL_LOG_INTERVAL_S = 60.0


class Right(enum.Enum):
    CLIENT = "client"
    ADMIN = "admin"
    PEER = "peer"
    TESTING = "testing"


# method -> the right it needs beyond CLIENT (methods not listed need CLIENT only)
METHOD_RIGHTS: dict[str, Right] = {
    "/eraftpb.RaftTransport/Send": Right.PEER,
    "/eraftpb.RaftTransport/InstallSnapshot": Right.PEER,
    "/eraftmigrationpb.ShardMigration/PullShard": Right.PEER,
    "/shardkvpb.ShardKVService/GetShardsData": Right.PEER,
    "/shardkvpb.ShardKVService/DeleteShardsData": Right.PEER,
    "/eraftadminpb.NodeAdmin/ChangeMember": Right.ADMIN,
}
# what each right's refusal calls the operation
_WHAT = {
    "/eraftpb.RaftTransport/Send": "Raft messages",
    "/eraftpb.RaftTransport/InstallSnapshot": "a Raft snapshot",
    "/eraftmigrationpb.ShardMigration/PullShard": "pulling a shard",
    "/shardkvpb.ShardKVService/GetShardsData": "pulling a shard",
    "/shardkvpb.ShardKVService/DeleteShardsData": "deleting a shard's data",
    "/eraftadminpb.NodeAdmin/ChangeMember": "a member change",
}


class Caller:
    """What the TLS handshake says about the other side of a call."""
    __slots__ = ("cn", "sans", "pem", "tls")

    def __init__(self, context: Any) -> None:
        try:
            auth = context.auth_context() or {}
        except Exception:  # noqa: BLE001 - no security context: a plaintext call
            auth = {}
        self.tls = auth.get("transport_security_type") == [b"ssl"]
        self.cn = _first(auth.get("x509_common_name"))
        self.sans = tuple(v.decode("utf-8", "replace") for v in auth.get("x509_subject_alternative_name", ()))
        self.pem = (auth.get("x509_pem_cert") or [b""])[0]

    def shown(self) -> str:
        if not self.tls:
            return "a plaintext connection"
        if not self.pem:
            return "no client certificate"
        return f"CN={self.cn}" if self.cn else "a certificate without a common name"


def _first(values: Any) -> str:
    return values[0].decode("utf-8", "replace") if values else ""


class Access:
    """The node's rules: built from its config; `check` answers "" (allowed) or the refusal."""

    def __init__(self, tls: Any | None, testing: bool) -> None:
        self.tls = tls                      # config.TlsSection or None
        self.testing = testing
        # client_auth = "none": gRPC then asks no certificate of anyone, so nobody can be told
        # apart: every caller may do everything (encryption only; the node warns at start)
        self.enforce = tls is not None and tls.require_client_auth
        self.admins = frozenset(tls.admins) if tls else frozenset()
        self._server_certs: dict[bytes, bool] = {}
        self._logged: dict[tuple[str, str], float] = {}
        self.refusals = 0

    # ---------------------------------------------------------------- the rules
    def check(self, context: Any, right: Right, what: str, claimed: str = "") -> str:
        """"" if the caller may do `what` (which needs `right`), else the plain-words refusal.
        claimed: for PEER, the address the caller says it is (its SAN must cover the host)."""
        if right is Right.TESTING:
            if not self.testing:
                return (f"{what} is a test-only entry point; this node serves it only with "
                        f"[node] testing = true")
            right = Right.CLIENT
        if not self.enforce or right is Right.CLIENT:
            return ""
        caller = Caller(context)
        if right is Right.ADMIN:
            if caller.pem and caller.cn in self.admins:
                return ""
            return (f"permission denied: {what} needs an admin certificate (CN in [tls] admins); "
                    f"yours is {caller.shown()}")
        # PEER
        if not caller.pem:
            return f"permission denied: {what} need a node certificate of this cluster; yours is {caller.shown()}"
        if not self._is_server_cert(caller.pem) or not caller.sans:
            return (f"permission denied: {what} need a node certificate (one that names the node's "
                    f"address); yours is the client certificate {caller.shown()}")
        if claimed and not _covers(caller.sans, claimed):
            return (f"permission denied: {what} from {claimed}: the certificate names "
                    f"{', '.join(caller.sans)}, not that address's host")
        return ""

    def may_set_servers(self, context: Any) -> str:
        """SET_SERVERS: a node of the cluster (its shardkv leader) or an admin."""
        if not self.enforce or not self.check(context, Right.PEER, "reporting a group's servers"):
            return ""
        return self.check(context, Right.ADMIN, "setting a group's servers")

    def refuse(self, context: Any, why: str) -> None:
        """Log a refusal, at most once per caller and reason kind per minute."""
        self.refusals += 1
        try:
            peer = context.peer() or "?"
        except Exception:  # noqa: BLE001
            peer = "?"
        key = (peer.rsplit(":", 1)[0], why.split(":", 1)[0] + why[-40:])
        now = time.monotonic()
        if now - self._logged.get(key, float("-inf")) >= REFUSAL_LOG_INTERVAL_S:
            self._logged[key] = now
            if len(self._logged) > 4096:
                self._logged.clear()
            log.warning("refused a call from %s: %s", peer, why)

    async def require(self, context: Any, right: Right, what: str, claimed: str = "") -> None:
        """check(), and on refusal log it and end the call with PERMISSION_DENIED."""
        why = self.check(context, right, what, claimed)
        if why:
            self.refuse(context, why)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)

    # ---------------------------------------------------------------- certificates
    def _is_server_cert(self, pem: bytes) -> bool:
        """The certificate may serve as a server certificate (extended key usage serverAuth, or
        no EKU at all: any use, RFC 5280).  The handshake has verified it against ca_file."""
        got = self._server_certs.get(pem)
        if got is None:
            from cryptography import x509
            from cryptography.x509.oid import ExtendedKeyUsageOID
            try:
                cert = x509.load_pem_x509_certificate(pem)
                try:
                    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                    got = ExtendedKeyUsageOID.SERVER_AUTH in eku
                except x509.ExtensionNotFound:
                    got = True
            except ValueError:
                got = False
            if len(self._server_certs) > 1024:
                self._server_certs.clear()
            self._server_certs[pem] = got
        return got


def _covers(sans: tuple[str, ...], addr: str) -> bool:
    from ..tls import host_of
    host = host_of(addr)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for san in sans:
        if ip is not None:
            try:
                if ipaddress.ip_address(san) == ip:
                    return True
            except ValueError:
                continue
        elif san.lower() == host.lower():
            return True
    return False


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Checks METHOD_RIGHTS before a method runs.  Only the listed methods are wrapped: the
    others (the KV hot path among them) run as they are."""

    def __init__(self, access: Access) -> None:
        self.access = access

    async def intercept_service(self, continuation: Callable, details: Any) -> Any:
        handler = await continuation(details)
        right = METHOD_RIGHTS.get(details.method)
        if handler is None or right is None:
            return handler
        if not self.access.enforce:
            return handler
        what = _WHAT.get(details.method, details.method)
        access = self.access
        # a Raft stream's sender names itself in the metadata; the transport then holds every
        # batch of the stream to that name
        claimed = dict(details.invocation_metadata or ()).get(SENDER_METADATA, "") \
            if right is Right.PEER else ""
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                await access.require(context, right, what)
                return await inner(request, context)
            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_unary is not None:
            inner_s = handler.stream_unary

            async def stream(request_iterator, context):
                if not claimed:
                    why = f"permission denied: {what} must name their sender"
                    access.refuse(context, why)
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
                await access.require(context, right, what, claimed)
                return await inner_s(request_iterator, context)
            return grpc.stream_unary_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler
