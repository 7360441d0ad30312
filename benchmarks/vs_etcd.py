"""eraftd against etcd on this machine: the same workload, one cluster at a time, in turns.

    python benchmarks/vs_etcd.py [--seconds 4] [--concurrency 1,16,64,256] [--rounds 2]
                                 [--paths native,unary] [--ops put,get] [--keys 10000]
                                 [--size 64] [--etcd etcd] [--keep DIR]

Each round starts a 3-member etcd cluster on loopback (when an `etcd` binary is found; this
script installs nothing: on Debian `apt-get install etcd-server`), measures it, stops it, then
does the same with eraftd (one controller and one shardkv group of three replicas, as
benchmarks/shardkv_bench.py runs it), so the two never share the cores; rounds alternate
etcd, eraftd, etcd, eraftd.  Both sides: free loopback ports, data in a temp dir, fsync on
(etcd's default), heartbeat 100 ms and election 1000 ms (etcd's defaults), --size byte
values, --keys keys put before the first point.  A point is --seconds of C workers (C from
--concurrency), each issuing one operation, waiting for it, issuing the next, on keys picked
uniformly; the client is one Python process (grpc.aio) on both sides:

* etcd: one unary KV.Put / KV.Range per operation over one channel to the leader; a Range
  without `serializable` is linearizable.  The stubs are generated at run time, into the
  temp dir, from benchmarks/etcd/etcd_rpc.proto (etcd's rpc.proto trimmed to what is used),
  with grpcio-tools (the test and build extras);
* eraftd `native`: the Clerk (batched KVBatch calls; a batch of writes is one log entry,
  reads share one ReadIndex);
* eraftd `unary`: eRaft's ShardKVService.Command, one call per operation, each worker its
  own eRaft client (UnaryClerk); gets are linearizable (ReadIndex) on both paths.

The table has one row per (path, op, concurrency); etcd has one path, so its figures repeat
in the native and unary rows.  Columns: ops/s of each, the ratio eraftd/etcd (per round,
then the range), p50 and p99 latency in ms, and the CPU seconds each point cost the server
processes (/proc/PID/stat utime+stime of every member; eraftd's controller included) and
the client process (getrusage).  With more than one round a cell is "lowest-highest".
Progress goes to stderr, the table to stdout.  Without etcd the table has eraftd's columns.
Every process started is killed at the end, on an error or Ctrl-C too.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import shardkv_bench as skb  # noqa: E402
from eraftd.errors import Error, rpc_problem  # noqa: E402
from eraftd.testing import free_port  # noqa: E402

PROTO_DIR = Path(__file__).resolve().parent / "etcd"
HINT = ("no {where}: running eraftd alone (to compare with etcd, install it: "
        "apt-get install etcd-server; or name its binary with --etcd)")
START_TIMEOUT_S = 60          # a member's start and a leader, on a loaded 2-core machine
CALL_TIMEOUT_S = 30


class BenchError(Exception):
    """Why the benchmark cannot go on, in one line."""


# -- measuring ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    rate: float               # ops/s
    p50: float                # ms
    p99: float                # ms
    server_cpu: float         # s
    client_cpu: float         # s


def server_cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime (and those of reaped children) of the processes, in seconds."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += sum(int(x) for x in fields[11:15])   # fields 14-17 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def client_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def point(pids: list[int], run: Callable[[], tuple[float, float, float]]) -> Point:
    s0, c0 = server_cpu_seconds(pids), client_cpu_seconds()
    rate, p50, p99 = run()
    return Point(rate, p50, p99, server_cpu_seconds(pids) - s0, client_cpu_seconds() - c0)


# -- etcd --------------------------------------------------------------------------------------

def etcd_stubs(out: Path):
    """(messages module, grpc module) generated from benchmarks/etcd/*.proto into out."""
    try:
        import grpc_tools  # noqa: F401
    except ImportError:
        raise BenchError("talking to etcd needs grpcio-tools (pip install grpcio-tools, "
                         "or pip install -e '.[test]')") from None
    from scripts.gen_protos import generate      # the one way we run protoc
    generate(out / "_vs_etcd_pb", PROTO_DIR)
    sys.path.insert(0, str(out))
    return (importlib.import_module("_vs_etcd_pb.etcd_rpc_pb2"),
            importlib.import_module("_vs_etcd_pb.etcd_rpc_pb2_grpc"))


def etcd_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    first = out.splitlines()[0] if out else ""
    return first.replace("etcd Version:", "etcd").strip() or "etcd (version unknown)"


class EtcdCluster:
    """Three etcd members on loopback, each with its own data dir and log under base, in its
    own process group (kill() takes them all).  etcd's defaults otherwise (fsync on,
    heartbeat 100 ms, election 1000 ms)."""

    def __init__(self, binary: str, base: Path, n: int = 3) -> None:
        self.binary = binary
        self.base = base
        self.names = [f"etcd{i}" for i in range(n)]
        self.clients = [f"127.0.0.1:{free_port()}" for _ in self.names]
        self.peers = [f"http://127.0.0.1:{free_port()}" for _ in self.names]
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "EtcdCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        initial = ",".join(f"{name}={url}" for name, url in zip(self.names, self.peers))
        token = f"vs-etcd-{secrets.token_hex(4)}"
        for name, client, peer in zip(self.names, self.clients, self.peers):
            cmd = [self.binary, "--name", name, "--data-dir", str(self.base / name),
                   "--listen-client-urls", f"http://{client}",
                   "--advertise-client-urls", f"http://{client}",
                   "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                   "--initial-cluster", initial, "--initial-cluster-token", token,
                   "--initial-cluster-state", "new",
                   "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
            with open(self.base / f"{name}.log", "ab") as log:
                self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                                   stderr=log, start_new_session=True))

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def kill(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait()
        self.procs = []

    def check_running(self) -> None:
        for name, p in zip(self.names, self.procs):
            if p.poll() is not None:
                lines = (self.base / f"{name}.log").read_text(errors="replace").splitlines()
                last = lines[-1].strip() if lines else "(empty log)"
                raise BenchError(f"etcd member {name} exited with code {p.returncode}: {last}")

    async def leader(self, pb, pb_grpc) -> str:
        """The client address of the leader, once every member names the same leader and a
        linearizable Range on it succeeds."""
        chans = {a: grpc.aio.insecure_channel(a) for a in self.clients}
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                self.check_running()
                seen = {}
                for a, ch in chans.items():
                    try:
                        st = await pb_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=1)
                        seen[a] = (st.header.member_id, st.leader)
                    except grpc.RpcError:
                        pass
                leaders = {lead for _, lead in seen.values()}
                if len(seen) == len(chans) and len(leaders) == 1 and 0 not in leaders:
                    at = [a for a, (member, _) in seen.items() if member in leaders]
                    try:
                        await pb_grpc.KVStub(chans[at[0]]).Range(
                            pb.RangeRequest(key=b"vs-etcd-ready"), timeout=5)
                        return at[0]
                    except grpc.RpcError:
                        pass
                if time.monotonic() > deadline:
                    raise BenchError(f"etcd had no leader after {START_TIMEOUT_S} s "
                                     f"(its logs: --keep DIR keeps them)")
                await asyncio.sleep(0.1)            # poll again: waiting for a condition
        finally:
            for ch in chans.values():
                await ch.close()


class EtcdKV:
    """put / get as run_workers wants them: one unary call each; a get is a default Range,
    which etcd serves linearizably."""

    def __init__(self, pb, stub) -> None:
        self.pb = pb
        self.stub = stub

    async def put(self, key: str, value: str) -> None:
        await self.stub.Put(self.pb.PutRequest(key=key.encode(), value=value.encode()),
                            timeout=CALL_TIMEOUT_S)

    async def get(self, key: str) -> str | None:
        r = await self.stub.Range(self.pb.RangeRequest(key=key.encode()), timeout=CALL_TIMEOUT_S)
        return r.kvs[0].value.decode() if r.kvs else None


async def _etcd(pb, pb_grpc, address: str, work: Callable) -> object:
    async with grpc.aio.insecure_channel(address) as ch:
        return await work(EtcdKV(pb, pb_grpc.KVStub(ch)))


def etcd_round(binary: str, base: Path, stubs, ops, concs, seconds, keys, value,
               progress: Callable[[str, str, int, Point], None]) -> dict:
    pb, pb_grpc = stubs
    results = {}
    with EtcdCluster(binary, base) as e:
        e.start()
        address = asyncio.run(e.leader(pb, pb_grpc))
        asyncio.run(_etcd(pb, pb_grpc, address, lambda kv: skb.prefill(kv, keys, value)))

        async def work(kv: EtcdKV, op: str, conc: int) -> tuple[int, list[float]]:
            await kv.get(keys[0])          # connected before the workers start, as the Clerk is
            lat = await skb.run_workers(lambda: kv, op, conc, seconds, keys, value)
            return len(lat), lat

        def client(op: str, conc: int) -> list[tuple[int, list[float]]]:
            return [asyncio.run(_etcd(pb, pb_grpc, address, lambda kv: work(kv, op, conc)))]
        for op in ops:
            for conc in concs:
                p = point(e.pids(), lambda: skb.timed(lambda: client(op, conc), seconds))
                results[(op, conc)] = p
                progress("etcd", op, conc, p)
    return results


# -- eraftd ------------------------------------------------------------------------------------

def eraftd_round(base: Path, paths, ops, concs, seconds, keys, value,
                 progress: Callable[[str, str, int, Point], None]) -> dict:
    results = {}
    with skb.eraftd_group(base, keys, value) as c:
        ctrl = c.controller_addresses()
        pids = [n.proc.pid for n in c.nodes]
        for path in paths:
            for op in ops:
                for conc in concs:
                    p = point(pids, lambda: skb.measure(None, 1, path, ctrl, op, conc, seconds,
                                                        keys, value))
                    results[(path, op, conc)] = p
                    progress(f"eraftd {path}", op, conc, p)
    return results


# -- the table ---------------------------------------------------------------------------------

def span(values: list[float], fmt: str) -> str:
    """'lowest-highest' of the values (one value when they print the same)."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}-{hi}"


def table(paths, ops, concs, etcd: list[dict] | None, eraftd: list[dict]) -> str:
    head = ["path", "op", "conc"]
    if etcd:
        head += ["etcd ops/s", "eraftd ops/s", "eraftd/etcd", "etcd p50 ms", "etcd p99 ms",
                 "eraftd p50 ms", "eraftd p99 ms", "etcd server CPU s", "etcd client CPU s",
                 "eraftd server CPU s", "eraftd client CPU s"]
    else:
        head += ["eraftd ops/s", "eraftd p50 ms", "eraftd p99 ms", "eraftd server CPU s",
                 "eraftd client CPU s"]
    rows = []
    for path in paths:
        for op in ops:
            for conc in concs:
                mine = [r[(path, op, conc)] for r in eraftd]
                row = [path, op, str(conc)]
                if etcd:
                    theirs = [r[(op, conc)] for r in etcd]
                    ratios = [m.rate / t.rate for m, t in zip(mine, theirs) if t.rate]
                    row += [span([t.rate for t in theirs], ",.0f"), span([m.rate for m in mine], ",.0f"),
                            span(ratios, ".2f") if ratios else "-",
                            span([t.p50 for t in theirs], ".1f"), span([t.p99 for t in theirs], ".1f"),
                            span([m.p50 for m in mine], ".1f"), span([m.p99 for m in mine], ".1f"),
                            span([t.server_cpu for t in theirs], ".1f"),
                            span([t.client_cpu for t in theirs], ".1f"),
                            span([m.server_cpu for m in mine], ".1f"),
                            span([m.client_cpu for m in mine], ".1f")]
                else:
                    row += [span([m.rate for m in mine], ",.0f"),
                            span([m.p50 for m in mine], ".1f"), span([m.p99 for m in mine], ".1f"),
                            span([m.server_cpu for m in mine], ".1f"),
                            span([m.client_cpu for m in mine], ".1f")]
                rows.append(row)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    rule = "|" + "|".join("-" * (w + 1) + ":" if i >= 2 else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), rule] + [line(r) for r in rows])


# -- main --------------------------------------------------------------------------------------

def _list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if not items or bad:
        problem = f"unknown {what}: {', '.join(bad)}" if bad else f"no {what} given"
        raise argparse.ArgumentTypeError(f"{problem} (choose from {','.join(allowed)})")
    return items


def _concurrency(text: str) -> list[int]:
    try:
        concs = [int(x) for x in text.split(",")]
    except ValueError:
        concs = []
    if not concs or min(concs) < 1:
        raise argparse.ArgumentTypeError(f"not a list of positive numbers: {text!r} (e.g. 1,16,64)")
    return concs


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4, help="length of each point (default 4)")
    ap.add_argument("--concurrency", type=_concurrency, default=[1, 16, 64, 256],
                    help="operations in flight, comma-separated (default 1,16,64,256)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of etcd then eraftd, each on fresh clusters (default 2)")
    ap.add_argument("--paths", type=lambda s: _list(s, ("native", "unary"), "path"),
                    default=["native", "unary"], help="eraftd's client paths: native,unary (default both)")
    ap.add_argument("--ops", type=lambda s: _list(s, ("put", "get"), "op"),
                    default=["put", "get"], help="put,get (default both; gets read the pre-filled keys)")
    ap.add_argument("--keys", type=int, default=10_000, help="keys, all put before the first point "
                    "(default 10000)")
    ap.add_argument("--size", type=int, default=64, help="value bytes (default 64)")
    ap.add_argument("--etcd", default="etcd", metavar="BINARY",
                    help="the etcd binary, a path or a name looked up on PATH (default etcd)")
    ap.add_argument("--keep", metavar="DIR", help="run in DIR and keep the data and logs "
                    "(default: a temp dir, removed at the end)")
    return ap


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(ns: argparse.Namespace, base: Path) -> int:
    if ns.rounds < 1 or ns.keys < 1 or ns.size < 1 or ns.seconds <= 0:
        raise BenchError("--rounds, --keys, --size and --seconds must be positive")
    binary = shutil.which(ns.etcd)
    stubs = None
    if binary is None:
        where = f"etcd at {ns.etcd}" if os.sep in ns.etcd else f"{ns.etcd} on PATH"
        print(HINT.format(where=where), flush=True)
    else:
        stubs = etcd_stubs(base)
    keys, value = skb.workload(ns.keys, ns.size)
    concs = ns.concurrency
    versions = f"{etcd_version(binary)} ({binary}) vs " if binary else ""
    print(f"# {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {loadavg()} before; {versions}eraftd {_eraftd_version()}")
    print(f"# 3 replicas each on loopback, fsync on, heartbeat 100 ms / election 1000 ms, "
          f"{ns.size} B values, {ns.keys} keys, {ns.seconds:g} s per point, {ns.rounds} round(s)"
          f"{' of etcd then eraftd' if binary else ''}, one cluster at a time; linearizable gets",
          flush=True)

    def progress(who: str, op: str, conc: int, p: Point) -> None:
        print(f"# round {r + 1}/{ns.rounds} {who} {op} x{conc}: {p.rate:,.0f} ops/s, "
              f"p50 {p.p50:.1f} ms, p99 {p.p99:.1f} ms, CPU server {p.server_cpu:.1f} s "
              f"client {p.client_cpu:.1f} s", file=sys.stderr, flush=True)
    etcd_results: list[dict] = []
    eraftd_results: list[dict] = []
    for r in range(ns.rounds):
        if binary:
            etcd_results.append(etcd_round(binary, base / f"etcd-{r + 1}", stubs, ns.ops, concs,
                                           ns.seconds, keys, value, progress))
        eraftd_results.append(eraftd_round(base / f"eraftd-{r + 1}", ns.paths, ns.ops, concs,
                                           ns.seconds, keys, value, progress))
    print(table(ns.paths, ns.ops, concs, etcd_results or None, eraftd_results))
    print(f"# load average {loadavg()} after; a-b: lowest-highest over the rounds; "
          f"CPU s: over the whole point (server: every member)")
    return 0


def _eraftd_version() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        out = ""
    return f"commit {out}" if out else "(commit unknown)"


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):       # unwind, so every process is killed
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        if ns.keep:
            return run(ns, Path(ns.keep).resolve())
        with tempfile.TemporaryDirectory(prefix="vs-etcd-") as tmp:
            return run(ns, Path(tmp))
    except KeyboardInterrupt:
        print("vs_etcd: interrupted; every cluster it started is stopped", file=sys.stderr)
        return 130
    except grpc.RpcError as e:
        details = e.details() if hasattr(e, "details") else ""
        print(f"vs_etcd: a call failed: {rpc_problem(e)}{f' ({details})' if details else ''}",
              file=sys.stderr)
        return 1
    except (BenchError, Error, TimeoutError, OSError) as e:
        print(f"vs_etcd: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
