"""`eraftd cert`: a cluster's certificate authority and the certificates signed by it.

    create-ca DIR              DIR/ca.crt, DIR/ca.key (the key stays with the operator)
    create-node DIR ADDR...    DIR/node.crt, DIR/node.key: a node certificate whose subject
                               alternative names are the hosts of ADDR (host:port or host)
    create-client DIR NAME     DIR/client.NAME.crt, DIR/client.NAME.key: CN=NAME
    show FILE...               what a certificate names: subject, SANs, usage, issuer, expiry

A node certificate is what peers check: it names the node's advertise address (an IP or DNS SAN)
and serves both ways (server and client authentication), so a node presents it to clients and to
the peers it dials.  A client certificate has no SAN, only a common name: the name `[tls] admins`
lists for the admin commands.  Keys are ECDSA P-256 (cheap handshakes), written mode 0600.
create-node and create-client sign with DIR's CA and write into DIR, or into `out` (--out: one
directory per node or client, holding a copy of ca.crt but not the CA's key).
Nothing is overwritten unless asked (overwrite=True, --overwrite), and a refusal writes nothing:
every file is written aside first, then renamed into place.
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["CertError", "BadArgument", "Written", "create_ca", "create_node", "create_client",
           "node_hosts", "describe", "CA_CERT", "CA_KEY", "NODE_CERT", "NODE_KEY", "client_files",
           "NODE_CN", "Cluster", "cluster_certificates", "add_arguments", "cmd_cert"]

CA_CERT, CA_KEY = "ca.crt", "ca.key"
NODE_CERT, NODE_KEY = "node.crt", "node.key"
NODE_CN = "node"
CA_DAYS = 10 * 366
CERT_DAYS = 5 * 366
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class CertError(Exception):
    """One line for the user: what is wrong and what to do."""


class BadArgument(CertError):
    """A CertError about what was typed (an address, a name): a usage error."""


@dataclass(frozen=True)
class Written:
    cert: str                  # the paths written
    key: str
    ca_copy: str = ""          # out's copy of ca.crt, when one was written


def client_files(name: str) -> tuple[str, str]:
    return f"client.{name}.crt", f"client.{name}.key"


# ---------------------------------------------------------------- what the arguments name

def node_hosts(addrs: list[str]) -> list[str]:
    """The hosts of ADDR arguments (host:port, [v6]:port, a bare host or IPv6 address), in order,
    once each; a BadArgument naming the first one that is not an address a peer can dial."""
    hosts: list[str] = []
    for a in addrs:
        host = _host(a.strip())
        if host not in hosts:
            hosts.append(host)
    if not hosts:
        raise BadArgument("give at least one address of the node (its [node] advertise host:port)")
    return hosts


def _host(a: str) -> str:
    example = "host:port, e.g. 10.0.0.5:7001 or db1.example:7001"
    port = None
    if m := re.fullmatch(r"\[([^\]]*)\](?::(.*))?", a):
        host, port, v6 = m[1], m[2], True
    elif a.count(":") > 1:
        host, v6 = a, True                             # a bare IPv6 address
    else:
        host, _, port = a.partition(":") if ":" in a else (a, "", None)
        v6 = False
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise BadArgument(f"{a!r} is not an address: the port must be a number from 1 to 65535 ({example})")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if v6:
            raise BadArgument(f"{a!r} is not an address: {host!r} is not an IPv6 address ({example})") from None
        labels = host.rstrip(".").split(".")
        if (not host or len(host) > 253 or not all(_LABEL.fullmatch(l) for l in labels)
                or labels[-1].isdigit()):
            raise BadArgument(f"{a!r} is not an address ({example})") from None
        return host.rstrip(".").lower()
    if ip.is_unspecified:
        raise BadArgument(f"{a!r} listens everywhere but is no address a peer can dial: give the "
                          f"node's advertise address ([node] advertise, e.g. 10.0.0.5:7001)")
    return str(ip)


def _client_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise BadArgument(f"{name!r} is not a usable client name: use letters, digits, '.', '_' or '-' "
                          f"(up to 63, starting with a letter or digit), e.g. ops or app1")
    if name == NODE_CN:
        raise BadArgument(f"{NODE_CN!r} is the common name of node certificates; pick another client name")
    return name


# ---------------------------------------------------------------- making certificates

def create_ca(directory: str, *, overwrite: bool = False, days: int = CA_DAYS) -> Written:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    _check_free(directory, [CA_CERT, CA_KEY], overwrite)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eraftd"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "eraftd CA")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, _hash()))
    paths = _write(directory, [(CA_CERT, _cert_pem(cert)), (CA_KEY, _key_pem(key))], overwrite)
    return Written(*paths)


def create_node(directory: str, addrs: list[str], *, overwrite: bool = False,
                days: int = CERT_DAYS, out: str | None = None) -> Written:
    """A node certificate naming the hosts of addrs, signed by directory's CA, written into
    out (default: directory)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID
    hosts = node_hosts(addrs)
    sans: list = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    return _signed(directory, out, NODE_CERT, NODE_KEY, NODE_CN, overwrite, days,
                   [x509.SubjectAlternativeName(sans)],
                   [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def create_client(directory: str, name: str, *, overwrite: bool = False,
                  days: int = CERT_DAYS, out: str | None = None) -> Written:
    """A client certificate CN=name, signed by directory's CA, written into out (default: directory)."""
    from cryptography.x509.oid import ExtendedKeyUsageOID
    cert_name, key_name = client_files(_client_name(name))
    return _signed(directory, out, cert_name, key_name, name, overwrite, days, [],
                   [ExtendedKeyUsageOID.CLIENT_AUTH])


@dataclass(frozen=True)
class Cluster:
    """A small cluster's certificates in one directory (demo, test clusters): the CA, one node
    certificate shared by every node, and the certificates of the admin clients."""
    directory: str
    admins: tuple[str, ...] = ("ops",)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def client(self, name: str | None = None):
        """The TlsFiles of client `name` (default: the first admin): the CA, its certificate, key."""
        from eraftd.tls import TlsFiles
        crt, key = client_files(name or self.admins[0])
        return TlsFiles(self.path(CA_CERT), self.path(crt), self.path(key))

    def tls_table(self, relative_to: str | None = None) -> dict[str, Any]:
        """The nodes' [tls] section (client certificates required, admins); paths relative to
        the directory of the TOML files when relative_to names it, else as `directory` is."""
        def where(name: str) -> str:
            return os.path.relpath(self.path(name), relative_to) if relative_to else self.path(name)
        return {"ca_file": where(CA_CERT), "cert_file": where(NODE_CERT), "key_file": where(NODE_KEY),
                "client_auth": "require", "admins": list(self.admins)}


def cluster_certificates(directory: str, hosts: list[str],
                         admins: tuple[str, ...] = ("ops",)) -> Cluster:
    """A CA, one node certificate naming hosts and a client certificate for each of admins, in
    directory: made once, so a cluster started again keeps its files (a missing one is made
    again; a missing CA means every certificate anew)."""
    cluster = Cluster(directory, tuple(admins))
    fresh = not os.path.exists(cluster.path(CA_CERT))
    if fresh:
        create_ca(directory, overwrite=True)
    if fresh or not os.path.exists(cluster.path(NODE_CERT)):
        create_node(directory, hosts, overwrite=True)
    for name in admins:
        if fresh or not os.path.exists(cluster.client(name).cert_file):
            create_client(directory, name, overwrite=True)
    return cluster


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _hash():
    from cryptography.hazmat.primitives import hashes
    return hashes.SHA256()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_ca(directory: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert_path, key_path = os.path.join(directory, CA_CERT), os.path.join(directory, CA_KEY)
    for p in (cert_path, key_path):
        if not os.path.exists(p):
            raise CertError(f"{p} does not exist: run `eraftd cert create-ca {directory}` first "
                            f"(the CA's key signs every certificate)")
    try:
        with open(cert_path, "rb") as f:
            ca_pem = f.read()
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
        with open(key_path, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise CertError(f"cannot read the CA in {directory}: {getattr(e, 'strerror', None) or e}") from None
    if _spki(ca_key.public_key()) != _spki(ca_cert.public_key()):
        raise CertError(f"{key_path} is not the key of {cert_path}: restore the pair made by "
                        f"`eraftd cert create-ca` (a new CA means new certificates for every node)")
    if ca_cert.not_valid_after_utc <= _now():
        raise CertError(f"the CA {cert_path} expired on {_day(ca_cert.not_valid_after_utc)}: make a new "
                        f"one (create-ca --overwrite) and new certificates for every node and client")
    return ca_cert, ca_key, ca_pem


def _spki(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _signed(directory, out, cert_name, key_name, cn, overwrite, days, extensions, usages) -> Written:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    out = out or directory
    copy_ca = os.path.abspath(out) != os.path.abspath(directory)
    _check_free(out, [cert_name, key_name], overwrite)
    ca_cert, ca_key, ca_pem = _load_ca(directory)
    files = []
    if copy_ca and _differs(os.path.join(out, CA_CERT), ca_pem):
        _check_free(out, [CA_CERT], overwrite)
        files.append((CA_CERT, ca_pem))
    key = _new_key()
    now = _now()
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eraftd"),
                                  x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca_cert.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                      key_agreement=True, content_commitment=False,
                                      data_encipherment=False, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                        critical=False))
    for ext in extensions:
        b = b.add_extension(ext, critical=False)
    cert = b.sign(ca_key, _hash())
    paths = _write(out, [(cert_name, _cert_pem(cert)), (key_name, _key_pem(key))] + files, overwrite)
    return Written(paths[0], paths[1], paths[2] if files else "")


def _differs(path: str, data: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read() != data
    except OSError:
        return True


def _check_free(directory: str, names: list[str], overwrite: bool) -> None:
    if overwrite:
        return
    for name in names:
        p = os.path.join(directory, name)
        if os.path.lexists(p):
            raise CertError(f"{p} already exists; remove it or pass --overwrite")


def _write(directory: str, files: list[tuple[str, bytes]], overwrite: bool) -> list[str]:
    """Write every (name, data) into directory, or none of them: each is written aside (keys
    and certificates alike mode 0600 while aside; certificates 0644 in place), then renamed."""
    _check_free(directory, [n for n, _ in files], overwrite)
    aside: list[tuple[str, str]] = []
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for name, data in files:
            final = os.path.join(directory, name)
            tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            aside.append((tmp, final))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if not name.endswith(".key"):
                os.chmod(tmp, 0o644)
        if not overwrite:                       # nothing appeared meanwhile
            _check_free(directory, [n for n, _ in files], overwrite)
        for tmp, final in aside:
            os.replace(tmp, final)
        aside = []
    except OSError as e:
        raise CertError(f"cannot write in {directory}: {e.strerror or e}") from None
    finally:
        for tmp, _ in aside:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return [os.path.join(directory, name) for name, _ in files]


# ---------------------------------------------------------------- show

def describe(path: str) -> list[str]:
    """What the certificate in path names, one `label  value` line each; CertError when path
    cannot be read or holds no certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CertError(f"cannot read {path}: {e.strerror or e}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        what = " (it is a private key: show its .crt)" if b"PRIVATE KEY-----" in data else ""
        raise CertError(f"{path} is not a PEM certificate{what}")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise CertError(f"{path} is not a readable certificate: {e}") from None
    lines = [("file", path), ("subject", cert.subject.rfc4514_string()),
             ("issuer", cert.issuer.rfc4514_string())]
    ext = {e.oid: e.value for e in cert.extensions}
    basic = ext.get(x509.oid.ExtensionOID.BASIC_CONSTRAINTS)
    usages = ext.get(x509.oid.ExtensionOID.EXTENDED_KEY_USAGE, [])
    server, client = ExtendedKeyUsageOID.SERVER_AUTH in usages, ExtendedKeyUsageOID.CLIENT_AUTH in usages
    if basic is not None and basic.ca:
        kind = "certificate authority (signs the cluster's certificates)"
    elif server and client:
        kind = "node certificate (server and client authentication)"
    elif client:
        kind = "client certificate (client authentication)"
    elif server:
        kind = "server certificate (server authentication only)"
    else:
        kind = "certificate (no extended key usage)"
    lines.append(("kind", kind))
    sans = ext.get(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if sans is not None:
        names = [str(v) for v in sans.get_values_for_type(x509.IPAddress)] + \
                sans.get_values_for_type(x509.DNSName)
        lines.append(("names", ", ".join(names) + "  (the addresses' hosts it is valid for)"))
    now, start, end = _now(), cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        state = "NOT YET VALID"
    elif now >= end:
        state = "EXPIRED"
    else:
        state = f"expires in {(end - now).days} days"
    lines.append(("valid", f"{_day(start)} .. {_day(end)}  ({state})"))
    lines.append(("sha256", cert.fingerprint(hashes.SHA256()).hex(":")))
    ca_path = os.path.join(os.path.dirname(path) or ".", CA_CERT)
    if os.path.basename(path) != CA_CERT and os.path.isfile(ca_path):
        lines.append((f"signed by {ca_path}", "yes" if _issued_by(cert, ca_path) else "NO"))
    width = max(len(k) for k, _ in lines)
    return [f"{k:<{width}}  {v}" for k, v in lines]


def _issued_by(cert, ca_path: str) -> bool:
    from cryptography import x509
    try:
        with open(ca_path, "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:       # unreadable, another issuer, a bad signature: all mean "no"
        return False


def _day(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- `eraftd cert`

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_USAGE_HINT = "see eraftd cert --help"


def _one_line_errors(p: argparse.ArgumentParser) -> None:
    """argparse's usage errors as one line, `eraftd: PROG: MESSAGE; see PROG --help`."""
    def error(message: str) -> None:
        print(f"eraftd: {p.prog.removeprefix('eraftd ')}: {message}; see {p.prog} --help", file=sys.stderr)
        p.exit(EXIT_USAGE)
    p.error = error         # type: ignore[method-assign]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = ("Make the cluster's TLS certificates: a CA, then a certificate for every node\n"
                     "(naming its advertise address) and one for every client (naming the client:\n"
                     "[tls] admins lists the names allowed the admin commands).")
    p.epilog = ("a TLS cluster in three commands (README, \"Running with TLS\"):\n"
                "  eraftd cert create-ca certs\n"
                "  eraftd cert create-node certs 10.0.0.5:7001 10.0.0.6:7001 10.0.0.7:7001\n"
                "  eraftd cert create-client certs ops\n"
                "then the [tls] lines create-node prints go into every node's TOML.\n"
                "eraftd cert ACTION --help explains one.")
    _one_line_errors(p)
    sub = p.add_subparsers(dest="cert_action", metavar="ACTION")
    overwrite = dict(action="store_true", help="replace files that exist (default: refuse)")

    a = sub.add_parser("create-ca", help="a new certificate authority: DIR/ca.crt and DIR/ca.key",
                       description="Write DIR/ca.crt (give it to every node and client) and DIR/ca.key "
                                   "(it signs every certificate: keep it with the operator, off the nodes).")
    a.add_argument("dir", metavar="DIR", help="where to write them (created if missing)")
    a.add_argument("--overwrite", **overwrite)

    def signed_by_dir(name: str, summary: str, description: str, what: str, files: str,
                      **positional: Any) -> None:
        a = sub.add_parser(name, help=summary, description=description)
        a.add_argument("dir", metavar="DIR", help="holds the CA (ca.crt, ca.key)")
        a.add_argument(what, **positional)
        a.add_argument("--out", metavar="OUTDIR", help=f"write {files} and a copy of ca.crt there "
                                                       f"(default: DIR)")
        a.add_argument("--overwrite", **overwrite)

    signed_by_dir("create-node", "a node certificate naming the node's addresses: DIR/node.crt, .key",
                  "Sign a node certificate with DIR's CA: it names the hosts of ADDR (the node's "
                  "[node] advertise address; several for a certificate shared by nodes) and serves "
                  "as server and client certificate.", "addrs", "node.crt, node.key",
                  metavar="ADDR", nargs="+", help="host:port (or host) the node is known by")
    signed_by_dir("create-client", "a client certificate CN=NAME: DIR/client.NAME.crt, .key",
                  "Sign a client certificate with DIR's CA whose common name is NAME (list NAME in "
                  "the nodes' [tls] admins to allow it join, leave, move, member changes and shard "
                  "abandon).", "name", "client.NAME.crt, client.NAME.key",
                  metavar="NAME", help="the client's name: letters, digits, '.', '_', '-'")

    a = sub.add_parser("show", help="what a certificate names: subject, addresses, usage, issuer, expiry",
                       description="Print what each certificate names: subject, issuer, kind, the "
                                   "addresses (SANs), validity, fingerprint, and whether the ca.crt "
                                   "beside it signed it.")
    a.add_argument("files", metavar="FILE", nargs="+", help="a PEM certificate (.crt)")
    for action in sub.choices.values():
        _one_line_errors(action)


def cmd_cert(args: argparse.Namespace) -> int:
    action = getattr(args, "cert_action", None)
    if action is None:
        print(f"eraftd: cert: say what to do: create-ca DIR, create-node DIR ADDR..., "
              f"create-client DIR NAME or show FILE; {_USAGE_HINT}", file=sys.stderr)
        return EXIT_USAGE
    try:
        lines = _ACTIONS[action](args)
    except BadArgument as e:
        print(f"eraftd: cert {action}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CertError as e:
        print(f"eraftd: cert {action}: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print("\n".join(lines))
    return EXIT_OK


def _do_create_ca(args: argparse.Namespace) -> list[str]:
    w = create_ca(args.dir, overwrite=args.overwrite)
    return [f"wrote {w.cert}  (the CA certificate: every node and client needs it)",
            f"wrote {w.key}  (the CA's key, mode 0600: it signs every certificate; keep it off the nodes)",
            f"next: eraftd cert create-node {_q(args.dir)} HOST:PORT ...  (each node's advertise address)"]


def _do_create_node(args: argparse.Namespace) -> list[str]:
    from eraftd.config import dump_toml
    w = create_node(args.dir, args.addrs, overwrite=args.overwrite, out=args.out)
    ca = w.ca_copy or os.path.join(args.out or args.dir, CA_CERT)
    toml = dump_toml({"tls": {"ca_file": os.path.abspath(ca), "cert_file": os.path.abspath(w.cert),
                              "key_file": os.path.abspath(w.key), "client_auth": "require",
                              "admins": ["ops"]}}).strip().splitlines()
    return ([f"wrote {w.cert}  (node certificate for {', '.join(node_hosts(args.addrs))})",
             f"wrote {w.key}  (its key, mode 0600)"]
            + ([f"wrote {w.ca_copy}  (a copy of the CA certificate)"] if w.ca_copy else [])
            + ["next: add this to the node's TOML (admins: the client names allowed join/leave/move; "
               f"make them with eraftd cert create-client {_q(args.dir)} NAME):"] + toml)


def _do_create_client(args: argparse.Namespace) -> list[str]:
    w = create_client(args.dir, args.name, overwrite=args.overwrite, out=args.out)
    ca = w.ca_copy or os.path.join(args.out or args.dir, CA_CERT)
    return ([f"wrote {w.cert}  (client certificate CN={args.name})",
             f"wrote {w.key}  (its key, mode 0600)"]
            + ([f"wrote {w.ca_copy}  (a copy of the CA certificate)"] if w.ca_copy else [])
            + [f"next: eraftd shell --controllers HOST:PORT,... --tls-ca {_q(ca)} --tls-cert {_q(w.cert)} "
               f"--tls-key {_q(w.key)}  (or ERAFT_TLS_CA, ERAFT_TLS_CERT, ERAFT_TLS_KEY)"])


def _do_show(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for path in args.files:
        out += ([""] if out else []) + describe(path)
    return out


_ACTIONS: dict[str, Any] = {"create-ca": _do_create_ca, "create-node": _do_create_node,
                            "create-client": _do_create_client, "show": _do_show}


def _q(s: str) -> str:
    import shlex
    return shlex.quote(s)
