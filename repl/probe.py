"""Ask every node of the cluster how it is: the data behind `status` and the completer.

Controller peers answer through ControllerClient.status (ShardCtrlerService.GetStatus);
shardkv replicas through ShardKVService.GetStatus; with `membership`, every node's
NodeAdmin.Status too, for the learners (marked, and listed when the configuration does not
name them) and the membership problems nodes report (a node refused for an empty disk).  Every call has a short deadline and no
retries, and all of them run at once: a node that does not answer in time is listed as down
with the reason, never left out and never waited for longer than `timeout`.
"""
from __future__ import annotations

import ast
import asyncio
import re
from dataclasses import replace
from typing import Callable, Sequence

import grpc

from eraftd._pb import admin_pb2 as apb
from eraftd._pb import admin_pb2_grpc as apb_grpc
from eraftd._pb import shardkv_pb2 as skvpb
from eraftd._pb import shardkv_pb2_grpc as skvpb_grpc
from eraftd.controller.client import ControllerClient
from eraftd.controller.state import NSHARDS, Config
from eraftd.errors import STATUS_WORDS
from eraftd.errors import rpc_problem as _rpc_problem
from eraftd.tls import TlsFiles, channel

from .output import DOWN, ClusterStatus, Member, ShardRow

UNASSIGNED, UNKNOWN, PENDING = "unassigned", "unknown", "pending"


_STATUS_RE = re.compile(r"(?:StatusCode\.)?\b(" + "|".join(STATUS_WORDS) + r")\b:?")
_BYTES_RE = re.compile(r"""\bb(['"])((?:\\.|(?!\1).)*)\1""")


def _unbytes(m: re.Match) -> str:
    body = m.group(2)
    try:
        text = ast.literal_eval("b" + m.group(0)[1:]).decode("utf-8", errors="replace")
    except (ValueError, SyntaxError):
        text = body
    return text


def scrub(text: str) -> str:
    """One line in plain words: status names become sentences, b'..' reprs the text typed."""
    text = _BYTES_RE.sub(_unbytes, text)
    text = _STATUS_RE.sub(lambda m: STATUS_WORDS[m.group(1)] + (":" if m.group(0).endswith(":") else ""),
                          text)
    return " ".join(text.split())


def rpc_problem(e: BaseException, tls: bool | None = None) -> str:
    """A failed call in plain words (eraftd.errors.rpc_problem, with the text scrubbed)."""
    return scrub(_rpc_problem(e, tls)) or type(e).__name__


class Probe:
    def __init__(self, ctl: ControllerClient, timeout: float = 1.0,
                 dial: Callable[[str], str] | None = None, tls: TlsFiles | None = None) -> None:
        self.ctl = ctl
        self.dial = dial or (lambda a: a)     # a --config file's [node.dial] map
        self.tls = tls
        self.timeout = timeout
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def close(self) -> None:
        chans, self._channels = self._channels, {}
        for ch in chans.values():
            await ch.close()

    def _channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = channel(self.dial(addr), self.tls, name=addr)
        return ch

    async def _replica(self, addr: str) -> skvpb.GetStatusResponse:
        return await skvpb_grpc.ShardKVServiceStub(self._channel(addr)).GetStatus(
            skvpb.GetStatusRequest(), timeout=self.timeout)

    async def _admin(self, addr: str) -> apb.NodeStatus:
        return await apb_grpc.NodeAdminStub(self._channel(addr)).Status(apb.StatusRequest(),
                                                                       timeout=self.timeout)

    async def status(self, cfg: Config, membership: bool = False) -> ClusterStatus:
        """Every controller peer and every replica of `cfg`'s groups, and each shard's state
        (with `membership`: learners and membership problems too, see the module doc)."""
        if membership:
            return await self._with_membership(cfg)

        ctrl_addrs = self.ctl.addresses
        replica_addrs = [(gid, i, a) for gid, servers in cfg.groups.items()
                         for i, a in enumerate(servers)]
        answers = await asyncio.gather(
            *(self.ctl.status(a, timeout=self.timeout) for a in ctrl_addrs),
            *(self._replica(a) for _, _, a in replica_addrs), return_exceptions=True)
        ctrl_answers, skv_answers = answers[:len(ctrl_addrs)], answers[len(ctrl_addrs):]
        tls = self.tls is not None
        controllers = tuple(_member(0, i, a, r, tls)
                            for i, (a, r) in enumerate(zip(ctrl_addrs, ctrl_answers)))
        replicas = tuple(_member(gid, i, a, r, tls) for (gid, i, a), r in zip(replica_addrs, skv_answers))
        by_gid: dict[int, list] = {}
        for (gid, _, _), r in zip(replica_addrs, skv_answers):
            if not isinstance(r, BaseException):
                by_gid.setdefault(gid, []).append(r)
        leader = next((m.address for m in controllers if m.role == "Leader"), None)
        return ClusterStatus(cfg, controllers, replicas, shard_rows(cfg, by_gid), leader)


    async def _with_membership(self, cfg: Config) -> ClusterStatus:
        addrs = list(dict.fromkeys(list(self.ctl.addresses)
                                   + [a for servers in cfg.groups.values() for a in servers]))
        st, answers = await asyncio.gather(
            self.status(cfg), asyncio.gather(*(self._admin(a) for a in addrs), return_exceptions=True))
        admin = {a: r for a, r in zip(addrs, answers) if not isinstance(r, BaseException)}
        voters, learners = group_members(admin)
        listed = {(m.gid, m.address) for m in st.members()}
        unlisted = sorted((voters | learners) - listed)
        more = [a for a in dict.fromkeys(a for _, a in unlisted) if a not in admin]
        for a, r in zip(more, await asyncio.gather(*(self._admin(a) for a in more),
                                                   return_exceptions=True)):
            if not isinstance(r, BaseException):
                admin[a] = r
        extra: dict[bool, list[Member]] = {False: [], True: []}   # not listed: ctrl, shardkv
        for gid, a in unlisted:
            g = next((g for g in admin[a].groups if g.group == gid), None) if a in admin else None
            extra[gid != 0].append(
                Member(gid, -1, a, DOWN, problem="no answer") if g is None else
                Member(gid, g.id, a, g.role, g.term, g.last_applied, g.commit_index,
                       admin[a].storage_size))

        def mark(ms) -> tuple[Member, ...]:
            return tuple(replace(m, learner=True) if (m.gid, m.address) in learners else m for m in ms)
        controllers = mark(st.controllers + tuple(extra[False]))
        leader = st.leader or next((m.address for m in controllers if m.role == "Leader"), None)
        return replace(st, controllers=controllers, replicas=mark(st.replicas + tuple(extra[True])),
                       leader=leader, problems=membership_problems(admin))


