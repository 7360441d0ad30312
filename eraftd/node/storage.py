"""One RocksDB per node: every hosted Raft group's log, hard state, snapshot
position, applied index and state-machine data.

Key layout (big-endian fixed-width ints, so key order = numeric order)::

    b"I"                                  identity record (JSON): what the config says this
                                          data_dir belongs to, plus "node_uid" (below)
    b"g" u32(group) b"h"                  hard state        >QqQ  term, vote, commit
    b"g" u32(group) b"s"                  snapshot position >QQI  index, term, active generation
    b"g" u32(group) b"a"                  applied index     >Q
    b"g" u32(group) b"l" u64(index)       log entry         >QB   term, type  + data
    b"g" u32(group) b"d" u32(gen) key     state-machine data of generation `gen`

Group 0 is the controller group, gid > 0 a shardkv group.

The node uid: a random 64-bit id (never 0) drawn when a data_dir is first used
and kept in the identity record under "node_uid".  It names this data_dir, not
the config: it is left out of the comparison that refuses a data_dir created
for another config, survives every restart, and a data_dir written before uids
existed gets one on its next open.  A node that comes back with an empty disk
under the same address thus has a new uid.

Writes are *staged* into a Batch (one rocksdict WriteBatch plus, per touched
group, the pending in-memory change) and made durable by ONE NodeStore.write();
only after that write succeeds are the groups' in-memory views (log tail cache,
hard state, snapshot position, applied index, active generation) updated, so
the read side (the LogStorage protocol the Raft core uses, get/scan) only ever
shows what is on disk.  Several stage_* calls on one group in one batch
compose in order (e.g. install a snapshot, then append after it).

Snapshots of the state-machine data are generations: a received snapshot is
restored, chunk by chunk in bounded writes, into generation active+1, and
stage_install_snapshot switches the active generation in one small atomic
write; the old generation is deleted afterwards.  Anything in a generation
other than the active one is garbage and is removed on the next open, so a
restore that was never switched is invisible after a restart.

Before an existing data_dir is opened read-write, a read-only open reads every record once
(_verify: RocksDB checks each block's checksum on the way; about 0.6 s per million records):
a damaged file, a log with a hole, or a hard state that committed more than the log holds (a
lost WAL tail) is refused with one line and the directory is left byte-for-byte as it was.

rocksdict 0.3.29 caveat: Snapshot.iter()/items() do NOT read at the snapshot
(they see later writes); a plain iterator does pin a consistent view at its
creation, so SnapshotReader is built on one iterator.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import struct
import weakref
from typing import Callable, Iterable, Iterator

from rocksdict import AccessType, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from eraftd.raft.messages import (EMPTY_HARD_STATE, EMPTY_SNAPSHOT, Entry, HardState,
                                  SnapshotMeta)
from eraftd.raft.storage import CompactedError, UnavailableError, limit_size

__all__ = [
    "StorageError", "NodeStore", "GroupStore", "Batch", "Restore", "SnapshotReader",
    "encode_chunk", "decode_chunk", "chunk_counts", "StaleBatchError", "uid_text", "CHUNK_HEADER_BYTES",
    "CHUNK_PAIR_BYTES",
]

_U32 = struct.Struct(">I").pack
_U64 = struct.Struct(">Q").pack
_U64_unpack = struct.Struct(">Q").unpack
_ENTRY_HDR = struct.Struct(">QB")          # term, type; data follows
_ENTRY_HDR_pack = _ENTRY_HDR.pack
_ENTRY_HDR_unpack = _ENTRY_HDR.unpack_from
_HDR_LEN = _ENTRY_HDR.size
_HARD = struct.Struct(">QqQ")
_SNAP = struct.Struct(">QQI")
_PAIR = struct.Struct(">II")
_CHUNK_MAGIC = b"EKV1"
_CHUNK_HDR = struct.Struct(">4sI")          # magic, pair count
CHUNK_HEADER_BYTES = _CHUNK_HDR.size       # an encode_chunk's bytes beside its pairs'
CHUNK_PAIR_BYTES = _PAIR.size              # and per pair beside its key and value

_IDENTITY_KEY = b"I"
_PEER_UIDS_KEY = b"P"                      # peers' node uids (JSON: address -> uid)
_UID_FIELD = "node_uid"                    # the identity record's fields that are not the config's:
_CLUSTER_FIELD = "cluster_id"              # the data_dir's uid, the cluster it belongs to (0: none yet)
STORAGE_OPEN_FILES = 256   # RocksDB max_open_files: bounded, so the other descriptors can serve
                           # clients (eraftd/node/admission.py keeps this many and more for storage)
_CONFIG_FILE = "rocksdict-config.json"     # rewritten by rocksdict on every open, even a failed one
_RESTORE_BATCH_BYTES = 4 << 20             # bound on one restore write (it holds the GIL)
_POINT_DELETE_MAX = 64                     # truncations longer than this use delete_range

_new_entry = tuple.__new__                 # Entry without the NamedTuple constructor frame


class StorageError(Exception):
    """The node's storage cannot be used as it is; str() says why and what to do."""


class StaleBatchError(RuntimeError):
    """A batch was staged against a group state that another batch changed first."""


# ---------------------------------------------------------------------------
# chunk encoding of state-machine data (self-describing, portable between nodes)

