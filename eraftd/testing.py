"""Real `eraftd run` processes for tests and benchmarks: Node and Cluster.

Each node gets free loopback ports, its own TOML file and data_dir under a base directory,
and runs in its own process group, so kill() takes every process it started.  Readiness is
found by polling NodeAdmin.Status, never by sleeping a fixed time.  Every Node ever started
is killed at interpreter exit too, as a last resort if a test forgets.

    with Cluster(tmp_path, n=3) as c:        # controller peers running the register machine
        c.start(); leader = c.wait_leader()
        c.propose(0, [b"k=v"]); c.nodes[1].kill(); c.nodes[1].start()
"""
from __future__ import annotations

import asyncio
import atexit
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import grpc

from ._pb import admin_pb2 as apb
from ._pb import admin_pb2_grpc as apb_grpc
from .config import dump_toml
from .tls import TlsFiles, sync_channel

_LIVE: set["Node"] = set()


def _kill_all_at_exit() -> None:
    for n in list(_LIVE):
        n.kill()


atexit.register(_kill_all_at_exit)


_GIVEN: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, below the kernel's ephemeral range, never given before in this process.
    Not from the ephemeral range: a port the OS hands out for port 0 may be taken by any
    outgoing connection before the node binds it (and a node no longer shares a port: no
    SO_REUSEPORT), which made a node's start fail as "address in use" in CI."""
    low = max(1025, min(_ephemeral_low(), 65536) - 12000)
    high = max(low + 1000, _ephemeral_low() - 1)
    rng = random.Random()
    for _ in range(2000):
        port = rng.randrange(low, high)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:   # everything taken: the OS's pick
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll cond() until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # a node may be down while we poll
            last_exc = e
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def eraftd_command() -> list[str]:
    """How to start eraftd: $ERAFTD_BIN (e.g. the single-file binary) or this interpreter."""
    binary = os.environ.get("ERAFTD_BIN")
    from eraftd.demo import eraftd_argv     # the one way to start this interpreter's eraftd
    return [binary] if binary else eraftd_argv()


def leader_of(nodes: Iterable[Node], group: int) -> Node | None:
    """The running node of `nodes` that says it leads `group` at the highest term, if any."""
    best, best_term = None, -1
    for n in nodes:
        if not n.running():
            continue
        try:
            g = n.group_status(group, timeout=0.5)
        except grpc.RpcError:
            continue
        if g is not None and g.role == "Leader" and g.term > best_term:
            best, best_term = n, g.term
    return best


def processes(cmd_has: str, cwd: Path | None = None) -> list[int]:
    """Pids of the live processes (not zombies, not this one) whose command line contains
    `cmd_has` and, if given, whose working directory is `cwd`."""
    pids, me = [], os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            here = Path(os.readlink(entry / "cwd")) if cwd is not None else None
        except OSError:
            continue
        if cmd_has in cmd and state != "Z" and (cwd is None or here == cwd):
            pids.append(int(entry.name))
    return pids


def change_member(nodes: Callable[[], Iterable[Node]], group: int, op: str, address: str = "",
                  node_id: int = -1, timeout: float = 60) -> apb.ChangeMemberResponse:
    """One membership change (NodeAdmin.ChangeMember) at whoever of nodes() leads `group`,
    retrying while the answer says to (not the leader, "try again"); a refusal raises."""
    last: list[str] = []

    def attempt():
        ld = leader_of(nodes(), group)
        if ld is None:
            return None
        r = ld.admin().ChangeMember(apb.ChangeMemberRequest(group=group, op=op, address=address,
                                                            node_id=node_id), timeout=15)
        last[:] = [r.err]
        if r.err == "OK":
            return r
        if r.err == "ErrWrongLeader" or "try again" in r.err:
            return None
        raise AssertionError(f"{op} {address or node_id} refused: {r.err}")
    return wait_for(attempt, timeout, f"{op} {address or node_id} (last answer: {last})")


def wait_caught_up(nodes: Callable[[], Iterable[Node]], group: int, address: str,
                   timeout: float = 60, lag: int = 5) -> None:
    """Until the leader of `group` sees the member at `address` within `lag` entries."""
    def ok():
        ld = leader_of(nodes(), group)
        if ld is None:
            return False
        r = ld.admin().Members(apb.MembersRequest(group=group), timeout=5)
        return any(m.address == address and m.match >= r.last_index - lag for m in r.members)
    wait_for(ok, timeout, f"{address} to catch up in group {group}")