def group_members(admin: dict[str, apb.NodeStatus]) -> tuple[set[tuple[int, str]], set[tuple[int, str]]]:
    """(voters, learners) as (group, address) from the nodes' answers: each group's as its
    leader sees it, else as every member that answered does (together)."""
    views: dict[int, list[apb.GroupStatus]] = {}
    for ns in admin.values():
        for g in ns.groups:
            views.setdefault(g.group, []).append(g)
    voters: set[tuple[int, str]] = set()
    learners: set[tuple[int, str]] = set()
    for gid, gs in views.items():
        leading = [g for g in gs if g.role == "Leader"]
        for g in (max(leading, key=lambda g: g.term),) if leading else gs:
            voters |= {(gid, a) for a in g.peers}
            learners |= {(gid, a) for a in g.learners}
    return voters, learners


def membership_problems(admin: dict[str, apb.NodeStatus]) -> tuple[str, ...]:
    """What the nodes say about membership, each thing once: a node's own problem (named by
    its address unless it names itself) and a leader's refused members, a line that another
    one contains left out (the refused node's "refused by L: why" holds the leader's "why")."""
    lines: dict[str, None] = {}
    for addr, ns in admin.items():
        if ns.problem:                  # node-wide: refused by a node of another cluster, ...
            lines[scrub(f"{addr}: {ns.problem}")] = None
        for g in ns.groups:
            where = "ctrl" if g.group == 0 else f"group {g.group}"
            if g.problem:
                lines[scrub(g.problem if addr in g.problem else f"{addr} ({where}): {g.problem}")] = None
            for r in g.refused:
                lines[scrub(r)] = None
    return tuple(x for x in lines if not any(x != y and x in y for y in lines))


def _member(gid: int, i: int, addr: str, r, tls: bool | None = None) -> Member:
    if isinstance(r, BaseException):
        return Member(gid, i, addr, DOWN, problem=rpc_problem(r, tls))
    return Member(gid, r.id, addr, r.state, r.term, r.last_applied, r.commit_index, r.storage_size,
                  sessions=getattr(r, "sessions", None) if gid == 0 else None)


def shard_rows(cfg: Config, answers: dict[int, Sequence[skvpb.GetStatusResponse]]) -> tuple[ShardRow, ...]:
    """Each shard as its owner reports it: its leader's view first, else any replica's."""
    rows = []
    for shard in range(NSHARDS):
        gid = cfg.shards[shard]
        if gid == 0:
            rows.append(ShardRow(shard, 0, UNASSIGNED))
            continue
        views = sorted(answers.get(gid, ()), key=lambda r: (r.state != "Leader", -r.term))
        info = next((s for r in views for s in r.shards if s.shard_id == shard), None)
        if info is None:
            # no answer from the owner, or it has not reached this configuration yet
            rows.append(ShardRow(shard, gid, UNKNOWN if not views else PENDING))
        else:
            rows.append(ShardRow(shard, gid, info.status, info.keys, info.bytes, info.sessions))
    return tuple(rows)
