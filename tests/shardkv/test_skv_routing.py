"""Clients that follow the cluster, on real `eraftd run` processes: a long-lived Clerk,
UnaryClerk and `eraftd shell` keep answering after a group left and stopped answering (its
processes SIGSTOPped), and after a phantom group was joined and left; deadlines hold against
stopped groups and unreachable controllers; a ControllerClient pointed at a shardkv-only node
fails at once with a plain sentence; dial maps reach servers advertised under other names."""
from __future__ import annotations

import asyncio
import subprocess
import time

import grpc
import pytest
from skv_support import group_shards, in_thread, key_in, sharded, wait_settled  # noqa: F401

from eraftd.controller.client import ControllerClient, ControllerUnavailable, NotAController
from eraftd.config import dump_toml
from eraftd.controller.state import NSHARDS
from eraftd.shardkv.clerk import Clerk, ShardKVUnavailable
from eraftd.shardkv.unary import UnaryClerk
from eraftd.testing import eraftd_command, free_port, wait_for

pytestmark = pytest.mark.e2e

G1, G2, PHANTOM = 100, 101, 102
ALL = list(range(NSHARDS))


def shard_of(key: str) -> int:
    return ord(key[0]) % NSHARDS


def keys_of(shards) -> list[str]:
    return [key_in(s, f"r{s}").decode() for s in shards]


def no_status_words(text: str) -> None:
    for word in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "StatusCode", "b'", "Err"):
        assert word not in text, (word, text)


