"""`bench`: put/get throughput and latency against the live cluster.

    bench [N [CLIENTS]] [-n REQUESTS] [-c CLIENTS] [--value-size BYTES] [--reads PERCENT]
          [--keys KEYSPACE] [--prefix PREFIX] [--keep] [--unary] [--json]

CLIENTS workers share N requests; each issues one request, waits for its answer, issues the
next.  A request is a get with probability --reads percent, else a put, of a key drawn from
KEYSPACE keys spread over every shard.  By default the requests go through the clerk's native
batched path (concurrent requests share KVBatch calls); with --unary each worker is an
eRaft-style client making one ShardKVService.Command call per request, one in flight, as
eRaft's own clerk and bench do.  Once a request finds its group unavailable (it waited the
whole timeout), no new requests are issued: the summary says how many were.

The keys are D + PREFIX + I (default prefix `__bench/`; D = I mod 10, the digit that spreads
them over every shard), out of the way of the user's keys, and bench deletes every key it
wrote when it ends (unless --keep), also after Ctrl-C, which stops the requests and prints
the summary of what was done; a second Ctrl-C stops the clean-up, and the summary says how
many keys were left.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import random
import time
from typing import Any, Protocol

import grpc

from eraftd.controller.state import NSHARDS
from eraftd.shardkv.clerk import ShardKVError, ShardKVUnavailable
from eraftd.shardkv.unary import UnaryClerk

from .output import BenchResult, progress_bar


PROGRESS_EVERY_S = 0.1
DEFAULT_PREFIX = "__bench/"
CLEANUP_CONCURRENCY = 256


# ---------------------------------------------------------------- arguments

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):            # a usage error, never sys.exit
        raise ValueError(message)


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise ValueError
    return n


def _non_negative(text: str) -> int:
    n = int(text)
    if n < 0:
        raise ValueError
    return n


def _percent(text: str) -> int:
    n = int(text)
    if not 0 <= n <= 100:
        raise ValueError
    return n


_positive.__name__ = "positive integer"
_non_negative.__name__ = "non-negative integer"
_percent.__name__ = "percentage 0..100"


def _parser() -> _Parser:
    p = _Parser(prog="bench", add_help=False, allow_abbrev=False)
    p.add_argument("N", nargs="?", type=_positive)
    p.add_argument("CLIENTS", nargs="?", type=_positive)
    p.add_argument("-n", dest="requests", type=_positive, metavar="REQUESTS")
    p.add_argument("-c", dest="clients", type=_positive, metavar="CLIENTS")
    p.add_argument("--value-size", type=_non_negative, default=64, metavar="BYTES")
    p.add_argument("--reads", type=_percent, default=0, metavar="PERCENT")
    p.add_argument("--keys", type=_positive, metavar="KEYSPACE")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, metavar="PREFIX")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--unary", action="store_true")
    p.add_argument("--json", action="store_true")
    return p


def parse_args(words: list[str]) -> argparse.Namespace:
    """bench's words -> options (ValueError with argparse's message); -n / -c win over N / CLIENTS."""
    o = _parser().parse_args(words)
    o.requests = o.requests or o.N or 1000
    o.clients = o.clients or o.CLIENTS or 16
    o.keys = o.keys or o.requests
    return o


def bench_key(i: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Key i of the keyspace; consecutive keys fall in consecutive shards (key2shard is the
    first byte)."""
    return f"{i % NSHARDS}{prefix}{i}"


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 / max of `samples` (seconds) in milliseconds (nearest rank)."""
    if not samples:
        return {}
    s = sorted(samples)

    def rank(q: float) -> float:
        return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))] * 1000
    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": s[-1] * 1000}


# ---------------------------------------------------------------- the unary path

class KV(Protocol):
    async def get(self, key: str) -> Any: ...
    async def put(self, key: str, value: str) -> None: ...


# ---------------------------------------------------------------- the run

def _error_kind(e: Exception) -> str:
    return "refused" if isinstance(e, ShardKVError) else "unavailable"


async def run(session: Any, o: argparse.Namespace) -> BenchResult:
    """Run the benchmark `o` (from parse_args) with the session's clients."""
    from .commands import CommandFailed
    cfg = await session.ctl.query()              # fails fast when no controller answers
    if not cfg.groups:
        raise CommandFailed("bench: no group has joined yet (join GID=ADDR,... first)")
    value = "v" * o.value_size
    channels: dict[str, grpc.aio.Channel] = {}
    rng = random.Random()
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    counts = {"issued": 0, "reads": 0, "writes": 0}
    written: set[int] = set()                    # key indexes a put was sent for
    stop = asyncio.Event()

    def client() -> KV:
        return UnaryClerk(session.ctl, channels, session.timeout, config=cfg,
                          dial=session.dial, tls=session.tls) if o.unary else session.clerk

    async def worker() -> None:
        kv = client()
        clock = time.perf_counter
        while counts["issued"] < o.requests and not stop.is_set():
            counts["issued"] += 1
            i = rng.randrange(o.keys)
            key = bench_key(i, o.prefix)
            read = rng.random() * 100 < o.reads
            counts["reads" if read else "writes"] += 1
            if not read:
                written.add(i)
            t0 = clock()
            try:
                await (kv.get(key) if read else kv.put(key, value))
            except (ShardKVError, ShardKVUnavailable) as e:
                errors[_error_kind(e)] += 1
                if isinstance(e, ShardKVUnavailable):
                    stop.set()
            else:
                latencies.append(clock() - t0)

    async def draw() -> None:                 # until cancelled
        while True:
            session.progress.write("\r" + progress_bar(counts["issued"], o.requests))
            session.progress.flush()
            await asyncio.sleep(PROGRESS_EVERY_S)

    drawing = asyncio.create_task(draw()) if session.progress is not None else None
    t0 = time.perf_counter()
    interrupted = False
    try:
        await asyncio.gather(*(worker() for _ in range(o.clients)))
    except asyncio.CancelledError:           # Ctrl-C: the summary of what was done, then clean up
        interrupted = _uncancel()
    finally:
        seconds = time.perf_counter() - t0
        if drawing is not None:
            drawing.cancel()
            session.progress.write("\r\x1b[2K")
            session.progress.flush()
        for ch in channels.values():
            await ch.close()
    removed, left = (0, len(written)) if o.keep else await _clean_up(session, o.prefix, sorted(written))
    return BenchResult(interrupted=interrupted, removed=removed, left=left, prefix=o.prefix,
                       path="unary" if o.unary else "native", requests=o.requests, clients=o.clients,
                       value_size=o.value_size, reads_percent=o.reads, keys=o.keys,
                       seconds=seconds, ok=len(latencies), reads=counts["reads"],
                       writes=counts["writes"], errors=dict(errors),
                       latency_ms=percentiles(latencies))


def _uncancel() -> bool:
    """This task's cancellation is handled (3.11: or later awaits and timeouts see it)."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return True


async def _clean_up(session: Any, prefix: str, written: list[int]) -> tuple[int, int]:
    """Delete the keys bench wrote: (removed, left).  A second Ctrl-C stops it."""
    removed = 0
    sem = asyncio.Semaphore(CLEANUP_CONCURRENCY)
    if session.progress is not None and written:
        session.progress.write(f"\rbench: removing its {len(written)} keys ...")
        session.progress.flush()

    gave_up = asyncio.Event()                # a group did not answer: the rest would wait too

    async def delete(i: int) -> None:
        nonlocal removed
        async with sem:
            if gave_up.is_set():
                return
            try:
                await session.clerk.delete(bench_key(i, prefix))
            except ShardKVUnavailable:
                gave_up.set()
                return
            except ShardKVError:
                return
            removed += 1
    try:
        await asyncio.gather(*(delete(i) for i in written))
    except asyncio.CancelledError:
        _uncancel()
    finally:
        if session.progress is not None and written:
            session.progress.write("\r\x1b[2K")
            session.progress.flush()
    return removed, len(written) - removed
