"""The committed eraftd/_pb modules must be exactly what proto/*.proto generates."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc_tools")

ROOT = Path(__file__).resolve().parent.parent
PB_DIR = ROOT / "eraftd" / "_pb"


def _generated_files(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.iterdir())
            if p.is_file() and (p.suffix in (".py", ".pyi"))}


def test_committed_protos_match_proto_sources(tmp_path):
    out = tmp_path / "_pb"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"scripts/gen_protos.py failed:\n{proc.stdout}\n{proc.stderr}"
    fresh = _generated_files(out)
    committed = _generated_files(PB_DIR)
    problems = []
    for name in sorted(fresh.keys() - committed.keys()):
        problems.append(f"missing from eraftd/_pb: {name}")
    for name in sorted(committed.keys() - fresh.keys()):
        problems.append(f"stale in eraftd/_pb (no .proto generates it): {name}")
    for name in sorted(fresh.keys() & committed.keys()):
        if fresh[name] != committed[name]:
            problems.append(f"differs from proto/: eraftd/_pb/{name}")
    assert not problems, ("eraftd/_pb is out of date with proto/ -- run python scripts/gen_protos.py\n  "
                          + "\n  ".join(problems))


def test_generated_modules_import_as_a_package():
    from eraftd._pb import raft_pb2, raft_pb2_grpc, shardctrler_pb2, shardctrler_pb2_grpc  # noqa: F401
    from google.protobuf.internal import api_implementation
    assert raft_pb2_grpc.raft__pb2 is raft_pb2
    assert shardctrler_pb2_grpc.shardctrler__pb2 is shardctrler_pb2
    assert api_implementation.Type() == "upb", "protobuf fell back to the slow pure-Python backend"
