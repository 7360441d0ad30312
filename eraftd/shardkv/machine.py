"""The shardkv replicated state machine over the group's GroupStore, and its byte formats.

Log entries (empty data is the leader's no-op), a kind byte then a protobuf message:
    b"T"  >Q stamp_ms >Q ttl_ms, then a b"L" entry: the proposing leader's time and session
                                        ttl (eraftd/sessions.py); its sessions expire by them
    b"L"  >Q max_value_bytes, then a b"C" or b"B" entry: client writes as proposed now, with
                                        the proposing leader's bound, so that every replica
                                        refuses the same appends (and takes eRaft's command
                                        id 0 as a command; a negative one is refused)
    b"C"  shardkvpb.CommandRequest      one eRaft client PUT / APPEND (bare: logged before b"L")
    b"M"  (>I length, CommandRequest)*  the eRaft clients' PUT / APPEND calls that one round
                                        took, each applied as its own b"C" (only inside b"L")
    b"B"  eraftkvpb.BatchRequest        many native-path writes of one client session (put,
                                        append, delete, cas; `expected` one per op or empty)
    b"N"  shardctrlerpb.Config          take the next configuration
    b"F"  shardctrlerpb.Config          take it as one that lists our gid with other servers
                                        (we own nothing in it: state.py, is_ours)
    b"A"  shardkvpb.ShardOperationRequest  stop waiting on shards abandoned after config_num
    b"I"  eraftmigrationpb.InsertChunk  one pulled chunk of an arriving shard: some of its
                                        sessions (in the first chunks, then none) and/or
                                        pairs; an entry from before chunked sessions has
                                        every session in its first chunk (pull_chunk);
                                        each session's idle time at the old owner (0, or
                                        from before: used on arrival)
    b"D"  shardkvpb.ShardOperationRequest  delete shards the new owner has (old owner)
    b"G"  shardkvpb.ShardOperationRequest  the old owner deleted them (new owner: GCING -> SERVING)

Group data (the GroupStore, so snapshots ship it as is):
    b"c" / b"p"                      current / previous configuration (shardctrlerpb.Config)
    b"f"                             present (b"1") when the current one is not ours (b"F")
    b"h" u32(shard)                  >Bqq status, keys, bytes, then the pull cursor
    b"t"                             >QQ the applied clock: the latest stamp, the first (ms)
    b"s" u32(shard) b"d" i64(client) session: b"U" >Q last_used, then >Q floor, then >Q per
                                     applied seq (only the writes that changed the data: see
                                     state.py on outcomes); a record from before expiry has
                                     no b"U" >Q (its length is a multiple of 8): never used
                                     since the first stamp (last_used 0)
    b"s" u32(shard) b"k" key         value
Everything of one shard but its state record is under b"s" u32(shard): one range delete
drops it (and compact_data gives the space back).  The machine keeps the state in memory
(state.ShardKVState) and reloads it at start and after a snapshot is installed; values are
read from RocksDB (the round's own writes from an overlay, the store shows committed data).
"""
from __future__ import annotations

import logging
import struct
from typing import Any, Callable, Iterable, Iterator

from google.protobuf.message import DecodeError

from .._pb import kvbatch_pb2 as kvpb
from .._pb import shardctrler_pb2 as ctlpb
from .._pb import shardkv_pb2 as pb
from .._pb import shardmigration_pb2 as migpb
from ..controller.machine import config_from_pb, config_to_pb
from ..controller.state import NSHARDS, Config, command_id_problem
from ..node.storage import CHUNK_HEADER_BYTES, CHUNK_PAIR_BYTES, decode_chunk, encode_chunk
from ..raft.messages import Entry
from ..sessions import AppliedClock, unstamp
from .state import OK, Session, Shard, ShardKVState, in_use_order

log = logging.getLogger("eraftd.shardkv")

ENTRY_COMMAND, ENTRY_BATCH, ENTRY_CONFIG = b"C", b"B", b"N"
ENTRY_INSERT, ENTRY_DELETE, ENTRY_GC_DONE = b"I", b"D", b"G"
ENTRY_FOREIGN_CONFIG, ENTRY_ABANDONED = b"F", b"A"
ENTRY_BOUNDED = b"L"
ENTRY_COMMANDS = b"M"

_CUR, _PREV, _FOREIGN, _CLOCK = b"c", b"p", b"f", b"t"
_USED = b"U"
_U32 = struct.Struct(">I").pack
_U32_UNPACK = struct.Struct(">I").unpack_from
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_META = struct.Struct(">Bqq")


