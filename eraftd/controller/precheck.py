"""What the controller's leader asks the shardkv servers before it proposes a join or an abandon.

A join of a gid whose servers do not answer as replicas of that gid (a mistyped address, a
group not started yet) would hand shards to a group nobody runs: they would wait for it for
ever.  So before a JOIN is proposed, every server of every new group is asked
(ShardKVService.GetStatus, all at once, each call bounded by `timeout`); a group passes when
at least ONE of its servers answers as that gid, under an address the join lists (a group
with one live replica is a real group: a join while a replica is down, or restarting, must
work; a server that advertises another address would not take the configuration as its own:
shardkv/state.py, is_ours).  A request with `force`
skips the question (the shell's `join --force`); eRaft's clients never set it, so they get
the check too: the safe default.

An abandon (`shard abandon`) gives up the data of a shard held before it; it is allowed only
for a shard whose last handoff (from, to) involves a lost group: `from` (the previous owner)
must not answer as itself, `to` (the owner now) must answer, else nobody would serve it.

The decision is advice taken before the log, not part of the replicated state: it asks the
network, so it cannot be deterministic; the pure checks (state.check) still run at apply.
"""
from __future__ import annotations

import asyncio
from typing import Callable, Mapping, Sequence

import grpc

from .._pb import shardkv_pb2 as skvpb
from .._pb import shardkv_pb2_grpc as skvpb_grpc
from ..errors import rpc_problem
from ..tls import TlsFiles, channel
from .state import Config, last_handoff

PROBE_TIMEOUT_S = 1.5          # per server; the servers are asked at once


async def _answer(addr: str, gid: int, servers: Sequence[str], dial: Callable[[str], str],
                  timeout: float, tls: TlsFiles | None = None) -> str:
    """'' when `addr` answers as a replica of `gid` advertising one of `servers`, else what it
    did instead, in words."""
    try:
        async with channel(dial(addr), tls, name=addr) as ch:
            st = await skvpb_grpc.ShardKVServiceStub(ch).GetStatus(skvpb.GetStatusRequest(),
                                                                   timeout=timeout)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            return f"{addr} is not a shardkv replica"
        if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return f"{addr} does not answer"
        return f"{addr}: {rpc_problem(e, tls=tls is not None)}"
    except (OSError, ValueError) as e:         # an address grpc cannot even dial
        return f"{addr}: {e}"
    if st.gid != gid:
        return f"{addr} answers as gid {st.gid}"
    if st.address and st.address not in servers:
        return f"{addr} answers as gid {gid} but advertises {st.address}"
    return ""


async def ask(groups: Mapping[int, Sequence[str]], dial: Callable[[str], str] = lambda a: a,
              timeout: float = PROBE_TIMEOUT_S, tls: TlsFiles | None = None) -> dict[int, list[str]]:
    """For each gid: [] when at least one of its servers answers as that gid, else what each
    server did instead.  tls: the node's own [tls] files (None: plaintext)."""
    pairs = [(gid, a) for gid, servers in groups.items() for a in dict.fromkeys(servers)]
    answers = await asyncio.gather(*(_answer(a, gid, groups[gid], dial, timeout, tls)
                                     for gid, a in pairs))
    out: dict[int, list[str]] = {gid: [] for gid in groups}
    ok: set[int] = set()
    for (gid, _), why in zip(pairs, answers):
        if why:
            out[gid].append(why)
        else:
            ok.add(gid)
    return {gid: ([] if gid in ok else whys) for gid, whys in out.items()}


async def join_problem(groups: Mapping[int, Sequence[str]], dial: Callable[[str], str] = lambda a: a,
                       timeout: float = PROBE_TIMEOUT_S, tls: TlsFiles | None = None) -> str | None:
    """Why a join of `groups` is refused (one line), or None."""
    bad = {gid: whys for gid, whys in (await ask(groups, dial, timeout, tls)).items() if whys}
    if not bad:
        return None
    parts = [f"no server of gid {gid} answers as a replica of gid {gid} ({', '.join(whys)})"
             for gid, whys in sorted(bad.items())]
    return ("join: " + "; ".join(parts)
            + "; start the group's servers first, or pass --force to join anyway")


async def abandon_problem(configs: Sequence[Config], servers_of: Mapping[int, Sequence[str]],
                          shards: Sequence[int], dial: Callable[[str], str] = lambda a: a,
                          timeout: float = PROBE_TIMEOUT_S, tls: TlsFiles | None = None) -> str | None:
    """Why abandoning `shards` is refused (one line), or None (see the module doc)."""
    latest = configs[-1]
    handoffs = {s: last_handoff(configs, s) for s in shards}
    for s, (frm, to) in sorted(handoffs.items()):
        if frm == 0 and to != 0:
            return (f"shard abandon: shard {s} never moved between groups (gid {to} has had it "
                    f"from the start): there is no lost group's data to give up")
    ask_groups: dict[int, Sequence[str]] = {}
    for frm, to in handoffs.values():
        if frm:
            ask_groups[frm] = servers_of.get(frm, ())
        if to:
            ask_groups[to] = latest.groups.get(to, ())
    answers = await ask(ask_groups, dial, timeout, tls)
    for s, (frm, to) in sorted(handoffs.items()):
        if not answers.get(frm):
            return (f"shard abandon: shard {s}'s previous owner, gid {frm}, still answers "
                    f"({', '.join(ask_groups[frm])}): its data is not lost; let the move finish "
                    f"(see status), or stop that group for good first")
        if to and answers.get(to):
            return (f"shard abandon: shard {s}'s owner, gid {to}, does not answer "
                    f"({', '.join(answers[to])}), so nobody would serve it; start its servers "
                    f"or make it leave first")
    return None
