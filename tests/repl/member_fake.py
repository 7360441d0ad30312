"""An in-process fake of the nodes' NodeAdmin membership service (grpc.aio on 127.0.0.1, port 0),
for the tests of eraftd/members.py and the `member` commands: one tiny in-memory group served
by one gRPC server per address.

Only the leader answers ChangeMember (the others: ErrWrongLeader and a hint) and only it fills
the progress in Members.  A learner catches up by `catch_up` entries per Members call at the
leader.  `refusals` are answered, in order, to the next ChangeMember calls instead of applying
them (a transient "try again" one, a permanent one); `lose_answers` applies the next changes but
answers none of them (the client's call times out).  `unreachable()` gives an address where
nothing listens.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from eraftd._pb import admin_pb2 as apb
from eraftd._pb import admin_pb2_grpc as apb_grpc
from eraftd.controller.state import Config
from eraftd.testing import free_port

TRANSIENT = "another membership change is still in progress; try again when it is done"
PERMANENT = "the group would be left with no voter"


@dataclass
class FakeMember:
    address: str
    uid: int
    role: str = "voter"
    match: int = 0


class FakeGroup:
    def __init__(self, group: int, addresses: list[str], last_index: int = 5000) -> None:
        self.group = group
        self.members = {i: FakeMember(a, 1000 + i, match=last_index) for i, a in enumerate(addresses)}
        self.leader_id = 0
        self.last_index = last_index
        self.next_id = len(addresses)
        self.catch_up = 2000
        self.refusals: list[str] = []
        self.lose_answers = 0
        self.changes: list[tuple[str, int, str]] = []     # (op, id, address), as applied
        self.uids: dict[str, int] = {}                    # node_uid each address answers Status with
        self.wiped: set[int] = set()                      # uids the leader refuses (founders: no uid)
        self.no_leader = False

    def leader_address(self) -> str:
        return "" if self.no_leader else self.members[self.leader_id].address

    def by_address(self, address: str) -> int | None:
        return next((i for i, m in self.members.items() if m.address == address), None)

    def apply(self, op: str, address: str, node_id: int) -> tuple[str, int]:
        if op == "add":
            if self.by_address(address) is not None:
                return f"{address} is already a member", -1
            node_id = self.next_id
            self.next_id += 1
            self.members[node_id] = FakeMember(address, self.uids.get(address, 0), "learner", 0)
        elif node_id not in self.members:
            return f"no member {node_id}", -1
        elif op == "promote":
            self.members[node_id].role = "voter"
        elif op == "remove":
            del self.members[node_id]
            if node_id == self.leader_id:
                self.leader_id = min(i for i, m in self.members.items() if m.role == "voter")
        self.changes.append((op, node_id, address))
        return "OK", node_id


class FakeNode(apb_grpc.NodeAdminServicer):
    def __init__(self, model: FakeGroup, address: str) -> None:
        self.model = model
        self.address = address

    def _leads(self) -> bool:
        return self.model.leader_address() == self.address

    async def Status(self, request, context):
        return apb.NodeStatus(address=self.address, node_uid=self.model.uids.get(self.address, 0))

    async def Members(self, request, context):
        g = self.model
        if request.group != g.group or g.by_address(self.address) is None:
            return apb.MembersResponse(err=f"this node is not a member of group {request.group}")
        lead = self._leads()
        if lead:
            for m in g.members.values():
                m.match = min(g.last_index, m.match + g.catch_up)
        out = apb.MembersResponse(err="OK", leader_hint=g.leader_address(),
                                  leader_id=-1 if g.no_leader else g.leader_id,
                                  last_index=g.last_index, commit_index=g.last_index, is_leader=lead)
        for i, m in sorted(g.members.items()):
            now = g.uids.get(m.address, 0)
            refused = bool(m.uid and now and now != m.uid) or (not m.uid and now in g.wiped)
            out.members.append(apb.Member(
                id=i, address=m.address, uid=m.uid, role=m.role, match=m.match if lead else -1,
                state=("replicate" if g.last_index - m.match <= 100 else "snapshot") if lead else "",
                problem=f"{m.address} came back with an empty disk" if lead and refused else ""))
        return out

    async def ChangeMember(self, request, context):
        g = self.model
        if not self._leads():
            return apb.ChangeMemberResponse(err="ErrWrongLeader", leader_hint=g.leader_address())
        if g.refusals:
            return apb.ChangeMemberResponse(err=g.refusals.pop(0))
        node_id = request.node_id
        if node_id < 0 and request.op != "add":
            node_id = g.by_address(request.address)
        err, node_id = g.apply(request.op, request.address, node_id)
        if err == "OK" and g.lose_answers:
            g.lose_answers -= 1
            await asyncio.sleep(60)          # applied, but the answer never comes in time
        return apb.ChangeMemberResponse(err=err, node_id=node_id, index=g.last_index)


class FakeNodes:
    """`n` members of group `group` (addresses[:n]) and `spare` nodes that are not members yet."""

    def __init__(self, group: int, n: int = 3, spare: int = 2) -> None:
        self.group_id = group
        self.n, self.spare = n, spare
        self.servers: list[grpc.aio.Server] = []
        self.addresses: list[str] = []
        self.model: FakeGroup | None = None

    async def __aenter__(self) -> "FakeNodes":
        nodes: list[FakeNode] = []
        for _ in range(self.n + self.spare):
            server = grpc.aio.server()
            node = FakeNode(None, "")        # type: ignore[arg-type]
            apb_grpc.add_NodeAdminServicer_to_server(node, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            node.address = f"127.0.0.1:{port}"
            self.servers.append(server)
            self.addresses.append(node.address)
            nodes.append(node)
        self.model = FakeGroup(self.group_id, self.addresses[:self.n])
        for node in nodes:
            node.model = self.model
        return self

    async def __aexit__(self, *exc) -> None:
        for s in self.servers:
            await s.stop(None)

    @property
    def g(self) -> FakeGroup:
        assert self.model is not None
        return self.model


def unreachable() -> str:
    return f"127.0.0.1:{free_port()}"


class FakeCtl:
    """A ControllerClient as MemberClient uses it: the controller addresses, the configuration."""

    def __init__(self, addresses: list[str], groups: dict[int, tuple[str, ...]] | None = None) -> None:
        self.addresses = list(addresses)
        self.leader = self.addresses[0] if self.addresses else None
        self.cfg = Config(3, (0,) * 10, groups or {})

    async def latest(self, newer_than: int = -1, timeout: float | None = None) -> Config:
        return self.cfg

    async def query(self, num: int = -1, timeout: float | None = None) -> Config:
        return self.cfg

    async def close(self) -> None:
        pass
