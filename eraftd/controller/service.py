"""shardctrlerpb.ShardCtrlerService: eRaft's controller API on top of the driver.

JOIN / LEAVE / MOVE / SET_SERVERS / ABANDON: checked on their own first (a bad one is answered at once,
nothing is proposed).  A JOIN without `force` and every ABANDON then ask the shardkv servers
(precheck.py: a join of servers that do not answer as that gid, an abandon while the shard's
previous owner still answers, are refused the same way): on the leader only, after a ReadIndex
barrier (so the state they are checked against is current, not a lagging leader's), first
against the latest configuration (a join the log would refuse anyway is not asked about),
and not for a retry of a command already applied (its session says so: the log answers it as
before).  Then proposed to group 0's log and answered with the outcome of their apply and
the latest configuration at that point.  QUERY: a ReadIndex barrier, then the local state;
it never touches the log.  A follower answers ErrWrongLeader at once, with the leader's
address (when known) in the trailing metadata key "leader"; a command or query that does not
complete within `timeout` answers ErrTimeout (its outcome is then unknown: a client retries
with the same ids, and the dedup table makes that safe).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, Callable

import grpc

from .._pb import shardctrler_pb2 as pb
from .._pb import shardctrler_pb2_grpc as pb_grpc
from ..node.access import Access, Right
from ..node.driver import NotLeader
from ..sessions import DEFAULT_TTL_MS, Stamper
from .machine import (ERR_TIMEOUT, ERR_WRONG_LEADER, BadRequest, send_leader_hint,
                      command_from_pb, config_to_pb, encode_cluster_id, encode_command)
from .precheck import PROBE_TIMEOUT_S, abandon_problem, join_problem
from .state import OK, Abandon, Command, Join, admit, check

COMMAND_TIMEOUT_S = 2.0
log = logging.getLogger("eraftd.controller")


# Admission (eraftd/node/admission.py): the answer to a request not admitted; busy is
# ErrTimeout, which every controller client retries
ADMITTED = {
    "/shardctrlerpb.ShardCtrlerService/Command":
        lambda why, busy: pb.CommandResponse(err=ERR_TIMEOUT if busy else why),
}


class ShardCtrlerService(pb_grpc.ShardCtrlerServiceServicer):
    def __init__(self, driver: Any, gid: int, timeout: float = COMMAND_TIMEOUT_S,
                 dial: Callable[[str], str] = lambda a: a,
                 probe_timeout: float = PROBE_TIMEOUT_S, access: Any = None, tls: Any = None,
                 session_ttl_ms: int = DEFAULT_TTL_MS) -> None:
        self.driver = driver
        # the leader's time and ttl in each command (eraftd/sessions.py: sessions expire)
        self.stamp = Stamper(session_ttl_ms, lambda: driver.groups[gid].sm.state.clock.now)
        self.access = access or Access(None, False)     # who may change the cluster (access.py)
        self.gid = gid
        self.timeout = timeout
        self.dial = dial                  # the node's [node.dial] map, to ask shardkv servers
        self.probe_timeout = probe_timeout
        self.tls = tls                    # the node's own TLS files, to ask them (None: plaintext)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ShardCtrlerServiceServicer_to_server(self, server)

    async def Command(self, request: pb.CommandRequest, context) -> pb.CommandResponse:
        g = self.driver.groups[self.gid]
        try:
            if request.op == pb.QUERY:
                await asyncio.wait_for(self.driver.read_barrier(self.gid), self.timeout)
                return pb.CommandResponse(err=OK, config=config_to_pb(g.sm.query(request.num)),
                                          cluster_id=g.sm.cluster_id)
            await self._authorize(request, context)
            try:
                cmd = command_from_pb(request)
            except BadRequest as e:
                return pb.CommandResponse(err=str(e))
            err = admit(cmd) or await self._ask_first(g, cmd, request.force)
            if err:
                return pb.CommandResponse(err=err)
            res = await asyncio.wait_for(self.driver.propose(self.gid, self.stamp(encode_command(cmd))),
                                         self.timeout)
            return pb.CommandResponse(err=res.err, config=config_to_pb(g.sm.query(res.num)),
                                      cluster_id=g.sm.cluster_id)
        except NotLeader as e:      # also ProposalLost: outcome unknown, the client retries
            send_leader_hint(context, e.hint)
            return pb.CommandResponse(err=ERR_WRONG_LEADER)
        except asyncio.TimeoutError:
            return pb.CommandResponse(err=ERR_TIMEOUT)

    async def keep_cluster_id(self, cluster: Any, every: float = 0.2) -> None:
        """Until this node knows its cluster id: the leader proposes one (a random 64-bit
        number) when the controller log has none; every controller takes it from its log
        (cluster: the node's ClusterIdentity).  Runs for the node's life; ends once known."""
        g = self.driver.groups[self.gid]
        while True:
            cid = g.sm.cluster_id
            if cid:
                why = cluster.learn(cid, "the controller log")
                if why:
                    log.critical("%s", why)
                return
            if g.is_leader() and g.sm.state.latest is not None:
                try:
                    await asyncio.wait_for(self.driver.propose(
                        self.gid, encode_cluster_id(secrets.randbelow((1 << 64) - 1) + 1)), self.timeout)
                except (NotLeader, asyncio.TimeoutError):
                    pass
            await asyncio.sleep(every)

    async def _authorize(self, request: pb.CommandRequest, context) -> None:
        """JOIN / LEAVE / MOVE / ABANDON need an admin; SET_SERVERS a node or an admin."""
        if not self.access.enforce:
            return
        if request.op == pb.SET_SERVERS:
            why = self.access.may_set_servers(context)
            if why:
                self.access.refuse(context, why)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
            return
        name = pb.Op.Name(request.op).lower() if request.op in pb.Op.values() else f"op {request.op}"
        await self.access.require(context, Right.ADMIN, name)

    async def _ask_first(self, g: Any, cmd: Command, force: bool) -> str | None:
        """The shardkv servers' say on a join (unless forced) or an abandon (precheck.py)."""
        if not isinstance(cmd.op, (Join, Abandon)) or (force and isinstance(cmd.op, Join)):
            return None
        await asyncio.wait_for(self.driver.read_barrier(self.gid), self.timeout)  # NotLeader
        st = g.sm.state
        done = st.sessions.get(cmd.client_id) if cmd.client_id else None
        if done is not None and cmd.command_id <= done.command_id:
            return None                              # a retry: the log answers it as before
        err = check(st.latest, cmd.op, st.servers_of)
        if err:
            return err
        if isinstance(cmd.op, Join):
            new = {gid: s for gid, s in cmd.op.groups.items() if gid not in st.latest.groups}
            return await join_problem(new, self.dial, self.probe_timeout, self.tls) if new else None
        return await abandon_problem(st.configs, st.servers_of, cmd.op.shards, self.dial,
                                     self.probe_timeout, self.tls)

    async def GetStatus(self, request: pb.GetStatusRequest, context) -> pb.GetStatusResponse:
        g = self.driver.groups[self.gid]
        st = g.node.status()
        return pb.GetStatusResponse(id=g.me, state=st.role.wire_name, term=st.term,
                                    last_applied=st.applied, commit_index=st.commit,
                                    storage_size=self.driver.store.size_bytes(),
                                    sessions=len(g.sm.state.sessions))
