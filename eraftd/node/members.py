"""A Raft group's membership as the node stores it: who the members are (the core's ConfState:
voter and learner ids) and, for each, its address and its data_dir's node uid.

The record lives in the group's state-machine data (key MEMBERS_KEY), written in the same
WriteBatch as the applied index whenever a CONF_CHANGE entry applies, so it is always the
membership at the applied index, and snapshots carry it to the nodes they are sent to.

A group founded from a TOML file starts with ids 0..n-1 = the positions in its `peers`; a
member added later gets `next_id` (ids are never reused: a disk that was wiped comes back as a
new member with a new id).  The ConfChange context of an ADD_LEARNER entry carries the new
member's address and uid (ChangeContext).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from ..raft.messages import ConfChange, ConfChangeOp, ConfState

MEMBERS_KEY = b"\xff\xffraft-members"   # sorts after every state machine's own keys


@dataclass(frozen=True)
class ChangeContext:
    address: str
    uid: int = 0

    def encode(self) -> bytes:
        return json.dumps({"address": self.address, "uid": self.uid}, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> "ChangeContext":
        """ValueError when `data` is not one (a peer's entry is checked with it first)."""
        if not data:
            return cls("")
        try:
            d = json.loads(data)
            address, uid = d.get("address", ""), d.get("uid", 0)
        except (ValueError, AttributeError, RecursionError):
            raise ValueError("not a JSON object") from None
        if not isinstance(address, str) or type(uid) is not int:
            raise ValueError("its address must be a string and its uid a number")
        return cls(address, uid)


@dataclass(frozen=True)
class Members:
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    addrs: dict[int, str] = field(default_factory=dict)
    uids: dict[int, int] = field(default_factory=dict)
    next_id: int = 0
    # the founding members in id order (the TOML's peers of the nodes that founded the group):
    # fixed at founding and carried through every change and snapshot, so every member of a
    # group holds the same list; peers compare theirs (eraftd/node/driver.py, on_views).
    # () = unknown (a node waiting to be added)
    founders: tuple[str, ...] = ()

    # -- building ---------------------------------------------------------------
    @classmethod
    def founding(cls, peers: tuple[str, ...]) -> "Members":
        """A group started from its TOML `peers` (ids = positions).  The founders' uids are not
        in it (each node learns its peers' on first contact): every founder writes the same
        record, so replicas' data stay identical."""
        return cls(tuple(range(len(peers))), (), dict(enumerate(peers)), {}, len(peers),
                   tuple(peers))

    @classmethod
    def decode(cls, raw: bytes) -> "Members":
        """ValueError when `raw` is not a members record (a peer's snapshot is checked so)."""
        try:
            d = json.loads(raw)
            m = cls(tuple(d["voters"]), tuple(d["learners"]),
                    {int(k): v for k, v in d["addrs"].items()},
                    {int(k): int(v) for k, v in d.get("uids", {}).items()}, int(d["next_id"]),
                    tuple(d.get("founders", ())))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            raise ValueError("not a members record") from None
        if not m.founders:
            # a record written before founders were kept: if it never changed, its members
            first = cls.founding(tuple(m.addrs.get(i, "") for i in range(m.next_id)))
            if replace(m, founders=first.founders) == first:
                m = first
        if not all(isinstance(a, str) for a in m.founders):
            raise ValueError("a members record with founders that are not addresses")
        ids = m.voters + m.learners + tuple(m.addrs) + tuple(m.uids)
        if (not all(type(i) is int and 0 <= i < m.next_id for i in ids)
                or not all(isinstance(a, str) for a in m.addrs.values())
                or m.next_id >= 1 << 31):
            raise ValueError("a members record with ids or addresses out of range")
        return m

    def encode(self) -> bytes:
        d = {"voters": list(self.voters), "learners": list(self.learners),
             "addrs": {str(k): v for k, v in sorted(self.addrs.items())},
             "uids": {str(k): v for k, v in sorted(self.uids.items())},
             "next_id": self.next_id}
        if self.founders:
            d["founders"] = list(self.founders)
        return json.dumps(d, sort_keys=True).encode()

    def applied(self, cc: ConfChange, conf: ConfState) -> "Members":
        """The record after `cc` applied, given the core's membership after it (`conf`)."""
        addrs, uids = dict(self.addrs), dict(self.uids)
        nid = cc.node_id
        if cc.op == ConfChangeOp.ADD_LEARNER and nid in conf.learners:
            ctx = ChangeContext.decode(cc.context)
            addrs[nid] = ctx.address
            if ctx.uid:
                uids[nid] = ctx.uid
        for gone in [i for i in addrs if i not in conf]:
            del addrs[gone]
            uids.pop(gone, None)
        return Members(conf.voters, conf.learners, addrs, uids, max(self.next_id, nid + 1),
                       self.founders)

    # -- reading ----------------------------------------------------------------
    @property
    def conf(self) -> ConfState:
        return ConfState(self.voters, self.learners)

    def address(self, nid: int) -> str:
        return self.addrs.get(nid, "")

    def id_of(self, address: str) -> int | None:
        for nid, a in self.addrs.items():
            if a == address:
                return nid
        return None

    def id_of_uid(self, uid: int) -> int | None:
        for nid, u in self.uids.items():
            if u == uid:
                return nid
        return None

    def voter_addresses(self) -> tuple[str, ...]:
        return tuple(self.addrs[i] for i in self.voters if i in self.addrs)

    def learner_addresses(self) -> tuple[str, ...]:
        return tuple(self.addrs[i] for i in self.learners if i in self.addrs)

    def role(self, nid: int) -> str:
        return "voter" if nid in self.voters else "learner" if nid in self.learners else ""
