"""The nemesis: a seeded schedule of faults on a ShardedCluster of real `eraftd run` processes,
with the shard configuration changing (join / leave / move) at the same time, and the run that
puts it together with the workload and checks the four pass criteria.

Network faults go through a FaultyProxy on every directed peer link (src -> dst): each node's
[node.dial] maps every peer to the proxy of that link, so a partition can cut any set of links
(isolate a leader, majority / minority, a bridge node) and a slow or lossy link is one proxy.
Clients talk to the nodes directly (an isolated leader still gets client calls: it must not
answer them with stale data)."""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import shutil
import time
from collections import Counter
from pathlib import Path

from eraftd._pb import shardkv_pb2 as skpb
from eraftd._pb import shardkv_pb2_grpc as skpb_grpc
from eraftd.config import dump_toml
from eraftd.controller.client import ControllerClient, ControllerError
from eraftd.controller.state import NSHARDS
from eraftd._pb import admin_pb2 as apb
from eraftd.testing import (FaultyProxy, Node, ShardedCluster, change_member, leader_of,
                            wait_caught_up)

from .history import History
from .linearizability import check
from .workload import Workload, durability_problems, keys_over_shards


# --------------------------------------------------------------------------- network
class LinkNet:
    """A FaultyProxy per directed link between the cluster's nodes (call before start())."""

    def __init__(self, nodes: list[Node], seed: int, host: str = "127.0.0.2") -> None:
        """host: where the proxies listen; not the nodes' address, so that a port the OS picks
        for a proxy can never be one already chosen (not yet bound) for a node."""
        self.nodes = nodes
        self.host = host
        self.links: dict[tuple[str, str], FaultyProxy] = {}
        for i, src in enumerate(nodes):
            for j, dst in enumerate(nodes):
                if src is not dst:
                    self.links[(src.name, dst.name)] = FaultyProxy(
                        f"{host}:0", dst.address, seed * 7919 + i * 97 + j)

    async def start(self) -> "LinkNet":
        """Bind every proxy (on a port the OS picks: no races) and write each node's dial map."""
        dial: dict[str, dict[str, str]] = {n.name: {} for n in self.nodes}
        by_name = {n.name: n for n in self.nodes}
        for (s, d), p in self.links.items():
            await p.start()
            port = p._server.sockets[0].getsockname()[1]
            p.listen = f"{self.host}:{port}"
            dial[s][by_name[d].address] = p.listen
        for n in self.nodes:
            n.config["node"]["dial"] = dial[n.name]
            n.toml.write_text(dump_toml(n.config))
        return self

    async def close(self) -> None:
        for p in self.links.values():
            await p.close()

    def cut_between(self, a: set[str], b: set[str]) -> int:
        """Partition: block every link between a node of a and a node of b (both ways)."""
        n = 0
        for (s, d), p in self.links.items():
            if (s in a and d in b) or (s in b and d in a):
                p.block()
                n += 1
        return n

    def heal(self) -> None:
        for p in self.links.values():
            p.heal()


# --------------------------------------------------------------------------- faults
FAULT_KINDS = ("kill_leader", "kill_random", "pause_leader", "pause_random", "isolate_leader",
               "majority_minority", "bridge", "slow_links", "lossy_links", "blackhole_node",
               "kill_group")


