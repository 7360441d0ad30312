"""NodeAdmin: every hosted group's Raft status; Propose/Read for the test state machines."""
from __future__ import annotations

import asyncio
from typing import Any

import grpc

from .. import __version__, metrics
from .._pb import admin_pb2 as pb
from .._pb import admin_pb2_grpc as pb_grpc
from .driver import Driver, NotLeader

PROPOSE_TIMEOUT_S = 5.0


class AdminService(pb_grpc.NodeAdminServicer):
    def __init__(self, cfg: Any, driver: Driver, store: Any, test_machine: bool) -> None:
        self.cfg = cfg
        self.driver = driver
        self.store = store
        self.test_machine = test_machine

    def add_to_server(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_NodeAdminServicer_to_server(self, server)

    async def Status(self, request, context):
        out = pb.NodeStatus(address=self.cfg.node.advertise, version=__version__,
                            roles=self.cfg.roles(), storage_size=self.store.size_bytes(),
                            node_uid=self.store.node_uid)
        for g in self.driver.groups.values():
            st = g.node.status()
            out.groups.append(pb.GroupStatus(
                group=g.gid, id=g.me, role=st.role.wire_name, term=st.term, leader_id=st.lead,
                leader_address=g.leader_address, commit_index=st.commit, last_applied=st.applied,
                last_index=st.last_index, first_index=g.store.first_index(),
                snapshot_index=g.store.snapshot().index, peers=list(g.peers),
                proposals=g.proposed, entries_appended=g.entries_appended,
                entries_applied=g.entries_applied, leader_changes=g.leader_changes,
                elections=g.elections, snapshots=g.snapshots))
        out.requests.update(metrics.request_counts)
        out.operations = metrics.operations
        return out

    def _group(self, gid: int, context) -> Any:
        if not self.test_machine:
            return None
        return self.driver.groups.get(gid)

    async def Propose(self, request, context):
        g = self._group(request.group, context)
        if g is None:
            return pb.ProposeResponse(err=f"no test state machine for group {request.group} here")
        try:
            results = await asyncio.wait_for(
                self.driver.propose_many(g.gid, list(request.commands)), PROPOSE_TIMEOUT_S)
        except NotLeader as e:
            return pb.ProposeResponse(err="ErrWrongLeader", leader_hint=e.hint)
        except asyncio.TimeoutError:
            return pb.ProposeResponse(err="ErrTimeout", leader_hint=g.leader_address)
        return pb.ProposeResponse(err="OK", results=[r or b"" for r in results],
                                  index=g.node.applied)

    async def Read(self, request, context):
        g = self._group(request.group, context)
        if g is None:
            return pb.ReadResponse(err=f"no test state machine for group {request.group} here")
        try:
            if request.local:
                index = g.node.applied
            else:
                index = await asyncio.wait_for(self.driver.read_barrier(g.gid), PROPOSE_TIMEOUT_S)
        except NotLeader as e:
            return pb.ReadResponse(err="ErrWrongLeader", leader_hint=e.hint)
        except asyncio.TimeoutError:
            return pb.ReadResponse(err="ErrTimeout", leader_hint=g.leader_address)
        value = g.sm.get(request.key) if hasattr(g.sm, "get") else None
        return pb.ReadResponse(err="OK", value=value or b"", found=value is not None,
                               read_index=index)
