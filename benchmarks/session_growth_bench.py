"""Storage of a shard after many one-shot clients: with session expiry it stays flat.

    python benchmarks/session_growth_bench.py [--clients 1000000] [--ttl-ms 10000]
                                              [--rate 1000] [--every 100000] [--per-round 500]

The shardkv state machine over a real NodeStore (RocksDB, fsync off), driven as the node's
driver does (rounds of entries, one WriteBatch each), without processes so that a million
clients take a minute, not hours: each one-shot client is a new session that writes one key
(of 1,000, all in shard 3) once, in a leader-stamped entry (eraftd/sessions.py); `--rate`
clients per second of the stamped (applied) clock.  Every --every clients it prints the
shard's session count, the bytes of its session records (scanned from RocksDB) and the CPU
seconds so far.  With expiry the count settles at about ttl x rate (10 s x 1,000/s = 10,000)
and the records (key and value, 39 bytes each) at that many, whatever the number of clients;
without it (what eraftd did before: --ttl-ms 0 here means no stamps, so nothing expires)
both grow with every client (1,000,000 sessions: 39 MB of records for one shard, and the
table travels with the shard when it migrates).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eraftd._pb import kvbatch_pb2 as kvpb  # noqa: E402
from eraftd.controller.state import NSHARDS, Config  # noqa: E402
from eraftd.node.storage import NodeStore  # noqa: E402
from eraftd.raft.messages import Entry  # noqa: E402
from eraftd.sessions import stamp_entry  # noqa: E402
from eraftd.shardkv.machine import (ENTRY_BATCH, ShardKVMachine, encode_bounded,  # noqa: E402
                                    encode_config, shard_prefix)
from eraftd.shardkv.state import PUT  # noqa: E402

GID = 100
SHARD = 3
T0 = 1_700_000_000_000


def session_bytes(g) -> tuple[int, int]:
    n = size = 0
    for k, v in g.scan(shard_prefix(SHARD) + b"d"):
        n += 1
        size += len(k) + len(v)
    return n, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=1_000_000)
    ap.add_argument("--ttl-ms", type=int, default=10_000, help="0: no stamps (no expiry)")
    ap.add_argument("--rate", type=int, default=1000, help="clients per second of applied time")
    ap.add_argument("--every", type=int, default=100_000)
    ap.add_argument("--per-round", type=int, default=500)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = NodeStore.open(str(Path(d) / "data"), {"advertise": "127.0.0.1:1",
                                                       "roles": ["shardkv"], "gid": GID}, fsync=False)
        g = store.group(GID)
        m = ShardKVMachine(g, GID)
        index = 0

        def round_(datas: list[bytes]) -> None:
            nonlocal index
            entries = []
            for data in datas:
                index += 1
                entries.append(Entry(1, index, data))
            b = store.new_batch()
            g.stage_append(b, entries)
            m.apply(entries, b)
            g.stage_applied(b, index)
            store.write(b, sync=False)

        round_([encode_config(Config(1, (GID,) * NSHARDS, {GID: ("g",)}))])
        key = bytes([ord("0") + (SHARD - ord("0")) % NSHARDS])
        cpu0 = time.process_time()
        print(f"{'clients':>9} {'sessions':>9} {'session bytes':>14} {'cpu s':>7}  "
              f"(ttl {a.ttl_ms or 'none'} ms, {a.rate} clients/s)")
        pending: list[bytes] = []
        for i in range(1, a.clients + 1):
            req = kvpb.BatchRequest(session=i, floor=1, ops=[PUT], keys=[key + b"k%d" % (i % 1000)],
                                    values=[b"v"], seqs=[1])
            entry = encode_bounded(ENTRY_BATCH + req.SerializeToString(), 1 << 20)
            if a.ttl_ms:
                entry = stamp_entry(T0 + i * 1000 // a.rate, a.ttl_ms, entry)
            pending.append(entry)
            if len(pending) >= a.per_round:
                round_(pending)
                pending = []
            if i % a.every == 0:
                if pending:
                    round_(pending)
                    pending = []
                n, size = session_bytes(g)
                assert n == len(m.state.shards[SHARD].sessions)
                print(f"{i:>9} {n:>9} {size:>14} {time.process_time() - cpu0:>7.1f}", flush=True)
        store.close()


if __name__ == "__main__":
    main()