class BadEntry(ValueError):
    """A log entry this machine cannot decode (never proposed by eraftd)."""


# ---------------------------------------------------------------- keys

def shard_prefix(shard: int) -> bytes:
    return b"s" + _U32(shard)


def shard_range(shard: int) -> tuple[bytes, bytes]:
    return shard_prefix(shard), shard_prefix(shard + 1)


def data_key(shard: int, key: bytes) -> bytes:
    return b"s" + _U32(shard) + b"k" + key


def _session_key(shard: int, client: int) -> bytes:
    return b"s" + _U32(shard) + b"d" + _I64.pack(client)


def _meta_key(shard: int) -> bytes:
    return b"h" + _U32(shard)


def encode_session(s: Session) -> bytes:
    return (_USED + _U64.pack(s.last_used) + _U64.pack(s.floor)
            + b"".join(_U64.pack(x) for x in sorted(s.applied)))


def decode_session(raw: bytes) -> Session:
    used = 0
    if len(raw) % 8 == 1 and raw[:1] == _USED:
        used = _U64.unpack_from(raw, 1)[0]
        raw = raw[9:]
    n = len(raw) // 8
    vals = struct.unpack(f">{n}Q", raw)
    return Session(vals[0], set(vals[1:]), used)


def session_to_pb(client: int, s: Session, now: int) -> migpb.Session:
    """A session as a pulled chunk carries it: its last use as the time it has been idle at
    `now` (the old owner's applied clock; 0: no time known, it counts as used on arrival)."""
    idle = now - s.last_used if now and s.last_used and now > s.last_used else 0
    return migpb.Session(client=client, floor=s.floor, applied=sorted(s.applied), idle_ms=idle)


def sessions_to_pb(sessions: dict[int, Session], now: int = 0) -> list[migpb.Session]:
    return [session_to_pb(c, s, now) for c, s in sorted(sessions.items())]


def sessions_from_pb(msgs: Iterable[migpb.Session]) -> dict[int, Session]:
    return {m.client: Session(m.floor, set(m.applied)) for m in msgs}


def sessions_idle(msgs: Iterable[migpb.Session]) -> dict[int, int]:
    """client -> how long it had been idle at the old owner (ms), for those that say."""
    return {m.client: m.idle_ms for m in msgs if m.idle_ms}


# ---------------------------------------------------------------- entries

def encode_config(cfg: Config, ours: bool = True) -> bytes:
    return ((ENTRY_CONFIG if ours else ENTRY_FOREIGN_CONFIG)
            + config_to_pb(cfg).SerializeToString(deterministic=True))


def encode_shard_op(kind: bytes, num: int, shards: Iterable[int]) -> bytes:
    return kind + pb.ShardOperationRequest(config_num=num, shard_ids=sorted(shards)).SerializeToString()


def encode_bounded(entry: bytes, max_value_bytes: int) -> bytes:
    """A client's b"C" or b"B" entry with the bound its appends apply with."""
    return ENTRY_BOUNDED + _U64.pack(max_value_bytes) + entry


def encode_commands(commands: list[bytes], max_value_bytes: int) -> bytes:
    """One entry of many serialized CommandRequests (the unary calls a round took), bounded;
    its result is the list of their results."""
    return encode_bounded(ENTRY_COMMANDS + b"".join(_U32(len(c)) + c for c in commands),
                          max_value_bytes)


def _commands(body: bytes) -> Iterable[pb.CommandRequest]:
    at, n = 0, len(body)
    while at < n:
        if at + 4 > n:
            raise ValueError("a command cut short")
        size = _U32_UNPACK(body, at)[0]
        at += 4
        if at + size > n:
            raise ValueError("a command cut short")
        yield pb.CommandRequest.FromString(body[at:at + size])
        at += size


def encode_insert(num: int, shard: int, cursor: bytes, resp: migpb.PullShardResponse) -> bytes:
    m = migpb.InsertChunk(config_num=num, shard=shard, cursor=cursor, next=resp.next,
                          kvs=resp.kvs, sessions=resp.sessions, done=resp.done)
    return ENTRY_INSERT + m.SerializeToString(deterministic=True)


def _ops_of_batch(req: kvpb.BatchRequest) -> Iterable[tuple]:
    n = len(req.ops)
    values = req.values if len(req.values) == n else [b""] * n
    seqs = req.seqs if len(req.seqs) == n else [0] * n
    if len(req.expected) == n and n:
        return zip(req.ops, req.keys, values, seqs, req.expected)
    return zip(req.ops, req.keys, values, seqs)


