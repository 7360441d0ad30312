"""How replicated state machines plug into the driver, and two small ones for tests and benchmarks.

A state machine keeps its data in its group's part of the node's RocksDB (through the
GroupStore).  Each round the driver hands it the committed entries; it stages its writes in
the round's WriteBatch (the same batch that carries new log entries, the hard state and the
applied index, so one fsync covers all) and returns one result per entry for the proposers
waiting on them.  Snapshots are the group's stored data, so producing one in chunks and
restoring from one is done by the GroupStore; a machine that caches anything in memory
reloads it in `restored()`.
"""
from __future__ import annotations

from typing import Any, Protocol

from ..raft.messages import Entry


class StateMachine(Protocol):
    def apply(self, entries: list[Entry], batch: Any) -> list[Any]:
        """Stage the effects of `entries` in `batch`; one result per entry (None for no-ops)."""

    def restored(self) -> None:
        """The group's data was just replaced by a snapshot: reload in-memory state."""


class NoopStateMachine:
    """Applies nothing: for measuring the replication path alone."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def apply(self, entries: list[Entry], batch: Any) -> list[Any]:
        return [None] * len(entries)

    def restored(self) -> None:
        pass


class RegisterStateMachine:
    """A tiny key-value machine for tests of the Raft layer: commands are `key=value` (a put).

    The result of a put is the log index it applied at, so a test can check that every
    acknowledged write is in the log exactly where it was promised.
    """

    def __init__(self, store: Any) -> None:
        self.store = store

    def apply(self, entries: list[Entry], batch: Any) -> list[Any]:
        out: list[Any] = []
        for e in entries:
            if not e.data:
                out.append(None)
                continue
            key, sep, value = e.data.partition(b"=")
            if not sep:
                out.append(b"bad command")
                continue
            self.store.stage_put(batch, key, value)
            out.append(str(e.index).encode())
        return out

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def restored(self) -> None:
        pass


TEST_MACHINES = {"noop": NoopStateMachine, "register": RegisterStateMachine}