def encode_chunk(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """b"EKV1" u32(count) then, per pair, u32(len key) u32(len value) key value."""
    parts = [b""]
    pack = _PAIR.pack
    n = 0
    for k, v in pairs:
        parts.append(pack(len(k), len(v)))
        parts.append(k)
        parts.append(v)
        n += 1
    parts[0] = _CHUNK_HDR.pack(_CHUNK_MAGIC, n)
    return b"".join(parts)


def chunk_counts(chunk: bytes) -> tuple[int, int]:
    """(pairs, bytes of their keys and values) of an encode_chunk chunk, without decoding it;
    (0, 0) for one too short to be a chunk."""
    if len(chunk) < _CHUNK_HDR.size:
        return 0, 0
    n = _CHUNK_HDR.unpack_from(chunk, 0)[1]
    return n, len(chunk) - _CHUNK_HDR.size - n * _PAIR.size


def decode_chunk(chunk: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) pairs of a chunk; ValueError if it is malformed."""
    mv = memoryview(chunk)
    if len(mv) < _CHUNK_HDR.size:
        raise ValueError("snapshot chunk too short")
    magic, n = _CHUNK_HDR.unpack_from(mv, 0)
    if magic != _CHUNK_MAGIC:
        raise ValueError(f"not a snapshot chunk (magic {bytes(magic)!r})")
    pos = _CHUNK_HDR.size
    end = len(mv)
    unpack = _PAIR.unpack_from
    for _ in range(n):
        if pos + 8 > end:
            raise ValueError("truncated snapshot chunk")
        kl, vl = unpack(mv, pos)
        pos += 8
        if pos + kl + vl > end:
            raise ValueError("truncated snapshot chunk")
        k = bytes(mv[pos:pos + kl])
        pos += kl
        v = bytes(mv[pos:pos + vl])
        pos += vl
        yield k, v
    if pos != end:
        raise ValueError("trailing bytes after snapshot chunk")


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with prefix (None: no bound)."""
    b = bytearray(prefix)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return None
    b[-1] += 1
    return bytes(b)


# ---------------------------------------------------------------------------

class Batch:
    """One atomic write: a rocksdict WriteBatch(raw_mode=True) plus the pending
    in-memory change of every group staged into it.  Pass it to the stage_*
    methods, then to NodeStore.write().  Reusable after a successful write."""

    __slots__ = ("raw", "_store", "_pending", "_hooks")

    def __init__(self, store: "NodeStore") -> None:
        self.raw = WriteBatch(raw_mode=True)
        self._store = store
        self._pending: dict[GroupStore, _Pending] = {}
        self._hooks: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return self.raw.len()

    def is_empty(self) -> bool:
        return not self._pending and not self._hooks and self.raw.is_empty()

    def size_in_bytes(self) -> int:
        return self.raw.size_in_bytes()

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Call fn() after this batch is durable and the caches are updated."""
        self._hooks.append(fn)

    def _reset(self) -> None:
        self.raw = WriteBatch(raw_mode=True)   # rocksdict consumes a written batch
        self._pending = {}
        self._hooks = []


class _LogView:
    """The log as it will be once the batch is written: committed entries
    (snap.index, base_last] followed by `new` (which ends at `last`)."""

    __slots__ = ("snap", "base_last", "new", "last")

    def __init__(self, snap: SnapshotMeta, last: int) -> None:
        self.snap = snap
        self.base_last = last
        self.new: list[Entry] = []
        self.last = last


class _Pending:
    """What one batch will change in one group.  The group state a staged
    change depends on is captured when first used, and checked at write()."""

    __slots__ = ("log", "log_version", "hs", "applied", "gen", "dp", "gen_used", "base_gen",
                 "new_gen", "old_gen", "restore")

    def __init__(self) -> None:
        self.log: _LogView | None = None
        self.log_version = 0
        self.hs: HardState | None = None
        self.applied: int | None = None
        self.gen = 0                    # the active generation as this batch will leave it
        self.dp = b""                   # its data prefix
        self.gen_used = False           # staged data / compaction / a switch: depends on the generation
        self.base_gen = 0
        self.new_gen: int | None = None
        self.old_gen: int | None = None
        self.restore: Restore | None = None

    def log_view(self, g: "GroupStore") -> _LogView:
        v = self.log
        if v is None:
            v = self.log = _LogView(g._snap, g._last)
            self.log_version = g._log_version
        return v

    def use_gen(self, g: "GroupStore") -> bytes:
        if not self.gen_used:
            self.gen_used = True
            self.base_gen = self.gen = g._gen
            self.dp = g._dp
        return self.dp


# ---------------------------------------------------------------------------

class NodeStore:
    """The node's single RocksDB.  Open with NodeStore.open()."""

    def __init__(self, db: Rdict, data_dir: str, identity: dict, node_uid: int, fsync: bool,
                 cache_entries: int, cache_bytes: int) -> None:
        self._db = db
        self.data_dir = data_dir
        self.identity = identity            # as the config gives it (without the uid)
        self.node_uid = node_uid            # this data_dir's random 64-bit id (module docstring)
        self.cluster_id = 0                 # the cluster it belongs to; 0: not known yet
        self.fsync = fsync
        self._wopts = WriteOptions()
        self._wopts.sync = fsync
        self._wopts_nosync = WriteOptions()
        self._wopts_nosync.sync = False
        self._cache_entries = cache_entries
        self._cache_bytes = cache_bytes
        self._groups: dict[int, GroupStore] = {}
        self._closed = False
        self._failed = False                # a write or fsync failed (close() says nothing more)
        # open iterators keep RocksDB (and its LOCK) alive: close() closes them first
        self._live: weakref.WeakSet = weakref.WeakSet()

    # -- opening -----------------------------------------------------------
    @classmethod
    def open(cls, data_dir: str, identity: dict, fsync: bool = True, *,
             cache_entries: int = 4096, cache_bytes: int = 4 << 20) -> "NodeStore":
        """Open (or create) the node's store at data_dir.

        First start: create the directory and record `identity` with a new
        random node uid.  Later starts: the recorded identity (its uid left
        out) must equal `identity`, else StorageError and nothing is written;
        the recorded uid is kept (and one is added to a record that predates
        uids).  A data_dir that is not an eraftd RocksDB directory is refused
        (StorageError), never repaired or created over.  cache_entries /
        cache_bytes bound each group's in-memory log tail."""
        path = os.fspath(data_dir)
        try:
            want = json.loads(json.dumps(identity, sort_keys=True))
        except (TypeError, ValueError) as e:
            raise ValueError(f"identity must be JSON-serialisable: {e}") from None
        if not isinstance(want, dict) or _UID_FIELD in want:
            raise ValueError(f"identity must be a dict without {_UID_FIELD!r} (the store draws the uid)")

        if os.path.lexists(path) and not os.path.isdir(path):
            raise StorageError(f"data_dir {path} exists but is not a directory; "
                               f"point data_dir at a directory")
        uid: int | None = None                  # None: draw one (first start, or a record from before uids)
        cluster = 0
        if os.path.isdir(path):
            try:
                names = os.listdir(path)
            except OSError as e:
                raise StorageError(f"data_dir {path} cannot be read ({e.strerror}); "
                                   f"fix its permissions or use another data_dir") from None
            if names:
                _check_rocksdb_dir(path, names)
                stored, others = _probe(path)
                if stored is None and others:
                    raise StorageError(
                        f"data_dir {path} holds data but no (readable) identity record; it was not "
                        f"created by eraftd or is damaged; use a fresh data_dir (or restore a backup)")
                if stored is not None:
                    uid = _stored_uid(path, stored)
                    cluster = _stored_cluster(path, stored)
                    if stored != want:
                        raise StorageError(_identity_mismatch(path, stored, want))
                # no record at all: an empty database, a first start that never finished
        else:
            try:
                os.makedirs(path)
            except OSError as e:
                raise StorageError(f"data_dir {path} cannot be created ({e.strerror}); "
                                   f"fix the path or its parent's permissions") from None

        db = _open_rw(path, create=not os.path.exists(os.path.join(path, "CURRENT")))
        if uid is None:
            uid = secrets.randbelow((1 << 64) - 1) + 1
            wo = WriteOptions()
            wo.sync = True
            db.put(_IDENTITY_KEY, json.dumps({**want, _UID_FIELD: uid}, sort_keys=True).encode(), wo)
        store = cls(db, path, want, uid, fsync, cache_entries, cache_bytes)
        store.cluster_id = cluster
        return store

    def set_cluster_id(self, cluster_id: int) -> None:
        """Record the cluster this data_dir belongs to (once; eraftd/node/cluster.py)."""
        self._check_open()
        if not 0 < cluster_id < 1 << 64:
            raise ValueError(f"cluster id {cluster_id} out of range")
        rec = {**self.identity, _UID_FIELD: self.node_uid, _CLUSTER_FIELD: cluster_id}
        wo = WriteOptions()
        wo.sync = True
        self._db.put(_IDENTITY_KEY, json.dumps(rec, sort_keys=True).encode(), wo)
        self.cluster_id = cluster_id

    # -- groups ----------------------------------------------------------
    def group(self, group: int) -> "GroupStore":
        g = self._groups.get(group)
        if g is None:
            if not (0 <= group < 1 << 32):
                raise ValueError(f"group id {group} out of range")
            self._check_open()
            g = self._groups[group] = GroupStore(self, group)
        return g

    def group_ids(self) -> list[int]:
        """Ids of the groups that have anything stored (e.g. to rebuild after a restart)."""
        self._check_open()
        out = []
        it = self._db.iter()
        it.seek(b"g")
        while it.valid():
            k = it.key()
            if len(k) < 5 or k[:1] != b"g":
                break
            gid = struct.unpack(">I", k[1:5])[0]
            out.append(gid)
            if gid == 0xFFFFFFFF:
                break
            it.seek(b"g" + _U32(gid + 1))
        return out

    # -- peers' node uids (eraftd/node/driver.py: check_peer) -------------
    def load_peer_uids(self) -> tuple[dict[str, int], dict[int, dict[str, str]]]:
        """(address -> node uid last known there, gid -> {refused member address: why})."""
        raw = self._db.get(_PEER_UIDS_KEY)
        if raw is None:
            return {}, {}
        try:
            d = json.loads(raw)
            return ({str(k): int(v) for k, v in d["uids"].items()},
                    {int(g): {str(a): str(w) for a, w in r.items()}
                     for g, r in d.get("refused", {}).items()})
        except (ValueError, AttributeError, KeyError, TypeError):
            return {}, {}  # unreadable: learn them again (refusals start anew)

    def save_peer_uids(self, uids: dict[str, int], refused: dict[int, dict[str, str]]) -> None:
        self._check_open()
        rec = {"uids": uids, "refused": {str(g): r for g, r in refused.items()}}
        self._db.put(_PEER_UIDS_KEY, json.dumps(rec, sort_keys=True).encode(), self._wopts)

    # -- writing ---------------------------------------------------------
    def new_batch(self) -> Batch:
        return Batch(self)

    def write(self, batch: Batch, sync: bool = True) -> None:
        """Write the batch in ONE RocksDB write (synced when fsync, unless sync=False), then
        update the in-memory view of every group it touched and run its on_commit hooks.

        write(batch, sync=False) followed by sync_wal() is the same durability in two steps:
        the second releases the GIL while the disk works (the driver runs it in a thread)."""
        if batch._store is not self:
            raise ValueError("batch belongs to another NodeStore")
        self._check_open()
        pending = batch._pending
        for g, p in pending.items():
            if p.log is not None and p.log_version != g._log_version:
                raise StaleBatchError(f"group {g.gid}: log changed by another batch since this "
                                      f"batch was staged; stage a fresh batch")
            if p.restore is not None and p.restore._state != "staged":
                raise StaleBatchError(f"group {g.gid}: the restore staged in this batch was "
                                      f"aborted; stage a fresh batch")
            if p.gen_used and p.base_gen != g._gen:
                raise StaleBatchError(f"group {g.gid}: snapshot installed by another batch since "
                                      f"this batch was staged; stage a fresh batch")
        if not batch.raw.is_empty():
            opts = self._wopts if sync else self._wopts_nosync
            try:
                self._db.write(batch.raw, opts)
            except Exception as e:
                self._failed = True
                raise StorageError(f"data_dir {self.data_dir}: write failed ({e}); "
                                   f"check the disk (space, permissions) and restart") from e
        hooks = batch._hooks
        batch._reset()
        for g, p in pending.items():
            g._commit(p)
        for fn in hooks:
            fn()

    def sync_wal(self) -> None:
        """Make every earlier write durable (fsync of the write-ahead log; no-op without
        fsync).  Safe to call from another thread; rocksdict releases the GIL meanwhile."""
        if not self.fsync:
            return
        self._check_open()
        try:
            self._db.flush_wal(True)
        except Exception as e:
            self._failed = True
            raise StorageError(f"data_dir {self.data_dir}: fsync failed ({e}); "
                               f"check the disk and restart") from e

    # -- snapshots / misc ------------------------------------------------
    def snapshot_reader(self, group: int) -> "SnapshotReader":
        return self.group(group).snapshot_reader()

    def size_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.data_dir):
            for f in files:
                try:
                    total += os.stat(os.path.join(root, f)).st_size
                except OSError:
                    pass
        return total

    def close(self) -> None:
        """Close the database; unfinished scans, readers and chunk iterators end.  After a
        failed write RocksDB's close reports that error again: it was reported already."""
        if not self._closed:
            self._closed = True
            for obj in list(self._live):
                obj.close()
            try:
                self._db.close()
            except Exception as e:
                if not self._failed:
                    raise StorageError(f"data_dir {self.data_dir}: closing failed ({_one_line(e)}); "
                                       f"check the disk and restart") from None

    def _track(self, obj):
        self._live.add(obj)
        return obj

    def __enter__(self) -> "NodeStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"data_dir {self.data_dir}: store is closed")


