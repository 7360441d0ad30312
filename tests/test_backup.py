"""eraftd.backup without a cluster: what restore checks before it writes anything (every
damaged or missing file named, one line), and the progress line (only on a terminal)."""
from __future__ import annotations

import hashlib
import io
import json

import pytest

from eraftd.backup import MANIFEST, BackupError, Progress, ShardFile, verify, write_manifest
from eraftd.controller.state import NSHARDS, Config
from eraftd.node.storage import encode_chunk


def make(d, pairs_of_shard3=((b"3a", b"1"), (b"3b", b"2"))):
    """A backup directory as `eraftd backup` writes it: shard 3 holds the pairs, the rest none."""
    d.mkdir()
    shards = []
    for s in range(NSHARDS):
        f = ShardFile(d, s)
        if s == 3:
            f.add(encode_chunk(pairs_of_shard3))
        f.close()
        shards.append(f.record(100, 1, 7, 1))
    write_manifest(d, Config(1, (100,) * NSHARDS, {100: ("a:1",)}), shards)
    return d


def refused(d) -> str:
    with pytest.raises(BackupError) as e:
        verify(d)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_whole_backup_verifies(tmp_path):
    m = verify(make(tmp_path / "b"))
    assert sum(s["keys"] for s in m["shards"]) == 2


def test_every_damage_is_refused_naming_the_file(tmp_path):
    d = make(tmp_path / "flip")
    raw = bytearray((d / "shard-03.ekv").read_bytes())
    raw[-1] ^= 1
    (d / "shard-03.ekv").write_bytes(bytes(raw))
    assert "shard-03.ekv is damaged" in refused(d)

    d = make(tmp_path / "gone")
    (d / "shard-07.ekv").unlink()
    assert "shard-07.ekv is missing" in refused(d)

    d = make(tmp_path / "manifest")
    (d / MANIFEST).write_text((d / MANIFEST).read_text()[:-10])
    assert f"{MANIFEST} is damaged" in refused(d)

    d = make(tmp_path / "cut")          # cut short, and the manifest made to agree: still caught
    raw = (d / "shard-03.ekv").read_bytes()[:-3]
    (d / "shard-03.ekv").write_bytes(raw)
    m = json.loads((d / MANIFEST).read_text())
    m["files"]["shard-03.ekv"] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    (d / MANIFEST).write_text(json.dumps(m))
    assert "shard-03.ekv is damaged" in refused(d)

    assert "not an eraftd backup" in refused(tmp_path)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal():
    tty, pipe = _Tty(), io.StringIO()
    for s in (tty, pipe):
        p = Progress(s)
        p.show("backup: shard 1/10")
        p.end()
    assert "backup: shard 1/10" in tty.getvalue() and pipe.getvalue() == ""
