"""`eraftd backup` and `eraftd restore` with real processes: a backup taken while clients write,
restored into a new cluster with another number of groups; the refusals (a cluster that holds
keys, a damaged file named)."""
from __future__ import annotations

import asyncio
import itertools
import json
import subprocess

import pytest
from skv_support import in_thread, key_in, sharded, wait_settled  # noqa: F401

from eraftd.controller.client import ControllerClient
from eraftd.controller.state import NSHARDS
from eraftd.shardkv.clerk import Clerk
from eraftd.testing import eraftd_command

pytestmark = pytest.mark.e2e

G1, G2, G3 = 100, 101, 102


def eraftd(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(eraftd_command() + list(args), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


async def joined(c, gids) -> list[str]:
    """Join every group of c, wait until they serve; the controllers' addresses."""
    ctrl = c.controller_addresses()
    async with ControllerClient(ctrl, total_timeout=60, tls=c.tls) as ctl:
        for gid in gids:
            await ctl.join({gid: c.addresses(gid)})
        cfg = await ctl.query()
    await in_thread(wait_settled, c, {g: cfg.shards_of(g) for g in gids}, 90)
    return ctrl


def one_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


async def test_backup_under_writes_restores_into_a_cluster_of_another_shape(sharded, tmp_path):  # noqa: F811
    src = sharded(gids=(G1, G2), replicas=1, controllers=1).start()
    ctrl = await joined(src, (G1, G2))
    acked = {key_in(i % NSHARDS, f"k{i:05d}"): b"v%d" % i * 10 for i in range(3000)}
    out = tmp_path / "bk"
    load_acked: dict[bytes, bytes] = {}
    async with Clerk(ctrl, total_timeout=60) as kv:
        await asyncio.gather(*(kv.put(k, v) for k, v in acked.items()))
        stop = asyncio.Event()

        async def load() -> None:              # clients keep writing through the backup
            for i in itertools.count():
                if stop.is_set():
                    return
                ks = [key_in(j % NSHARDS, f"load{i}-{j}") for j in range(20)]
                await asyncio.gather(*(kv.put(k, b"x") for k in ks))
                load_acked.update((k, b"x") for k in ks)
        writer = asyncio.create_task(load())
        try:
            while len(load_acked) < 200:         # the load is on
                await asyncio.sleep(0.01)
            before = len(load_acked)
            r = await in_thread(eraftd, "backup", "--out", str(out), "--controllers", ",".join(ctrl))
            during = len(load_acked) - before
        finally:
            stop.set()
            await writer
    assert r.returncode == 0, r.stderr
    assert "written to" in r.stdout and "each shard consistent at its own index" in r.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["shard"] for s in manifest["shards"]] == list(range(NSHARDS))
    assert all(s["index"] > 0 and s["gid"] in (G1, G2) for s in manifest["shards"])
    assert sum(s["keys"] for s in manifest["shards"]) >= len(acked)
    assert during > 0, "the load wrote nothing while the backup ran"
    src.close()

    dst = sharded(gids=(G1, G2, G3), replicas=1, controllers=1).start()
    ctrl2 = await joined(dst, (G1, G2, G3))
    r = await in_thread(eraftd, "restore", str(out), "--controllers", ",".join(ctrl2))
    assert r.returncode == 0, r.stderr
    assert "client sessions start afresh" in r.stdout
    async with Clerk(ctrl2, total_timeout=60) as kv:
        got = await asyncio.gather(*(kv.get(k) for k in acked))
        missing = [k for k, v in zip(acked, got) if v != acked[k]]
        assert not missing, f"{len(missing)} acknowledged keys not restored, e.g. {missing[:3]}"
        n = 0
        async for _ in kv.scan():
            n += 1
        assert n == sum(s["keys"] for s in manifest["shards"])

    # a cluster that holds keys is refused; then --force with a damaged file names the file
    line = one_line(await in_thread(eraftd, "restore", str(out), "--controllers", ",".join(ctrl2)))
    assert "already holds keys" in line and "--force" in line, line
    victim = next(s["file"] for s in manifest["shards"] if s["keys"])
    data = bytearray((out / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / victim).write_bytes(bytes(data))
    line = one_line(await in_thread(eraftd, "restore", str(out), "--force",
                                    "--controllers", ",".join(ctrl2)))
    assert victim in line and "damaged" in line and "nothing was restored" in line, line


@pytest.mark.parametrize("sharded", [True], ids=["tls"], indirect=True)
async def test_on_a_tls_cluster_and_the_refusals_are_one_line(sharded, tmp_path):  # noqa: F811
    """The TLS client options as every other command's; no groups to back up; an output
    directory in use; a directory that is no backup; a round trip into the same cluster
    with --force."""
    c = sharded(gids=(G1,), replicas=1, controllers=1).start()
    conn = ["--controllers", ",".join(c.controller_addresses()), "--tls-ca", c.tls.ca_file,
            "--tls-cert", c.tls.cert_file, "--tls-key", c.tls.key_file]
    line = one_line(await in_thread(eraftd, "backup", "--out", str(tmp_path / "b"), *conn))
    assert "no groups joined" in line, line
    ctrl = await joined(c, (G1,))
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    line = one_line(await in_thread(eraftd, "backup", "--out", str(used), *conn))
    assert "not an empty directory" in line, line
    line = one_line(await in_thread(eraftd, "restore", str(used), *conn))
    assert "no manifest.json" in line, line

    async with Clerk(ctrl, tls=c.tls, total_timeout=60) as kv:
        await asyncio.gather(*(kv.put(key_in(s, "k"), b"before") for s in range(NSHARDS)))
        r = await in_thread(eraftd, "backup", "--out", str(tmp_path / "b"), *conn)
        assert r.returncode == 0, r.stderr
        await asyncio.gather(*(kv.put(key_in(s, "k"), b"after") for s in range(NSHARDS)))
        r = await in_thread(eraftd, "restore", str(tmp_path / "b"), "--force", *conn)
        assert r.returncode == 0, r.stderr
        assert await kv.get(key_in(3, "k")) == b"before"
