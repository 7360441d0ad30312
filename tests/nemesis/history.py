"""The history recorder: every client operation with its call time, its return time (monotonic
clock) and its result, or that its outcome is unknown (the call raised: a timeout, the server
killed).  Written values are unique tokens (client, sequence), so an append that lands twice or
a write that vanishes can be pinned to one operation.  No operation writes an empty value, so
a missing key and "" are the same state for the model (a get of a missing key reads "").

    delete: hit = the key existed (it is now missing)
    cas:    expected (None = the key must be missing), value = the new token; hit = swapped,
            result = the value it found when it did not swap ("" = missing)"""
from __future__ import annotations

import dataclasses
import math
import threading
import time

PUT, APPEND, GET, DELETE, CAS = "put", "append", "get", "delete", "cas"


@dataclasses.dataclass
class Op:
    id: int
    client: str
    kind: str                      # put / append / get / delete / cas
    key: str
    value: str = ""                # the written token (put / append / cas)
    call: float = 0.0
    ret: float = math.inf          # inf while pending or when the outcome is unknown
    result: str | None = None      # what a get read ("" for a missing key); a cas not swapped
    ok: bool | None = None         # True: acknowledged; None: unknown outcome
    expected: str | None = None    # cas: what it compared with (None: the key must be missing)
    hit: bool | None = None        # delete: the key existed; cas: it swapped

    @property
    def unknown(self) -> bool:
        return self.ok is None

    def __str__(self) -> str:
        r = f"-> {self.result!r}" if self.kind == GET and self.ok else ""
        if self.kind in (DELETE, CAS) and self.ok:
            r = f"-> {'hit' if self.hit else 'miss'}"
            if self.kind == CAS and not self.hit:
                r += f" {self.result!r}"
        end = "?" if self.unknown else f"{self.ret:.3f}"
        v = f" {self.value!r}" if self.kind not in (GET, DELETE) else ""
        if self.kind == CAS:
            v = f" {self.expected!r}{v}"
        return f"#{self.id} {self.client} {self.kind} {self.key}{v} [{self.call:.3f}, {end}] {r}"


class History:
    """Thread- and task-safe recorder.  invoke() before sending, then ok() or unknown()."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def invoke(self, client: str, kind: str, key: str, value: str = "",
               expected: str | None = None) -> Op:
        with self._lock:
            op = Op(len(self.ops), client, kind, key, value, call=self.now(), expected=expected)
            self.ops.append(op)
        return op

    def ok(self, op: Op, result: str | None = None, hit: bool | None = None) -> None:
        op.ret = self.now()
        op.result = result if op.kind in (GET, CAS) else None
        op.hit = hit
        op.ok = True

    def unknown(self, op: Op) -> None:
        op.ret = math.inf
        op.ok = None

    def by_key(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            out.setdefault(op.key, []).append(op)
        return out

    def counts(self) -> dict[str, int]:
        c = {"ops": len(self.ops), "acked": 0, "unknown": 0}
        for op in self.ops:
            c["acked" if op.ok else "unknown"] += 1
            c[op.kind] = c.get(op.kind, 0) + 1
        return c