def _apply_command(st: ShardKVState, rnd: Any, c: pb.CommandRequest,
                   bound: int | None) -> list[tuple[str, bytes]]:
    """One eRaft client write; bound None: a b"C" logged before b"L", applied as it was then."""
    op = ((c.op, c.key.encode(), c.value.encode(), c.command_id),)
    if bound is None:
        return st.apply_ops(rnd, c.client_id, c.command_id, op)
    problem = command_id_problem(c.command_id)
    if problem:
        return [(problem, b"")]
    return st.apply_ops(rnd, c.client_id, c.command_id, op, bound, first_seq=0)


# ---------------------------------------------------------------- the round's view of the data

class _Round:
    """state.Store for one apply() call: writes are staged in the batch and kept in an
    overlay so that later commands of the same round read them (a deleted key: None)."""

    __slots__ = ("store", "batch", "pending", "cleared")

    def __init__(self, store: Any, batch: Any) -> None:
        self.store = store
        self.batch = batch
        self.pending: dict[bytes, bytes | None] = {}
        self.cleared: set[int] = set()

    def get(self, shard: int, key: bytes) -> bytes | None:
        k = b"s" + _U32(shard) + b"k" + key
        pending = self.pending
        if k in pending:
            return pending[k]
        if shard in self.cleared:
            return None
        return self.store.get(k)

    def put(self, shard: int, key: bytes, value: bytes) -> None:
        k = b"s" + _U32(shard) + b"k" + key
        self.pending[k] = value
        self.store.stage_put(self.batch, k, value)

    def delete(self, shard: int, key: bytes) -> None:
        k = b"s" + _U32(shard) + b"k" + key
        self.pending[k] = None
        self.store.stage_delete(self.batch, k)

    def clear(self, shard: int) -> None:
        lo, hi = shard_range(shard)
        self.store.stage_delete_range(self.batch, lo, hi)
        self.pending = {k: v for k, v in self.pending.items() if not lo <= k < hi}
        self.cleared.add(shard)


# ---------------------------------------------------------------- loading

def load_state(store: Any, gid: int, sessions: bool = True) -> ShardKVState:
    """The group's state as `store` (a GroupStore, or a SnapshotReader of one) holds it;
    sessions False: without the session tables (their counts, states and configs only)."""
    def config(key: bytes) -> Config:
        raw = store.get(key)
        return config_from_pb(ctlpb.Config.FromString(raw)) if raw is not None else Config()

    shards = []
    for i in range(NSHARDS):
        raw = store.get(_meta_key(i))
        sh = Shard()
        if raw is not None:
            sh.status, sh.keys, sh.bytes = _META.unpack_from(raw)
            sh.cursor = raw[_META.size:]
        p = shard_prefix(i) + b"d"
        sh.sessions = in_use_order({_I64.unpack(k[len(p):])[0]: decode_session(v)
                                    for k, v in (store.scan(p) if sessions else ())})
        shards.append(sh)
    return ShardKVState(gid, config(_CUR), config(_PREV), shards,
                        member=store.get(_FOREIGN) is None,
                        clock=AppliedClock.decode(store.get(_CLOCK)))


def scan_shard(store: Any, shard: int, cursor: bytes, max_bytes: int, prefix: bytes = b"",
               limit: int = 0, per_pair: int = 0) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
    """Up to about max_bytes (and `limit` pairs, 0 = any number) of the shard's pairs in
    `store` (a GroupStore or a SnapshotReader) whose keys start with `prefix`, after `cursor`
    (b"" = from the start), at least one: (pairs, next cursor, whether that was the last of
    them).  per_pair: bytes counted per pair beside its key and value (its framing in a chunk)."""
    base = shard_prefix(shard) + b"k"
    start = base + cursor[1:] + b"\x00" if cursor else base + prefix
    pairs: list[tuple[bytes, bytes]] = []
    size = 0
    n = len(base)
    for k, v in store.scan(base + prefix, start):
        if pairs and (size + len(k) + len(v) + per_pair > max_bytes or len(pairs) == limit):
            return pairs, b"k" + pairs[-1][0], False
        pairs.append((k[n:], v))
        size += len(k) + len(v) + per_pair
    return pairs, (b"k" + pairs[-1][0]) if pairs else cursor, True


