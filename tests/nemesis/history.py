"""The history recorder: every client operation with its call time, its return time (monotonic
clock) and its result, or that its outcome is unknown (the call raised: a timeout, the server
killed).  Written values are unique tokens (client, sequence), so an append that lands twice or
a write that vanishes can be pinned to one operation."""
from __future__ import annotations

import dataclasses
import math
import threading
import time

PUT, APPEND, GET = "put", "append", "get"


@dataclasses.dataclass
class Op:
    id: int
    client: str
    kind: str                      # put / append / get
    key: str
    value: str = ""                # the written token (put / append)
    call: float = 0.0
    ret: float = math.inf          # inf while pending or when the outcome is unknown
    result: str | None = None      # what a get read ("" for a missing key)
    ok: bool | None = None         # True: acknowledged; None: unknown outcome

    @property
    def unknown(self) -> bool:
        return self.ok is None

    def __str__(self) -> str:
        r = f"-> {self.result!r}" if self.kind == GET and self.ok else ""
        end = "?" if self.unknown else f"{self.ret:.3f}"
        v = f" {self.value!r}" if self.kind != GET else ""
        return f"#{self.id} {self.client} {self.kind} {self.key}{v} [{self.call:.3f}, {end}] {r}"


class History:
    """Thread- and task-safe recorder.  invoke() before sending, then ok() or unknown()."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def invoke(self, client: str, kind: str, key: str, value: str = "") -> Op:
        with self._lock:
            op = Op(len(self.ops), client, kind, key, value, call=self.now())
            self.ops.append(op)
        return op

    def ok(self, op: Op, result: str | None = None) -> None:
        op.ret = self.now()
        op.result = result if op.kind == GET else None
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