class Node:
    def __init__(self, name: str, base: Path, config: dict, extra_args: Iterable[str] = (),
                 tls: TlsFiles | None = None) -> None:
        """tls: the client files the test talks to this node with (its TOML has a [tls])."""
        self.name = name
        self.tls = tls
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.address: str = config["node"].get("advertise") or config["node"]["listen"]
        self.toml = self.dir / "eraft.toml"
        self.toml.write_text(dump_toml(config))
        self.log_path = self.dir / "node.log"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self._channel: grpc.Channel | None = None
        self.starts = 0

    # -- process life --
    def start(self) -> "Node":
        if self.running():
            raise RuntimeError(f"{self.name} is already running")
        logf = open(self.log_path, "ab")
        logf.write(f"--- start {self.starts} ---\n".encode())
        logf.flush()
        cmd = eraftd_command() + ["run", "--config", str(self.toml)] + self.extra_args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True, cwd=self.dir)
        logf.close()
        self.starts += 1
        _LIVE.add(self)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """kill -9 the node's whole process group and reap it."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGCONT)
        self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        _LIVE.discard(self)
        self.close_channel()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, wait for a clean exit; returns the exit code (kill -9 after the timeout)."""
        if self.proc is None:
            return None
        self._signal_group(signal.SIGCONT)
        self._signal_group(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = None
        _LIVE.discard(self)
        self.close_channel()
        return rc

    def pause(self) -> None:
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- talking to it --
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = sync_channel(self.address, self.tls)
        return self._channel

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def admin(self) -> apb_grpc.NodeAdminStub:
        return apb_grpc.NodeAdminStub(self.channel())

    def status(self, timeout: float = 1.0) -> apb.NodeStatus:
        return self.admin().Status(apb.StatusRequest(), timeout=timeout)

    def group_status(self, group: int, timeout: float = 1.0) -> apb.GroupStatus | None:
        for g in self.status(timeout).groups:
            if g.group == group:
                return g
        return None

    def wait_serving(self, timeout: float = 30) -> "Node":
        def up():
            if not self.running():
                raise RuntimeError(f"{self.name} exited with {self.exit_code()}:\n{self.log_text()[-2000:]}")
            return self.status(timeout=0.5)
        wait_for(up, timeout, f"{self.name} to serve")
        return self

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.address} {'up' if self.running() else 'down'}>"


class Cluster:
    """n nodes that are controller peers (group 0), optionally running a test state machine."""

    def __init__(self, base: Path, n: int = 3, host: str = "127.0.0.1",
                 test_machine: str | None = "register", raft: dict | None = None,
                 log_level: str = "info", controller: dict | None = None) -> None:
        """controller: more keys of the [controller] section (e.g. session_ttl_ms)."""
        self.base = Path(base)
        addrs = [f"{host}:{free_port(host)}" for _ in range(n)]
        raft_cfg = {"heartbeat_ms": 50, "election_ms": 500}
        raft_cfg.update(raft or {})
        extra = ["--test-state-machine", test_machine] if test_machine else []
        self.nodes: list[Node] = []
        for i, addr in enumerate(addrs):
            cfg = {
                # the test state machine's Propose/Read are test-only entry points
                "node": {"listen": addr, "data_dir": "data", **({"testing": True} if test_machine else {})},
                "controller": {"peers": addrs, **(controller or {})},
                "raft": raft_cfg,
                "log": {"level": log_level},
            }
            self.nodes.append(Node(f"n{i}", self.base, cfg, extra))

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, timeout: float = 60) -> "Cluster":
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            n.wait_serving(timeout)
        return self

    def close(self) -> None:
        for n in self.nodes:
            n.kill()

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.running()]

    def leader(self, group: int = 0) -> Node | None:
        """The live node that says it leads `group` at the highest term, if any."""
        return leader_of(self.live(), group)

    def wait_leader(self, group: int = 0, timeout: float = 60,
                    exclude: Iterable[Node] = ()) -> Node:
        ex = set(exclude)
        return wait_for(lambda: (lambda l: l if l is not None and l not in ex else None)(
            self.leader(group)), timeout, f"a leader of group {group}")

    def propose(self, group: int, commands: list[bytes], timeout: float = 60) -> apb.ProposeResponse:
        """Propose through whoever leads, retrying on ErrWrongLeader / ErrTimeout / a down node."""
        def attempt():
            leader = self.leader(group)
            if leader is None:
                return None
            r = leader.admin().Propose(apb.ProposeRequest(group=group, commands=commands), timeout=10)
            return r if r.err == "OK" else None
        return wait_for(attempt, timeout, f"a proposal to group {group} to commit")

    def read(self, group: int, key: bytes, timeout: float = 60) -> apb.ReadResponse:
        def attempt():
            leader = self.leader(group)
            if leader is None:
                return None
            r = leader.admin().Read(apb.ReadRequest(group=group, key=key), timeout=10)
            return r if r.err == "OK" else None
        return wait_for(attempt, timeout, f"a read of {key!r} in group {group}")

    def wait_applied(self, group: int, index: int, nodes: Iterable[Node] | None = None,
                     timeout: float = 60) -> None:
        targets = list(nodes) if nodes is not None else self.live()

        def caught_up():
            return all(n.group_status(group).last_applied >= index for n in targets)
        wait_for(caught_up, timeout, f"{[n.name for n in targets]} to apply index {index}")