class Shell:
    """A long-lived `eraftd shell` in batch mode: stdin a pipe kept open, one line at a time."""

    def __init__(self, controllers: list[str]) -> None:
        self.proc = subprocess.Popen(
            eraftd_command() + ["shell", "--controllers", ",".join(controllers),
                                "--timeout", "30s", "--keep-going"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1, start_new_session=True)

    async def run(self, line: str, timeout: float = 60) -> str:
        """Send one line, wait for its one line of output."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        assert out, f"the shell exited: {self.proc.stderr.read()}"
        return out.rstrip("\n")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


async def join_phantom(ctl: ControllerClient, gid: int, servers: list[str]) -> None:
    """Join a group whose servers do not exist (a mistyped join): the controller refuses it
    unless forced (precheck.py), so it is forced here."""
    await ctl.join({gid: servers}, force=True)


async def test_long_lived_clients_follow_a_group_that_left_and_stopped(sharded):  # noqa: F811
    c = sharded(gids=(G1, G2), controllers=1).start()
    ctrl = c.controller_addresses()
    shell = Shell(ctrl)
    channels: dict[str, grpc.aio.Channel] = {}
    stopped = []
    try:
        async with ControllerClient(ctrl, total_timeout=60) as ctl, \
                Clerk(ctrl, total_timeout=30) as kv:
            unary = UnaryClerk(ctl, channels, timeout=30)
            await ctl.join({G1: c.addresses(G1)})
            await ctl.join({G2: c.addresses(G2)})
            cfg = await ctl.query()
            await in_thread(wait_settled, c, {G1: cfg.shards_of(G1), G2: cfg.shards_of(G2)})
            moved = keys_of(cfg.shards_of(G2))
            # every client has used group G2 for the keys of its shards
            for k in moved:
                await kv.put(k, "v")
                assert await unary.get(k) == "v"
                assert await shell.run(f"append {k} s") == "OK"
            assert all(shard_of(k) in cfg.shards_of(G2) for k in moved) and moved

            await ctl.leave([G2])
            await in_thread(wait_settled, c, {G1: ALL})
            for n in c.group(G2):                  # its processes stop answering
                n.pause()
                stopped.append(n)

            # The acceptance criterion of the issue: a long-lived client answers within 2 s of
            # the new owner serving (it is serving already).  A client that waited for its
            # call to G2 to time out (3 s), or for its whole timeout (30 s), would fail this
            # bound; 5 s leaves room for a loaded machine.
            for name, op in (("clerk get", lambda k: kv.get(k)),
                             ("clerk put", lambda k: kv.append(k, "c")),
                             ("unary get", lambda k: unary.get(k)),
                             ("unary put", lambda k: unary.append(k, "u"))):
                t0 = time.monotonic()
                await op(moved[0])
                assert time.monotonic() - t0 < 5, name
            t0 = time.monotonic()
            assert await shell.run(f"get {moved[0]}") == "vscu"
            assert time.monotonic() - t0 < 5           # the same bound, for the shell's session
            for k in moved[1:]:                        # exactly once, all of them
                assert await shell.run(f"append {k} x") == "OK"
                assert await kv.get(k) == b"vsx"
            one = await in_thread(lambda: subprocess.run(
                eraftd_command() + ["--controllers", ",".join(ctrl), "get", moved[0]],
                capture_output=True, text=True, timeout=60))
            assert (one.returncode, one.stdout, one.stderr) == (0, "vscu\n", "")
    finally:
        for n in stopped:
            n.resume()
        shell.close()
        for ch in channels.values():
            await ch.close()


async def test_a_phantom_group_joined_then_left(sharded):  # noqa: F811
    """join 102=<servers nobody runs>, then leave 102: a long-lived clerk that routed to the
    phantom servers goes back to following the configuration."""
    c = sharded(gids=(G1, G2), controllers=1).start()
    ctrl = c.controller_addresses()
    phantom = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    async with ControllerClient(ctrl, total_timeout=60) as ctl, \
            Clerk(ctrl, total_timeout=4) as kv:
        before = await ctl.join({G1: c.addresses(G1), G2: c.addresses(G2)})
        keys = keys_of(ALL)
        for k in keys:
            await kv.put(k, "v")
        await join_phantom(ctl, PHANTOM, phantom)
        cfg = await ctl.query()
        lost = set(cfg.shards_of(PHANTOM))
        assert lost
        k_lost = keys[min(lost)]
        old = before.shards[min(lost)]
        await in_thread(wait_for, lambda: (group_shards(c, old) or {}).get(min(lost)) == "BePulling",
                        60, f"group {old} to give shard {min(lost)} up")
        with pytest.raises(ShardKVUnavailable) as ei:   # routed to the phantom servers
            await kv.get(k_lost)
        assert f"group {PHANTOM}" in str(ei.value) and phantom[0] in str(ei.value)
        no_status_words(str(ei.value))

        await ctl.leave([PHANTOM])
        after = await ctl.query()
        # the shards given to the phantom stay with their old owners, which wait for it to
        # pull them (the server side's business); every other shard answers at once
        for k in keys:
            if shard_of(k) not in lost:
                assert await kv.get(k) == b"v"
        with pytest.raises(ShardKVUnavailable) as ei:
            await kv.get(k_lost)
        msg = str(ei.value)
        owner = after.shards[shard_of(k_lost)]
        assert f"group {owner} does not serve shard {shard_of(k_lost)}" in msg, msg
        assert str(PHANTOM) not in msg and all(a not in msg for a in phantom), msg
        assert PHANTOM not in kv._lanes                # nothing is sent to the phantom any more


async def test_deadlines_hold_and_a_non_controller_fails_at_once(sharded):  # noqa: F811
    c = sharded(gids=(G1,), controllers=1, replicas=1).start()
    ctrl = c.controller_addresses()
    node = c.group(G1)[0]
    # pointed only at a shardkv-only node: a plain sentence at once, not a 30 s wait
    async with ControllerClient([node.address], total_timeout=30) as wrong:
        t0 = time.monotonic()
        with pytest.raises(NotAController) as ei:
            await wrong.query()
        assert time.monotonic() - t0 < 2
    assert str(ei.value) == (f"{node.address} is not a controller (it serves group {G1} only): "
                             f"give the controller addresses")
    # a mix of good and bad addresses works
    async with ControllerClient([node.address] + ctrl, total_timeout=30) as mixed:
        await mixed.join({G1: c.addresses(G1)})
        assert (await mixed.query()).shards == (G1,) * NSHARDS

    # Timing bounds the issue asks for: a call given 3 s fails within 3 s + 10%; measured
    # around the awaited call only, with 0.3 s more for a loaded 2-core machine.
    bound = 3 * 1.1 + 0.3
    nobody = [f"127.0.0.1:{free_port()}"]
    async with ControllerClient(nobody, total_timeout=3) as ctl:
        t0 = time.monotonic()
        with pytest.raises(ControllerUnavailable) as ei:
            await ctl.query()
        assert time.monotonic() - t0 < bound
    no_status_words(str(ei.value))
    async with Clerk(nobody, total_timeout=3) as kv:
        t0 = time.monotonic()
        with pytest.raises(ShardKVUnavailable):
            await kv.get("k")
        assert time.monotonic() - t0 < bound

    async with Clerk(ctrl, total_timeout=30) as warm:
        await warm.put("k", "v")                     # G1 serves
    node.pause()
    channels: dict[str, grpc.aio.Channel] = {}
    try:
        async with Clerk(ctrl, total_timeout=3) as kv, ControllerClient(ctrl) as ctl:
            t0 = time.monotonic()
            with pytest.raises(ShardKVUnavailable) as ei:
                await kv.put("k", "w")
            assert time.monotonic() - t0 < bound
            msg = str(ei.value)
            assert f"group {G1}: {node.address} (no answer in time)" in msg, msg
            no_status_words(msg)
            unary = UnaryClerk(ctl, channels, timeout=3)
            t0 = time.monotonic()
            with pytest.raises(ShardKVUnavailable) as ei:
                await unary.get("k")
            assert time.monotonic() - t0 < bound
            no_status_words(str(ei.value))
    finally:
        node.resume()
        for ch in channels.values():
            await ch.close()


async def test_dial_maps_advertised_addresses_to_real_ones(sharded):  # noqa: F811
    c = sharded(gids=(G1,), controllers=1, replicas=1)
    real_ctrl, real_node = c.controller_addresses()[0], c.addresses(G1)[0]
    # the replica advertises a name (its group's servers, as joined, are that name: a group
    # takes only configurations that list its own servers); only the clients' dial maps it
    n = c.group(G1)[0]
    n.config["node"]["advertise"] = "replica.invalid:7100"
    n.config["shardkv"]["peers"] = ["replica.invalid:7100"]
    n.toml.write_text(dump_toml(n.config))
    c.start()
    dial = {"controller.invalid:7000": real_ctrl, "replica.invalid:7100": real_node}.get
    through = lambda a: dial(a, a)                   # noqa: E731
    async with ControllerClient(["controller.invalid:7000"], dial=through) as ctl:
        # the group advertised by a name only this client's dial map knows: the controller
        # cannot ask it whether it is gid G1, so the join is forced
        await ctl.join({G1: ["replica.invalid:7100"]}, force=True)
        assert ctl.leader == "controller.invalid:7000"
        async with Clerk(["controller.invalid:7000"], dial=through, total_timeout=30) as kv:
            await kv.put("k", "v")
            assert await kv.get("k") == b"v"
        channels: dict[str, grpc.aio.Channel] = {}
        try:
            unary = UnaryClerk(ctl, channels, dial=through)
            assert await unary.get("k") == "v"
            assert list(channels) == ["replica.invalid:7100"]
        finally:
            for ch in channels.values():
                await ch.close()
    # without the map the advertised names lead nowhere, and the message names them
    async with Clerk([real_ctrl], total_timeout=2) as kv:
        with pytest.raises(ShardKVUnavailable, match=r"group 100: replica\.invalid:7100 "
                                                     r"\(unreachable\)"):
            await kv.get("k")
