"""Issue 17 item 3 (admission control), on real processes: big client batches sent straight
over gRPC are answered "busy" or served, never decoded past the node's budgets; the group keeps
its leader (its heartbeats flow) and the leader's memory stays bounded."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import resource
import socket
import subprocess

import grpc
import pytest
from skv_support import sharded  # noqa: F401

from eraftd._pb import kvbatch_pb2 as kvpb
from eraftd._pb import kvbatch_pb2_grpc as kvpb_grpc
from eraftd._pb import shardkv_pb2 as pb
from eraftd._pb import shardkv_pb2_grpc as pb_grpc
from eraftd.config import dump_toml
from eraftd.controller.client import ControllerClient
from eraftd.node import admission
from eraftd.node.admission import open_connections
from eraftd.node.storage import STORAGE_OPEN_FILES
from eraftd.node.transport import channel_options
from eraftd.shardkv.clerk import Clerk
from eraftd.shardkv.unary import UnaryClerk
from eraftd.testing import eraftd_command, wait_for

pytestmark = pytest.mark.e2e

G = 100
MiB = 1 << 20
VALUE = b"v" * (MiB - 64)                 # under the default max_value_bytes (1 MiB)
# The leader's peak RSS (VmHWM) while it is sent 60 MiB, then 8 x 40 MiB, then rounds of
# 8 x 20 MiB at once.  An idle node is ~70-90 MB.  gRPC receives every request whole before
# admission sees it (up to 8 x 40 MiB here, plus its Python copy), and the admitted 64 MiB
# cost a few times their size on the way to the log (decoded, entries, appends to two
# followers, the write batch): ~470 MB measured.  Without admission the same load took
# 1.67 GB (and, with 64 MiB admitted at once, already 640 MB and an election).
RSS_BOUND_KB = 800_000


def vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def elections(nodes) -> dict[str, tuple[int, int]]:
    """(leader_changes, elections) of group G at each replica."""
    out = {}
    for n in nodes:
        g = n.group_status(G, timeout=5)
        out[n.name] = (g.leader_changes, g.elections)
    return out


def puts(prefix: str, n: int) -> kvpb.BatchRequest:
    return kvpb.BatchRequest(ops=[kvpb.PUT] * n, keys=[f"{prefix}-{i}".encode() for i in range(n)],
                             values=[VALUE] * n)


def all_at_once(address: str, requests: list[kvpb.BatchRequest]) -> list[kvpb.BatchResponse]:
    """Each request on its own connection, all sent at once."""
    channels = [grpc.insecure_channel(address, options=channel_options()) for _ in requests]
    try:
        for ch in channels:
            grpc.channel_ready_future(ch).result(timeout=30)
        with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
            calls = [pool.submit(kvpb_grpc.KVBatchStub(ch).Batch, r, timeout=120)
                     for ch, r in zip(channels, requests)]
            return [f.result() for f in calls]
    finally:
        for ch in channels:
            ch.close()


def test_big_batches_are_busy_or_served_and_the_leader_stays(sharded):  # noqa: F811
    # election timeout 2 s, not the test clusters' 0.5 s: on a machine at load 8 (CI shared with
    # other jobs) decoding an admitted 20 MiB batch alone can hold a replica's loop past 0.5 s;
    # what this test shows is that the admitted volume is bounded, not the machine's speed
    c = sharded(gids=(G,), controllers=1, raft={"heartbeat_ms": 100, "election_ms": 2000}).start()

    async def join():
        async with ControllerClient(c.controller_addresses()) as ctl:
            await ctl.join({G: c.addresses(G)})
    asyncio.run(join())
    leader = c.wait_leader(G)
    stub = kvpb_grpc.KVBatchStub(leader.channel())
    wait_for(lambda: list(stub.Batch(puts("warm", 1), timeout=10).codes) == [kvpb.OK], 60,
             "group 100 to serve")
    before = elections(c.group(G))

    # one 60 MiB batch: more than one connection may ever have in flight; refused undecoded
    r = stub.Batch(puts("huge", 60), timeout=60)
    assert r.err.startswith("a request of 60.0 MiB is more than this node takes from one "
                            "connection (24 MiB, [node] max_inflight_bytes_per_connection)"), r.err
    assert not r.codes

    # 8 concurrent 40 MiB batches: the same, each
    for r in all_at_once(leader.address, [puts(f"big{i}", 40) for i in range(8)]):
        assert r.err.startswith("a request of 40.0 MiB is more than"), r.err

    # 8 concurrent 20 MiB batches: within a connection's budget, but 160 MiB in all: some are
    # served (every put OK), the others answered busy; rounds until one was busy
    served: list[str] = []
    busy = 0
    for rnd in range(5):
        prefixes = [f"r{rnd}b{i}" for i in range(8)]
        for p, r in zip(prefixes, all_at_once(leader.address, [puts(p, 20) for p in prefixes])):
            if r.err:
                assert r.err.startswith("node busy: ") and r.err.endswith("retry after a pause"), r.err
                busy += 1
            else:
                assert list(r.codes) == [kvpb.OK] * 20, r
                served.append(p)
        if busy:
            break
    assert busy and served, (busy, served)

    # what was served is there
    for p in served[:3]:
        got = stub.Batch(kvpb.BatchRequest(ops=[kvpb.GET] * 2, keys=[f"{p}-0".encode(),
                                                                      f"{p}-19".encode()]),
                         timeout=30)
        assert list(got.codes) == [kvpb.OK, kvpb.OK] and list(got.values) == [VALUE, VALUE]

    # eRaft's unary Command is admitted the same way: a small one goes through, a 30 MiB one
    # is refused in words (busy would be ErrTimeout, which eRaft's clerks retry)
    unary = pb_grpc.ShardKVServiceStub(leader.channel())
    assert unary.Command(pb.CommandRequest(key="u", value="1", op=pb.PUT, client_id=5,
                                           command_id=1), timeout=10).err == "OK"
    r = unary.Command(pb.CommandRequest(key="u", value="x" * (30 * MiB), op=pb.PUT, client_id=5,
                                        command_id=2), timeout=30)
    assert r.err.startswith("a request of 30.0 MiB is more than this node takes"), r.err[:200]

    # a batch of very many small operations is refused before any is looked at
    r = stub.Batch(kvpb.BatchRequest(ops=[kvpb.GET] * 10_001, keys=[b"k"] * 10_001), timeout=30)
    assert r.err == "a batch of 10001 operations is more than one call takes (10000); send " \
                    "smaller batches" and not r.codes

    # the group kept its leader: no node saw a leader change or started an election
    assert elections(c.group(G)) == before
    assert c.leader(G) is leader
    hwm = vm_hwm_kb(leader.proc.pid)
    print(f"leader VmHWM {hwm} kB; {busy} busy, {len(served)} served")
    assert hwm < RSS_BOUND_KB, hwm
    assert "refusing client requests: node busy" in leader.log_text()


def test_clients_retry_busy_answers_until_they_are_served(sharded):  # noqa: F811
    """A node with a 2 MiB budget and many clients writing 1 MiB values at once: the native
    Clerk retries the busy answer (a plain-words err) with back-off, the UnaryClerk retries
    eRaft's ErrTimeout; every write lands."""
    per_connection = (1 << 20) + 4096 + (64 << 10)       # one key and one value at the limits
    c = sharded(gids=(G,), controllers=1)
    for n in c.group(G):
        n.config["node"].update(max_inflight_bytes=2 * MiB,
                                max_inflight_bytes_per_connection=per_connection)
        n.toml.write_text(dump_toml(n.config))
    c.start()
    ctrl = c.controller_addresses()
    value = b"w" * (MiB - 16)

    async def work():
        async with ControllerClient(ctrl) as ctl:
            await ctl.join({G: c.addresses(G)})
        clerks = [Clerk(ctrl, total_timeout=60) for _ in range(6)]
        channels: dict = {}
        async with ControllerClient(ctrl) as ctl:
            unary = [UnaryClerk(ctl, channels, timeout=60) for _ in range(3)]
            try:
                async def in_turn(i: int, kv: UnaryClerk) -> None:
                    for j in range(3):             # a UnaryClerk has one command in flight
                        await kv.put(f"u{i}-{j}", value.decode())
                await asyncio.gather(
                    *(kv.put(f"n{i}-{j}".encode(), value) for i, kv in enumerate(clerks)
                      for j in range(4)),
                    *(in_turn(i, kv) for i, kv in enumerate(unary)))
                got = await asyncio.gather(*(clerks[0].get(f"n{i}-{j}".encode())
                                             for i in range(6) for j in range(4)))
                assert got == [value] * 24
                assert [await unary[0].get(f"u{i}-{j}") for i in range(3) for j in range(3)] \
                    == [value.decode()] * 9
            finally:
                for kv in clerks:
                    await kv.close()
                for ch in channels.values():
                    await ch.close()
    asyncio.run(work())
    leader = c.leader(G)
    assert "refusing client requests: node busy" in leader.log_text()


