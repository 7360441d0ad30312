"""NodeAdmin: every hosted group's Raft status and membership, membership changes (at the
leader), and Propose/Read for the test state machines."""
from __future__ import annotations

import asyncio
from typing import Any

import grpc

from .. import __version__, metrics
from .._pb import admin_pb2 as pb
from .._pb import admin_pb2_grpc as pb_grpc
from ..raft.messages import ConfChange, ConfChangeOp
from ..raft.progress import ProgressState
from ..tls import channel
from .access import Access, Right
from .driver import ChangeRefused, Driver, NotLeader, ProposalLost
from .members import ChangeContext

PROPOSE_TIMEOUT_S = 5.0
CHANGE_TIMEOUT_S = 10.0
ASK_UID_TIMEOUT_S = 3.0
_OPS = {"add": ConfChangeOp.ADD_LEARNER, "promote": ConfChangeOp.PROMOTE,
        "remove": ConfChangeOp.REMOVE}


class AdminService(pb_grpc.NodeAdminServicer):
    def __init__(self, cfg: Any, driver: Driver, store: Any, test_machine: bool,
                 access: Access) -> None:
        self.cfg = cfg
        self.access = access
        self.driver = driver
        self.store = store
        self.test_machine = test_machine

    def add_to_server(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_NodeAdminServicer_to_server(self, server)

    async def Status(self, request, context):
        out = pb.NodeStatus(address=self.cfg.node.advertise, version=__version__,
                            roles=self.cfg.roles(), storage_size=self.store.size_bytes(),
                            node_uid=self.store.node_uid, cluster_id=self.store.cluster_id,
                            problem=self.driver.problem or "")
        d = self.driver
        for g in d.groups.values():
            st = g.node.status()
            m = g.members
            problem = metrics.member_problem(d, g)
            refused = ([why for _, why in sorted({**g.differ, **g.refused}.items())]
                       if g.is_leader() else [])
            out.groups.append(pb.GroupStatus(
                group=g.gid, id=g.me, role=st.role.wire_name, term=st.term, leader_id=st.lead,
                leader_address=g.leader_address, commit_index=st.commit, last_applied=st.applied,
                last_index=st.last_index, first_index=g.store.first_index(),
                snapshot_index=g.store.snapshot().index, peers=list(m.voter_addresses()),
                learners=list(m.learner_addresses()), problem=problem, refused=refused,
                proposals=g.proposed, entries_appended=g.entries_appended,
                entries_applied=g.entries_applied, leader_changes=g.leader_changes,
                elections=g.elections, snapshots=g.snapshots))
        out.requests.update(metrics.request_counts)
        out.operations = metrics.operations
        self._dashboard(out)
        return out

    @staticmethod
    def _dashboard(out: pb.NodeStatus) -> None:
        """What `eraftd dashboard` draws beside the groups: latency, process, migrations."""
        for op, bounds, counts, total, count in metrics.latency_histograms():
            out.latency.append(pb.LatencyHistogram(op=op, bounds=bounds, counts=counts,
                                                   sum=total, count=count))
        for key, value in metrics.process_status().items():
            setattr(out, key, type(getattr(out, key))(value))
        for rec in metrics.migrations.values():
            out.migrations.append(pb.MigrationProgress(**rec))

    # ---------------------------------------------------------------- membership
    async def Members(self, request, context):
        g = self.driver.groups.get(request.group)
        if g is None:
            return pb.MembersResponse(err=f"this node hosts no group {request.group}")
        st = g.node.status()
        m = g.members
        lead = g.is_leader()
        refused = g.refused
        out = pb.MembersResponse(err="OK", leader_hint=g.leader_address, leader_id=st.lead,
                                 last_index=st.last_index, commit_index=st.commit, is_leader=lead,
                                 change_pending=lead and g.node.raft.pending_conf_index > st.applied)
        for nid in sorted(m.addrs):
            addr = m.address(nid)
            pr = g.node.raft.prs.get(nid) if lead else None
            out.members.append(pb.Member(
                id=nid, address=addr, uid=m.uids.get(nid, 0), role=m.role(nid),
                match=(st.last_index if nid == g.me else pr.match) if lead and (pr or nid == g.me) else -1,
                state=("replicate" if nid == g.me else ProgressState(pr.state).name.lower())
                if lead and (pr or nid == g.me) else "",
                problem=refused.get(addr, "") if lead else ""))
        return out

    async def ChangeMember(self, request, context):
        d = self.driver
        g = d.groups.get(request.group)
        if g is None:
            return pb.ChangeMemberResponse(err=f"this node hosts no group {request.group}")
        if not g.is_leader():
            return pb.ChangeMemberResponse(err="ErrWrongLeader", leader_hint=g.leader_address)
        op = _OPS.get(request.op)
        if op is None:
            return pb.ChangeMemberResponse(err=f"unknown membership change {request.op!r}: use "
                                               f"add, promote or remove")
        m = g.members
        addr = request.address.strip()
        if op == ConfChangeOp.ADD_LEARNER:
            if not addr:
                return pb.ChangeMemberResponse(err="add needs the new member's address")
            if m.id_of(addr) is not None:
                return pb.ChangeMemberResponse(
                    err=f"{addr} is already a member (id {m.id_of(addr)}); to give it a new "
                        f"disk use replace")
            uid, why = await self._ask_uid(addr, g.gid)
            if why:
                return pb.ChangeMemberResponse(err=why)
            cc = ConfChange(op, m.next_id, ChangeContext(addr, uid).encode())
        else:
            nid = request.node_id if request.node_id >= 0 else m.id_of(addr)
            if nid is None or nid not in m.addrs:
                return pb.ChangeMemberResponse(
                    err=f"{addr or request.node_id} is not a member of this group")
            cc = ConfChange(op, nid)
        try:
            idx, _ = await asyncio.wait_for(d.change_membership(g.gid, cc), CHANGE_TIMEOUT_S)
        except ProposalLost as e:
            return pb.ChangeMemberResponse(
                err="leadership changed before the change applied; look with `member list` "
                    "whether it happened, and try again if not", leader_hint=e.hint)
        except NotLeader as e:
            return pb.ChangeMemberResponse(err="ErrWrongLeader", leader_hint=e.hint)
        except ChangeRefused as e:
            return pb.ChangeMemberResponse(err=str(e), leader_hint=g.leader_address)
        except asyncio.TimeoutError:
            return pb.ChangeMemberResponse(
                err=f"the change did not apply within {CHANGE_TIMEOUT_S:.0f} s (is a majority of "
                    f"the group up?); look with `member list` whether it happened")
        return pb.ChangeMemberResponse(err="OK", node_id=cc.node_id, index=idx)

    async def _ask_uid(self, addr: str, gid: int) -> tuple[int, str]:
        """The node uid of the node at addr (it must answer, and host group `gid`: a member
        that is not there would only weaken the group), or why not."""
        target = self.cfg.node.dial_address(addr)
        try:
            async with channel(target, self.cfg.tls.files if self.cfg.tls else None,
                               name=addr) as ch:
                st = await pb_grpc.NodeAdminStub(ch).Status(pb.StatusRequest(),
                                                            timeout=ASK_UID_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return 0, (f"{addr} does not answer; start the new node first (with join = true "
                       f"in its TOML), then add it")
        if not st.node_uid:
            return 0, f"{addr} runs an eraftd too old to be added (it has no node uid)"
        if not any(gs.group == gid for gs in st.groups):
            want = ("[controller] peers = [...] and join = true" if gid == 0
                    else f"[shardkv] gid = {gid} and join = true")
            hosts = ", ".join("the controller group" if gs.group == 0 else f"group {gs.group}"
                              for gs in st.groups) or "no group"
            return 0, (f"{addr} does not host {'the controller group' if gid == 0 else f'group {gid}'}"
                       f" (it hosts {hosts}): start it with {want} in its TOML")
        return st.node_uid, ""

    async def _group(self, gid: int, context, what: str) -> Any:
        await self.access.require(context, Right.TESTING, what)
        if not self.test_machine:
            return None
        return self.driver.groups.get(gid)

    async def Propose(self, request, context):
        g = await self._group(request.group, context, "Propose")
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
        g = await self._group(request.group, context, "Read")
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
