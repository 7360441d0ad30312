"""Concurrent clients while shards move (join / leave / move), then the same on an unreliable
cluster (replicas paused with SIGSTOP, leaders killed with kill -9 and restarted), and on a
lossy network (every node-to-node connection through a proxy that cuts connections and
refuses new ones for a while: lost Raft messages, lost migration calls and answers).

Every client owns its keys and appends to them (its keys concurrently, each key one append
at a time, through one pipelining Clerk), reading a key back now and then: the value must
always be exactly the appends acknowledged so far, in order: none lost, none applied twice,
no stale read."""
from __future__ import annotations

import asyncio
import random

import pytest
from skv_support import check_all, in_thread, key_in, sharded, wait_settled  # noqa: F401

from eraftd.controller.client import ControllerClient
from eraftd.controller.state import NSHARDS
from eraftd.shardkv.clerk import Clerk
from eraftd.testing import TcpProxy

pytestmark = pytest.mark.e2e

G1, G2, G3 = 100, 101, 102


class Workload:
    def __init__(self, ctrl: list[str], clients: int, keys_each: int, seed: int) -> None:
        self.ctrl = ctrl
        self.rng = random.Random(seed)
        self.keys = {i: [key_in((i * keys_each + j) % NSHARDS, f"c{i}-{j}").decode()
                         for j in range(keys_each)] for i in range(clients)}
        self.expect = {k: "" for ks in self.keys.values() for k in ks}
        self.acked = 0
        self.progress = asyncio.Event()
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    async def client(self, i: int) -> None:
        async with Clerk(self.ctrl, total_timeout=60) as kv:
            rng = random.Random(self.rng.random())

            async def one_key(key: str) -> None:
                n = 0
                while not self.stop.is_set():
                    v = f"[{key}:{n}]"
                    await kv.append(key, v)
                    self.expect[key] += v
                    n += 1
                    self.acked += 1
                    self.progress.set()
                    if rng.random() < 0.2:
                        assert await kv.get(key) == self.expect[key].encode(), key
            await asyncio.gather(*(one_key(k) for k in self.keys[i]))

    async def wait_progress(self, n: int = 30, timeout: float = 60) -> None:
        """Until n more appends are acknowledged (the cluster is serving).  A client that
        stopped (its operation raised) fails the test with its own exception."""
        loop = asyncio.get_running_loop()
        start, deadline = self.acked, loop.time() + timeout
        while self.acked < start + n:
            for t in self.tasks:
                if t.done():
                    t.result()                      # re-raises what stopped the client
                    raise AssertionError("a client stopped before the workload did")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"only {self.acked - start} of {n} appends acknowledged "
                                     f"within {timeout:g}s")
            self.progress.clear()
            waiter = asyncio.ensure_future(self.progress.wait())
            await asyncio.wait([waiter, *self.tasks], timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()


async def run_with(work: Workload, clients: int, scenario) -> None:
    tasks = work.tasks = [asyncio.create_task(work.client(i)) for i in range(clients)]
    try:
        await work.wait_progress()
        await scenario()
        await work.wait_progress()
        work.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    async with Clerk(work.ctrl) as kv:
        await check_all(kv, work.expect)
    assert work.acked > 100


async def test_concurrent_clients_during_join_leave_move(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2, G3), controllers=1).start()
    ctrl = c.controller_addresses()
    work = Workload(ctrl, clients=4, keys_each=5, seed=11)
    async with ControllerClient(ctrl) as ctl:
        await ctl.join({G1: c.addresses(G1)})

        async def scenario() -> None:
            for step in ("join2", "join3", "leave1", "move", "join1", "leave2", "leave3"):
                if step.startswith("join"):
                    g = (G1, G2, G3)[int(step[-1]) - 1]
                    await ctl.join({g: c.addresses(g)})
                elif step.startswith("leave"):
                    await ctl.leave([(G1, G2, G3)[int(step[-1]) - 1]])
                else:
                    for s in range(0, NSHARDS, 3):
                        await ctl.move(s, G3)
                await work.wait_progress(20)
        await run_with(work, 4, scenario)
        cfg = await ctl.query()
        await in_thread(wait_settled, c, {g: cfg.shards_of(g) for g in (G1, G2, G3)})


async def test_unreliable_cluster(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2, G3), controllers=3).start()
    ctrl = c.controller_addresses()
    work = Workload(ctrl, clients=3, keys_each=4, seed=12)
    rng = random.Random(13)
    async with ControllerClient(ctrl, total_timeout=60) as ctl:
        await ctl.join({G1: c.addresses(G1), G2: c.addresses(G2)})

        async def chaos(rounds: int) -> None:
            """Pause a random replica (any group, controllers too) for a moment, or kill -9 a
            group's leader and start it again."""
            for _ in range(rounds):
                if rng.random() < 0.3:
                    gid = rng.choice([G1, G2, G3])
                    leader = c.leader(gid)
                    if leader is not None:
                        await in_thread(leader.kill)
                        await work.wait_progress(5)
                        await in_thread(lambda: leader.start().wait_serving())
                else:
                    n = rng.choice(c.nodes)
                    n.pause()
                    await asyncio.sleep(rng.uniform(0.1, 0.8))     # the length of the fault
                    n.resume()
                await work.wait_progress(5)

        async def scenario() -> None:
            steps = [lambda: ctl.join({G3: c.addresses(G3)}), lambda: ctl.leave([G1]),
                     lambda: ctl.move(1, G2), lambda: ctl.join({G1: c.addresses(G1)}),
                     lambda: ctl.leave([G2])]
            for step in steps:
                await asyncio.gather(step(), chaos(2))
        await run_with(work, 3, scenario)


async def test_lossy_network(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2, G3), controllers=1, proxied=True)
    proxies = [await TcpProxy(via, addr).start() for addr, via in c.proxies.items()]
    rng = random.Random(14)
    try:
        await in_thread(c.start)
        ctrl = c.controller_addresses()
        work = Workload(ctrl, clients=3, keys_each=4, seed=15)
        async with ControllerClient(ctrl, total_timeout=60) as ctl:
            await ctl.join({G1: c.addresses(G1)})

            async def chaos(rounds: int) -> None:
                """Cut every connection to a few nodes, or refuse them any for a moment."""
                for _ in range(rounds):
                    hit = rng.sample(proxies, 3)
                    if rng.random() < 0.5:
                        for p in hit:
                            p.cut()
                    else:
                        for p in hit:
                            p.down = True
                            p.cut()
                        await asyncio.sleep(rng.uniform(0.2, 0.8))    # the length of the fault
                        for p in hit:
                            p.down = False
                    await work.wait_progress(5)

            async def scenario() -> None:
                steps = [lambda: ctl.join({G2: c.addresses(G2), G3: c.addresses(G3)}),
                         lambda: ctl.leave([G1]), lambda: ctl.move(2, G3),
                         lambda: ctl.join({G1: c.addresses(G1)}), lambda: ctl.leave([G3])]
                for step in steps:
                    await asyncio.gather(step(), chaos(3))
            await run_with(work, 3, scenario)
            cfg = await ctl.query()
            await in_thread(wait_settled, c, {g: cfg.shards_of(g) for g in (G1, G2, G3)})
    finally:
        for p in proxies:
            await p.close()
