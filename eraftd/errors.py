"""The errors of eraftd's clients, one family for the library's users (eraftd.Error and its two
kinds); the clients raise subclasses that say which part answered (shardkv or controller).
Also the one home for saying a failed gRPC call in plain words (never a status code name)."""
from __future__ import annotations

import asyncio

# a gRPC status (by name) in words: what it means for the user
STATUS_WORDS = {
    "UNAVAILABLE": "unreachable",
    "DEADLINE_EXCEEDED": "no answer in time",
    "UNIMPLEMENTED": "does not offer this service (is it the right kind of node?)",
    "INTERNAL": "failed on the server (see its log)",
    "UNKNOWN": "failed on the server (see its log)",
    "CANCELLED": "call cancelled",
    "RESOURCE_EXHAUSTED": "message too large or server overloaded",
    "PERMISSION_DENIED": "permission denied",
    "UNAUTHENTICATED": "not authenticated",
    "INVALID_ARGUMENT": "refused the request as invalid",
    "FAILED_PRECONDITION": "not ready for this request",
    "NOT_FOUND": "not found",
    "ALREADY_EXISTS": "already exists",
    "ABORTED": "aborted; try again",
    "OUT_OF_RANGE": "out of range",
    "DATA_LOSS": "lost data (see its log)",
}


# What grpc reports (in an UNAVAILABLE's details) when the TLS of the two sides does not match,
# found by experiment with grpc 1.85 (tests/test_tls_clients.py checks each case):
#   a TLS client, a plaintext node:   "... Tls handshake failed ... WRONG_VERSION_NUMBER ..."
#   the node's certificate is not of the client's CA:  "... CERTIFICATE_VERIFY_FAILED ..."
#   the node's certificate names another host:  "... Hostname Verification Check failed."
#   the node refused the client's certificate (none given where one is required, or one of
#   another CA), and a plaintext client against a TLS node: "... Socket closed"
TLS_NOT_SERVED = ("answered without TLS: it is not a TLS node (no [tls] in its TOML): leave out "
                  "--tls-ca/--tls-cert/--tls-key (and ERAFT_TLS_*), or check the address")
TLS_UNTRUSTED = ("presented a certificate that is not signed by the CA of --tls-ca: give the "
                 "cluster's CA certificate (its [tls] ca_file)")
TLS_WRONG_NAME = ("presented a certificate that does not name this address: a node certificate names "
                  "the node's advertise host (`eraftd cert create-node DIR ADDR...`); dial that name")
TLS_REFUSED = ("closed the connection during the TLS handshake: check --tls-ca is the cluster's CA "
               "and give --tls-cert/--tls-key (a client certificate signed by it) if the cluster "
               "requires client certificates")
TLS_NEEDED = ("closed the connection: the node may require TLS (give --tls-ca FILE, the cluster's "
              "CA, and --tls-cert/--tls-key if it requires client certificates)")
TLS_NEEDED_OR_REFUSED = ("closed the connection: the node may require TLS or refuse this client's "
                         "certificate (check --tls-ca/--tls-cert/--tls-key)")


def _tls_problem(details: str, tls: bool | None) -> str | None:
    """A TLS mismatch in an UNAVAILABLE's details, in words; None when it is not one.
    tls: whether the failed channel was TLS (None: not known)."""
    if "WRONG_VERSION_NUMBER" in details or "wrong version number" in details:
        return TLS_NOT_SERVED
    if "CERTIFICATE_VERIFY_FAILED" in details or "certificate verify failed" in details:
        return TLS_UNTRUSTED
    if "Hostname Verification" in details:
        return TLS_WRONG_NAME
    if "Tls handshake failed" in details or "Handshake failed" in details:
        return TLS_REFUSED
    if details.startswith("failed to connect") and details.endswith("Socket closed"):
        return TLS_REFUSED if tls else TLS_NEEDED if tls is False else TLS_NEEDED_OR_REFUSED
    return None


def rpc_problem(e: BaseException, tls: bool | None = None) -> str:
    """A failed call (a grpc.aio.AioRpcError, a timeout, ...) in plain words.  tls: whether the
    call's channel was TLS (it tells a refused certificate from a node that wants TLS).
    A refusal a node explains (PERMISSION_DENIED, UNAUTHENTICATED with details) is its own words."""
    code = getattr(e, "code", None)
    if callable(code) and hasattr(code(), "name"):
        name = code().name
        details = _details(e)
        if name == "UNAVAILABLE" and (words := _tls_problem(details, tls)):
            return words
        if (why := denied(e)) is not None:
            return why
        return STATUS_WORDS.get(name, name.lower().replace("_", " "))
    if isinstance(e, asyncio.TimeoutError):
        return "no answer in time"
    return str(e) or type(e).__name__


class Error(Exception):
    """Something eraftd could not do; the message is one line in plain words."""


class Refused(Error):
    """The cluster refused the operation (bad input, a rule it would break): nothing changed."""


class Denied(Refused):
    """A node refused this client the operation (its certificate does not give the right: an
    admin command without an admin certificate); the message is the node's own reason."""


def denied(e: BaseException) -> str | None:
    """The node's reason when a call failed because the node refused this client (gRPC
    PERMISSION_DENIED or UNAUTHENTICATED with details), else None.  Not worth a retry: the
    clients raise Denied with it at once."""
    code = getattr(e, "code", None)
    if callable(code) and getattr(code(), "name", "") in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return _details(e) or STATUS_WORDS[code().name]
    return None


class Unavailable(Error):
    """No answer within the time allowed; the message says what was tried.  A write's outcome
    is then unknown: it may or may not have been applied."""


def _details(e: BaseException) -> str:
    details = getattr(e, "details", None)
    try:
        text = details() if callable(details) else ""
    except Exception:                  # noqa: BLE001 - a half-made error: no details
        text = ""
    return text if isinstance(text, str) else ""
