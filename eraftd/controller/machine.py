"""The controller's replicated state machine, and its byte formats.

Log entry: b"\\x01" + a shardctrlerpb.CommandRequest (the wire message itself, JOIN, LEAVE,
MOVE, SET_SERVERS or ABANDON, without `force`, which only decides whether the service asks
first; the version byte keeps a future format apart, and no command encodes to empty data,
which is the leader's no-op).  SET_SERVERS (eraftd's, not eRaft's) carries its gid and servers
as the one entry of the `servers` map, as a JOIN of one group would.

Log entry b"T" >Q stamp_ms >Q ttl_ms, then a b"\x01" entry: the command with the proposing
leader's time and session ttl (eraftd/sessions.py); the sessions expire by them.

Log entry b"\x02" + u64: the cluster id, proposed by the first leader that finds none (the
controller service); only the first applied one counts, so every replica keeps the same.

Group data (the group's GroupStore, so snapshots ship it as is):
    b"i"                   u64 cluster id (absent until fixed)
    b"c" u64(num)          configuration num >= 1, a shardctrlerpb.Config
    b"s" i64(client_id)    session: >qq command_id, num, then err (UTF-8)
    b"u" i64(client_id)    >Q its last use (the applied clock, ms); absent: 0 (a session
                           recorded before expiry, never used since)
    b"t"                   >QQ the applied clock: the latest stamp, the first (ms)
Configuration 0 is implicit.  The machine keeps everything in memory too (the store shows
committed data only, and queries must not touch the disk); it reloads on start and after a
snapshot is installed.

The pb <-> state conversions and the wire's answer strings live here as well: they are the
log's format, and the service and the client share them.
"""
from __future__ import annotations

import struct
from typing import Any

from .._pb import shardctrler_pb2 as pb
from ..raft.messages import Entry
from ..sessions import AppliedClock, unstamp
from .state import (Abandon, Applied, Command, Config, ControllerState, Join, Leave, Move, Op,
                    Session, SetServers)

# the wire's answers besides OK and bad-input messages, and the leader hint's metadata key
ERR_WRONG_LEADER = "ErrWrongLeader"
ERR_TIMEOUT = "ErrTimeout"
LEADER_METADATA_KEY = "leader"


def send_leader_hint(context, hint: str) -> None:
    """Tell a client answered ErrWrongLeader where the leader is (gRPC trailing metadata)."""
    if hint:
        context.set_trailing_metadata(((LEADER_METADATA_KEY, hint),))

ENTRY_V1 = b"\x01"
ENTRY_CLUSTER_ID = b"\x02"     # + u64: the cluster's id (eraftd/node/cluster.py); the first one counts
_CONFIG = b"c"
_SESSION = b"s"
_CLUSTER_ID = b"i"
_USED = b"u"
_CLOCK = b"t"
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_SESSION_HDR = struct.Struct(">qq")


class BadRequest(ValueError):
    """A request that cannot be a controller command (its message is the client's answer)."""


# ---------------------------------------------------------------- pb <-> state

def config_to_pb(cfg: Config) -> pb.Config:
    return pb.Config(num=cfg.num, shards=cfg.shards,
                     groups={g: pb.Servers(servers=s) for g, s in cfg.groups.items()},
                     abandoned=cfg.abandoned)


def config_from_pb(m: pb.Config) -> Config:
    shards = list(m.shards) or [0] * len(Config().shards)   # an empty message: config 0
    return Config(m.num, shards, {g: tuple(s.servers) for g, s in m.groups.items()},
                  dict(m.abandoned))


def command_from_pb(req: pb.CommandRequest) -> Command:
    """The command a JOIN / LEAVE / MOVE / SET_SERVERS / ABANDON request asks for; BadRequest for
    anything else."""
    if req.op == pb.JOIN:
        op: Op = Join({g: tuple(s.servers) for g, s in req.servers.items()})
    elif req.op == pb.LEAVE:
        op = Leave(tuple(req.gids))
    elif req.op == pb.MOVE:
        op = Move(req.shard, req.gid)
    elif req.op == pb.SET_SERVERS:
        if len(req.servers) != 1:
            raise BadRequest(f"set-servers: give exactly one gid and its servers, "
                             f"got {len(req.servers)} gids")
        (gid, servers), = req.servers.items()
        op = SetServers(gid, tuple(servers.servers))
    elif req.op == pb.ABANDON:
        op = Abandon(tuple(req.abandon_shards))
    elif req.op == pb.QUERY:
        raise BadRequest("query is not a log command")
    else:
        names = [f"{name} ({number})" for name, number in pb.Op.items()]
        raise BadRequest(f"unknown op {req.op}: expected {', '.join(names[:-1])} or {names[-1]}")
    return Command(op, req.client_id, req.command_id)


