"""`eraftd cert`: real `eraftd cert ...` processes make a CA, node and client certificates; the
files are checked with cryptography and `openssl verify`, every refusal is one line that writes
nothing, and the certificates carry a real mutual-TLS handshake with grpc.aio (a server on
127.0.0.1:0 that requires a client certificate of the CA).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from eraftd import config
from eraftd._pb import admin_pb2 as apb
from eraftd._pb import admin_pb2_grpc as apb_grpc
from eraftd.certs import create_ca, create_client, create_node
from eraftd.testing import eraftd_command
from eraftd.tls import TlsFiles, channel

CALL_TIMEOUT_S = 30      # a refused handshake fails at once; a generous bound for a loaded machine


def cert(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(eraftd_command() + ["cert", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def ok(*args: str, cwd: Path) -> list[str]:
    r = cert(*args, cwd=cwd)
    assert r.returncode == 0 and r.stderr == "", r.stdout + r.stderr
    return r.stdout.splitlines()


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(c: x509.Certificate) -> str:
    return c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def ext(c: x509.Certificate, oid):
    return c.extensions.get_extension_for_oid(oid).value


def openssl_verify(ca: Path, leaf: Path, purpose: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl on PATH")
    r = subprocess.run(["openssl", "verify", "-CAfile", str(ca), "-purpose", purpose, str(leaf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"{leaf}: OK", r.stdout + r.stderr


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A working directory whose certs/ holds a CA, a node and a client certificate, made by
    real `eraftd cert` processes (what the tests below read)."""
    d = tmp_path_factory.mktemp("cert")
    out = ok("create-ca", "certs", cwd=d)
    assert out[0].startswith("wrote certs/ca.crt ") and out[1].startswith("wrote certs/ca.key ")
    assert out[2].startswith("next: eraftd cert create-node certs HOST:PORT") and len(out) == 3
    ok("create-node", "certs", "127.0.0.1:7001", "db1.example:7001", "[::1]:7002", "db1.example", cwd=d)
    ok("create-client", "certs", "ops", cwd=d)
    return d


# ---------------------------------------------------------------- the files