def make_tls(directory: Path, host: str = "127.0.0.1",
             admins: tuple[str, ...] = ("ops",)) -> tuple[TlsFiles, dict]:
    """A CA, one node certificate for host and client certificates for admins (the first is
    returned as the client's TlsFiles) in directory; and the [tls] table for the nodes' TOML."""
    from .certs import cluster_certificates
    made = cluster_certificates(str(directory), [host], admins)
    return made.client(), made.tls_table()


class ShardedCluster:
    """A sharded deployment on loopback: `controllers` controller peers (group 0) and, for each
    gid, `replicas` shardkv replicas; every node its own process, free ports, short timeouts.

        with ShardedCluster(tmp_path, gids=(100, 101)) as c:
            c.start(); ... c.group(100)[0].kill() ...
    """

    def __init__(self, base: Path, gids: Iterable[int] = (100, 101), replicas: int = 3,
                 controllers: int = 3, host: str = "127.0.0.1", raft: dict | None = None,
                 shardkv: dict | None = None, log_level: str = "info",
                 proxied: bool = False, tls: bool = False, controller: dict | None = None) -> None:
        """shardkv / controller: more keys of those sections (e.g. session_ttl_ms).
        proxied: every node reaches every other node through a port of its own
        ([node.dial]); `proxies` maps each node's address to that port, for a TcpProxy.
        tls: make a CA, a node certificate for host and an admin client certificate "ops" in
        base/certs (tls_certs), give every node a [tls] section, and talk to the nodes with
        the ops certificate (`tls`: its TlsFiles; None without TLS)."""
        self.base = Path(base)
        self.tls, tls_section = make_tls(self.base / "certs", host) if tls else (None, None)
        raft_cfg = {"heartbeat_ms": 50, "election_ms": 500}
        raft_cfg.update(raft or {})
        ctrl = [f"{host}:{free_port(host)}" for _ in range(controllers)]
        peers = {gid: [f"{host}:{free_port(host)}" for _ in range(replicas)] for gid in gids}
        everyone = ctrl + [a for ps in peers.values() for a in ps]
        self.proxies: dict[str, str] = (
            {a: f"{host}:{free_port(host)}" for a in everyone} if proxied else {})

        def node(a: str) -> dict:
            return {"listen": a, "data_dir": "data",
                    **({"dial": dict(self.proxies)} if proxied else {})}
        extra = {"tls": tls_section} if tls_section else {}
        self.controllers: list[Node] = [
            Node(f"c{i}", self.base, {"node": node(a), "controller": {"peers": ctrl, **(controller or {})},
                                      "raft": raft_cfg, "log": {"level": log_level}, **extra},
                 tls=self.tls)
            for i, a in enumerate(ctrl)]
        self.groups: dict[int, list[Node]] = {
            gid: [Node(f"g{gid}-{i}", self.base,
                       {"node": node(a),
                        "shardkv": {"gid": gid, "peers": ps, "controllers": ctrl, **(shardkv or {})},
                        "raft": raft_cfg, "log": {"level": log_level}, **extra},
                       tls=self.tls)
                  for i, a in enumerate(ps)]
            for gid, ps in peers.items()}

    def __enter__(self) -> "ShardedCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def nodes(self) -> list[Node]:
        return self.controllers + [n for ns in self.groups.values() for n in ns]

    def controller_addresses(self) -> list[str]:
        return [n.address for n in self.controllers]

    def group(self, gid: int) -> list[Node]:
        return self.groups[gid]

    def addresses(self, gid: int) -> list[str]:
        return [n.address for n in self.groups[gid]]

    def start(self, gids: Iterable[int] | None = None, controllers: bool = True,
              timeout: float = 60) -> "ShardedCluster":
        """Start the controllers (unless told not to) and the given groups (default: all)."""
        nodes = list(self.controllers) if controllers else []
        for gid in (self.groups if gids is None else gids):
            nodes += self.groups[gid]
        for n in nodes:
            if not n.running():
                n.start()
        for n in nodes:
            n.wait_serving(timeout)
        return self

    def close(self) -> None:
        for n in self.nodes:
            n.kill()

    def add_replica(self, gid: int, address: str | None = None) -> Node:
        """A new shardkv replica of gid (not started) whose TOML says it joins the running
        group (`join = true`, peers = the group's replicas so far)."""
        base = self.groups[gid][0].config
        addr = address or f"127.0.0.1:{free_port()}"
        node = {**base["node"], "listen": addr}
        if "http" in node:
            node["http"] = f"127.0.0.1:{free_port()}"
        cfg = {"node": node,
               "shardkv": {**base["shardkv"], "peers": self.addresses(gid), "join": True},
               "raft": base["raft"], "log": base["log"],
               **({"tls": base["tls"]} if "tls" in base else {})}
        n = Node(f"g{gid}-{len(self.groups[gid])}", self.base, cfg, tls=self.tls)
        self.groups[gid].append(n)
        return n

    def leader(self, gid: int) -> Node | None:
        """The leader of shardkv group gid (0: of the controllers), if any."""
        return leader_of(self.controllers if gid == 0 else self.groups[gid], gid)

    def wait_leader(self, gid: int, timeout: float = 60) -> Node:
        return wait_for(lambda: self.leader(gid), timeout, f"a leader of group {gid}")


