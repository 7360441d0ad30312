"""`eraftd backup --out DIR` and `eraftd restore DIR`: a copy of the cluster's data, and loading
it into another cluster.

Backup, through the controllers: the latest configuration, then for every shard a point-in-time
copy read from its owner's leader (ShardBackup.ReadShard: a read barrier, then one pinned view
of the group's data, streamed in chunks; the applied index and term of that view are recorded).
The cluster keeps serving meanwhile (the view is a RocksDB iterator; writes go on beside it).

Consistency: each shard's copy is the shard exactly as it was at one applied index of its
group, with every write acknowledged before the backup started.  The copies of different
shards are taken at different moments (one after another, by different groups, each with its
own log), so the backup as a whole is not one point in time: a client that wrote shard 1 and
then shard 2 while the backup ran may find the second write in it and not the first.  A
cross-shard snapshot would need a cluster-wide pause or a global clock; eraftd has neither.

The directory:
    manifest.json       what follows, with the sha256 and size of every other file (written last:
                        a directory without it is an unfinished backup)
    config.json         the configuration the backup started from
    shard-NN.ekv        shard NN's pairs: frames of u32(length) + an encode_chunk chunk

Restore: verifies every checksum first (and names any damaged or missing file), refuses a
cluster with no groups or one that holds keys (unless --force), then writes every pair through
the native Clerk (batched).  Sessions are not restored: they are the old clients' dedup tables,
and the restoring client is a new session of its own.  The target may have any number of groups:
the keys go wherever its configuration puts them.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, TextIO

import grpc

from ._pb import shardmigration_pb2 as migpb
from ._pb import shardmigration_pb2_grpc as migpb_grpc
from .controller.client import ControllerClient, err_words
from .controller.state import NSHARDS, Config
from .errors import Error, Unavailable, rpc_problem
from .node.storage import decode_chunk
from .node.transport import channel_options
from .shardkv.state import ERR_WRONG_GROUP, ERR_WRONG_LEADER, OK
from .tls import TlsFiles, channel

FORMAT = "eraftd-backup/1"
MANIFEST, CONFIG_FILE = "manifest.json", "config.json"
CHUNK_BYTES = 1 << 20            # asked of ReadShard per message
CHUNK_WAIT_S = 30.0              # the longest wait for the next message of a copy
SHARD_TRY_S = 120.0              # a shard whose copy cannot be had for this long fails the backup
RESTORE_WINDOW = 8192            # puts in flight at once (the Clerk batches them per group)
RESTORE_WINDOW_BYTES = 64 << 20  # and their bytes at the most
RESTORE_PUT_S = 60.0             # one put's time (queued behind the window's others)
RESTORE_TRIES = 3                # and how many times it is tried
_FRAME = struct.Struct(">I")


class BackupError(Error):
    """A backup or restore that cannot go on; the message is the whole line."""


class _Broken(Exception):
    """A copy that stopped half-way (the shard is asked for again)."""


def shard_file(shard: int) -> str:
    return f"shard-{shard:02d}.ekv"


def config_to_json(cfg: Config) -> dict:
    return {"num": cfg.num, "shards": list(cfg.shards),
            "groups": {str(g): list(s) for g, s in sorted(cfg.groups.items())}}


class Progress:
    """One rewritten line on a terminal (nothing when `stream` is not one)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream if stream is not None and stream.isatty() else None
        self.t0 = time.monotonic()

    def show(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(f"\r\x1b[K{text}")
            self.stream.flush()

    def end(self) -> None:
        if self.stream is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _frames(f: BinaryIO, name: str) -> Iterator[bytes]:
    """The chunks of a shard file, read as they come; BackupError naming the file when it is
    cut short."""
    while head := f.read(_FRAME.size):
        chunk = f.read(_FRAME.unpack(head)[0]) if len(head) == _FRAME.size else b""
        if len(head) < _FRAME.size or len(chunk) < _FRAME.unpack(head)[0]:
            raise BackupError(f"backup file {name} is damaged (cut short); nothing was restored")
        yield chunk


def _sha256(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


class ShardFile:
    """Writes one shard's file (into NAME.tmp, renamed by close()): its frames, their sha256,
    size and the pairs they hold; record() is the shard's line of the manifest."""

    def __init__(self, out: Path, shard: int) -> None:
        self.shard, self.name = shard, shard_file(shard)
        self.path = out / self.name
        self._tmp = out / (self.name + ".tmp")
        self._f = open(self._tmp, "wb")
        self._h = hashlib.sha256()
        self.keys = self.size = 0

    def add(self, chunk: bytes) -> None:
        """One encode_chunk chunk."""
        frame = _FRAME.pack(len(chunk)) + chunk
        self._f.write(frame)
        self._h.update(frame)
        self.keys += _FRAME.unpack_from(chunk, 4)[0]        # its header: magic, pair count
        self.size += len(frame)

    def close(self) -> None:
        self._f.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._f.close()
        self._tmp.unlink(missing_ok=True)

    def record(self, gid: int, config_num: int, index: int, term: int) -> dict:
        return {"shard": self.shard, "gid": gid, "config_num": config_num, "index": index,
                "term": term, "keys": self.keys, "file": self.name,
                "sha256": self._h.hexdigest(), "size": self.size}


def write_manifest(out: Path, cfg: Config, shards: list[dict]) -> dict:
    """config.json, then manifest.json (last, atomically: a directory without it is an
    unfinished backup); shards: ShardFile.record() of every shard."""
    data = json.dumps(config_to_json(cfg), indent=1).encode()
    (out / CONFIG_FILE).write_bytes(data)
    files = {CONFIG_FILE: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}}
    listed = []
    for s in shards:
        s = dict(s)
        files[s["file"]] = {"sha256": s.pop("sha256"), "size": s.pop("size")}
        listed.append(s)
    manifest = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "consistency": "each shard at one applied index of its group; shards are not "
                       "consistent with each other",
        "config_num": cfg.num,
        "files": files,
        "shards": listed,
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


# ---------------------------------------------------------------- backup

class Backup:
    def __init__(self, controllers: list[str], out: Path, dial: Callable[[str], str] | None = None,
                 tls: TlsFiles | None = None, progress: Progress | None = None,
                 chunk_bytes: int = CHUNK_BYTES, shard_try_s: float = SHARD_TRY_S) -> None:
        self.controllers = controllers
        self.out = out
        self.dial = dial or (lambda a: a)
        self.tls = tls
        self.progress = progress or Progress(None)
        self.chunk_bytes = chunk_bytes
        self.shard_try_s = shard_try_s
        self._channels: dict[str, Any] = {}
        self.keys = self.bytes = 0

    async def run(self) -> dict:
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise BackupError(f"{self.out} exists and is not an empty directory; give a new one")
        async with ControllerClient(self.controllers, dial=self.dial, tls=self.tls) as ctl:
            cfg = await ctl.query(-1)
            if not cfg.groups:
                raise BackupError("the cluster has no groups joined: there is nothing to back up")
            self.out.mkdir(parents=True, exist_ok=True)
            shards = []
            try:
                for shard in range(NSHARDS):
                    shards.append(await self._shard(ctl, cfg, shard))
            finally:
                for ch in self._channels.values():
                    await ch.close()
        self.progress.end()
        return write_manifest(self.out, cfg, shards)

    def _stub(self, addr: str) -> migpb_grpc.ShardBackupStub:
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = channel(self.dial(addr), self.tls, channel_options(), name=addr)
        return migpb_grpc.ShardBackupStub(ch)

    async def _shard(self, ctl: ControllerClient, cfg: Config, shard: int) -> dict:
        """The copy of one shard from its owner now (the configuration asked again when the
        shard has moved on), written to its file."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shard_try_s
        last = "no group asked yet"
        while True:
            gid = cfg.shards[shard]
            servers = list(cfg.groups.get(gid, ()))
            if not servers:             # no group has it: no data anywhere (an empty file)
                f = ShardFile(self.out, shard)
                f.close()
                return f.record(0, cfg.num, 0, 0)
            order, tried = list(servers), set()
            while order:
                addr = order.pop(0)
                if addr in tried:
                    continue
                tried.add(addr)
                try:
                    got = await self._read(addr, shard, gid)
                except (grpc.aio.AioRpcError, asyncio.TimeoutError, _Broken) as e:
                    last = f"group {gid} at {addr}: {rpc_problem(e, self.tls is not None)}"
                    continue
                if isinstance(got, dict):
                    return got
                err, leader = got
                last = f"group {gid} at {addr}: {err_words(err)}"
                if err == ERR_WRONG_LEADER and leader in servers and leader not in tried:
                    order.insert(0, leader)
                elif err == ERR_WRONG_GROUP:
                    last = f"group {gid} does not serve shard {shard} now (configuration {cfg.num})"
                    break
            if loop.time() >= deadline:
                raise BackupError(f"no copy of shard {shard} within {self.shard_try_s:g}s; last: {last}")
            await asyncio.sleep(0.2)
            cfg = await ctl.query(-1)

    async def _read(self, addr: str, shard: int, gid: int) -> dict | tuple[str, str]:
        call = self._stub(addr).ReadShard(migpb.ReadShardRequest(shard=shard, max_bytes=self.chunk_bytes))
        try:
            it = call.__aiter__()
            async with asyncio.timeout(CHUNK_WAIT_S):
                first = await anext(it, None)
            if first is None:
                raise _Broken("the copy ended before it began")
            if first.err != OK:
                return first.err, first.leader
            f = ShardFile(self.out, shard)
            try:
                while True:
                    async with asyncio.timeout(CHUNK_WAIT_S):
                        m = await anext(it, None)
                    if m is None:
                        raise _Broken("the copy ended early")
                    if m.done:
                        break
                    f.add(m.kvs)
                    self.progress.show(f"backup: shard {shard + 1}/{NSHARDS}: {f.keys:,} keys, "
                                       f"{_size(f.size)} (in all {_size(self.bytes + f.size)})")
            except BaseException:
                f.abort()
                raise
            f.close()
        finally:
            call.cancel()
        self.keys += f.keys
        self.bytes += f.size
        return f.record(gid, first.config_num, first.index, first.term)


# ---------------------------------------------------------------- restore

def verify(src: Path) -> dict:
    """The manifest of the backup in `src`, every file checked against it; BackupError naming
    the first missing or damaged file."""
    path = src / MANIFEST
    if not path.is_file():
        raise BackupError(f"{src}: no {MANIFEST}: not an eraftd backup, or an unfinished one")
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
        files = manifest["files"]
        shards = manifest["shards"]
        if sorted(s["shard"] for s in shards) != list(range(NSHARDS)):
            raise ValueError(f"it lists shards {sorted(s['shard'] for s in shards)}")
        for s in shards:
            if s["file"] not in files or not isinstance(s["keys"], int):
                raise ValueError(f"shard {s['shard']}: no checksum of {s['file']}, or no key count")
        for name in files:
            if Path(name).name != name or name.startswith("."):
                raise ValueError(f"{name} is not a file of the backup's directory")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        why = f"no field {e.args[0]}" if isinstance(e, KeyError) else str(e)
        raise BackupError(f"backup file {path} is damaged ({why}); nothing was restored") from None
    for name, want in sorted(files.items()):
        f = src / name
        if not f.is_file():
            raise BackupError(f"backup file {f} is missing; nothing was restored")
        digest, size = _sha256(f)
        if size != want["size"] or digest != want["sha256"]:
            raise BackupError(f"backup file {f} is damaged (its checksum is not the manifest's); "
                              f"nothing was restored")
    for s in shards:
        name = src / s["file"]
        try:
            with open(name, "rb") as f:
                n = sum(sum(1 for _ in decode_chunk(c)) for c in _frames(f, str(name)))
        except ValueError as e:
            raise BackupError(f"backup file {name} is damaged ({e}); nothing was restored") from None
        if n != s["keys"]:
            raise BackupError(f"backup file {name} holds {n} keys, its manifest says {s['keys']}; "
                              f"nothing was restored")
    return manifest


async def _put(kv: Any, key: bytes, value: bytes) -> None:
    """A put that got no answer is sent again (putting the same value twice is the same)."""
    for attempt in range(RESTORE_TRIES):
        try:
            return await kv.put(key, value)
        except Unavailable:
            if attempt == RESTORE_TRIES - 1:
                raise


async def restore(src: Path, controllers: list[str], dial: Callable[[str], str] | None = None,
                  tls: TlsFiles | None = None, force: bool = False,
                  progress: Progress | None = None) -> dict:
    from .shardkv.clerk import Clerk
    progress = progress or Progress(None)
    manifest = verify(src)
    async with Clerk(controllers, dial=dial, tls=tls, total_timeout=RESTORE_PUT_S) as kv:
        async with ControllerClient(controllers, dial=dial, tls=tls) as ctl:
            cfg = await ctl.query(-1)
        if not cfg.groups:
            raise BackupError("the target cluster has no groups joined: join its groups first "
                              "(`eraftd join GID ADDR...`), then restore")
        if not force:
            async for k, _ in kv.scan(limit=1):
                shown = k[:40].decode(errors="replace")
                raise BackupError(f"the target cluster already holds keys (e.g. \"{shown}\"); "
                                  f"restore into an empty cluster, or give --force to write over it")
        total = sum(s["keys"] for s in manifest["shards"])
        done = 0
        pending: dict[asyncio.Future, int] = {}       # put -> its bytes
        held = 0

        async def settle(window: int, window_bytes: int) -> None:
            nonlocal done, held
            while len(pending) > window or held > window_bytes:
                finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in finished:
                    t.result()
                    held -= pending.pop(t)
                    done += 1
                progress.show(f"restore: {done:,} of {total:,} keys")
        with contextlib.ExitStack() as files:
            # a chunk of each shard in turn: every group of the target works at once
            streams = [_frames(files.enter_context(open(src / s["file"], "rb")), str(src / s["file"]))
                       for s in sorted(manifest["shards"], key=lambda s: s["shard"])]
            try:
                while streams:
                    for stream in list(streams):
                        chunk = next(stream, None)
                        if chunk is None:
                            streams.remove(stream)
                            continue
                        for k, v in decode_chunk(chunk):
                            pending[asyncio.ensure_future(_put(kv, k, v))] = n = len(k) + len(v)
                            held += n
                            if len(pending) >= RESTORE_WINDOW or held >= RESTORE_WINDOW_BYTES:
                                await settle(RESTORE_WINDOW // 2, RESTORE_WINDOW_BYTES // 2)
                await settle(0, 0)
            finally:
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
    progress.end()
    return {"keys": done, "config_num": cfg.num, "groups": len(cfg.groups)}


# ---------------------------------------------------------------- the command line (cli.py)

def add_backup_arguments(p: argparse.ArgumentParser) -> None:
    from repl.app import add_cluster_arguments
    add_cluster_arguments(p, suppress=True)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="a new (or empty) directory to write the backup into")
    p.epilog = ("Each shard is copied as it was at one applied index of its group (recorded in "
                "DIR/manifest.json); shards are copied one after another, so the backup is "
                "consistent per shard, not across shards.")


def add_restore_arguments(p: argparse.ArgumentParser) -> None:
    from repl.app import add_cluster_arguments
    add_cluster_arguments(p, suppress=True)
    p.add_argument("dir", metavar="DIR", help="a directory written by `eraftd backup`")
    p.add_argument("--force", action="store_true",
                   help="write into a cluster that already holds keys (they stay, or are overwritten)")


def _connection(args: argparse.Namespace) -> tuple[list[str], Any, Any]:
    from repl.app import controllers_from, dial_from, tls_from
    return controllers_from(args), dial_from(args), tls_from(args)


def _main(name: str, args: argparse.Namespace, work: Callable[..., Any]) -> int:
    from repl.app import Usage

    from . import logs
    logs.setup("warning", "")
    try:
        controllers, dial, tls = _connection(args)
    except Usage as e:
        print(e, file=sys.stderr)
        return 2
    progress = Progress(sys.stderr)
    try:
        line = asyncio.run(work(controllers, dial, tls, progress))
    except (Error, OSError) as e:
        progress.end()
        print(f"eraftd {name}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress.end()
        print(f"eraftd {name}: interrupted", file=sys.stderr)
        return 130
    print(line)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    async def work(controllers, dial, tls, progress) -> str:
        t0 = time.monotonic()
        b = Backup(controllers, Path(args.out), dial, tls, progress)
        m = await b.run()
        dt = max(time.monotonic() - t0, 1e-6)
        return (f"backup of configuration {m['config_num']} written to {args.out}: {NSHARDS} shards, "
                f"{b.keys:,} keys, {_size(b.bytes)} in {dt:.1f}s ({_size(b.bytes / dt)}/s); "
                f"each shard consistent at its own index")
    return _main("backup", args, work)


def cmd_restore(args: argparse.Namespace) -> int:
    async def work(controllers, dial, tls, progress) -> str:
        t0 = time.monotonic()
        r = await restore(Path(args.dir), controllers, dial, tls, args.force, progress)
        dt = max(time.monotonic() - t0, 1e-6)
        return (f"restored {r['keys']:,} keys from {args.dir} into {r['groups']} group"
                f"{'s' if r['groups'] != 1 else ''} in {dt:.1f}s ({r['keys'] / dt:,.0f} keys/s); "
                f"client sessions start afresh")
    return _main("restore", args, work)
