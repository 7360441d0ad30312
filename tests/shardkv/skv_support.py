"""Shared helpers of the shardkv tests: a dict Store for the pure state, a machine over a real
NodeStore, configs, fixtures."""
from __future__ import annotations

import asyncio

import pytest

from eraftd._pb import shardkv_pb2 as pb
from eraftd._pb import shardkv_pb2_grpc as pb_grpc
from eraftd.controller.state import NSHARDS, Config
from eraftd.node.storage import NodeStore
from eraftd.raft.messages import Entry
from eraftd.shardkv.machine import ShardKVMachine, data_key
from eraftd.testing import ShardedCluster, wait_for


class DictStore:
    """state.Store over a dict {(shard, key): value}."""

    def __init__(self) -> None:
        self.data: dict[tuple[int, bytes], bytes] = {}
        self.cleared: list[int] = []

    def get(self, shard: int, key: bytes) -> bytes | None:
        return self.data.get((shard, key))

    def put(self, shard: int, key: bytes, value: bytes) -> None:
        self.data[(shard, key)] = value

    def delete(self, shard: int, key: bytes) -> None:
        del self.data[(shard, key)]

    def clear(self, shard: int) -> None:
        self.cleared.append(shard)
        self.data = {k: v for k, v in self.data.items() if k[0] != shard}

    def shard(self, shard: int) -> dict[bytes, bytes]:
        return {k: v for (s, k), v in sorted(self.data.items()) if s == shard}


class Harness:
    """A machine of group `gid` over its own NodeStore; apply() runs one round like the driver does."""

    def __init__(self, path, gid: int = 100) -> None:
        self.path = str(path)
        self.gid = gid
        self.store = NodeStore.open(self.path, {"advertise": "127.0.0.1:7001", "roles": ["shardkv"],
                                                "gid": gid}, fsync=False)
        self.g = self.store.group(gid)
        self.m = ShardKVMachine(self.g, gid)
        self.index = self.g.applied_index()

    def apply(self, *datas: bytes) -> list:
        b = self.store.new_batch()
        entries = []
        for d in datas:
            self.index += 1
            entries.append(Entry(1, self.index, d))
        self.g.stage_append(b, entries)
        res = self.m.apply(entries, b)
        self.g.stage_applied(b, self.index)
        self.store.write(b)
        return res

    def install_snapshot_from(self, src: "Harness") -> None:
        """Take src's snapshot, as a follower that lagged does, and reload the machine."""
        from eraftd.raft.messages import SnapshotMeta
        meta, chunks = src.g.snapshot_chunks()
        r = self.g.begin_restore()
        for c in chunks:
            r.add_chunk(c)
        b = self.store.new_batch()
        assert self.g.stage_install_snapshot(b, r, SnapshotMeta(meta.index, 1))
        self.store.write(b)
        self.m.restored()
        self.index = meta.index

    def reopen(self) -> "Harness":
        self.store.close()
        return Harness(self.path, self.gid)

    def close(self) -> None:
        self.store.close()


def config(num: int, shards: list[int] | tuple[int, ...], groups: dict[int, tuple[str, ...]] | None = None) -> Config:
    if groups is None:
        groups = {g: (f"g{g}",) for g in set(shards) if g}
    return Config(num, tuple(shards), groups)


def key_in(shard: int, suffix: str = "") -> bytes:
    """A key of the given shard (key2shard = first byte mod NSHARDS)."""
    return bytes([ord("0") + (shard - ord("0")) % NSHARDS]) + suffix.encode()


@pytest.fixture
def sharded(request, tmp_path):
    """make(**kw) -> a ShardedCluster; every process it starts is killed at the end.
    Parametrized indirectly with a bool (test_skv_e2e.py), it says whether the clusters use TLS."""
    made: list[ShardedCluster] = []
    tls = bool(getattr(request, "param", False))

    def make(**kw) -> ShardedCluster:
        kw.setdefault("tls", tls)
        c = ShardedCluster(tmp_path / f"s{len(made)}", **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()
    for c in made:          # no node may have hit an unexpected error
        for n in c.nodes:
            text = n.log_text()
            assert "Traceback" not in text and " ERROR " not in text, f"{n.name}:\n{text[-3000:]}"


def skv_status(node, timeout: float = 1.0):
    """A replica's ShardKVService.GetStatus (synchronous)."""
    return pb_grpc.ShardKVServiceStub(node.channel()).GetStatus(pb.GetStatusRequest(), timeout=timeout)


def group_shards(c: ShardedCluster, gid: int) -> dict[int, str] | None:
    """shard -> status at gid's leader, or None when it has no leader now."""
    leader = c.leader(gid)
    if leader is None:
        return None
    return {s.shard_id: s.status for s in skv_status(leader).shards}


def wait_settled(c: ShardedCluster, owners: dict[int, list[int]], timeout: float = 60) -> None:
    """Wait until each gid's leader holds exactly the shards given, all Serving."""
    def ok():
        return all(group_shards(c, gid) == {s: "Serving" for s in shards}
                   for gid, shards in owners.items())
    wait_for(ok, timeout, f"shards to settle as {owners}")


async def check_all(kv, expect: dict[str, str]) -> None:
    """Every key has its expected value (read concurrently through the clerk)."""
    got = await asyncio.gather(*(kv.get(k) for k in expect))
    wrong = {k: (v, expect[k]) for k, v in zip(expect, got) if v != expect[k].encode()}
    assert not wrong, f"{len(wrong)} of {len(expect)} keys differ (got, wanted): {dict(list(wrong.items())[:5])}"


async def in_thread(fn, *args):
    """Run a blocking harness call (start, kill, wait_for, ...) off the event loop."""
    return await asyncio.to_thread(fn, *args)


def fill_shard(h: Harness, shard: int, sessions: int, keys: int, batch: int = 100_000) -> None:
    """Write `sessions` sessions (clients 1..sessions, one applied seq each) and `keys` keys
    of 8-byte values straight into the SERVING shard's records, then reload the machine: a
    shard that a million one-shot clients used, built in seconds rather than a million
    entries.  The shard's state record counts the keys and bytes as apply_ops would."""
    from eraftd.shardkv.machine import _META, _meta_key, _session_key, encode_session
    from eraftd.shardkv.state import SERVING, Session

    def write(records) -> None:
        b = h.store.new_batch()
        for k, v in records:
            h.g.stage_put(b, k, v)
        h.store.write(b, sync=False)

    for lo in range(1, sessions + 1, batch):
        write((_session_key(shard, c), encode_session(Session(2, {2})))
              for c in range(lo, min(lo + batch, sessions + 1)))
    size = 0
    for lo in range(0, keys, batch):
        pairs = [(key_in(shard, "k%07d" % i), b"v%07d" % i) for i in range(lo, min(lo + batch, keys))]
        size += sum(len(k) + len(v) for k, v in pairs)
        write((data_key(shard, k), v) for k, v in pairs)
    write([(_meta_key(shard), _META.pack(SERVING, keys, size))])
    h.m.restored()