def test_files_names_usages_and_modes(made):
    certs = made / "certs"
    assert sorted(p.name for p in certs.iterdir()) == [
        "ca.crt", "ca.key", "client.ops.crt", "client.ops.key", "node.crt", "node.key"]
    for key in ("ca.key", "node.key", "client.ops.key"):
        assert (certs / key).stat().st_mode & 0o777 == 0o600, key
        assert b"-----BEGIN PRIVATE KEY-----" in (certs / key).read_bytes()
    for crt in ("ca.crt", "node.crt", "client.ops.crt"):
        assert (certs / crt).stat().st_mode & 0o077 == 0o044, crt     # readable, not writable, by others

    ca, node, client = load(certs / "ca.crt"), load(certs / "node.crt"), load(certs / "client.ops.crt")
    assert ext(ca, ExtensionOID.BASIC_CONSTRAINTS).ca
    assert node.issuer == ca.subject and client.issuer == ca.subject
    assert not ext(node, ExtensionOID.BASIC_CONSTRAINTS).ca
    assert cn(node) == "node" and cn(client) == "ops"
    sans = ext(node, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert sans.get_values_for_type(x509.DNSName) == ["db1.example"]      # once, though named twice
    assert list(ext(node, ExtensionOID.EXTENDED_KEY_USAGE)) == [ExtendedKeyUsageOID.SERVER_AUTH,
                                                                 ExtendedKeyUsageOID.CLIENT_AUTH]
    assert list(ext(client, ExtensionOID.EXTENDED_KEY_USAGE)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        client.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    for c in (node, client):
        c.verify_directly_issued_by(ca)
        assert c.not_valid_after_utc <= ca.not_valid_after_utc

    openssl_verify(certs / "ca.crt", certs / "node.crt", "sslserver")
    openssl_verify(certs / "ca.crt", certs / "node.crt", "sslclient")
    openssl_verify(certs / "ca.crt", certs / "client.ops.crt", "sslclient")


def test_create_node_prints_the_tls_lines_of_a_toml_that_loads(tmp_path):
    ok("create-ca", "certs", cwd=tmp_path)
    out = ok("create-node", "certs", "127.0.0.1:7001", cwd=tmp_path)
    assert out[:2] == ["wrote certs/node.crt  (node certificate for 127.0.0.1)",
                       "wrote certs/node.key  (its key, mode 0600)"]
    assert out[2].startswith("next: add this to the node's TOML")
    section = "\n".join(out[3:])
    tls = tomllib.loads(section)["tls"]
    assert tls["cert_file"] == str(tmp_path / "certs" / "node.crt") and tls["admins"] == ["ops"]
    (tmp_path / "elsewhere").mkdir()
    toml = tmp_path / "elsewhere" / "n1.toml"       # absolute paths: the TOML may live anywhere
    toml.write_text('[node]\nlisten = "127.0.0.1:7001"\ndata_dir = "d"\n'
                    '[controller]\npeers = ["127.0.0.1:7001"]\n' + section + "\n")
    cfg = config.load(str(toml))
    assert cfg.tls.files == TlsFiles(str(tmp_path / "certs" / "ca.crt"), tls["cert_file"], tls["key_file"])
    assert cfg.tls.require_client_auth and cfg.tls.admins == ("ops",)

    out = ok("create-client", "certs", "app-1.x_y", cwd=tmp_path)
    assert out[-1] == ("next: eraftd shell --controllers HOST:PORT,... --tls-ca certs/ca.crt "
                       "--tls-cert certs/client.app-1.x_y.crt --tls-key certs/client.app-1.x_y.key  "
                       "(or ERAFT_TLS_CA, ERAFT_TLS_CERT, ERAFT_TLS_KEY)")


def test_out_writes_a_node_directory_without_the_ca_key(tmp_path):
    ok("create-ca", "ca", cwd=tmp_path)
    out = ok("create-node", "ca", "10.0.0.2:7001", "--out", "n2", cwd=tmp_path)
    assert "wrote n2/ca.crt  (a copy of the CA certificate)" in out
    assert sorted(p.name for p in (tmp_path / "n2").iterdir()) == ["ca.crt", "node.crt", "node.key"]
    assert (tmp_path / "n2" / "ca.crt").read_bytes() == (tmp_path / "ca" / "ca.crt").read_bytes()
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.crt", "ca.key"]
    # a second certificate into the same directory: the copy of ca.crt is already there
    out = ok("create-client", "ca", "ops", "--out", "n2", cwd=tmp_path)
    assert not any("ca.crt" in line for line in out[:-1])
    openssl_verify(tmp_path / "n2" / "ca.crt", tmp_path / "n2" / "client.ops.crt", "sslclient")


def test_overwrite_replaces_and_without_it_nothing_changes(tmp_path):
    ok("create-ca", "certs", cwd=tmp_path)
    ok("create-node", "certs", "127.0.0.1:7001", cwd=tmp_path)
    before = snapshot(tmp_path)
    r = cert("create-node", "certs", "127.0.0.2:7001", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == ("eraftd: cert create-node: certs/node.crt already exists; "
                        "remove it or pass --overwrite\n")
    assert snapshot(tmp_path) == before
    ok("create-node", "certs", "127.0.0.2:7001", "--overwrite", cwd=tmp_path)
    sans = ext(load(tmp_path / "certs" / "node.crt"), ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.2"]
    assert (tmp_path / "certs" / "node.key").read_bytes() != before["certs/node.key"]
    assert (tmp_path / "certs" / "node.key").stat().st_mode & 0o777 == 0o600


REFUSALS = [
    # (what is in the directory first, the arguments, exit code, the one line after "eraftd: cert ")
    ("ca", ["create-ca", "certs"], 1, "create-ca: certs/ca.crt already exists; remove it or pass --overwrite"),
    ("", ["create-node", "certs", "127.0.0.1:7001"], 1,
     "create-node: certs/ca.crt does not exist: run `eraftd cert create-ca certs` first"),
    ("", ["create-client", "certs", "ops"], 1,
     "create-client: certs/ca.crt does not exist: run `eraftd cert create-ca certs` first"),
    ("", ["create-node", "certs", "127.0.0.1:7001", "--out", "n1"], 1,
     "create-node: certs/ca.crt does not exist"),                      # and n1/ is not made
    ("ca", ["create-client", "certs", "bad/name", "--out", "c1"], 2, "is not a usable client name"),
    ("ca", ["create-node", "certs", "127.0.0.1:99999"], 2,
     "create-node: '127.0.0.1:99999' is not an address: the port must be a number from 1 to 65535"),
    ("ca", ["create-node", "certs", "127.0.0.1:7001", "db1:port"], 2,
     "create-node: 'db1:port' is not an address: the port must be a number"),
    ("ca", ["create-node", "certs", "1.2.3:7001"], 2, "create-node: '1.2.3:7001' is not an address (host:port"),
    ("ca", ["create-node", "certs", "bad_host!:7001"], 2, "create-node: 'bad_host!:7001' is not an address"),
    ("ca", ["create-node", "certs", "[fe80::zz]:7001"], 2,
     "create-node: '[fe80::zz]:7001' is not an address: 'fe80::zz' is not an IPv6 address"),
    ("ca", ["create-node", "certs", "0.0.0.0:7001"], 2,
     "create-node: '0.0.0.0:7001' listens everywhere but is no address a peer can dial"),
    ("ca", ["create-client", "certs", "bad name"], 2, "create-client: 'bad name' is not a usable client name"),
    ("ca", ["create-client", "certs", "../x"], 2, "create-client: '../x' is not a usable client name"),
    ("ca", ["create-client", "certs", "node"], 2,
     "create-client: 'node' is the common name of node certificates; pick another client name"),
    ("foreign-key", ["create-client", "certs", "ops"], 1,
     "create-client: certs/ca.key is not the key of certs/ca.crt"),
    ("ca", ["create-node", "certs"], 2,
     "create-node: the following arguments are required: ADDR; see eraftd cert create-node --help"),
    ("ca", ["create-client", "certs"], 2, "create-client: the following arguments are required: NAME"),
    ("ca", [], 2, "say what to do: create-ca DIR, create-node DIR ADDR..., create-client DIR NAME or show FILE"),
    ("ca", ["frob"], 2, "argument ACTION: invalid choice: 'frob'"),
    ("ca", ["show", "certs/ca.key"], 1, "show: certs/ca.key is not a PEM certificate (it is a private key"),
    ("ca", ["show", "certs/nothing.crt"], 1, "show: cannot read certs/nothing.crt: No such file or directory"),
]


@pytest.mark.parametrize("first, args, code, line", REFUSALS,
                         ids=[" ".join(a) or "no-action" for _, a, _, _ in REFUSALS])
def test_refusals_are_one_line_and_write_nothing(tmp_path, first, args, code, line):
    if first:
        create_ca(str(tmp_path / "certs"))
    if first == "foreign-key":
        create_ca(str(tmp_path / "other"))
        shutil.copy(tmp_path / "other" / "ca.key", tmp_path / "certs" / "ca.key")
        shutil.rmtree(tmp_path / "other")
    before = snapshot(tmp_path)
    r = cert(*args, cwd=tmp_path)
    assert r.returncode == code, r.stdout + r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("eraftd: cert")
    assert line in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert snapshot(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == sorted({p.split("/")[0] for p in before})


def test_help_needs_no_cluster(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ERAFT_CONTROLLERS"}
    for argv in (["cert", "--help"], ["help", "cert"], ["cert", "create-node", "-h"],
                 ["help", "cert", "create-client"]):
        r = subprocess.run(eraftd_command() + argv, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, env=env)
        assert r.returncode == 0 and r.stderr == "", (argv, r.stderr)
        assert r.stdout.startswith("usage: eraftd cert"), r.stdout
    r = subprocess.run(eraftd_command() + ["help", "cert"], capture_output=True, text=True, timeout=120)
    for word in ("create-ca", "create-node", "create-client", "show", "Running with TLS"):
        assert word in r.stdout
    assert os.listdir(tmp_path) == []


def test_show_says_what_a_certificate_names(made):
    out = ok("show", "certs/node.crt", "certs/client.ops.crt", "certs/ca.crt", cwd=made)
    text = "\n".join(out)
    blocks = text.split("\n\n")
    assert len(blocks) == 3
    node = dict(line.split("  ", 1) for line in blocks[0].splitlines())
    node = {k.strip(): v.strip() for k, v in node.items()}
    assert node["subject"] == "CN=node,O=eraftd" and node["issuer"] == "CN=eraftd CA,O=eraftd"
    assert node["kind"].startswith("node certificate (server and client")
    assert node["names"].startswith("127.0.0.1, ::1, db1.example")
    assert "expires in" in node["valid"]
    assert node["signed by certs/ca.crt"] == "yes"
    assert "client certificate" in blocks[1] and "CN=ops" in blocks[1] and "names" not in blocks[1]
    assert "certificate authority" in blocks[2] and "signed by" not in blocks[2]


# ---------------------------------------------------------------- a real handshake

class _Admin(apb_grpc.NodeAdminServicer):
    """Answers Status and remembers the common name of each client certificate it saw."""

    def __init__(self) -> None:
        self.peers: list[str] = []

    async def Status(self, request, context):
        names = context.auth_context().get("x509_common_name", [])
        self.peers.append(b",".join(names).decode())
        return apb.NodeStatus()


async def test_mutual_tls_handshake_with_the_made_certificates(made, tmp_path):
    certs = made / "certs"
    # another CA, with a client certificate of its own, and a node certificate for another host
    create_ca(str(tmp_path / "other"))
    create_client(str(tmp_path / "other"), "ops")
    create_node(str(certs), ["10.9.9.9:7001"], out=str(tmp_path / "far"))

    server_tls = TlsFiles(str(certs / "ca.crt"), str(certs / "node.crt"), str(certs / "node.key"))
    admin = _Admin()
    server = grpc.aio.server()
    apb_grpc.add_NodeAdminServicer_to_server(admin, server)
    port = server.add_secure_port("127.0.0.1:0", server_tls.server_credentials(require_client_auth=True))
    target = f"127.0.0.1:{port}"

    async def status(tls: TlsFiles | None, name: str | None = None) -> grpc.StatusCode:
        ch = channel(target, tls, name=name)
        try:
            await apb_grpc.NodeAdminStub(ch).Status(apb.StatusRequest(), timeout=CALL_TIMEOUT_S)
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as e:
            return e.code()
        finally:
            await ch.close()

    await server.start()
    try:
        ca = str(certs / "ca.crt")
        assert await status(TlsFiles(ca, str(certs / "client.ops.crt"), str(certs / "client.ops.key"))) \
            == grpc.StatusCode.OK
        assert await status(server_tls) == grpc.StatusCode.OK          # a peer: the node certificate
        assert admin.peers == ["ops", "node"]
        refused = [
            None,                                                       # plaintext
            TlsFiles(ca),                                               # TLS, but no client certificate
            TlsFiles(ca, str(tmp_path / "other" / "client.ops.crt"),    # a client of another CA
                     str(tmp_path / "other" / "client.ops.key")),
            TlsFiles(str(tmp_path / "other" / "ca.crt"),                # trusts another CA: the server's
                     str(certs / "client.ops.crt"), str(certs / "client.ops.key")),  # cert is foreign
        ]
        for tls in refused:
            assert await status(tls) == grpc.StatusCode.UNAVAILABLE, tls
        # a node certificate is checked against the name dialled: one for 10.9.9.9 is refused at
        # 127.0.0.1, and accepted when the client says the node is known as 10.9.9.9 (tls.channel's name)
        far = tmp_path / "far"
        far_server = grpc.aio.server()
        apb_grpc.add_NodeAdminServicer_to_server(admin, far_server)
        far_port = far_server.add_secure_port("127.0.0.1:0", TlsFiles(
            str(far / "ca.crt"), str(far / "node.crt"), str(far / "node.key")).server_credentials(True))
        await far_server.start()
        try:
            target = f"127.0.0.1:{far_port}"
            client = TlsFiles(ca, str(certs / "client.ops.crt"), str(certs / "client.ops.key"))
            assert await status(client) == grpc.StatusCode.UNAVAILABLE
            assert await status(client, name="10.9.9.9:7001") == grpc.StatusCode.OK
        finally:
            await far_server.stop(None)
        assert admin.peers == ["ops", "node", "ops"]                  # no refused client got through
    finally:
        await server.stop(None)


def test_the_library_api_other_tests_use(tmp_path):
    d = str(tmp_path / "c")
    w = create_ca(d)
    assert (w.cert, w.key) == (f"{d}/ca.crt", f"{d}/ca.key")
    assert create_node(d, ["127.0.0.1:7001"]).cert == f"{d}/node.crt"
    assert create_client(d, "ops").key == f"{d}/client.ops.key"
    assert sys.modules["eraftd.certs"].client_files("ops") == ("client.ops.crt", "client.ops.key")


def test_cluster_certificates_are_made_once(tmp_path):
    from eraftd.certs import cluster_certificates
    d = tmp_path / "certs"
    c = cluster_certificates(str(d), ["127.0.0.1"], ("ops", "ops2"))
    first = snapshot(d)
    assert sorted(first) == ["ca.crt", "ca.key", "client.ops.crt", "client.ops.key",
                             "client.ops2.crt", "client.ops2.key", "node.crt", "node.key"]
    assert c.client() == TlsFiles(f"{d}/ca.crt", f"{d}/client.ops.crt", f"{d}/client.ops.key")
    assert c.client("ops2").cert_file == f"{d}/client.ops2.crt"
    assert c.tls_table(relative_to=str(tmp_path)) == {
        "ca_file": "certs/ca.crt", "cert_file": "certs/node.crt", "key_file": "certs/node.key",
        "client_auth": "require", "admins": ["ops", "ops2"]}
    assert c.tls_table()["key_file"] == f"{d}/node.key"
    assert cluster_certificates(str(d), ["127.0.0.1"], ("ops", "ops2")) == c
    assert snapshot(d) == first                       # kept, not made again
    (d / "client.ops2.crt").unlink()
    cluster_certificates(str(d), ["127.0.0.1"], ("ops", "ops2"))
    again = snapshot(d)
    assert again["client.ops.crt"] == first["client.ops.crt"] and again["ca.crt"] == first["ca.crt"]
    openssl_verify(d / "ca.crt", d / "client.ops2.crt", "sslclient")
