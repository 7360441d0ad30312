#!/usr/bin/env python
"""Regenerate eraftd/_pb/*.py from proto/*.proto.

    python scripts/gen_protos.py              # writes eraftd/_pb/
    python scripts/gen_protos.py --out DIR    # writes elsewhere (tests/test_protos_drift.py)

Runs grpc_tools.protoc (python_out + grpc_python_out + pyi_out), then rewrites the imports
between generated modules to be package-relative (`from . import raft_pb2 as raft__pb2`), so
that eraftd._pb works as a package without touching sys.path, and writes __init__.py.
Needs grpcio-tools (the `test` / `build` extras).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "eraftd" / "_pb"

INIT = '''"""Generated protobuf / gRPC modules: do not edit.

Regenerate from proto/*.proto with: python scripts/gen_protos.py
(tests/test_protos_drift.py fails when these files and proto/ disagree).
"""
'''


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Generate into out_dir (created, stale generated files removed); return the files written."""
    from grpc_tools import protoc
    import grpc_tools

    protos = sorted(p.name for p in proto_dir.glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {proto_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
        args = ["grpc_tools.protoc", f"-I{proto_dir}", f"-I{include}",
                f"--python_out={tmp}", f"--grpc_python_out={tmp}", f"--pyi_out={tmp}", *protos]
        rc = protoc.main(args)
        if rc != 0:
            raise SystemExit(f"protoc failed (exit {rc}) on {', '.join(protos)}")
        modules = {p[:-len(".proto")] + "_pb2" for p in protos}
        pattern = re.compile(r"^import (" + "|".join(map(re.escape, sorted(modules))) + r")( as \w+)?$",
                             re.M)
        for old in out_dir.glob("*_pb2*.py*"):
            old.unlink()
        written = []
        for src in sorted(Path(tmp).iterdir()):
            text = src.read_text()
            text = pattern.sub(r"from . import \1\2", text)
            dst = out_dir / src.name
            dst.write_text(text)
            written.append(dst)
    init = out_dir / "__init__.py"
    init.write_text(INIT)
    written.append(init)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default {OUT_DIR})")
    ap.add_argument("--proto-dir", type=Path, default=PROTO_DIR)
    ns = ap.parse_args(argv)
    written = generate(ns.out, ns.proto_dir)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