def command_to_pb(cmd: Command) -> pb.CommandRequest:
    op = cmd.op
    m = pb.CommandRequest(client_id=cmd.client_id, command_id=cmd.command_id)
    if isinstance(op, Join):
        m.op = pb.JOIN
        for g, servers in op.groups.items():
            m.servers[g].servers.extend(servers)
    elif isinstance(op, Leave):
        m.op = pb.LEAVE
        m.gids.extend(op.gids)
    elif isinstance(op, SetServers):
        m.op = pb.SET_SERVERS
        m.servers[op.gid].servers.extend(op.servers)
    elif isinstance(op, Abandon):
        m.op = pb.ABANDON
        m.abandon_shards.extend(op.shards)
    else:
        m.op = pb.MOVE
        m.shard, m.gid = op.shard, op.gid
    return m


def encode_command(cmd: Command) -> bytes:
    return ENTRY_V1 + command_to_pb(cmd).SerializeToString(deterministic=True)


def encode_cluster_id(cid: int) -> bytes:
    return ENTRY_CLUSTER_ID + _U64.pack(cid)


def decode_command(data: bytes) -> Command:
    if not data.startswith(ENTRY_V1):
        raise BadRequest(f"not a controller log entry (format byte {data[:1]!r})")
    try:
        req = pb.CommandRequest.FromString(data[1:])
    except Exception as e:  # protobuf's DecodeError
        raise BadRequest(f"undecodable controller log entry: {e}") from None
    return command_from_pb(req)


# ---------------------------------------------------------------- storage

def load_state(store: Any) -> ControllerState:
    configs = [Config()]
    for k, v in store.scan(_CONFIG):
        cfg = config_from_pb(pb.Config.FromString(v))
        if cfg.num != len(configs) or _U64.unpack(k[1:])[0] != cfg.num:
            raise RuntimeError(f"the controller data is damaged: configuration {len(configs)} is "
                               f"missing or misnumbered (found {cfg.num}); use a fresh data_dir "
                               f"(the group will catch up from its peers)")
        configs.append(cfg)
    used = {_I64.unpack(k[1:])[0]: _U64.unpack(v)[0] for k, v in store.scan(_USED)}
    sessions = {}
    for k, v in store.scan(_SESSION):
        command_id, num = _SESSION_HDR.unpack_from(v)
        cid = _I64.unpack(k[1:])[0]
        sessions[cid] = Session(command_id, v[_SESSION_HDR.size:].decode(), num, used.get(cid, 0))
    return ControllerState(configs, sessions, AppliedClock.decode(store.get(_CLOCK)))


def _load_cluster_id(store: Any) -> int:
    raw = store.get(_CLUSTER_ID)
    return _U64.unpack(raw)[0] if raw and len(raw) == _U64.size else 0


class ControllerMachine:
    """The StateMachine of group 0: results are state.Applied (None for no-op entries)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.state = load_state(store)
        self.cluster_id = _load_cluster_id(store)

    def apply(self, entries: list[Entry], batch: Any) -> list[Any]:
        out: list[Any] = []
        st, store = self.state, self.store
        for e in entries:
            if not e.data:
                out.append(None)
                continue
            if e.data[:1] == ENTRY_CLUSTER_ID:
                if not self.cluster_id and len(e.data) == 1 + _U64.size:
                    self.cluster_id = _U64.unpack_from(e.data, 1)[0]
                    store.stage_put(batch, _CLUSTER_ID, e.data[1:])
                out.append(self.cluster_id)
                continue
            try:
                stamp, ttl, data = unstamp(e.data)
                cmd = decode_command(data)
            except (BadRequest, ValueError) as err:   # never proposed by us; the same everywhere
                out.append(Applied(str(err), st.latest.num))
                continue
            if stamp is not None:
                ticked = st.clock.now
                for cid in st.tick(stamp, ttl):
                    store.stage_delete(batch, _SESSION + _I64.pack(cid))
                    store.stage_delete(batch, _USED + _I64.pack(cid))
                if st.clock.now != ticked:
                    store.stage_put(batch, _CLOCK, st.clock.encode())
            res = st.apply(cmd)
            if res.config is not None:
                store.stage_put(batch, _CONFIG + _U64.pack(res.config.num),
                                config_to_pb(res.config).SerializeToString(deterministic=True))
            if res.session is not None:
                s = res.session
                store.stage_put(batch, _SESSION + _I64.pack(cmd.client_id),
                                _SESSION_HDR.pack(s.command_id, s.num) + s.err.encode())
                store.stage_put(batch, _USED + _I64.pack(cmd.client_id), _U64.pack(s.last_used))
            out.append(res)
        return out

    def restored(self) -> None:
        expired = self.state.expired          # a counter of this process (/metrics)
        self.state = load_state(self.store)
        self.state.expired = expired
        self.cluster_id = _load_cluster_id(self.store)

    def query(self, num: int) -> Config:
        return self.state.query(num)