class Nemesis:
    """Runs a seeded schedule of faults, one at a time, each for a seeded duration, with a
    seeded gap between them.  Everything it breaks it repairs before the next fault and in
    heal_all() (also on failure)."""

    def __init__(self, c: ShardedCluster, net: LinkNet, seed: int, gids: list[int],
                 kinds: tuple[str, ...] = FAULT_KINDS, max_fault_s: float = 4.0) -> None:
        self.c = c
        self.net = net
        self.rng = random.Random(seed)
        self.gids = gids
        self.kinds = kinds
        self.max_fault_s = max_fault_s
        self.counts: Counter[str] = Counter()
        self.killed: set[str] = set()          # names killed by us and not yet restarted
        self.paused: set[str] = set()
        self.log: list[str] = []
        self.stop = asyncio.Event()
        self.spare: set[str] = set()           # names a membership change is working on

    def _by_name(self, name: str) -> Node:
        return next(n for n in self.c.nodes if n.name == name)

    def _members(self, gid: int) -> list[Node]:
        return self.c.controllers if gid == 0 else self.c.groups[gid]

    async def _leader(self, gid: int) -> Node:
        """The group's leader if one is known now, else a (seeded) random member."""
        ldr = await asyncio.to_thread(self.c.leader, gid)
        return ldr if ldr is not None else self.rng.choice(self._members(gid))

    async def kill(self, n: Node) -> None:
        if n.name in self.spare:
            return
        self.killed.add(n.name)
        await asyncio.to_thread(n.kill)

    def restart_all(self) -> None:
        for name in sorted(self.killed):
            self._by_name(name).start()
        self.killed.clear()

    def resume_all(self) -> None:
        for name in sorted(self.paused):
            self._by_name(name).resume()
        self.paused.clear()

    def heal_all(self) -> None:
        self.net.heal()
        self.resume_all()
        self.restart_all()

    async def one(self) -> None:
        rng = self.rng
        kind = rng.choice(self.kinds)
        gid = rng.choice([0] + self.gids)
        dur = rng.uniform(0.3, self.max_fault_s)
        names = [n.name for n in self.c.nodes]
        what = kind
        if kind in ("kill_leader", "kill_random"):
            n = await self._leader(gid) if kind == "kill_leader" else rng.choice(self.c.nodes)
            await self.kill(n)
            what = f"{kind} {n.name}"
        elif kind == "kill_group":                 # every replica of a group (or controllers)
            for n in self._members(gid):
                await self.kill(n)
            what = f"{kind} {gid}"
        elif kind in ("pause_leader", "pause_random"):
            n = await self._leader(gid) if kind == "pause_leader" else rng.choice(self.c.nodes)
            if n.name not in self.spare:
                n.pause()
                self.paused.add(n.name)
            what = f"{kind} {n.name}"
        elif kind == "isolate_leader":
            n = await self._leader(gid)
            self.net.cut_between({n.name}, set(names) - {n.name})
            what = f"{kind} {n.name}"
        elif kind == "majority_minority":
            shuffled = names[:]
            rng.shuffle(shuffled)
            minority = set(shuffled[: len(names) // 2])
            self.net.cut_between(minority, set(names) - minority)
            what = f"{kind} minority={sorted(minority)}"
        elif kind == "bridge":
            # two halves that only reach each other through one bridge node
            shuffled = names[:]
            rng.shuffle(shuffled)
            bridge = shuffled[0]
            half = (len(names) - 1) // 2
            a, b = set(shuffled[1:1 + half]), set(shuffled[1 + half:])
            self.net.cut_between(a, b)
            what = f"{kind} via {bridge}"
        elif kind in ("slow_links", "lossy_links"):
            links = rng.sample(sorted(self.net.links), k=len(self.net.links) // 3)
            for ln in links:
                p = self.net.links[ln]
                if kind == "slow_links":
                    p.delay = rng.uniform(0.01, 0.2)
                else:
                    p.loss = rng.uniform(0.005, 0.05)
            what = f"{kind} x{len(links)}"
        elif kind == "blackhole_node":
            n = rng.choice(self.c.nodes)
            for (s, d), p in self.net.links.items():
                if n.name in (s, d):
                    p.blackhole = True
            what = f"{kind} {n.name}"
        self.counts[kind] += 1
        self.log.append(f"{time.monotonic():.1f} {what} for {dur:.1f}s")
        await asyncio.sleep(dur)                    # the length of the fault (the workload)
        self.heal_all()

    async def run(self, duration: float) -> None:
        end = time.monotonic() + duration
        try:
            while time.monotonic() < end and not self.stop.is_set():
                await self.one()
                await asyncio.sleep(self.rng.uniform(0.2, 1.5))   # calm between faults
        finally:
            self.heal_all()


class Membership:
    """join / leave / move on a seeded schedule while the faults run; at least one group stays."""

    def __init__(self, c: ShardedCluster, seed: int, gids: list[int], initial: list[int]) -> None:
        self.c = c
        self.rng = random.Random(seed + 1)
        self.gids = gids
        self.joined = set(initial)
        self.counts: Counter[str] = Counter()
        self.failed = 0

    async def run(self, duration: float) -> None:
        end = time.monotonic() + duration
        async with ControllerClient(self.c.controller_addresses(), total_timeout=15,
                                    call_timeout=2.0, tls=self.c.tls) as ctl:
            while time.monotonic() < end:
                await asyncio.sleep(self.rng.uniform(2.0, 5.0))  # the pace of config changes
                out = [g for g in self.gids if g not in self.joined]
                choices = ["move"] + (["join"] if out else []) + (["leave"] if len(self.joined) > 1 else [])
                step = self.rng.choice(choices)
                try:
                    if step == "join":
                        g = self.rng.choice(out)
                        self.joined.add(g)           # unknown outcome counts as joined (may land)
                        try:
                            await ctl.join({g: self.c.addresses(g)})
                        except ControllerError:
                            # refused: none of its replicas answered as g (all killed or
                            # paused at once); a definite no, the next step goes on
                            self.joined.discard(g)
                            self.counts["join refused"] += 1
                            continue
                    elif step == "leave":
                        g = self.rng.choice(sorted(self.joined))
                        await ctl.leave([g])
                        self.joined.discard(g)
                    else:
                        await ctl.move(self.rng.randrange(NSHARDS), self.rng.choice(sorted(self.joined)))
                    self.counts[step] += 1
                except Exception:
                    self.failed += 1                 # outcome unknown; the next step goes on


class Replicas:
    """Raft membership changes on a seeded schedule while the faults run, each on one replica
    of a group (the controllers' too), keeping its address so the fault network stays valid:
      replace     its disk is wiped and it restarts with the same TOML (refused by its peers as
                  a member back with an empty disk), then `member replace`: remove its old id,
                  add the address as a new member (a snapshot), promote it;
      remove_add  it is removed (the leader sometimes), its disk wiped, and it is added back
                  as a new member and promoted.
    A step that does not finish while faults run is finished after the heal (`repair`): every
    replica must be a voter again for the final checks."""

    def __init__(self, c: ShardedCluster, nem: "Nemesis", seed: int, gids: list[int]) -> None:
        self.c = c
        self.nem = nem
        self.rng = random.Random(seed + 2)
        self.gids = gids
        self.counts: Counter[str] = Counter()
        self.failed = 0
        self.busy: set[str] = set()          # names being changed (the nemesis leaves them be)

    def _members(self, gid: int) -> list[Node]:
        return self.c.controllers if gid == 0 else self.c.groups[gid]

    async def run(self, duration: float) -> None:
        end = time.monotonic() + duration
        while time.monotonic() < end:
            await asyncio.sleep(self.rng.uniform(6.0, 12.0))
            if time.monotonic() >= end:
                break
            gid = self.rng.choice([0] + self.gids)
            kind = self.rng.choice(["replace", "remove_add"])
            nodes = self._members(gid)
            ld = await asyncio.to_thread(leader_of, nodes, gid)
            candidates = [n for n in nodes if n.running() and n.name not in self.nem.killed
                          and n.name not in self.nem.paused
                          and (kind == "remove_add" or n is not ld)]
            if not candidates:
                continue
            n = self.rng.choice(candidates)
            self.busy.add(n.name)
            try:
                await asyncio.wait_for(asyncio.to_thread(self._change, gid, n, kind), 45)
                self.counts[kind] += 1
            except Exception:  # noqa: BLE001 - a fault got in the way: repaired after the heal
                self.failed += 1
            finally:
                self.busy.discard(n.name)

    def _change(self, gid: int, n: Node, kind: str, timeout: float = 30) -> None:
        nodes = lambda: self._members(gid)  # noqa: E731
        old = self._member_id(gid, n.address)
        if kind == "remove_add" and old is not None:
            change_member(nodes, gid, "remove", node_id=old, timeout=timeout)
        n.kill()
        shutil.rmtree(n.dir / "data", ignore_errors=True)
        n.start()
        n.wait_serving(timeout)
        if kind == "replace" and old is not None:
            change_member(nodes, gid, "remove", node_id=old, timeout=timeout)
        self._add_back(gid, n, timeout)

    def _member_id(self, gid: int, address: str) -> int | None:
        ld = leader_of(self._members(gid), gid)
        if ld is None:
            raise TimeoutError(f"no leader of group {gid}")
        r = ld.admin().Members(apb.MembersRequest(group=gid), timeout=5)
        return next((m.id for m in r.members if m.address == address), None)

    def _add_back(self, gid: int, n: Node, timeout: float) -> None:
        """n a voter again: added if it is no member, promoted if a learner.  The membership is
        read again after an add refused as "already a member" (a leader that had not applied
        the latest change answered the first read)."""
        nodes = lambda: self._members(gid)  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            ld = leader_of(nodes(), gid)
            r = ld.admin().Members(apb.MembersRequest(group=gid), timeout=5) if ld else None
            if r is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no leader of group {gid}")
                time.sleep(0.2)
                continue
            mine = [m for m in r.members if m.address == n.address]
            if mine and mine[0].role == "voter":
                return
            if mine:
                nid = mine[0].id
                break
            try:
                nid = change_member(nodes, gid, "add", n.address, timeout=timeout).node_id
                break
            except AssertionError as e:
                if "already a member" not in str(e) or time.monotonic() > deadline:
                    raise
        wait_caught_up(nodes, gid, n.address, timeout)
        change_member(nodes, gid, "promote", node_id=nid, timeout=timeout)

    def repair(self, timeout: float = 60) -> None:
        """After the heal: every replica a voter again (finishing an interrupted step)."""
        for gid in [0] + self.gids:
            for n in self._members(gid):
                nodes = lambda g=gid: self._members(g)  # noqa: E731
                deadline = time.monotonic() + timeout

                def refused_or_missing() -> bool:
                    st = n.group_status(gid)
                    return st is not None and "empty disk" in st.problem
                while True:
                    try:
                        if refused_or_missing():
                            old = self._member_id(gid, n.address)
                            if old is not None:
                                change_member(nodes, gid, "remove", node_id=old, timeout=timeout)
                        self._add_back(gid, n, timeout)
                        break
                    except Exception:  # noqa: BLE001 - retry until the deadline
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)


# --------------------------------------------------------------------------- checks
def replica_digest(node: Node, group: int) -> tuple[int, str, int]:
    """(applied index, sha256 of the group's state-machine data, keys) of a STOPPED node."""
    from eraftd.node import storage
    path = str(node.dir / "data")
    ident, _ = storage._probe(path)
    own = (storage._UID_FIELD, storage._CLUSTER_FIELD)                  # (the store's own fields)
    ident = {k: v for k, v in ident.items() if k not in own}
    with storage.NodeStore.open(path, ident) as st:
        g = st.group(group)
        h = hashlib.sha256()
        n = 0
        for k, v in g.scan():
            h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
            n += 1
        return g.applied_index(), h.hexdigest(), n


def skv_status(node: Node, timeout: float = 1.0) -> skpb.GetStatusResponse:
    return skpb_grpc.ShardKVServiceStub(node.channel()).GetStatus(skpb.GetStatusRequest(), timeout=timeout)


@dataclasses.dataclass
class Report:
    seed: int
    duration: float
    ops: dict
    keys_checked: int = 0
    faults: dict = dataclasses.field(default_factory=dict)
    config_changes: dict = dataclasses.field(default_factory=dict)
    config_failed: int = 0
    member_changes: dict = dataclasses.field(default_factory=dict)
    member_failed: int = 0
    sessions: int = 0
    renewed: int = 0          # clerk sessions renewed after a server said SESSION_EXPIRED
    anomalies: list[str] = dataclasses.field(default_factory=list)
    timings: dict = dataclasses.field(default_factory=dict)
    fault_log: list[str] = dataclasses.field(default_factory=list)
    history: History | None = None

    def summary(self) -> str:
        lines = [f"seed {self.seed}, faults for {self.duration:.0f}s",
                 f"operations: {self.ops}; sessions {self.sessions} (renewed after expiry: "
                 f"{self.renewed}); keys checked {self.keys_checked}",
                 f"faults injected: {dict(sorted(self.faults.items()))}",
                 f"configuration changes: {dict(self.config_changes)} (+{self.config_failed} with unknown outcome)",
                 f"membership changes: {dict(self.member_changes)} (+{self.member_failed} "
                 f"finished after the heal)",
                 f"timings: {self.timings}",
                 f"anomalies: {len(self.anomalies)}"]
        lines += [f"  - {a}" for a in self.anomalies]
        if self.anomalies:
            lines += ["last faults (monotonic time, what, how long):"]
            lines += [f"  {f}" for f in self.fault_log[-15:]]
        return "\n".join(lines)


async def _wait(cond, timeout: float, what: str, interval: float = 0.2):
    end = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = await asyncio.to_thread(cond)
            if v:
                return v
        except Exception as e:             # a node still coming up
            last = e
        if time.monotonic() > end:
            raise TimeoutError(f"{what} not within {timeout:.0f}s (last error {last!r})")
        await asyncio.sleep(interval)


async def run_nemesis(base: Path, seed: int, duration: float, *, gids=(100, 101, 102),
                      clients: int = 6, nkeys: int = 6, kinds: tuple[str, ...] = FAULT_KINDS,
                      raft: dict | None = None, op_timeout: float = 4.0,
                      tls: bool = False, session_ttl_ms: int | None = None) -> Report:
    """One nemesis run: start, faults + workload + config changes for `duration` seconds, heal,
    then check the four pass criteria.  Returns a Report (anomalies empty = pass).  Every
    process started is killed before it returns or raises.  tls: the cluster and every client
    use TLS (certificates made by eraftd.certs; the proxies carry the TLS bytes as they are).
    session_ttl_ms: the groups' and controllers' session ttl (None: the default hour); keep it
    above op_timeout (sessions.py: a write retried within its ttl is never applied twice)."""
    gids = list(gids)
    t0 = time.monotonic()
    raft_cfg = {"snapshot_entries": 400, **(raft or {})}
    ttl = {"session_ttl_ms": session_ttl_ms} if session_ttl_ms else {}
    c = ShardedCluster(base, gids=gids, raft=raft_cfg, tls=tls, shardkv=ttl, controller=ttl)
    net = LinkNet(c.nodes, seed)
    history = History()
    report = Report(seed, duration, {}, history=history)
    try:
        await net.start()
        await asyncio.to_thread(c.start)
        initial = gids[:2]
        async with ControllerClient(c.controller_addresses(), total_timeout=60, tls=c.tls) as ctl:
            await ctl.join({g: c.addresses(g) for g in initial})
        report.timings["start"] = round(time.monotonic() - t0, 1)

        work = Workload(c.controller_addresses(), history, keys_over_shards(nkeys), clients, seed, tls=c.tls,
                        total_timeout=op_timeout)
        nem = Nemesis(c, net, seed, gids, kinds)
        mem = Membership(c, seed, gids, initial)
        reps = Replicas(c, nem, seed, gids)
        nem.spare = reps.busy
        work.start()
        t1 = time.monotonic()
        try:
            await asyncio.gather(nem.run(duration), mem.run(duration), reps.run(duration))
        finally:
            nem.heal_all()
        try:
            await asyncio.to_thread(reps.repair)
        except Exception as e:  # noqa: BLE001
            report.anomalies.append(f"criterion 3: a membership change could not be finished "
                                    f"after the heal: {e}")
        report.timings["faults"] = round(time.monotonic() - t1, 1)
        report.faults, report.fault_log = dict(nem.counts), nem.log
        report.config_changes, report.config_failed = dict(mem.counts), mem.failed
        report.member_changes, report.member_failed = dict(reps.counts), reps.failed

        # -- criterion 3: within 60 s every shard is served and the replicas agree
        t2 = time.monotonic()
        await work.finish(timeout=15)
        final = await work.final_reads(60)
        async with ControllerClient(c.controller_addresses(), total_timeout=30, tls=c.tls) as ctl:
            cfg = await ctl.query()

        def served() -> bool:
            for g in set(cfg.shards):
                if g == 0:
                    return False
                ldr = c.leader(g)
                if ldr is None:
                    return False
                st = {s.shard_id: s.status for s in skv_status(ldr).shards}
                if any(st.get(s) != "Serving" for s in range(NSHARDS) if cfg.shards[s] == g):
                    return False
            return True

        def agreed() -> bool:
            for g in [0] + gids:
                nodes = c.controllers if g == 0 else c.groups[g]
                applied = {n.group_status(g).last_applied for n in nodes}
                commits = {n.group_status(g).commit_index for n in nodes}
                if len(applied) != 1 or applied != commits:
                    return False
            return True
        remaining = 60 - (time.monotonic() - t2)
        try:
            await _wait(served, remaining, "every shard served")
            await _wait(agreed, 60 - (time.monotonic() - t2), "replicas at the same applied index")
        except TimeoutError as e:
            report.anomalies.append(f"criterion 3: {e}")
        report.timings["settle"] = round(time.monotonic() - t2, 1)
        work_counts = history.counts()
        report.ops, report.sessions = work_counts, work.sessions
        report.renewed = work.renewed

        # -- criterion 4: nobody exited but those we killed (all restarted by now)
        for n in c.nodes:
            if not n.running():
                report.anomalies.append(f"criterion 4: {n.name} exited with {n.exit_code()} "
                                        f"(not killed by the nemesis)")
        rcs = await asyncio.gather(*(asyncio.to_thread(n.stop) for n in c.nodes))
        for n, rc in zip(c.nodes, rcs):
            if rc != 0:
                report.anomalies.append(f"criterion 4: {n.name} did not stop cleanly (exit {rc})")
        for n in c.nodes:
            if "Traceback" in n.log_text():
                text = n.log_text()
                i = text.index("Traceback")
                report.anomalies.append(f"criterion 4: Traceback in {n.name}'s log:\n{text[max(0, i - 500):i + 2500]}")

        # -- criterion 3 (digests of the stopped replicas)
        for g in [0] + gids:
            nodes = c.controllers if g == 0 else c.groups[g]
            ds = {n.name: await asyncio.to_thread(replica_digest, n, g) for n in nodes}
            if len({(a, d) for a, d, _ in ds.values()}) != 1:
                report.anomalies.append(f"criterion 3: replicas of group {g} differ: {ds}")

        # -- criteria 1 and 2
        t3 = time.monotonic()
        results = await asyncio.to_thread(check, history.by_key())
        report.keys_checked = len(results)
        for r in results:
            if not r.decided:
                report.anomalies.append(f"criterion 1: key {r.key} undecided ({r.ops} ops): {r.detail}")
            elif not r.ok:
                report.anomalies.append(f"criterion 1: key {r.key}: {r.detail}")
        report.anomalies += [f"criterion 2: {p}" for p in durability_problems(history, final)]
        report.timings["check"] = round(time.monotonic() - t3, 1)
        report.timings["total"] = round(time.monotonic() - t0, 1)
        return report
    finally:
        for n in c.nodes:
            n.kill()
        await net.close()