class TcpProxy:
    """A TCP forwarder (asyncio, in the test's loop) from `listen` to `target` that can fail:
    cut() resets every connection through it; while `down`, it refuses (closes at once) new
    ones.  For unreliable-network tests with ShardedCluster(proxied=True)."""

    def __init__(self, listen: str, target: str) -> None:
        self.listen, self.target = listen, target
        self.down = False
        self._server: Any = None
        self._conns: set[Any] = set()

    async def start(self) -> "TcpProxy":
        host, port = self.listen.rsplit(":", 1)
        self._server = await asyncio.start_server(self._serve, host, int(port))
        return self

    async def _serve(self, reader: Any, writer: Any) -> None:
        if self.down:
            writer.transport.abort()
            return
        host, port = self.target.rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._conns.add(pair)

        async def pipe(r: Any, w: Any) -> None:
            try:
                while data := await r.read(1 << 16):
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                w.transport.abort()
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._conns.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    def cut(self) -> None:
        for a, b in list(self._conns):
            a.transport.abort()
            b.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class FaultyProxy(TcpProxy):
    """A TcpProxy that can also be slow, lossy or a black hole, for nemesis tests:
        delay      seconds each chunk waits before it is forwarded (a slow link);
        loss       probability that a chunk resets its connection instead (a lossy link:
                   TCP cannot lose bytes, so a loss is a broken connection);
        blackhole  accept and swallow everything, forward nothing (a silent partition);
                   heal() resets the connections that swallowed bytes.
    `down` / cut() keep TcpProxy's meaning (refuse new connections / reset every one)."""

    def __init__(self, listen: str, target: str, seed: int = 0) -> None:
        super().__init__(listen, target)
        import random as _random
        self.rng = _random.Random(seed)
        self.delay = 0.0
        self.loss = 0.0
        self.blackhole = False

    def block(self) -> None:
        """A partition: refuse new connections and reset the open ones."""
        self.down = True
        self.cut()

    def heal(self) -> None:
        was_hole = self.blackhole
        self.down = self.blackhole = False
        self.delay = self.loss = 0.0
        if was_hole:
            self.cut()

    async def _serve(self, reader: Any, writer: Any) -> None:
        if self.down:
            writer.transport.abort()
            return
        host, port = self.target.rsplit(":", 1)
        up_writer = None
        if not self.blackhole:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
            except OSError:
                writer.transport.abort()
                return
        else:
            up_reader = None
        pair = (writer, up_writer if up_writer is not None else writer)
        self._conns.add(pair)

        async def pipe(r: Any, w: Any) -> None:
            try:
                while data := await r.read(1 << 16):
                    if self.blackhole or w is None:
                        continue                       # swallowed
                    if self.loss and self.rng.random() < self.loss:
                        break
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                if w is not None:
                    w.transport.abort()
        try:
            if up_reader is None:
                await pipe(reader, None)
            else:
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass                                     # the proxy is closing
        finally:
            self._conns.discard(pair)
            writer.transport.abort()
            if up_writer is not None:
                up_writer.transport.abort()
