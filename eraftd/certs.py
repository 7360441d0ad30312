"""`eraftd cert`: a cluster's certificate authority and the certificates signed by it.

    create-ca DIR              DIR/ca.crt, DIR/ca.key (the key stays with the operator)
    create-node DIR ADDR...    DIR/node.crt, DIR/node.key: a node certificate whose subject
                               alternative names are the hosts of ADDR (host:port or host)
    create-client DIR NAME     DIR/client.NAME.crt, DIR/client.NAME.key: CN=NAME

A node certificate is what peers check: it names the node's advertise address (an IP or DNS SAN)
and serves both ways (server and client authentication), so a node presents it to clients and to
the peers it dials.  A client certificate has no SAN, only a common name: the name `[tls] admins`
lists for the admin commands.  Keys are ECDSA P-256 (cheap handshakes), written mode 0600.
Nothing is overwritten unless asked (overwrite=True).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass

__all__ = ["CertError", "create_ca", "create_node", "create_client", "node_hosts",
           "CA_CERT", "CA_KEY", "NODE_CERT", "NODE_KEY", "client_files", "NODE_CN"]

CA_CERT, CA_KEY = "ca.crt", "ca.key"
NODE_CERT, NODE_KEY = "node.crt", "node.key"
NODE_CN = "node"
CA_DAYS = 10 * 366
CERT_DAYS = 5 * 366
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class CertError(Exception):
    """One line for the user: what is wrong and what to do."""


@dataclass(frozen=True)
class Written:
    cert: str
    key: str


def client_files(name: str) -> tuple[str, str]:
    return f"client.{name}.crt", f"client.{name}.key"


def node_hosts(addrs: list[str]) -> list[str]:
    """The hosts of ADDR arguments (host:port, [v6]:port or a bare host), in order, once each."""
    hosts: list[str] = []
    for a in addrs:
        a = a.strip()
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?", a)
        if m:
            host = m[1]
        elif a.count(":") == 1:
            host, port = a.rsplit(":", 1)
            if not port.isdigit():
                raise CertError(f"{a!r} is not host:port (the port must be a number)")
        elif a.count(":") > 1:
            host = a                                  # a bare IPv6 address
        else:
            host = a
        if not host or not re.fullmatch(r"[A-Za-z0-9._:-]{1,253}", host):
            raise CertError(f"{a!r} is not an address (host:port, e.g. 10.0.0.5:7001 or db1.example:7001)")
        if host not in hosts:
            hosts.append(host)
    if not hosts:
        raise CertError("give at least one address of the node (its [node] advertise host:port)")
    return hosts


def create_ca(directory: str, *, overwrite: bool = False, days: int = CA_DAYS) -> Written:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
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
    return _write(directory, CA_CERT, CA_KEY, cert, key, overwrite)


def create_node(directory: str, addrs: list[str], *, overwrite: bool = False,
                days: int = CERT_DAYS) -> Written:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID
    hosts = node_hosts(addrs)
    sans: list = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    return _signed(directory, NODE_CERT, NODE_KEY, NODE_CN, overwrite, days,
                   [x509.SubjectAlternativeName(sans)],
                   [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def create_client(directory: str, name: str, *, overwrite: bool = False,
                  days: int = CERT_DAYS) -> Written:
    from cryptography.x509.oid import ExtendedKeyUsageOID
    if not _NAME.fullmatch(name or ""):
        raise CertError(f"{name!r} is not a usable client name: use letters, digits, '.', '_' or '-' "
                        f"(up to 63, starting with a letter or digit)")
    if name == NODE_CN:
        raise CertError(f"{NODE_CN!r} is the common name of node certificates; pick another client name")
    cert_name, key_name = client_files(name)
    return _signed(directory, cert_name, key_name, name, overwrite, days, [],
                   [ExtendedKeyUsageOID.CLIENT_AUTH])


# ---------------------------------------------------------------- the parts

def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _hash():
    from cryptography.hazmat.primitives import hashes
    return hashes.SHA256()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


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
            ca_cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise CertError(f"cannot read the CA in {directory}: {getattr(e, 'strerror', None) or e}") from None
    return ca_cert, ca_key


def _signed(directory, cert_name, key_name, cn, overwrite, days, extensions, usages) -> Written:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    _check_free(directory, cert_name, key_name, overwrite)
    ca_cert, ca_key = _load_ca(directory)
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
    return _write(directory, cert_name, key_name, b.sign(ca_key, _hash()), key, overwrite)


def _check_free(directory: str, cert_name: str, key_name: str, overwrite: bool) -> None:
    if overwrite:
        return
    for name in (cert_name, key_name):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            raise CertError(f"{p} already exists; remove it or pass --overwrite")


def _write(directory, cert_name, key_name, cert, key, overwrite) -> Written:
    from cryptography.hazmat.primitives import serialization
    _check_free(directory, cert_name, key_name, overwrite)
    try:
        os.makedirs(directory, exist_ok=True)
        cert_path, key_path = os.path.join(directory, cert_name), os.path.join(directory, key_name)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
    except OSError as e:
        raise CertError(f"cannot write in {directory}: {e.strerror or e}") from None
    return Written(cert_path, key_path)