def start_with_open_files(node, nofile: int) -> None:
    """node.start(), with RLIMIT_NOFILE soft = hard = nofile (as after `ulimit -n nofile`)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    with open(node.log_path, "ab") as logf:
        node.proc = subprocess.Popen(eraftd_command() + ["run", "--config", str(node.toml)],
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True, cwd=node.dir, preexec_fn=limit)


def test_idle_connections_past_the_open_file_limit_do_not_stop_the_leader(sharded):  # noqa: F811
    """Issue 17 item 6: 1,100 idle connections to a leader started with `ulimit -n 1024`. The
    cap (the limit minus the reserve for storage and the node) closes the ones beyond it at
    once, storage keeps its descriptors, writes go on, the cap is logged (once a minute);
    connections that never speak HTTP/2 are closed after the handshake timeout, idle gRPC
    connections after connection_idle_ms, and then new clients get in."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"the test opens 1,100 sockets; its hard open-file limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    cap = 1024 - admission.STORAGE_RESERVE - admission.NODE_RESERVE
    c = sharded(gids=(G,), controllers=1)
    for n in c.group(G):
        n.config["node"]["connection_idle_ms"] = 5000
        n.toml.write_text(dump_toml(n.config))
        start_with_open_files(n, 1024)
    c.start()
    ctrl = c.controller_addresses()
    socks: list[socket.socket] = []
    idle: list[grpc.Channel] = []
    try:
        async def first_writes():
            async with ControllerClient(ctrl) as ctl:
                await ctl.join({G: c.addresses(G)})
        asyncio.run(first_writes())
        leader = c.wait_leader(G)
        host, port = leader.address.rsplit(":", 1)
        kv_stub = kvpb_grpc.KVBatchStub(leader.channel())      # connected before the flood
        wait_for(lambda: list(kv_stub.Batch(puts("before", 1), timeout=10).codes) == [kvpb.OK],
                 60, "group 100 to serve")
        for _ in range(10):                          # idle gRPC clients: connected, no calls
            ch = grpc.insecure_channel(leader.address)
            grpc.channel_ready_future(ch).result(timeout=30)
            idle.append(ch)
        for _ in range(1100):                        # and connections that never say a word
            socks.append(socket.create_connection((host, int(port)), timeout=10))
        wait_for(lambda: open_connections(leader.address) >= cap, 60, "the connections to arrive")

        # writes on a connection made before go on, at the leader, during the flood: 80 MiB,
        # past RocksDB's 64 MiB memtable, so that it opens a new WAL and an SST file
        for i in range(40):
            r = kv_stub.Batch(puts(f"during{i}", 2), timeout=30)
            assert r.err == "" and list(r.codes) == [kvpb.OK] * 2, r.err
        wait_for(lambda: "connection cap reached" in leader.log_text(), 60, "the cap's log line")
        line = next(ln for ln in leader.log_text().splitlines() if "connection cap reached" in ln)
        assert f"the cap is {cap} ([node] max_connections; open-file limit 1024" in line, line
        # the connections past the cap were closed at once: storage has its descriptors
        free = 1024 - len(os.listdir(f"/proc/{leader.proc.pid}/fd"))
        assert free >= STORAGE_OPEN_FILES, free

        # the silent ones are closed after the handshake timeout, the idle gRPC ones after
        # connection_idle_ms: a new client gets in
        def new_client_writes():
            ch = grpc.insecure_channel(leader.address, options=channel_options())
            try:
                r = kvpb_grpc.KVBatchStub(ch).Batch(puts("after", 1), timeout=5)
                return r.err == "" and list(r.codes) == [kvpb.OK]
            finally:
                ch.close()
        wait_for(new_client_writes, 60, "a new client to get in")
        wait_for(lambda: open_connections(leader.address) < 50, 60, "idle connections to close")
        assert all(n.running() for n in c.group(G)), [n.exit_code() for n in c.group(G)]
        assert c.leader(G) is not None
        lines = [ln for ln in leader.log_text().splitlines() if "connection cap reached" in ln]
        assert len(lines) <= 2, lines        # once a minute; the test takes well under two
    finally:
        for s in socks:
            s.close()
        for ch in idle:
            ch.close()
