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


def rpc_problem(e: BaseException) -> str:
    """A failed call (a grpc.aio.AioRpcError, a timeout, ...) in plain words."""
    code = getattr(e, "code", None)
    if callable(code) and hasattr(code(), "name"):
        name = code().name
        return STATUS_WORDS.get(name, name.lower().replace("_", " "))
    if isinstance(e, asyncio.TimeoutError):
        return "no answer in time"
    return str(e) or type(e).__name__


class Error(Exception):
    """Something eraftd could not do; the message is one line in plain words."""


class Refused(Error):
    """The cluster refused the operation (bad input, a rule it would break): nothing changed."""


class Unavailable(Error):
    """No answer within the time allowed; the message says what was tried.  A write's outcome
    is then unknown: it may or may not have been applied."""
