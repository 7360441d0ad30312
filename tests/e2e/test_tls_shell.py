"""The shell and the one-shots against a real TLS cluster (ShardedCluster(tls=True): the
certificates made by eraftd.certs, [tls] with admins = ["ops"] in every node's TOML).

The real `eraftd shell` on a pseudo-terminal, given the ops client's files with --tls-*, joins
both groups and writes and reads; a one-shot without TLS files gets the plain-words line and
changes nothing; a one-shot with a node's TOML (--config: its [tls]) reads."""
from __future__ import annotations

import io
import subprocess

import pexpect
import pytest

from eraftd.testing import ShardedCluster, eraftd_command

pytestmark = pytest.mark.e2e

G100, G101 = 100, 101


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    c = ShardedCluster(tmp_path_factory.mktemp("tls-shell"), gids=(G100, G101), tls=True)
    try:
        c.start()
        for gid in (0, G100, G101):
            c.wait_leader(gid)
        yield c
    finally:
        c.close()


def _env() -> dict[str, str]:
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERAFT_",))}
    env.update(PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
    return env


def _oneshot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(eraftd_command() + list(args), capture_output=True, text=True,
                          env={**_env(), **(env or {})}, timeout=120, stdin=subprocess.DEVNULL)


def test_the_shell_with_tls_flags_joins_writes_and_reads(tls_cluster, tmp_path):
    c = tls_cluster
    t = c.tls
    cmd = eraftd_command() + ["shell", "--controllers", ",".join(c.controller_addresses()),
                              "--tls-ca", t.ca_file, "--tls-cert", t.cert_file, "--tls-key", t.key_file,
                              "--history", str(tmp_path / "history"), "--timeout", "60s"]
    p = pexpect.spawn(cmd[0], cmd[1:], env=_env(), dimensions=(40, 200), timeout=90,
                      encoding="utf-8", cwd=str(tmp_path))
    log = io.StringIO()
    p.logfile_read = log
    prompt = r"eraftd cfg \d+>"
    # no --force: the controller's join pre-check asks the servers over TLS with its own files
    try:
        p.expect("cfg")                       # the first prompt (redrawn in place)
        p.send(f"join {G100}={','.join(c.addresses(G100))} --wait\r")
        p.expect(r"OK, configuration \d+")
        p.expect(prompt)
        p.send("put tls-key over-tls\r")
        p.expect("OK")
        p.expect(prompt)
        p.send(f"join {G101}={','.join(c.addresses(G101))} --wait\r")
        p.expect(r"OK, configuration \d+")
        p.expect(prompt)
        p.send("get tls-key\r")
        p.expect("over-tls")
        p.expect(prompt)
        p.sendcontrol("d")
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 0, log.getvalue()[-3000:]
    finally:
        if p.isalive():
            p.terminate(force=True)
    assert "Traceback" not in log.getvalue()
    assert "error" not in log.getvalue().lower(), log.getvalue()[-3000:]

    # without TLS files: one plain-words line, and nothing written
    at = ["--controllers", ",".join(c.controller_addresses()), "--timeout", "3s"]
    r = _oneshot(*at, "put", "tls-key", "in-the-clear")
    assert r.returncode == 1 and r.stdout == ""
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1, r.stderr
    assert "closed the connection: the node may require TLS (give --tls-ca FILE" in line, line
    for bad in ("UNAVAILABLE", "StatusCode", "b'", "Socket closed"):
        assert bad not in line, line

    # a node's TOML (--config) gives its [tls] files: the value is still the one written with TLS
    r = _oneshot("--config", str(c.group(G100)[0].toml), "get", "tls-key")
    assert (r.returncode, r.stdout, r.stderr) == (0, "over-tls\n", "")

    # bench, native and unary (eRaft's clerk protocol), with the files from the environment
    env = {"ERAFT_TLS_CA": t.ca_file, "ERAFT_TLS_CERT": t.cert_file, "ERAFT_TLS_KEY": t.key_file}
    for unary in ([], ["--unary"]):
        r = _oneshot(*at[:2], "--timeout", "60s", "bench", "200", "4", *unary, env=env)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert "ok          200\nerrors      none\n" in r.stdout, r.stdout
