"""Concurrent clients on a small key set, every operation recorded in a History.

Each client picks its key and operation from its own seeded generator: get, append or put of a
unique token <client.seq>, delete, or cas to a unique token (expecting the value the client
last saw for that key, or, a third of the time, that the key is missing).  An operation that raises has an UNKNOWN outcome: it is recorded as
such and the client drops its clerk and starts a new session (so the unknown write is never
retried under a session that could still land it later in a different order).  The number of
unknown writes per key is bounded: a key that reached the bound only gets reads, which keeps
the checker's search tractable."""
from __future__ import annotations

import asyncio
import random
import re
from collections import Counter

from eraftd.controller.state import NSHARDS
from eraftd.shardkv.clerk import Clerk, ShardKVError
from eraftd.shardkv.state import key2shard

from .history import APPEND, CAS, DELETE, GET, PUT, History, Op

KINDS = (GET, APPEND, PUT, DELETE, CAS)          # the order of Workload.mix

TOKEN = re.compile(r"<[^<>]+>")


def keys_over_shards(n: int, tag: str = "k") -> list[str]:
    """n keys spread over the shards (key2shard = first byte mod NSHARDS)."""
    out = []
    for i in range(n):
        shard = (i * 3) % NSHARDS
        c = next(chr(b) for b in range(ord("a"), ord("a") + NSHARDS) if key2shard(bytes([b])) == shard)
        out.append(f"{c}{tag}{i}")
    return out


class Workload:
    def __init__(self, ctrl: list[str], history: History, keys: list[str], clients: int,
                 seed: int, max_unknown_per_key: int = 6, total_timeout: float = 10.0,
                 mix: tuple[float, ...] = (0.35, 0.4, 0.1, 0.05, 0.1), tls=None) -> None:
        self.ctrl = ctrl
        self.tls = tls                                   # eraftd.tls.TlsFiles (None: plaintext)
        self.history = history
        self.keys = keys
        self.clients = clients
        self.seed = seed
        self.max_unknown = max_unknown_per_key
        self.total_timeout = total_timeout
        self.mix = mix                                   # get, append, put, delete, cas
        self.unknown_writes: Counter[str] = Counter()
        self.stop = asyncio.Event()
        self.acked = 0
        self.sessions = 0
        self._tasks: list[asyncio.Task] = []
        self.renewed = 0                  # clerk sessions renewed after SESSION_EXPIRED

    def clerk(self) -> Clerk:
        self.sessions += 1
        return Clerk(self.ctrl, total_timeout=self.total_timeout, call_timeout=2.0, tls=self.tls)

    async def client(self, i: int) -> None:
        rng = random.Random(self.seed * 1009 + i)
        name = f"c{i}"
        kv = self.clerk()
        seq = 0
        seen: dict[str, str] = {}                        # key -> the value this client last saw
        try:
            while not self.stop.is_set():
                key = rng.choice(self.keys)
                kind = rng.choices(KINDS[:len(self.mix)], self.mix)[0]
                if kind != GET and self.unknown_writes[key] >= self.max_unknown:
                    kind = GET
                seq += 1
                token = f"<{i}.{seq}>" if kind in (PUT, APPEND, CAS) else ""
                expected = (seen.get(key) or None) if kind == CAS and rng.random() > 1 / 3 else None
                op = self.history.invoke(name, kind, key, token, expected)
                session = kv.session
                done = await self.do(kv, op)
                self.renewed += kv.session != session
                if done and op.kind != APPEND:
                    seen[key] = ("" if op.kind == DELETE else op.value if op.kind == PUT or op.hit
                                 else op.result or "")
                if not done:
                    await kv.close()
                    kv = self.clerk()
        finally:
            await kv.close()

    async def do(self, kv: Clerk, op: Op) -> bool:
        """Run op through kv and record its outcome; False when it is unknown."""
        try:
            if op.kind == GET:
                v = await kv.get(op.key)
                self.history.ok(op, (v or b"").decode())
            elif op.kind == PUT:
                await kv.put(op.key, op.value)
                self.history.ok(op)
            elif op.kind == DELETE:
                self.history.ok(op, hit=await kv.delete(op.key))
            elif op.kind == CAS:
                swapped, found = await kv.cas(op.key, op.expected, op.value)
                self.history.ok(op, (found or b"").decode(), hit=swapped)
            else:
                await kv.append(op.key, op.value)
                self.history.ok(op)
            self.acked += 1
            return True
        except ShardKVError:
            raise                                        # a bad request: the test's bug
        except Exception:                                # timeout / unavailable / cancelled
            self.history.unknown(op)
            if op.kind != GET:
                self.unknown_writes[op.key] += 1
            return False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self.client(i)) for i in range(self.clients)]

    async def finish(self, timeout: float) -> None:
        """Stop the clients; an operation still running past timeout is cancelled (unknown)."""
        self.stop.set()
        done, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for t in done:
            if t.exception() is not None:
                raise t.exception()
        for op in self.history.ops:                      # cancelled mid-flight
            if op.ok is None and op.ret != float("inf"):
                op.ret = float("inf")

    async def final_reads(self, deadline_s: float) -> dict[str, str]:
        """Read every key (recorded in the history); retried until deadline_s."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        out: dict[str, str] = {}
        async with Clerk(self.ctrl, total_timeout=10, call_timeout=2.0, tls=self.tls) as kv:
            for key in self.keys:
                while True:
                    op = self.history.invoke("final", GET, key)
                    if await self.do(kv, op):
                        out[key] = op.result or ""
                        break
                    if loop.time() > end:
                        raise TimeoutError(f"final read of {key} did not succeed in {deadline_s:.0f}s")
        return out


def durability_problems(history: History, final: dict[str, str]) -> list[str]:
    """Pass criterion 2 on the final values: no token twice in any read; every acknowledged
    append that no reset (put, delete, cas) can be ordered after is in the final value exactly
    once."""
    problems = []
    observed = set()
    for op in history.ops:
        if op.ok and (op.kind == GET or op.kind == CAS and not op.hit):
            toks = TOKEN.findall(op.result or "")
            observed.update(toks)
            dup = [t for t, n in Counter(toks).items() if n > 1]
            if dup:
                problems.append(f"read #{op.id} of {op.key} holds {dup[:3]} more than once")
    for key, ops in history.by_key().items():
        value = final.get(key, "")
        # the resets that may have taken effect
        puts = [o for o in ops if (o.kind == PUT and (o.ok or o.value in observed))
                or (o.kind == DELETE and (o.hit or o.unknown))
                or (o.kind == CAS and (o.hit or (o.unknown and o.value in observed)))]
        last_put_ret = max((o.ret for o in puts), default=-1.0)
        last = max(puts, key=lambda o: o.ret, default=None)
        if (last is not None and last.ok and last.kind != DELETE
                and all(q.ret < last.call for q in puts if q is not last)
                and not value.startswith(last.value)):
            problems.append(f"last acknowledged {last.kind} #{last.id} {last.value} to {key} is "
                            f"not the start of the final value {value[:80]!r}")
        for o in ops:
            if o.kind == APPEND and o.ok and o.call > last_put_ret:
                n = value.count(o.value)
                if n != 1:
                    problems.append(f"acknowledged append #{o.id} {o.value} to {key} is in the "
                                    f"final value {n} times")
    return problems