def shard_copy(view: Any, gid: int, shard: int, max_bytes: int) -> tuple[ShardKVState, Iterator[bytes]] | None:
    """A served shard as `view` (a SnapshotReader: one applied index) holds it: the group's
    state there (configs, shard states, counts; no sessions) and the shard's pairs as
    encode_chunk chunks of about max_bytes; None when the group does not serve the shard at
    that index (not its owner, or still pulling it)."""
    st = load_state(view, gid, sessions=False)
    if not st.can_serve(shard):
        return None

    def chunks() -> Iterator[bytes]:
        cursor, done = b"", False
        while not done:
            pairs, cursor, done = scan_shard(view, shard, cursor, max_bytes - CHUNK_HEADER_BYTES,
                                             per_pair=CHUNK_PAIR_BYTES)
            if pairs:
                yield encode_chunk(pairs)
    return st, chunks()


# ---------------------------------------------------------------- the machine

class ShardKVMachine:
    """The StateMachine of a shardkv group.  Results per entry: a list of (err, value) for
    client operations, an err string for the others, None for no-ops."""

    def __init__(self, store: Any, gid: int,
                 on_cleared: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.store = store
        self.gid = gid
        self.state = load_state(store, gid)
        # how to run the space-reclaiming compaction of cleared shards (default: inline)
        self._on_cleared = on_cleared or (lambda fn: fn())

    def apply(self, entries: list[Entry], batch: Any) -> list[Any]:
        st = self.state
        rnd = _Round(self.store, batch)
        out: list[Any] = []
        for e in entries:
            data = e.data
            if not data:
                out.append(None)
                continue
            try:
                out.append(self._apply_one(st, rnd, data))
            except BadEntry as err:     # never proposed by eraftd; the same on every replica
                log.error("group %d: entry %d: %s", self.gid, e.index, err)
                out.append(str(err))
        self._persist(batch)
        if rnd.cleared:
            cleared = sorted(rnd.cleared)
            batch.on_commit(lambda: self._on_cleared(lambda: self._compact(cleared)))
        return out

    def _apply_one(self, st: ShardKVState, rnd: _Round, data: bytes) -> Any:
        try:
            stamp, ttl, data = unstamp(data)
        except ValueError as e:
            raise BadEntry(f"undecodable shardkv log entry: {e}") from None
        if stamp is not None:
            st.tick(stamp, ttl)
        kind, body = data[:1], data[1:]
        try:
            bound = None
            if kind == ENTRY_BOUNDED:
                if len(body) < _U64.size + 1 or body[_U64.size:_U64.size + 1] not in (
                        ENTRY_BATCH, ENTRY_COMMAND, ENTRY_COMMANDS):
                    raise ValueError("no client entry inside")
                bound = _U64.unpack_from(body)[0]
                kind, body = body[_U64.size:_U64.size + 1], body[_U64.size + 1:]
            if kind == ENTRY_BATCH:
                req = kvpb.BatchRequest.FromString(body)
                return st.apply_ops(rnd, req.session, req.floor, _ops_of_batch(req), bound,
                                    opened=req.opened if len(req.opened) == len(req.ops) else ())
            if kind == ENTRY_COMMAND:
                return _apply_command(st, rnd, pb.CommandRequest.FromString(body), bound)
            if kind == ENTRY_COMMANDS and bound is not None:
                return [_apply_command(st, rnd, c, bound) for c in list(_commands(body))]
            if kind in (ENTRY_CONFIG, ENTRY_FOREIGN_CONFIG):
                cfg = config_from_pb(ctlpb.Config.FromString(body))
                before = st.config
                err = st.apply_config(rnd, cfg, ours=kind == ENTRY_CONFIG)
                if err == OK:
                    log.info("group %d: configuration %d -> %d%s", self.gid, before.num, cfg.num,
                             "" if st.member else " (it lists gid %d with other servers: we "
                             "own nothing in it)" % self.gid)
                return err
            if kind == ENTRY_INSERT:
                m = migpb.InsertChunk.FromString(body)
                kvs = list(decode_chunk(m.kvs))      # all of it checked before anything applies
                return st.apply_insert(rnd, m.config_num, m.shard, m.cursor, m.next, kvs,
                                       sessions_from_pb(m.sessions), m.done,
                                       sessions_idle(m.sessions))
            if kind in (ENTRY_DELETE, ENTRY_GC_DONE, ENTRY_ABANDONED):
                m = pb.ShardOperationRequest.FromString(body)
                if kind == ENTRY_DELETE:
                    return st.apply_delete(rnd, m.config_num, m.shard_ids)
                if kind == ENTRY_ABANDONED:
                    return st.apply_abandoned(rnd, m.config_num, m.shard_ids)
                return st.apply_gc_done(m.config_num, m.shard_ids)
        except (DecodeError, ValueError) as e:      # a corrupt message, a bad chunk
            raise BadEntry(f"undecodable shardkv log entry of kind {kind!r}: {e}") from None
        raise BadEntry(f"not a shardkv log entry (kind {kind!r})")

    def _persist(self, batch: Any) -> None:
        st, store, d = self.state, self.store, self.state.dirty
        if d.configs:
            store.stage_put(batch, _CUR, config_to_pb(st.config).SerializeToString(deterministic=True))
            store.stage_put(batch, _PREV, config_to_pb(st.prev).SerializeToString(deterministic=True))
            if st.member:
                store.stage_delete(batch, _FOREIGN)
            else:
                store.stage_put(batch, _FOREIGN, b"1")
            d.configs = False
        if d.clock:
            store.stage_put(batch, _CLOCK, st.clock.encode())
            d.clock = False
        if d.shards:
            for i in d.shards:
                sh = st.shards[i]
                store.stage_put(batch, _meta_key(i), _META.pack(sh.status, sh.keys, sh.bytes) + sh.cursor)
            d.shards = set()
        if d.sessions:
            for shard, client in d.sessions:
                sess = st.shards[shard].sessions.get(client)
                if sess is None:                    # expired
                    store.stage_delete(batch, _session_key(shard, client))
                else:
                    store.stage_put(batch, _session_key(shard, client), encode_session(sess))
            d.sessions = set()

    def _compact(self, shards: list[int]) -> None:
        for s in shards:
            self.store.compact_data(*shard_range(s))

    def restored(self) -> None:
        expired = self.state.expired          # a counter of this process (/metrics)
        self.state = load_state(self.store, self.gid)
        self.state.expired = expired

    # ---------------------------------------------------------------- reads (committed data)
    def get(self, key: bytes) -> bytes | None:
        shard = key[0] % NSHARDS if key else 0
        return self.store.get(data_key(shard, key))

    def scan_shard(self, shard: int, cursor: bytes, max_bytes: int, prefix: bytes = b"",
                   limit: int = 0, per_pair: int = 0) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
        """scan_shard over the committed data."""
        return scan_shard(self.store, shard, cursor, max_bytes, prefix, limit, per_pair)

    def pull_chunk(self, shard: int, cursor: bytes, max_bytes: int,
                   chunked_sessions: bool = True) -> migpb.PullShardResponse:
        """The chunk of a frozen shard that follows `cursor` (PullShard's answer, err OK).

        chunked_sessions: the sessions come first, in client-key order, then the data, every
        chunk about max_bytes of both (a single bigger pair gets one of its own).  Cursors:
        b"" the start, b"d" + i64(client) after that session, b"e" after the last session,
        b"k" + key after that key.  Sessions are read from the store (sorted, and frozen
        like the data while the shard is BEPULLING), not from the in-memory table.
        Otherwise (a puller from before): every session with the first chunk, as then."""
        if not chunked_sessions:
            pairs, nxt, done = self.scan_shard(shard, cursor, max_bytes)
            sessions = (sessions_to_pb(self.state.shards[shard].sessions, self.state.clock.now)
                        if not cursor else [])
            return migpb.PullShardResponse(err=OK, kvs=encode_chunk(pairs), sessions=sessions,
                                           next=nxt, done=done)
        sessions: list[migpb.Session] = []
        size = 0
        now = self.state.clock.now
        if not cursor or cursor[:1] == b"d":
            base = shard_prefix(shard) + b"d"
            n = len(base)
            start = base + cursor[1:] + b"\x00" if cursor else base
            for k, v in self.store.scan(base, start):
                if size >= max_bytes:
                    return migpb.PullShardResponse(err=OK, kvs=encode_chunk(()), sessions=sessions,
                                                   next=b"d" + k_last, done=False,
                                                   chunked_sessions=True)
                m = session_to_pb(_I64.unpack(k[n:])[0], decode_session(v), now)
                sessions.append(m)
                size += m.ByteSize() + 4            # its tag and length in the message
                k_last = k[n:]
            cursor = b"e"
            if size >= max_bytes:
                return migpb.PullShardResponse(err=OK, kvs=encode_chunk(()), sessions=sessions,
                                               next=cursor, done=False, chunked_sessions=True)
        pairs, nxt, done = self.scan_shard(shard, b"" if cursor == b"e" else cursor,
                                           max_bytes - size - CHUNK_HEADER_BYTES,
                                           per_pair=CHUNK_PAIR_BYTES)
        return migpb.PullShardResponse(err=OK, kvs=encode_chunk(pairs), sessions=sessions,
                                       next=nxt or cursor, done=done, chunked_sessions=True)