# ---------------------------------------------------------------------------

class GroupStore:
    """One Raft group's slice of the node store.  Implements
    eraftd.raft.storage.LogStorage with MemoryStorage's semantics."""

    def __init__(self, store: NodeStore, gid: int) -> None:
        self._store = store
        self._db = store._db
        self.gid = gid
        gp = self._gp = b"g" + _U32(gid)
        self._hk = gp + b"h"
        self._sk = gp + b"s"
        self._ak = gp + b"a"
        self._lp = gp + b"l"
        self._lend = gp + b"m"                 # end of the log key range
        self._max_entries = max(1, store._cache_entries)
        self._max_bytes = max(1, store._cache_bytes)
        self._log_version = 0
        self._restore: Restore | None = None
        self._load()

    # -- recovery ----------------------------------------------------------
    def _load(self) -> None:
        db = self._db
        raw = db.get(self._hk)
        self._hs = HardState(*_HARD.unpack(raw)) if raw is not None else EMPTY_HARD_STATE
        raw = db.get(self._sk)
        if raw is not None:
            idx, term, gen = _SNAP.unpack(raw)
            self._snap = SnapshotMeta(idx, term)
        else:
            self._snap, gen = EMPTY_SNAPSHOT, 0
        self._set_gen(gen)
        raw = db.get(self._ak)
        self._applied = max(_U64_unpack(raw)[0] if raw is not None else 0, self._snap.index)

        # the log: first and last key, then the recent tail into the cache
        # (rocksdict 0.3.29 ignores iterate_lower_bound: check keys by hand)
        ro = ReadOptions()
        ro.set_iterate_upper_bound(self._lend)
        it = db.iter(ro)
        it.seek_to_last()
        if it.valid() and it.key().startswith(self._lp):
            last = _U64_unpack(it.key()[-8:])[0]
            it.seek(self._lp)
            first = _U64_unpack(it.key()[-8:])[0]
            if first != self._snap.index + 1:
                raise StorageError(
                    f"data_dir {self._store.data_dir}: group {self.gid}'s log starts at {first} but "
                    f"its snapshot is at {self._snap.index}; the data is damaged; use a fresh "
                    f"data_dir (the group will catch up from its peers)")
        else:
            last = self._snap.index
        self._last = last
        lo = max(self._snap.index + 1, last - self._max_entries + 1)
        self._cache: list[Entry] = self._read_db(lo, last + 1, None) if lo <= last else []
        self._cache_lo = lo
        self._cache_bytes = sum(len(e[2]) for e in self._cache)
        self._evict()

        self._cleanup_generations()

    def _set_gen(self, gen: int) -> None:
        self._gen = gen
        self._dp = self._gp + b"d" + _U32(gen)

    def _gen_prefix(self, gen: int) -> bytes:
        return self._gp + b"d" + _U32(gen)

    def _cleanup_generations(self) -> None:
        """Delete data of every generation but the active one (an old one whose
        lazy delete was lost, or a restore that was never switched)."""
        db = self._db
        lo, act, nxt, end = (self._gp + b"d", self._dp, self._gen_prefix(self._gen + 1),
                             self._gp + b"e")
        for a, b in ((lo, act), (nxt, end)):
            ro = ReadOptions()
            ro.set_iterate_upper_bound(b)
            it = db.iter(ro)
            it.seek(a)
            if it.valid():
                db.delete_range(a, b, self._store._wopts_nosync)

    # -- LogStorage (read side) -------------------------------------------
    def initial_state(self) -> tuple[HardState, SnapshotMeta]:
        return self._hs, self._snap

    def hard_state(self) -> HardState:
        return self._hs

    def first_index(self) -> int:
        return self._snap.index + 1

    def last_index(self) -> int:
        return self._last

    def snapshot(self) -> SnapshotMeta:
        """The log's snapshot position (what the log was compacted to / installed)."""
        return self._snap

    def term(self, index: int) -> int:
        i = index - self._cache_lo
        if i >= 0:
            if index > self._last:
                raise UnavailableError(index)
            return self._cache[i][0]
        snap = self._snap
        if index == snap.index:
            return snap.term
        if index < snap.index:
            raise CompactedError(index)
        raw = self._db.get(self._lp + _U64(index))
        if raw is None:
            raise self._missing(index)
        return _ENTRY_HDR_unpack(raw)[0]

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        if lo <= self._snap.index:
            raise CompactedError(lo)
        if hi > self._last + 1:
            raise UnavailableError(hi)
        if lo >= hi:
            return []
        clo = self._cache_lo
        if lo >= clo:
            return limit_size(self._cache[lo - clo:hi - clo], max_bytes)
        out = self._read_db(lo, min(hi, clo), max_bytes)
        if hi <= clo or len(out) < min(hi, clo) - lo:
            return out
        total = sum(len(e[2]) + 16 for e in out)
        for e in self._cache[:hi - clo]:
            total += len(e[2]) + 16
            if total > max_bytes:
                break
            out.append(e)
        return out

    def _read_db(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        """Entries [lo, hi) from RocksDB, limit_size'd to max_bytes (None: no limit)."""
        ro = ReadOptions()
        ro.set_iterate_upper_bound(self._lp + _U64(hi))
        out: list[Entry] = []
        total = 0
        expect = lo
        append = out.append
        for k, v in self._db.items(from_key=self._lp + _U64(lo), read_opt=ro):
            if _U64_unpack(k[-8:])[0] != expect:
                raise self._missing(expect)
            term, typ = _ENTRY_HDR_unpack(v)
            data = v[_HDR_LEN:]
            if max_bytes is not None:
                total += len(data) + 16
                if total > max_bytes and out:
                    return out
            append(_new_entry(Entry, (term, expect, data, typ)))
            expect += 1
        if expect != hi:
            raise self._missing(expect)
        return out

    def _missing(self, index: int) -> StorageError:
        return StorageError(f"data_dir {self._store.data_dir}: group {self.gid}'s log entry "
                            f"{index} is missing from disk; the data is damaged; use a fresh "
                            f"data_dir (the group will catch up from its peers)")

    # -- staging -----------------------------------------------------------
    def _p(self, batch: Batch) -> _Pending:
        if batch._store is not self._store:
            raise ValueError("batch belongs to another NodeStore")
        p = batch._pending.get(self)
        if p is None:
            p = batch._pending[self] = _Pending()
        return p

    def stage_append(self, batch: Batch, entries: list[Entry]) -> None:
        """Append entries, truncating any conflicting suffix from entries[0].index
        (MemoryStorage.append semantics, ValueError on a gap)."""
        if not entries:
            return
        p = self._p(batch)
        v = p.log_view(self)
        first = v.snap.index + 1
        if entries[-1][1] < first:
            return
        if entries[0][1] < first:
            entries = entries[first - entries[0][1]:]
        i0 = entries[0][1]
        if i0 > v.last + 1:
            raise ValueError(f"missing log entry: last {v.last}, appending at {i0}")
        new_last = entries[-1][1]
        lp = self._lp
        put = batch.raw.put
        hdr = _ENTRY_HDR_pack
        u64 = _U64
        for e in entries:
            put(lp + u64(e[1]), hdr(e[0], e[3]) + e[2])
        if new_last < v.last:
            self._stage_delete_log(batch, new_last + 1, v.last + 1)
        if i0 <= v.base_last:
            v.base_last = i0 - 1
            v.new = list(entries)
        else:
            k = i0 - v.base_last - 1
            if k < len(v.new):
                del v.new[k:]
            v.new.extend(entries)
        v.last = new_last

    def _stage_delete_log(self, batch: Batch, lo: int, hi: int) -> None:
        if hi - lo <= _POINT_DELETE_MAX:
            delete = batch.raw.delete
            for i in range(lo, hi):
                delete(self._lp + _U64(i))
        else:
            batch.raw.delete_range(self._lp + _U64(lo), self._lp + _U64(hi))

    def stage_hard_state(self, batch: Batch, hs: HardState) -> None:
        p = self._p(batch)
        batch.raw.put(self._hk, _HARD.pack(hs.term, hs.vote, hs.commit))
        p.hs = HardState(*hs)

    def stage_applied(self, batch: Batch, index: int) -> None:
        p = self._p(batch)
        batch.raw.put(self._ak, _U64(index))
        p.applied = index

    def applied_index(self) -> int:
        return self._applied

    def stage_compact(self, batch: Batch, index: int) -> None:
        """Record the snapshot position (index, term(index)) and delete the log
        entries <= index.  index must be applied (else ValueError); index <=
        the current snapshot is a no-op; index > last_index: UnavailableError."""
        p = self._p(batch)
        v = p.log_view(self)
        if index <= v.snap.index:
            return
        if index > v.last:
            raise UnavailableError(index)
        applied = p.applied if p.applied is not None else self._applied
        if index > applied:
            raise ValueError(f"compact index {index} is beyond the applied index {applied}")
        term = self._view_term(v, index)
        p.use_gen(self)
        batch.raw.put(self._sk, _SNAP.pack(index, term, p.gen))
        batch.raw.delete_range(self._lp, self._lp + _U64(index + 1))
        v.snap = SnapshotMeta(index, term)
        if index > v.base_last:
            del v.new[:index - v.base_last]
            v.base_last = index

    def _view_term(self, v: _LogView, index: int) -> int:
        if index == v.snap.index:
            return v.snap.term
        if index < v.snap.index:
            raise CompactedError(index)
        if index > v.last:
            raise UnavailableError(index)
        if index > v.base_last:
            return v.new[index - v.base_last - 1][0]
        return self.term(index)

    # -- state-machine data ------------------------------------------------
    def stage_put(self, batch: Batch, key: bytes, value: bytes) -> None:
        p = batch._pending.get(self) or self._p(batch)
        batch.raw.put((p.dp if p.gen_used else p.use_gen(self)) + key, value)

    def stage_delete(self, batch: Batch, key: bytes) -> None:
        p = batch._pending.get(self) or self._p(batch)
        batch.raw.delete((p.dp if p.gen_used else p.use_gen(self)) + key)

    def stage_delete_range(self, batch: Batch, lo: bytes, hi: bytes) -> None:
        """Delete every state-machine key in [lo, hi) (one range tombstone); writes staged
        after it in the same batch survive.  Disk space comes back on compaction: compact_data."""
        if hi <= lo:
            return
        p = batch._pending.get(self) or self._p(batch)
        dp = p.dp if p.gen_used else p.use_gen(self)
        batch.raw.delete_range(dp + lo, dp + hi)

    def compact_data(self, lo: bytes, hi: bytes) -> None:
        """Compact the committed state-machine keys in [lo, hi) and the deleted (compacted)
        part of this group's log now, so that deleted data leaves the disk (the memtable is
        flushed and obsolete WAL files go).  Storage housekeeping only: nothing visible
        changes.  Call it after the batch that deleted the range was written."""
        self._store._check_open()
        db = self._db
        db.compact_range(self._dp + lo, self._dp + hi)
        db.compact_range(self._lp, self._lp + _U64(self._snap.index + 1))

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(self._dp + key)

    def scan(self, prefix: bytes = b"", start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of the committed data with keys starting with prefix, from
        `start` (inclusive) on, in key order."""
        return self._store._track(self._scan(prefix, start))

    def _scan(self, prefix: bytes, start: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        dp = self._dp
        lo = dp + prefix
        if start is not None and start > prefix:
            lo = dp + start
        end = _prefix_end(prefix)
        hi = dp + end if end is not None else self._gen_prefix(self._gen + 1)
        ro = ReadOptions()
        ro.set_iterate_upper_bound(hi)
        n = len(dp)
        for k, v in self._db.items(from_key=lo, read_opt=ro):
            yield k[n:], v

    # -- snapshots ---------------------------------------------------------
    def snapshot_meta_now(self) -> SnapshotMeta:
        """The position of the state machine right now: (applied, term(applied))."""
        a = self._applied
        return SnapshotMeta(a, self.term(a))

    def snapshot_reader(self) -> "SnapshotReader":
        return SnapshotReader(self)

    def snapshot_chunks(self, max_bytes: int = 1 << 20) -> tuple[SnapshotMeta, Iterator[bytes]]:
        """A consistent point-in-time copy of the state-machine data at the applied
        index: (meta, chunks).  Each chunk (see encode_chunk) is at most about
        max_bytes (a single bigger pair gets a chunk of its own); at least one
        chunk, possibly with no pairs, is produced."""
        r = SnapshotReader(self)
        return r.meta, r.chunks(max_bytes)

    def begin_restore(self) -> "Restore":
        """Start receiving a snapshot into the staging generation (cleared first).
        A previous unfinished restore of this group is superseded."""
        old = self._restore
        if old is not None:
            if old._state == "staged":
                raise ValueError(f"group {self.gid}: a snapshot install is staged in a batch not yet "
                                 f"written; write that batch or abort() its restore first")
            old._state = "superseded"
        r = self._restore = Restore(self, self._gen + 1)
        self._db.delete_range(r._prefix, self._gen_prefix(r.gen + 1), self._store._wopts_nosync)
        return r

    def stage_install_snapshot(self, batch: Batch, restore: "Restore", meta: SnapshotMeta) -> bool:
        """The atomic switch to a restored snapshot: active generation = the
        restore's, snapshot position = meta, applied = meta.index, and the whole
        log dropped (first_index = meta.index + 1).  Returns False (and stages
        nothing) if meta is not newer than the log's snapshot position, like
        MemoryStorage.apply_snapshot; the caller may then abort the restore."""
        if restore._group is not self or restore._state != "open" or self._restore is not restore:
            raise ValueError(f"group {self.gid}: restore is not the active one "
                             f"(state {restore._state})")
        p = self._p(batch)
        if p.new_gen is not None:
            raise ValueError(f"group {self.gid}: a snapshot is already staged in this batch")
        if restore.gen != self._gen + 1:
            raise ValueError(f"group {self.gid}: restore targets generation {restore.gen} but the "
                             f"active generation is {self._gen}")
        v = p.log_view(self)
        meta = SnapshotMeta(*meta)
        if meta.index <= v.snap.index:
            return False
        raw = batch.raw
        raw.delete_range(self._lp, self._lend)
        raw.put(self._sk, _SNAP.pack(meta.index, meta.term, restore.gen))
        raw.put(self._ak, _U64(meta.index))
        p.applied = meta.index
        p.use_gen(self)
        p.old_gen = p.gen
        p.new_gen = p.gen = restore.gen
        p.dp = restore._prefix
        p.restore = restore
        restore._state = "staged"
        v.snap = meta
        v.base_last = v.last = meta.index
        v.new = []
        return True

    # -- after a successful write -----------------------------------------
    def _commit(self, p: _Pending) -> None:
        v = p.log
        if v is not None:
            cache = self._cache
            if v.base_last < self._last:                       # truncated suffix
                k = v.base_last + 1 - self._cache_lo
                if k <= 0:
                    cache.clear()
                    self._cache_bytes = 0
                    self._cache_lo = v.base_last + 1
                else:
                    self._cache_bytes -= sum(len(e[2]) for e in cache[k:])
                    del cache[k:]
            snap = v.snap
            if snap != self._snap:                             # compacted / installed
                drop = snap.index + 1 - self._cache_lo
                if drop > 0:
                    if drop >= len(cache):
                        cache.clear()
                        self._cache_bytes = 0
                    else:
                        self._cache_bytes -= sum(len(e[2]) for e in cache[:drop])
                        del cache[:drop]
                    self._cache_lo = snap.index + 1
                self._snap = snap
            new = v.new
            if new:
                cache.extend(new)
                self._cache_bytes += sum(len(e[2]) for e in new)
            self._last = v.last
            self._log_version += 1
            if len(cache) > self._max_entries or self._cache_bytes > self._max_bytes:
                self._evict()
        if p.hs is not None:
            self._hs = p.hs
        if p.applied is not None:
            self._applied = p.applied
        if p.new_gen is not None:
            old = p.old_gen if p.old_gen is not None else self._gen
            self._set_gen(p.new_gen)
            if p.restore is not None:
                p.restore._state = "installed"
                if self._restore is p.restore:
                    self._restore = None
            # the old generation is garbage now (and cleaned on open if this is lost)
            self._db.delete_range(self._gen_prefix(old), self._gen_prefix(old + 1),
                                  self._store._wopts_nosync)

    def _evict(self) -> None:
        """Trim the cache from the front to 3/4 of its bounds."""
        cache = self._cache
        if len(cache) <= self._max_entries and self._cache_bytes <= self._max_bytes:
            return
        keep_n = self._max_entries * 3 // 4
        keep_b = self._max_bytes * 3 // 4
        n = len(cache)
        drop = max(0, n - keep_n)
        nbytes = self._cache_bytes - sum(len(e[2]) for e in cache[:drop])
        while drop < n and nbytes > keep_b:
            nbytes -= len(cache[drop][2])
            drop += 1
        del cache[:drop]
        self._cache_bytes = nbytes
        self._cache_lo += drop

    def __repr__(self) -> str:
        return (f"<GroupStore {self.gid} snap={tuple(self._snap)} last={self._last} "
                f"applied={self._applied} gen={self._gen} hs={tuple(self._hs)}>")


# ---------------------------------------------------------------------------

class SnapshotReader:
    """A consistent point-in-time view of one group's state-machine data, with
    `meta` = (applied, term(applied)) at that point.  Built on one pinned
    RocksDB iterator: use one scan()/chunks() at a time."""

    def __init__(self, g: GroupStore) -> None:
        self.meta = g.snapshot_meta_now()
        self.group = g.gid
        self._dp = g._dp
        ro = ReadOptions()
        ro.set_iterate_upper_bound(g._gen_prefix(g._gen + 1))
        self._ro = ro
        self._it = g._db.iter(ro)      # pins the view now (before any later write)
        self._it.seek(self._dp)        # materialise it
        self._track = g._store._track
        self._gens: list = []
        self._track(self)

    def get(self, key: bytes) -> bytes | None:
        it = self._it
        k = self._dp + key
        it.seek(k)
        if it.valid() and it.key() == k:
            return it.value()
        return None

    def scan(self, prefix: bytes = b"", start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        if self._it is None:
            raise ValueError("snapshot reader is closed")
        gen = self._scan(prefix, start)
        self._gens.append(weakref.ref(gen))
        return gen

    def _scan(self, prefix: bytes, start: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        it = self._it
        dp = self._dp
        n = len(dp)
        lo = dp + (start if start is not None and start > prefix else prefix)
        end = _prefix_end(prefix)
        hi = dp + end if end is not None else None
        it.seek(lo)
        while it.valid():
            k = it.key()
            if hi is not None and k >= hi:
                break
            yield k[n:], it.value()
            it.next()

    def chunks(self, max_bytes: int = 1 << 20) -> Iterator[bytes]:
        """The whole data as encode_chunk chunks; closes the reader at the end."""
        if self._it is None:
            raise ValueError("snapshot reader is closed")
        gen = self._chunks(max_bytes)
        self._gens.append(weakref.ref(gen))
        return gen

    def _chunks(self, max_bytes: int) -> Iterator[bytes]:
        pairs: list[tuple[bytes, bytes]] = []
        size = _CHUNK_HDR.size
        produced = False
        for k, v in self._scan(b"", None):
            n = len(k) + len(v) + 8
            if pairs and size + n > max_bytes:
                yield encode_chunk(pairs)
                produced = True
                pairs = []
                size = _CHUNK_HDR.size
            pairs.append((k, v))
            size += n
        if pairs or not produced:
            yield encode_chunk(pairs)
        self._it = None  # type: ignore[assignment]   # release the pinned view

    def close(self) -> None:
        gens, self._gens = self._gens, []
        for ref in gens:
            gen = ref()
            if gen is not None and not gen.gi_running:
                gen.close()
        self._it = None  # type: ignore[assignment]

    def __enter__(self) -> "SnapshotReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Restore:
    """Receiving a snapshot: chunks go into the staging generation (invisible
    until stage_install_snapshot switches to it) in bounded, unsynced writes;
    the synced switch write makes them durable (the WAL is sequential).

    state: open -> staged (stage_install_snapshot) -> installed (batch written);
    or aborted (abort(), also of a staged one: that batch's write then fails)
    or superseded (a later begin_restore, refused while one is staged)."""

    def __init__(self, g: GroupStore, gen: int) -> None:
        self._group = g
        self.gen = gen
        self._prefix = g._gen_prefix(gen)
        self._state = "open"
        self.pairs = 0
        self.bytes = 0

    @property
    def state(self) -> str:
        return self._state

    def get(self, key: bytes) -> bytes | None:
        """A key of the data received so far (before the install switches to it)."""
        return self._group._db.get(self._prefix + key)

    def add_chunk(self, chunk: bytes) -> None:
        g = self._group
        if self._state != "open" or g._restore is not self:
            raise ValueError(f"group {g.gid}: restore is not active (state {self._state})")
        db = g._db
        wo = g._store._wopts_nosync
        prefix = self._prefix
        wb = WriteBatch(raw_mode=True)
        size = 0
        for k, v in decode_chunk(chunk):   # validates as it goes; a bad chunk raises ValueError
            wb.put(prefix + k, v)
            size += len(k) + len(v) + 24
            self.pairs += 1
            self.bytes += len(k) + len(v)
            if size >= _RESTORE_BATCH_BYTES:
                db.write(wb, wo)
                wb = WriteBatch(raw_mode=True)
                size = 0
        if not wb.is_empty():
            db.write(wb, wo)

    def abort(self) -> None:
        g = self._group
        if self._state in ("open", "staged"):
            self._state = "aborted"
            if g._restore is self:
                g._restore = None
                g._db.delete_range(self._prefix, g._gen_prefix(self.gen + 1), g._store._wopts_nosync)


# ---------------------------------------------------------------------------
# opening helpers

_CURRENT_RE = re.compile(rb"(MANIFEST-[0-9]+)\n")


def _check_rocksdb_dir(path: str, names: list[str]) -> None:
    """Refuse a non-empty directory that is not a RocksDB database, touching nothing."""
    if "CURRENT" not in names:
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise StorageError(f"data_dir {path} is not empty and holds no RocksDB database "
                           f"(found {shown}); point data_dir at an empty or new directory")
    try:
        with open(os.path.join(path, "CURRENT"), "rb") as f:
            current = f.read(4096)
    except OSError as e:
        raise StorageError(f"data_dir {path}: cannot read CURRENT ({e.strerror}); "
                           f"fix permissions or use a fresh data_dir") from None
    m = _CURRENT_RE.fullmatch(current)
    if m is None:
        raise StorageError(f"data_dir {path} is damaged (its CURRENT file is not a RocksDB "
                           f"manifest pointer); restore a backup or use a fresh data_dir")
    if m.group(1).decode() not in names:
        raise StorageError(f"data_dir {path} is damaged ({m.group(1).decode()} named by CURRENT "
                           f"is missing); restore a backup or use a fresh data_dir")


class _LeaveAsFound:
    """rocksdict (re)writes rocksdict-config.json on every open attempt, even a
    failed one: put the directory's top-level entries back as they were."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cfg = os.path.join(path, _CONFIG_FILE)

    def __enter__(self) -> "_LeaveAsFound":
        self.before = set(os.listdir(self.path))
        try:
            st = os.stat(self.cfg)
            with open(self.cfg, "rb") as f:
                self.cfg_data = f.read()
            self.cfg_times = (st.st_atime_ns, st.st_mtime_ns)
        except FileNotFoundError:
            self.cfg_data = None
        return self

    def restore(self) -> None:
        try:
            if self.cfg_data is None:
                if os.path.exists(self.cfg):
                    os.remove(self.cfg)
            else:
                with open(self.cfg, "rb") as f:
                    now = f.read()
                if now != self.cfg_data:
                    with open(self.cfg, "wb") as f:
                        f.write(self.cfg_data)
                os.utime(self.cfg, ns=self.cfg_times)
            for name in set(os.listdir(self.path)) - self.before:
                if name in ("LOCK", "LOG"):
                    os.remove(os.path.join(self.path, name))
        except OSError:
            pass

    def __exit__(self, *exc) -> None:
        pass


def _options(create: bool) -> Options:
    o = Options(raw_mode=True)
    o.create_if_missing(create)
    o.set_keep_log_file_num(4)
    o.set_max_background_jobs(2)
    o.set_max_open_files(STORAGE_OPEN_FILES)
    return o


def _probe(path: str) -> tuple[dict | None, bool]:
    """Read the identity record with a read-only open that leaves the directory
    as it was.  Returns (identity or None, whether any other key exists)."""
    with _LeaveAsFound(path) as guard:
        try:
            db = Rdict(path, _options(False), access_type=AccessType.read_only(False))
        except Exception as e:
            guard.restore()
            raise StorageError(f"data_dir {path} cannot be opened as a RocksDB database "
                               f"({_one_line(e)}); restore a backup or use a fresh data_dir") from None
        try:
            raw = db.get(_IDENTITY_KEY)
            groups, others = _verify(db, path)
        finally:
            db.close()
            guard.restore()
    if raw is None:
        return None, others
    try:
        stored = json.loads(raw)
        if not isinstance(stored, dict):
            raise ValueError("not an object")
    except ValueError:
        raise StorageError(f"data_dir {path}: its identity record is unreadable; the data is "
                           f"damaged or not eraftd's; use a fresh data_dir") from None
    for gid, g in sorted(groups.items()):
        if problem := g.problem():
            where = "ctrl" if gid == 0 else str(gid)
            raise StorageError(
                f"data_dir {path}: group {gid}: {problem}: its disk lost data (nothing was "
                f"changed); start this node with a fresh data_dir, then replace it with "
                f"`eraftd member replace {where} {stored.get('advertise', 'ADDR')}`")
    return stored, others


class _GroupScan:
    """What a full read of the store saw of one group's records (see _verify)."""

    __slots__ = ("hs", "snap", "first", "last", "gap", "bad")

    def __init__(self) -> None:
        self.hs = EMPTY_HARD_STATE
        self.snap = 0
        self.first = self.last = 0
        self.gap: tuple[int, int] | None = None      # (expected, found) at the first hole
        self.bad: str | None = None                  # an unreadable record

    def problem(self) -> str | None:
        """Whether the hard state claims more than the log holds (a lost WAL tail, a lost SST)."""
        if self.bad is not None:
            return self.bad
        if self.gap is not None:
            return f"its log has no entry {self.gap[0]} (the next one is {self.gap[1]})"
        if self.first and self.first != self.snap + 1:
            return f"its log starts at {self.first} but its snapshot is at {self.snap}"
        end = max(self.last, self.snap)
        if self.hs.commit > end:
            return f"the log ends at {end} but this node had committed {self.hs.commit}"
        return None


def _verify(db: Rdict, path: str) -> tuple[dict[int, "_GroupScan"], bool]:
    """Read every record once (each block's checksum is checked on the way: a damaged file is
    found here, read-only, not half-way through a read-write start), noting each group's hard
    state, snapshot position and log bounds.  Returns (groups, whether any key but the identity
    record exists); StorageError when RocksDB reports damage."""
    ro = ReadOptions()
    ro.fill_cache(False)
    ro.set_verify_checksums(True)
    it = db.iter(ro)
    groups: dict[int, _GroupScan] = {}
    others = False
    try:
        it.seek_to_first()
        while it.valid():
            k = it.key()
            if k != _IDENTITY_KEY:
                others = True
            if len(k) >= 6 and k[:1] == b"g":
                g = groups.get(gid := struct.unpack(">I", k[1:5])[0])
                if g is None:
                    g = groups[gid] = _GroupScan()
                kind = k[5:6]
                if kind == b"l" and len(k) == 14:
                    idx = _U64_unpack(k[6:])[0]
                    if g.last and idx != g.last + 1 and g.gap is None:
                        g.gap = (g.last + 1, idx)
                    g.first = g.first or idx
                    g.last = idx
                elif kind in (b"h", b"s") and len(k) == 6:
                    raw = it.value()
                    if len(raw) != (_HARD if kind == b"h" else _SNAP).size:
                        g.bad = f"its {'hard state' if kind == b'h' else 'snapshot'} record is unreadable"
                    elif kind == b"h":
                        g.hs = HardState(*_HARD.unpack(raw))
                    else:
                        g.snap = _SNAP.unpack(raw)[0]
            it.next()
        it.status()
    except Exception as e:              # rocksdict raises plain Exception ("Corruption: ...")
        raise StorageError(f"data_dir {path} is damaged ({_one_line(e)}); nothing was changed; "
                           f"restore a backup, or start this node with a fresh data_dir and "
                           f"replace it with `eraftd member replace`") from None
    finally:
        del it
    return groups, others


def _open_rw(path: str, create: bool) -> Rdict:
    with _LeaveAsFound(path) as guard:
        try:
            return Rdict(path, _options(create))
        except Exception as e:
            guard.restore()
            msg = _one_line(e)
            if "lock" in msg.lower():
                raise StorageError(f"data_dir {path} is in use by another eraftd process (or is "
                                   f"already open in this one) ({msg}); stop it or use another "
                                   f"data_dir") from None
            raise StorageError(f"data_dir {path} cannot be opened as a RocksDB database ({msg}); "
                               f"restore a backup or use a fresh data_dir") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _stored_uid(path: str, stored: dict) -> int | None:
    """Take the node uid out of a recorded identity (which is then the config's part only);
    None when the record predates uids."""
    uid = stored.pop(_UID_FIELD, None)
    if uid is not None and not (isinstance(uid, int) and not isinstance(uid, bool) and 0 < uid < 1 << 64):
        raise StorageError(f"data_dir {path}: its identity record has an invalid {_UID_FIELD} "
                           f"({json.dumps(uid)}); the data is damaged; use a fresh data_dir")
    return uid


def _stored_cluster(path: str, stored: dict) -> int:
    """Take the cluster id out of a recorded identity; 0 when none was recorded yet."""
    cid = stored.pop(_CLUSTER_FIELD, 0)
    if not (isinstance(cid, int) and not isinstance(cid, bool) and 0 <= cid < 1 << 64):
        raise StorageError(f"data_dir {path}: its identity record has an invalid {_CLUSTER_FIELD} "
                           f"({json.dumps(cid)}); the data is damaged; use a fresh data_dir")
    return cid


def uid_text(uid: int) -> str:
    """A node uid as people see it (logs, status): 16 hex digits."""
    return f"{uid:016x}"


def _identity_mismatch(path: str, stored: dict, want: dict) -> str:
    keys = sorted(k for k in set(stored) | set(want) if stored.get(k, _ABSENT) != want.get(k, _ABSENT))

    def show(d: dict) -> str:
        return ", ".join(f"{k}={d[k]!r}" if k in d else f"{k}=<unset>" for k in keys)

    return (f"data_dir {path} was created for {show(stored)}; the config now says {show(want)}; "
            f"use the matching config or a fresh data_dir")


_ABSENT = object()
