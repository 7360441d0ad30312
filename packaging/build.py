#!/usr/bin/env python3
"""Build the single-file binary and its release artefact.

    .venv/bin/pip install -e '.[build]'     # PyInstaller (once)
    .venv/bin/python packaging/build.py      # -> dist/eraftd, dist/eraftd-VERSION-linux-ARCH(.sha256)

Runs PyInstaller on packaging/eraftd.spec (work files in build/pyinstaller), checks that the
binary starts and uses protobuf's compiled (upb) backend, then copies it to the release name
with a SHA-256 checksum file (`sha256sum -c` reads it) and prints the glibc it needs.
"""
from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def version() -> str:
    from eraftd import __version__
    return __version__


def release_name() -> str:
    system = platform.system().lower()
    return f"eraftd-{version()}-{system}-{platform.machine()}"


def glibc() -> str:
    libc, ver = platform.libc_ver()
    return f"{libc} {ver}" if libc else "unknown"


def main(argv: list[str]) -> int:
    dist = ROOT / "dist"
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(ROOT / "build" / "pyinstaller"),
           str(ROOT / "packaging" / "eraftd.spec")]
    r = subprocess.run(cmd, cwd=ROOT)
    if r.returncode != 0:
        print(f"build.py: pyinstaller failed with exit code {r.returncode}", file=sys.stderr)
        return 1
    binary = dist / "eraftd"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    line = out.stdout.strip()
    if out.returncode != 0 or "protobuf upb" not in line:
        print(f"build.py: the binary does not run with protobuf's upb backend: {line!r} "
              f"{out.stderr.strip()!r}", file=sys.stderr)
        return 1
    artefact = dist / release_name()
    shutil.copy2(binary, artefact)
    digest = hashlib.sha256(artefact.read_bytes()).hexdigest()
    (dist / f"{artefact.name}.sha256").write_text(f"{digest}  {artefact.name}\n")
    size = binary.stat().st_size / 1e6
    print(f"build.py: {binary} ({size:.1f} MB) in {time.monotonic() - t0:.0f} s: {line}")
    print(f"build.py: release artefact {artefact} + {artefact.name}.sha256; needs {glibc()} or newer")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
