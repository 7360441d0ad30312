"""The clients over TLS: where the TLS files come from (--tls-* flags, ERAFT_TLS_*, --config's
[tls]), real grpc.aio TLS servers in-process (certificates from eraftd.certs) that the clients
reach with the right files and refuse with a plain-words line for each wrong one, a node's
PERMISSION_DENIED reason shown as it is, and HTTPS (the dashboard, a node's [node] http).

The fake controller answers Command (a query: an empty configuration; a join: only for the
client certificate CN "ops", as [tls] admins = ["ops"] would) and GetStatus, and NodeAdmin.Status.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from eraftd import certs
from eraftd._pb import admin_pb2 as apb
from eraftd._pb import admin_pb2_grpc as apb_grpc
from eraftd._pb import shardctrler_pb2 as pb
from eraftd._pb import shardctrler_pb2_grpc as pb_grpc
from eraftd.config import TlsSection, dump_toml
from eraftd.controller.client import ControllerClient, ControllerUnavailable
from eraftd.controller.machine import config_to_pb
from eraftd.controller.state import Config
from eraftd.errors import Denied
from eraftd.testing import eraftd_command, free_port
from eraftd.tls import TlsFiles
from repl.app import Usage, tls_from

DENIED = "permission denied: join needs an admin certificate (CN in [tls] admins); yours is CN={}"


# ---------------------------------------------------------------- certificates

class Certs:
    def __init__(self, base: Path) -> None:
        self.dir, self.other = base / "certs", base / "other"
        for d in (self.dir, self.other):
            certs.create_ca(str(d))
        certs.create_node(str(self.dir), ["127.0.0.1:7001"])
        self.elsewhere = base / "elsewhere"                 # our CA, a node certificate for 127.0.0.2
        self.elsewhere.mkdir()
        for name in (certs.CA_CERT, certs.CA_KEY):
            (self.elsewhere / name).write_bytes((self.dir / name).read_bytes())
        certs.create_node(str(self.elsewhere), ["127.0.0.2:7001"])
        certs.create_client(str(self.dir), "ops")
        certs.create_client(str(self.dir), "app1")
        certs.create_client(str(self.other), "ops")
        self.ca = str(self.dir / "ca.crt")
        self.node = TlsFiles(self.ca, str(self.dir / "node.crt"), str(self.dir / "node.key"))

    def client(self, name: str, ca_of: Path | None = None, cert_of: Path | None = None) -> TlsFiles:
        ca, cd = ca_of or self.dir, cert_of or self.dir
        return TlsFiles(str(ca / "ca.crt"), str(cd / f"client.{name}.crt"), str(cd / f"client.{name}.key"))


@pytest.fixture(scope="module")
def c(tmp_path_factory) -> Certs:
    return Certs(tmp_path_factory.mktemp("tls"))


# ---------------------------------------------------------------- a fake TLS controller

class FakeController(pb_grpc.ShardCtrlerServiceServicer, apb_grpc.NodeAdminServicer):
    def __init__(self, address: str) -> None:
        self.address = address
        self.joined: list[int] = []

    async def Command(self, request, context):
        if request.op == pb.JOIN:
            cn = b"".join(context.auth_context().get("x509_common_name", [b""])).decode()
            if cn != "ops":
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, DENIED.format(cn or "(none)"))
            self.joined += list(request.servers)
        return pb.CommandResponse(err="OK", config=config_to_pb(Config()))

    async def GetStatus(self, request, context):
        return pb.GetStatusResponse()

    async def Status(self, request, context):
        return apb.NodeStatus(address=self.address)


@asynccontextmanager
async def fake(tls: TlsFiles | None, require_client_auth: bool = True):
    server = grpc.aio.server()
    address = f"127.0.0.1:{free_port()}"
    svc = FakeController(address)
    pb_grpc.add_ShardCtrlerServiceServicer_to_server(svc, server)
    apb_grpc.add_NodeAdminServicer_to_server(svc, server)
    if tls is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, tls.server_credentials(require_client_auth))
    await server.start()
    try:
        yield svc
    finally:
        await server.stop(None)


def plain_words(line: str) -> None:
    assert "\n" not in line
    for code in ("UNAVAILABLE", "StatusCode", "PERMISSION_DENIED", "b'", 'b"', "SSL_ERROR", "TSI_"):
        assert code not in line, line


# ---------------------------------------------------------------- where the files come from

def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"tls_ca": None, "tls_cert": None, "tls_key": None,
                                 "cluster_config": None, **kw})


def _node_toml(tmp_path: Path, c: Certs) -> Path:
    p = tmp_path / "n1.toml"
    p.write_text(dump_toml({
        "node": {"listen": "127.0.0.1:7001", "data_dir": "data"},
        "controller": {"peers": ["127.0.0.1:7001"]},
        "tls": {"ca_file": os.path.relpath(c.ca, tmp_path),
                "cert_file": os.path.relpath(c.node.cert_file, tmp_path),
                "key_file": os.path.relpath(c.node.key_file, tmp_path)}}))
    return p


def test_flags_then_environment_then_config(c: Certs, tmp_path: Path) -> None:
    ops, app1 = c.client("ops"), c.client("app1")
    env = {"ERAFT_TLS_CA": app1.ca_file, "ERAFT_TLS_CERT": app1.cert_file, "ERAFT_TLS_KEY": app1.key_file}
    toml = str(_node_toml(tmp_path, c))
    flags = {"tls_ca": ops.ca_file, "tls_cert": ops.cert_file, "tls_key": ops.key_file}
    assert tls_from(_args(**flags, cluster_config=toml), env) == ops
    assert tls_from(_args(tls_ca=c.ca), env) == TlsFiles(c.ca)        # the flags are used whole
    assert tls_from(_args(cluster_config=toml), env) == app1
    assert tls_from(_args(cluster_config=toml), {}) == c.node       # the node's own, made absolute
    assert tls_from(_args(), {}) is None                            # plaintext
    assert tls_from(argparse.Namespace(), {}) is None               # a command without the flags


@pytest.mark.parametrize("given, env, expected", [
    ({"tls_cert": "CERT", "tls_key": "KEY"}, {}, "--tls-cert/--tls-key need --tls-ca FILE too"),
    ({"tls_ca": "CA", "tls_cert": "CERT"}, {}, "the key is missing"),
    ({"tls_ca": "CA", "tls_key": "KEY"}, {}, "the certificate is missing"),
    ({"tls_ca": "/no/such/ca.crt"}, {}, "cannot read the TLS CA certificate /no/such/ca.crt"),
    ({"tls_ca": "KEY"}, {}, "is not a PEM CA certificate file"),
    ({"tls_ca": "CA", "tls_cert": "KEY", "tls_key": "KEY"}, {}, "is not a PEM certificate file"),
    ({"tls_ca": "CA", "tls_cert": "CERT", "tls_key": "CERT"}, {}, "is not a PEM key file"),
    ({}, {"ERAFT_TLS_CERT": "CERT"}, "ERAFT_TLS_CERT/ERAFT_TLS_KEY are set but ERAFT_TLS_CA is not"),
])
def test_a_bad_combination_is_one_usage_line(c: Certs, given: dict, env: dict, expected: str) -> None:
    ops = c.client("ops")
    real = {"CA": ops.ca_file, "CERT": ops.cert_file, "KEY": ops.key_file}
    with pytest.raises(Usage) as e:
        tls_from(_args(**{k: real.get(v, v) for k, v in given.items()}),
                 {k: real.get(v, v) for k, v in env.items()})
    assert expected in str(e.value) and str(e.value).startswith("eraftd: ")
    plain_words(str(e.value))


def test_the_cli_says_a_bad_file_in_one_line_before_dialling() -> None:
    import subprocess
    for argv in (["--tls-ca", "/no/such/ca.crt", "get", "k"],
                 ["shell", "--tls-ca", "/no/such/ca.crt"],
                 ["dashboard", "--tls-ca", "/no/such/ca.crt"]):
        r = subprocess.run(eraftd_command() + ["--controllers", "127.0.0.1:1"] + argv,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 2, (argv, r.stderr)
        assert r.stderr.strip() == "eraftd: cannot read the TLS CA certificate /no/such/ca.crt: " \
                                   "No such file or directory", argv
        assert r.stdout == ""


# ---------------------------------------------------------------- the clients against TLS nodes

async def test_the_right_files_connect_and_a_client_certificate_is_presented(c: Certs) -> None:
    import eraftd
    async with fake(c.node) as svc:
        async with ControllerClient([svc.address], total_timeout=20, tls=c.client("ops")) as ctl:
            assert (await ctl.query()).num == 0
            await ctl.join({100: ["127.0.0.1:1"]}, force=True)
        assert svc.joined == [100]
        async with eraftd.AsyncClient([svc.address], timeout=20, tls=c.client("app1")) as kv:
            assert (await kv.query()).num == 0

        def blocking() -> int:                  # its own loop in a thread: not this one's
            with eraftd.Client([svc.address], timeout=20, tls=c.client("app1")) as kv:
                return kv.query().num
        assert await asyncio.to_thread(blocking) == 0
    async with fake(c.node, require_client_auth=False) as svc:          # client_auth = "none"
        async with ControllerClient([svc.address], total_timeout=20, tls=TlsFiles(c.ca)) as ctl:
            assert (await ctl.query()).num == 0


@pytest.mark.parametrize("case, expected", [
    ("tls client, plaintext node", "answered without TLS: it is not a TLS node (no [tls] in its TOML)"),
    ("plaintext client, tls node", "closed the connection: the node may require TLS (give --tls-ca FILE"),
    ("no client certificate", "closed the connection during the TLS handshake: check --tls-ca is the "
                              "cluster's CA and give --tls-cert/--tls-key"),
    ("client certificate of another CA", "closed the connection during the TLS handshake"),
    ("trusts another CA", "presented a certificate that is not signed by the CA of --tls-ca: give the "
                          "cluster's CA certificate"),
    ("node certificate of another host", "presented a certificate that does not name this address"),
])
async def test_each_wrong_case_is_a_line_in_plain_words(c: Certs, case: str, expected: str) -> None:
    server, client = {
        "tls client, plaintext node": (None, c.client("ops")),
        "plaintext client, tls node": (c.node, None),
        "no client certificate": (c.node, TlsFiles(c.ca)),
        "client certificate of another CA": (c.node, c.client("ops", cert_of=c.other)),
        "trusts another CA": (c.node, c.client("ops", ca_of=c.other, cert_of=c.other)),
        "node certificate of another host": (
            TlsFiles(c.ca, str(c.elsewhere / "node.crt"), str(c.elsewhere / "node.key")), c.client("ops")),
    }[case]
    async with fake(server) as svc:
        async with ControllerClient([svc.address], total_timeout=1.5, call_timeout=0.5,
                                    tls=client) as ctl:
            with pytest.raises(ControllerUnavailable) as e:
                await ctl.query()
    line = str(e.value)
    assert f"{svc.address}: {expected}" in line, line
    plain_words(line)


async def test_a_refusal_is_the_nodes_reason_as_it_is_at_once(c: Certs) -> None:
    async with fake(c.node) as svc:
        async with ControllerClient([svc.address], total_timeout=60, tls=c.client("app1")) as ctl:
            with pytest.raises(Denied) as e:       # not retried until the 60 s are up
                await ctl.join({100: ["127.0.0.1:1"]}, force=True)
    assert str(e.value) == DENIED.format("app1")
    assert svc.joined == []


async def _oneshot(*argv: str, env: dict | None = None) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec(
        *eraftd_command(), *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(p.communicate(), 60)
    return p.returncode, out.decode(), err.decode()


async def test_one_shots_with_the_flags_the_environment_and_without(c: Certs) -> None:
    ops, app1 = c.client("ops"), c.client("app1")
    async with fake(c.node) as svc:
        at = ["--controllers", svc.address, "--timeout", "20s"]
        rc, out, err = await _oneshot(*at, "--tls-ca", ops.ca_file, "--tls-cert", ops.cert_file,
                                      "--tls-key", ops.key_file, "join", "100=127.0.0.1:1", "--force")
        assert (rc, err) == (0, ""), err
        assert svc.joined == [100]
        rc, out, err = await _oneshot(*at, "join", "101=127.0.0.1:1", "--force",
                                      env={"ERAFT_TLS_CA": app1.ca_file, "ERAFT_TLS_CERT": app1.cert_file,
                                           "ERAFT_TLS_KEY": app1.key_file})
        assert rc == 1 and err.strip() == f"eraftd: {DENIED.format('app1')}", err
        rc, out, err = await _oneshot("--controllers", svc.address, "--timeout", "2s", "query")
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
        assert "closed the connection: the node may require TLS" in err
        plain_words(err.strip())
    assert svc.joined == [100]


# ---------------------------------------------------------------- HTTPS

def _https_get(url: str, ctx: ssl.SSLContext) -> tuple[int, str]:
    import urllib.request
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        return r.status, r.read().decode()


async def test_the_dashboard_serves_https_and_polls_the_tls_cluster(c: Certs) -> None:
    browser = TlsFiles(c.ca).ssl_context(server=False)
    async with fake(c.node) as svc:
        listen = f"127.0.0.1:{free_port()}"
        p = await asyncio.create_subprocess_exec(
            *eraftd_command(), "dashboard", "--controllers", svc.address, "--listen", listen,
            "--interval", "200ms", "--tls-ca", c.ca, "--tls-cert", c.node.cert_file,
            "--tls-key", c.node.key_file, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            first = await asyncio.wait_for(p.stdout.readline(), 60)
            assert f"serving https://{listen}/" in first.decode()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while True:
                status, body = await asyncio.to_thread(_https_get, f"https://{listen}/api/cluster", browser)
                snap = json.loads(body)
                if status == 200 and snap.get("ready") and not snap.get("error"):
                    break
                assert loop.time() < deadline, snap
                await asyncio.sleep(0.1)
            assert [m["up"] for m in snap["controllers"]] == [True]     # its probe dialled with TLS
            with pytest.raises(Exception):      # plain HTTP is not served
                await asyncio.to_thread(_https_get, f"http://{listen}/api/cluster", browser)
        finally:
            p.kill()
            await p.wait()


async def test_the_nodes_http_endpoint_is_https_with_client_certificates_iff_required(c: Certs) -> None:
    from eraftd.node.http import HttpServer
    ops = c.client("ops")
    with_cert = ops.ssl_context(server=False)
    without = TlsFiles(c.ca).ssl_context(server=False)
    for client_auth in ("require", "none"):
        addr = f"127.0.0.1:{free_port()}"
        http = HttpServer(None, addr, tls=TlsSection(files=c.node, client_auth=client_auth))
        await http.start()
        try:
            assert await asyncio.to_thread(_https_get, f"https://{addr}/healthz", with_cert) == (200, "ok\n")
            if client_auth == "require":
                with pytest.raises((ssl.SSLError, OSError)):
                    await asyncio.to_thread(_https_get, f"https://{addr}/healthz", without)
            else:
                assert await asyncio.to_thread(_https_get, f"https://{addr}/healthz", without) == (200, "ok\n")
        finally:
            await http.stop()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
