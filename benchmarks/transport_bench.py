#!/usr/bin/env python
"""Messages/s through one Transport pair on loopback.

    python benchmarks/transport_bench.py                 # both modes, both workloads
    python benchmarks/transport_bench.py --mode 1proc --n 200000 --kind hb

Modes: 1proc = sender and receiver Transports in one process and one event loop (they share
one core's worth of Python); 2proc = the receiver runs in a child process (closer to a real
cluster, where each node has its own loop).
Workloads: hb = heartbeats; app = APP messages with 4 entries of 100 bytes each.
The producer calls send() with --chunk messages at a time and yields to the loop whenever the
peer's queue holds more than --window, so nothing is dropped; the clock stops when the receiver
has counted every message.  Prints figures; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no GOAWAY chatter at shutdown

import grpc.aio  # noqa: E402

from eraftd.node.transport import Transport, server_options  # noqa: E402
from eraftd.raft.messages import Entry, Message, MsgType  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_msgs(kind: str, n: int) -> list[Message]:
    if kind == "hb":
        return [Message(MsgType.HEARTBEAT, to=1, frm=0, term=3, commit=i) for i in range(n)]
    return [Message(MsgType.APP, to=1, frm=0, term=3, log_term=3, index=i * 4, commit=i,
                    entries=tuple(Entry(3, i * 4 + k + 1, b"v" * 100) for k in range(4)))
            for i in range(n)]


async def serve(port: int, n: int, done: asyncio.Event, started: asyncio.Event | None = None):
    """A receiving Transport + server that sets `done` once n messages arrived."""
    count = 0

    def on_messages(items):
        nonlocal count
        count += len(items)
        if started is not None:
            started.set()
        if count >= n:
            done.set()

    t = Transport(f"127.0.0.1:{port}", None, on_messages, None)
    server = grpc.aio.server(options=server_options())
    t.add_to_server(server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return t, server


async def produce(t: Transport, addr: str, msgs: list[Message], chunk: int, window: int):
    peer_q = None
    for i in range(0, len(msgs), chunk):
        t.send(addr, 1, msgs[i:i + chunk])
        if peer_q is None:
            peer_q = t._peers[addr].queue
        while len(peer_q) > window:
            await asyncio.sleep(0)


async def run_1proc(n: int, kind: str, chunk: int, window: int) -> float:
    port = free_port()
    done, warm = asyncio.Event(), asyncio.Event()
    rt, server = await serve(port, n + 1, done, warm)  # +1: the warm-up message
    st = Transport("127.0.0.1:0", None, lambda items: None, None, max_queue=window * 4)
    msgs = make_msgs(kind, n)
    st.send(f"127.0.0.1:{port}", 1, msgs[:1])  # connect first
    await asyncio.wait_for(warm.wait(), 10)
    t0 = time.perf_counter()
    await produce(st, f"127.0.0.1:{port}", msgs, chunk, window)
    await asyncio.wait_for(done.wait(), 120)
    dt = time.perf_counter() - t0
    await st.close()
    await rt.close()
    await server.stop(None)
    return n / dt


def _child(port: int, n: int, conn):
    async def main():
        done = asyncio.Event()
        t, server = await serve(port, n + 1, done)  # +1: the warm-up message
        conn.send("ready")
        await asyncio.wait_for(done.wait(), 300)
        conn.send(time.perf_counter())
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # the sender closed
        await t.close()
        await server.stop(None)
    asyncio.run(main())


async def run_2proc(n: int, kind: str, chunk: int, window: int) -> float:
    port = free_port()
    parent, child = mp.Pipe()
    p = mp.get_context("spawn").Process(target=_child, args=(port, n, child))
    p.start()
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, parent.recv) == "ready"
    st = Transport("127.0.0.1:0", None, lambda items: None, None, max_queue=window * 4)
    msgs = make_msgs(kind, n)
    addr = f"127.0.0.1:{port}"
    st.send(addr, 1, msgs[:1])
    t0 = time.perf_counter()  # includes connect (~ms), negligible at these counts
    await produce(st, addr, msgs, chunk, window)
    end = await loop.run_in_executor(None, parent.recv)  # perf_counter is system-wide on Linux
    dt = end - t0
    await st.close()
    parent.send("bye")
    p.join(30)
    return n / dt


def main():
    ap = argparse.ArgumentParser(description="Transport throughput on loopback")
    ap.add_argument("--mode", choices=["1proc", "2proc", "both"], default="both")
    ap.add_argument("--kind", choices=["hb", "app", "both"], default="both")
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=64, help="messages per send() call")
    ap.add_argument("--window", type=int, default=4096, help="max queued before the producer yields")
    ns = ap.parse_args()
    modes = ["1proc", "2proc"] if ns.mode == "both" else [ns.mode]
    kinds = ["hb", "app"] if ns.kind == "both" else [ns.kind]
    for mode in modes:
        for kind in kinds:
            fn = run_1proc if mode == "1proc" else run_2proc
            rate = asyncio.run(fn(ns.n, kind, ns.chunk, ns.window))
            extra = f" ({rate * 4:,.0f} entries/s)" if kind == "app" else ""
            print(f"{mode:5} {kind:3}: {rate:,.0f} msgs/s{extra}  (n={ns.n}, chunk={ns.chunk})")


if __name__ == "__main__":
    main()
