"""The membership of a Raft group from the operator's side: what `eraftd member list|add|
promote|remove|replace` (repl/commands.py) does, usable from code too.

    async with MemberClient(ControllerClient(controllers)) as mc:
        ms = await mc.members(CTRL)                   # the leader's view: voters, learners, lag
        done = await mc.add(101, "127.0.0.1:7004", progress=print)   # learner, catch up, promote

A group is the controller group (CTRL = 0, its servers the controller addresses the
ControllerClient was given) or a shardkv gid (its servers from the controller's latest
configuration).  Its leader is found by asking NodeAdmin.Members of its servers (and of every
address its membership named before) and following `leader_hint`; every call has a short
deadline (`call_timeout`), every operation an overall one (`timeout`).

Changes go to the leader as NodeAdmin.ChangeMember, one at a time.  ErrWrongLeader is followed
to the leader it names.  A refusal that says "try again" (another change still in progress; no
entry of the leader's term committed yet) is transient: retried a few times after a short
pause.  Any other refusal raises eraftd.errors.Refused with the server's words; no leader in
time raises eraftd.errors.Unavailable saying what was tried.  A change whose answer was lost
is looked for in the membership before it is sent again, so it is never made twice.

`add` puts the new node in as a learner, waits (polling Members) until its acknowledged index
is within CATCH_UP_WITHIN entries of the leader's last index, then promotes it to a voter;
`replace` is for a member that came back with an empty disk (a new node uid under the same
address): it removes the old member, adds the address again as a new member (a new id) and
waits and promotes as `add` does.  `progress(text)` hears how far the wait is ("caught up
1200/5000"), `step(text)` each step done, in words.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

import grpc

from ._pb import admin_pb2 as apb
from ._pb import admin_pb2_grpc as apb_grpc
from .controller.client import ControllerClient
from .errors import Denied, Refused, Unavailable, denied, rpc_problem
from .tls import TlsFiles, channel

CTRL = 0                        # the controller group's number
VOTER, LEARNER = "voter", "learner"
OK, ERR_WRONG_LEADER = "OK", "ErrWrongLeader"
CALL_TIMEOUT_S = 2.0            # one Members / Status call
CHANGE_TIMEOUT_S = 12.0         # one ChangeMember call (answered once applied; a node waits 10 s)
DEFAULT_WAIT_S = 120.0          # add / replace: the whole operation, catching up included
STARTING_WAIT_S = 15.0          # add / replace: how long a node just started may take to answer
CATCH_UP_WITHIN = 100           # entries behind the leader's last index that count as caught up
POLL_S = 0.3                    # how often the catch-up is looked at
TRY_AGAIN_PAUSE_S = 0.5         # after a transient refusal
TRY_AGAIN_TRIES = 5             # transient refusals retried before giving up
REFUSAL_WAIT_S = 10.0           # replace: how long the leader may take to refuse a wiped founder

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------- words

def group_word(group: int) -> str:
    """How a command names the group: "ctrl" or the gid."""
    return "ctrl" if group == CTRL else str(group)


def group_name(group: int) -> str:
    """How a sentence names the group."""
    return "the controller group" if group == CTRL else f"group {group}"


def parse_group(word: str) -> int:
    """"ctrl" -> CTRL, a gid -> itself; ValueError (one line) for anything else."""
    if word.lower() == "ctrl":
        return CTRL
    try:
        gid = int(word)
    except ValueError:
        gid = 0
    if gid < 1:
        raise ValueError(f"a group is a gid (1 or more) or ctrl (the controller group), got {word!r}")
    return gid


def looks_like_address(word: str) -> bool:
    host, sep, port = word.rpartition(":")
    return bool(sep and host and port.isdigit())


def parse_member(word: str, address_only: bool = False) -> str | int:
    """A member as typed: an address (HOST:PORT) or, unless `address_only`, its id."""
    if word.isdigit() and not address_only:
        return int(word)
    if looks_like_address(word):
        return word
    want = "an address (HOST:PORT)" if address_only else "an address (HOST:PORT) or a member id"
    raise ValueError(f"expected {want}, got {word!r}")


# ---------------------------------------------------------------- what Members says

@dataclass(frozen=True)
class Row:
    """One member as the group reports it (match, lag and state only from the leader)."""
    id: int
    address: str
    role: str                  # VOTER or LEARNER
    match: int | None = None   # the last index it acknowledged; None: unknown
    lag: int | None = None     # the leader's last index minus match
    state: str = ""            # "probe", "replicate", "snapshot", "" (unknown)
    problem: str = ""          # why the leader refuses its messages (e.g. an empty disk)
    uid: int = 0               # its data_dir's uid as the group recorded it (0: unknown)
    leader: bool = False


@dataclass(frozen=True)
class Membership:
    group: int
    rows: tuple[Row, ...]
    leader: str | None         # the leader's address (None: unknown)
    leader_id: int             # -1: unknown
    last_index: int            # of the node that answered
    commit_index: int
    change_pending: bool
    answered_by: str
    from_leader: bool          # False: a follower's view (no progress)

    def find(self, member: str | int) -> Row | None:
        for r in self.rows:
            if (r.id == member) if isinstance(member, int) else (r.address == member):
                return r
        return None

    def named(self) -> str:
        """Its members in words, for a message: "127.0.0.1:7001 (0), 127.0.0.1:7002 (1)"."""
        return ", ".join(f"{r.address} ({r.id}{', learner' if r.role == LEARNER else ''})"
                         for r in self.rows) or "none"


def membership(group: int, answered_by: str, resp: apb.MembersResponse) -> Membership:
    lead = resp.is_leader
    rows = []
    for m in resp.members:
        match = m.match if lead and m.match >= 0 else None
        rows.append(Row(m.id, m.address, LEARNER if m.role == LEARNER else VOTER, match,
                        resp.last_index - match if match is not None else None,
                        m.state if lead else "", m.problem if lead else "", m.uid,
                        m.id == resp.leader_id))
    leader = answered_by if lead else (resp.leader_hint or None)
    return Membership(group, tuple(rows), leader, resp.leader_id, resp.last_index,
                      resp.commit_index, resp.change_pending, answered_by, lead)


def caught_up(row: Row, last_index: int) -> bool:
    """Close enough to the leader's log to be promoted: it has acknowledged something (unless
    the log is empty), is replicating, and is at most CATCH_UP_WITHIN entries behind."""
    if row.match is None or row.state not in ("replicate", ""):
        return False
    return (row.match > 0 or last_index == 0) and last_index - row.match <= CATCH_UP_WITHIN


@dataclass(frozen=True)
class Done:
    """What an operation ended with."""
    group: int
    id: int
    address: str
    role: str                  # VOTER, LEARNER, or "removed"
    changed: bool
    steps: tuple[str, ...]     # what was done, in words, in order (the last one says the outcome)


def _transient(err: str) -> bool:
    return "try again" in err.lower()


# ---------------------------------------------------------------- the client

class MemberClient:
    def __init__(self, ctl: ControllerClient, dial: Callable[[str], str] | None = None,
                 call_timeout: float = CALL_TIMEOUT_S, change_timeout: float = CHANGE_TIMEOUT_S,
                 poll: float = POLL_S, pause: float = TRY_AGAIN_PAUSE_S,
                 tries: int = TRY_AGAIN_TRIES, default_timeout: float = 10.0,
                 refusal_wait: float = REFUSAL_WAIT_S, tls: TlsFiles | None = None) -> None:
        self.ctl = ctl
        self.dial = dial or (lambda a: a)
        self.tls = tls
        self.call_timeout = call_timeout
        self.change_timeout = change_timeout
        self.poll = poll
        self.pause = pause
        self.tries = tries
        self.default_timeout = default_timeout
        self.refusal_wait = refusal_wait
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._leaders: dict[int, str] = {}           # group -> the address that last led it
        self._known: dict[int, list[str]] = {}       # group -> addresses its membership named

    async def __aenter__(self) -> "MemberClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        chans, self._channels = self._channels, {}
        for ch in chans.values():
            await ch.close()

    def _stub(self, addr: str) -> apb_grpc.NodeAdminStub:
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = channel(self.dial(addr), self.tls, name=addr)
        return apb_grpc.NodeAdminStub(ch)

    def _deadline(self, timeout: float | None) -> tuple[float, float]:
        said = self.default_timeout if timeout is None else timeout
        return asyncio.get_running_loop().time() + said, said

    @staticmethod
    def _left(deadline: float) -> float:
        return deadline - asyncio.get_running_loop().time()

    # ---------------------------------------------------------------- finding the leader
    async def servers(self, group: int, timeout: float | None = None) -> list[str]:
        """Where to ask about `group`: the last leader, its configured servers, then every
        address its membership named."""
        if group == CTRL:
            base = list(self.ctl.addresses)
        else:
            cfg = await self.ctl.latest(timeout=timeout)
            if group not in cfg.groups:
                cfg = await self.ctl.query(timeout=timeout)
            if group not in cfg.groups:
                known = ", ".join(map(str, cfg.groups)) or "none"
                raise Refused(f"group {group} is not in the configuration (configuration {cfg.num}; "
                              f"its groups: {known}); join it first")
            base = list(cfg.groups[group])
        first = [self._leaders[group]] if group in self._leaders else []
        return list(dict.fromkeys(first + base + self._known.get(group, [])))

    async def members(self, group: int, timeout: float | None = None,
                      need_leader: bool = False) -> Membership:
        """The group's membership, from its leader when one answers in time (with every
        member's progress), else (unless `need_leader`) from any member: a follower's view
        once no leader has answered for 2 calls' time."""
        deadline, said = self._deadline(timeout)
        return await self._find(group, deadline, said, need_leader)

    async def _find(self, group: int, deadline: float, said: float,
                    need_leader: bool = True) -> Membership:
        soft = min(deadline, asyncio.get_running_loop().time() + 2 * self.call_timeout)
        tried: dict[str, str] = {}          # address -> what it said last
        strangers: set[str] = set()         # addresses that do not offer Members at all
        fallback: Membership | None = None
        delay = 0.05
        while True:
            queue = await self.servers(group, max(0.1, round(self._left(deadline), 1)))
            seen: set[str] = set()
            while queue and self._left(deadline) > 0:
                addr = queue.pop(0)
                if addr in seen:
                    continue
                seen.add(addr)
                try:
                    resp = await self._stub(addr).Members(
                        apb.MembersRequest(group=group),
                        timeout=max(0.01, min(self.call_timeout, self._left(deadline))))
                except grpc.aio.AioRpcError as e:
                    if (why := denied(e)) is not None:
                        raise Denied(why) from None
                    tried[addr] = rpc_problem(e, self.tls is not None)
                    if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                        strangers.add(addr)
                    continue
                if resp.err != OK:
                    tried[addr] = resp.err
                    if resp.leader_hint and resp.leader_hint not in seen:
                        queue.insert(0, resp.leader_hint)
                    continue
                ms = membership(group, addr, resp)
                known = self._known.setdefault(group, [])
                known.extend(a for a in [r.address for r in ms.rows] + [ms.leader or ""]
                             if a and a not in known)
                if ms.from_leader:
                    self._leaders[group] = addr
                    return ms
                fallback = ms
                hint = resp.leader_hint
                tried[addr] = "not the leader" + (f" (it names {hint})" if hint else
                                                  " (it knows no leader)")
                if hint and hint not in seen:
                    queue.insert(0, hint)
            if fallback is not None and not need_leader and self._left(soft) <= 0:
                return fallback
            if strangers and strangers >= set(tried):       # no node offers the service
                raise Unavailable(f"{group_name(group)}: {', '.join(sorted(strangers))} "
                                  f"{'does' if len(strangers) == 1 else 'do'} not offer membership "
                                  f"changes (NodeAdmin.Members): an eraftd older than the member "
                                  f"commands, or not an eraftd node")
            if self._left(deadline) <= 0:
                self._leaders.pop(group, None)
                asked = "; ".join(f"{a}: {w}" for a, w in tried.items()) or "nothing"
                raise Unavailable(f"{group_name(group)}: no leader answered within {said:g} s; "
                                  f"asked {asked}")
            await asyncio.sleep(max(0.0, min(delay, self._left(deadline))))
            delay = min(delay * 2, 0.5)

    # ---------------------------------------------------------------- one change
    async def _change(self, group: int, op: str, deadline: float, said: float, address: str = "",
                      node_id: int = -1, made: Callable[[Membership], int | None] = lambda ms: None,
                      progress: Progress = _quiet) -> int:
        """ChangeMember at the leader until it answers OK; the member's id.  `made(ms)` tells
        whether the change is visible in a membership (its member's id), for an answer lost."""
        what = address or f"member {node_id}"
        refusals = 0
        lost = ""                           # an earlier attempt got no answer: it may be made
        while True:
            if self._left(deadline) <= 0:
                raise Unavailable(f"{group_name(group)}: {op} {what}: no answer within {said:g} s "
                                  f"({lost or 'no leader'}); the change may or may not be made: "
                                  f"see `eraftd member list {group_word(group)}`")
            ms = await self._find(group, deadline, said)
            if lost and (found := made(ms)) is not None:
                return found
            leader = ms.answered_by
            try:
                resp = await self._stub(leader).ChangeMember(
                    apb.ChangeMemberRequest(group=group, op=op, address=address, node_id=node_id),
                    timeout=max(0.01, min(self.change_timeout, self._left(deadline))))
            except grpc.aio.AioRpcError as e:
                if (why := denied(e)) is not None:
                    raise Denied(why) from None
                lost = f"the leader {leader}: {rpc_problem(e, self.tls is not None)}"
                self._leaders.pop(group, None)
                await asyncio.sleep(max(0.0, min(self.pause, self._left(deadline))))
                continue
            if resp.err == OK:
                return resp.node_id if node_id < 0 else node_id
            if resp.err == ERR_WRONG_LEADER:
                if resp.leader_hint:
                    self._leaders[group] = resp.leader_hint
                else:
                    self._leaders.pop(group, None)
                    await asyncio.sleep(max(0.0, min(0.1, self._left(deadline))))
                continue
            if _transient(resp.err) and refusals < self.tries and self._left(deadline) > self.pause:
                refusals += 1
                lost = resp.err              # e.g. "leadership changed before the change applied"
                progress(f"{op} {what}: {resp.err} (trying again)")
                await asyncio.sleep(self.pause)
                continue
            raise Refused(f"{group_name(group)} refused to {op} {what}: {resp.err}")

    async def _resolve(self, group: int, member: str | int, deadline: float, said: float) -> tuple[Membership, Row]:
        ms = await self._find(group, deadline, said)
        row = ms.find(member)
        if row is None:
            raise Refused(f"{member} is not a member of {group_name(group)}; its members: {ms.named()}")
        return ms, row

    async def _wait_caught_up(self, group: int, row: Row, deadline: float, said: float,
                              progress: Progress, new: bool) -> str:
        """Poll the leader until `row`'s member has caught up; the words for the step."""
        g = group_word(group)
        while True:
            ms = await self._find(group, deadline, said)
            now = ms.find(row.id)
            if now is None:
                raise Refused(f"{row.address} (member {row.id}) is no longer a member of "
                              f"{group_name(group)}: someone removed it meanwhile")
            if caught_up(now, ms.last_index):
                return f"{row.address} has caught up ({now.match} of {ms.last_index})"
            at = "-" if now.match is None else str(now.match)
            progress(f"{row.address}: caught up {at}/{ms.last_index}"
                     + (f" ({now.state})" if now.state else "")
                     + (f": {now.problem}" if now.problem else ""))
            if self._left(deadline) <= self.poll:
                who = "the new member" if new else "the member"
                raise Unavailable(
                    f"{who} at {row.address} has not caught up after {said:g} s (at {at} of "
                    f"{ms.last_index}); it stays a learner: run `eraftd member promote {g} "
                    f"{row.address}` later, or `eraftd member remove {g} {row.address}`")
            await asyncio.sleep(self.poll)

    async def _promote(self, group: int, row: Row, deadline: float, said: float,
                       progress: Progress, step: Progress, new: bool) -> list[str]:
        steps = [await self._wait_caught_up(group, row, deadline, said, progress, new)]
        step(steps[-1])
        progress(f"promoting {row.address}")
        await self._change(group, "promote", deadline, said, row.address, row.id,
                           made=lambda ms: row.id if (r := ms.find(row.id)) and r.role == VOTER else None,
                           progress=progress)
        steps.append(f"{row.address} is a voter of {group_name(group)} (member {row.id})")
        step(steps[-1])
        return steps

    async def _add_then_promote(self, group: int, address: str, learner_only: bool, deadline: float,
                                said: float, progress: Progress, step: Progress,
                                steps: list[str]) -> Done:
        ms = await self._find(group, deadline, said)
        row = ms.find(address)
        if row is not None and row.role == VOTER:
            steps.append(f"no change: {address} is already a voter of {group_name(group)} "
                         f"(member {row.id})")
            return Done(group, row.id, address, VOTER, bool(steps[:-1]), tuple(steps))
        if row is not None:
            steps.append(f"{address} is already a learner of {group_name(group)} (member {row.id})")
        else:
            await self._node_status(address, deadline, progress)
            before = {r.id for r in ms.rows}
            progress(f"adding {address}")
            new_id = await self._change(
                group, "add", deadline, said, address,
                made=lambda ms: next((r.id for r in ms.rows
                                      if r.address == address and r.id not in before), None),
                progress=progress)
            row = Row(new_id, address, LEARNER)
            steps.append(f"added {address} to {group_name(group)} as a learner (member {new_id})")
        step(steps[-1])
        if learner_only:
            return Done(group, row.id, address, LEARNER, True, tuple(steps))
        steps += await self._promote(group, row, deadline, said, progress, step, new=True)
        return Done(group, row.id, address, VOTER, True, tuple(steps))

    # ---------------------------------------------------------------- the operations
    async def add(self, group: int, address: str, learner_only: bool = False,
                  timeout: float = DEFAULT_WAIT_S, progress: Progress = _quiet,
                  step: Progress = _quiet) -> Done:
        """Add the node at `address` as a learner; unless `learner_only`, wait until it has
        caught up and promote it.  An address already a learner is waited for and promoted."""
        deadline, said = self._deadline(timeout)
        return await self._add_then_promote(group, address, learner_only, deadline, said,
                                            progress, step, [])

    async def promote(self, group: int, member: str | int, timeout: float | None = None,
                      progress: Progress = _quiet, step: Progress = _quiet) -> Done:
        """Make a learner (by address or id) a voter, once it has caught up."""
        deadline, said = self._deadline(timeout)
        _, row = await self._resolve(group, member, deadline, said)
        if row.role == VOTER:
            text = f"no change: {row.address} is already a voter of {group_name(group)} (member {row.id})"
            step(text)
            return Done(group, row.id, row.address, VOTER, False, (text,))
        steps = await self._promote(group, row, deadline, said, progress, step, new=False)
        return Done(group, row.id, row.address, VOTER, True, tuple(steps))

    async def remove(self, group: int, member: str | int, timeout: float | None = None,
                     progress: Progress = _quiet, step: Progress = _quiet) -> Done:
        """Remove a member (by address or id); the leader itself hands over to another voter."""
        deadline, said = self._deadline(timeout)
        _, row = await self._resolve(group, member, deadline, said)
        steps = self._removed(group, row, await self._remove(group, row, deadline, said, progress))
        for s in steps:
            step(s)
        return Done(group, row.id, row.address, "removed", True, tuple(steps))

    async def _remove(self, group: int, row: Row, deadline: float, said: float,
                      progress: Progress) -> int:
        progress(f"removing {row.address} (member {row.id})")
        return await self._change(group, "remove", deadline, said, row.address, row.id,
                                  made=lambda ms: row.id if ms.find(row.id) is None else None,
                                  progress=progress)

    @staticmethod
    def _removed(group: int, row: Row, _: int) -> list[str]:
        steps = [f"removed {row.address} (member {row.id}{', a ' + row.role if row.role == LEARNER else ''}) "
                 f"from {group_name(group)}"]
        if row.leader:
            steps.append(f"{row.address} was the leader: it hands over to another voter")
        return steps

    async def _node_status(self, address: str, deadline: float, progress: Progress,
                           todo: str = "start the new node first (with join = true in its TOML), "
                                       "then add it; nothing changed") -> Any:
        """The node at `address`'s NodeAdmin.Status, waiting a little for a node just started
        (`eraftd run ... &` then at once `member add`); Unavailable with `todo` if it never
        answers."""
        loop = asyncio.get_running_loop()
        until = min(deadline, loop.time() + STARTING_WAIT_S)
        while True:
            try:
                return await self._stub(address).Status(
                    apb.StatusRequest(),
                    timeout=max(0.01, min(self.call_timeout, self._left(deadline))))
            except grpc.aio.AioRpcError as e:
                if (why := denied(e)) is not None:
                    raise Denied(why) from None
                if self._left(until) <= 0:
                    raise Unavailable(f"{address} does not answer ({rpc_problem(e, self.tls is not None)}): "
                                      f"{todo}") from None
            progress(f"waiting for {address} to answer")
            await asyncio.sleep(self.poll)

    async def replace(self, group: int, address: str, timeout: float = DEFAULT_WAIT_S,
                      progress: Progress = _quiet, step: Progress = _quiet) -> Done:
        """The member at `address` came back with an empty disk: remove it, add the address
        again as a new member (the group gives it a new id), wait until it has caught up and
        promote it.  Refused (nothing changed) when no member is there, when the node there
        does not answer, or when it still has the disk it was added with (its uid is the one
        recorded; a founding member, recorded without one: the leader does not refuse it)."""
        deadline, said = self._deadline(timeout)
        g = group_word(group)
        ms = await self._find(group, deadline, said)
        row = ms.find(address)
        if row is None:
            raise Refused(f"no member of {group_name(group)} is at {address} (its members: "
                          f"{ms.named()}); to add one: `eraftd member add {g} {address}`")
        st = await self._node_status(address, deadline, progress,
                                     "start the new machine there first, then run the replace "
                                     "again; nothing changed")
        if row.uid and st.node_uid == row.uid:
            raise Refused(f"{address} still has the disk it was added with (member {row.id}, the "
                          f"same node uid): there is nothing to replace; nothing changed")
        seen_by = min(deadline, asyncio.get_running_loop().time() + self.refusal_wait)
        while not row.uid and not row.problem:  # a founder (no uid recorded): the leader says
            if self._left(seen_by) <= 0:
                raise Refused(f"{group_name(group)} does not refuse {address} (member {row.id}): "
                              f"its disk is the one the group knows, nothing to replace; nothing "
                              f"changed")
            progress(f"waiting for the leader to see the disk at {address}")
            await asyncio.sleep(self.poll)
            ms = await self._find(group, deadline, said)
            row = ms.find(address)
            if row is None:
                raise Refused(f"{address} is no longer a member of {group_name(group)}: someone "
                              f"removed it meanwhile; to add it: `eraftd member add {g} {address}`")
        steps = self._removed(group, row, await self._remove(group, row, deadline, said, progress))
        steps[0] += " (its old disk)"
        for s in steps:
            step(s)
        removed = len(steps)
        try:
            return await self._add_then_promote(group, address, False, deadline, said, progress,
                                                step, steps)
        except (Refused, Unavailable) as e:
            if len(steps) > removed:        # added: the error says what is left to do
                raise
            raise type(e)(f"removed the old member {row.id} at {address}, but adding it again "
                          f"failed: {e} (to finish: `eraftd member add {g} {address}`)") from None
