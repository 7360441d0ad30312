"""TLS material and gRPC channels: the one home for how eraftd dials and serves with certificates.

A node with a `[tls]` section serves every service on its port with TLS and dials its peers with
its own certificate (mutual TLS); a client (shell, one-shot commands, bench, dashboard, library)
gives a CA file and, for a cluster with `client_auth = "require"`, its own certificate and key.

`channel(target, tls, options)` is how every eraftd client opens a grpc.aio channel: plaintext
when tls is None.  A node certificate names the node's advertise address; when a `[node] dial`
entry (a proxy, a NAT mapping) makes the dialled address differ from it, pass the advertised
address as `name` so the certificate is checked against the name the node is known by.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["TlsError", "TlsFiles", "channel", "sync_channel", "host_of", "ENV_CA", "ENV_CERT", "ENV_KEY"]

ENV_CA, ENV_CERT, ENV_KEY = "ERAFT_TLS_CA", "ERAFT_TLS_CERT", "ERAFT_TLS_KEY"


class TlsError(Exception):
    """One line for the user: which file, what is wrong, what to do."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA that signs the cluster's certificates, and (optionally for a client)
    the certificate and key this side presents.  Paths are absolute or relative to the cwd."""
    ca_file: str
    cert_file: str = ""
    key_file: str = ""

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            missing = "key" if self.cert_file else "certificate"
            raise TlsError(f"a TLS certificate needs its key and a key its certificate: the {missing} "
                           f"is missing (give both, e.g. --tls-cert FILE --tls-key FILE)")

    def read(self) -> tuple[bytes, bytes | None, bytes | None]:
        """(ca, cert, key) as bytes; a TlsError naming the file that cannot be used."""
        return (_read(self.ca_file, "CA certificate"),
                _read(self.cert_file, "certificate") if self.cert_file else None,
                _read(self.key_file, "key") if self.key_file else None)

    def channel_credentials(self) -> Any:
        import grpc
        ca, cert, key = self.read()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def server_credentials(self, require_client_auth: bool) -> Any:
        import grpc
        ca, cert, key = self.read()
        if cert is None:
            raise TlsError("a node needs [tls] cert_file and key_file")
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                           require_client_auth=require_client_auth)

    def ssl_context(self, server: bool, require_client_auth: bool = False) -> Any:
        """An ssl.SSLContext over the same files (aiohttp: the HTTP endpoints, the dashboard)."""
        import ssl
        for path, what in ((self.ca_file, "CA certificate"), (self.cert_file, "certificate"),
                           (self.key_file, "key")):
            if path:
                _read(path, what)
        try:
            if server:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca_file)
                ctx.verify_mode = ssl.CERT_REQUIRED if require_client_auth else ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise TlsError(f"cannot use the TLS files ({self.cert_file or self.ca_file}): "
                           f"{getattr(e, 'reason', None) or e}") from None
        return ctx


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TlsError(f"cannot read the TLS {what} {path}: {e.strerror or e}") from None
    marker = b"PRIVATE KEY-----" if what == "key" else b"-----BEGIN CERTIFICATE-----"
    if marker not in data:
        raise TlsError(f"the TLS {what} {path} is not a PEM {what} file "
                       f"(make one with `eraftd cert`)")
    return data


def host_of(addr: str) -> str:
    """The host of host:port (brackets of an IPv6 host removed)."""
    host = addr.rsplit(":", 1)[0] if ":" in addr and not addr.endswith("]") else addr
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _options(options: Sequence[tuple[str, Any]] | None, name: str | None,
             target: str) -> list[tuple[str, Any]]:
    out = list(options or ())
    if name and host_of(name) != host_of(target):
        out.append(("grpc.ssl_target_name_override", host_of(name)))
    return out


_CREDENTIALS: dict[TlsFiles, Any] = {}


def _credentials(tls: TlsFiles) -> Any:
    """Channel credentials per set of files, read once per process (a client opens many channels)."""
    creds = _CREDENTIALS.get(tls)
    if creds is None:
        creds = _CREDENTIALS[tls] = tls.channel_credentials()
    return creds


def channel(target: str, tls: TlsFiles | None, options: Sequence[tuple[str, Any]] | None = None,
            name: str | None = None) -> Any:
    """A grpc.aio channel to target: TLS with tls's files, plaintext when tls is None.
    name: the address the node is known by, when it differs from target (see the module doc)."""
    import grpc.aio
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options or ()))
    return grpc.aio.secure_channel(target, _credentials(tls), options=_options(options, name, target))


def sync_channel(target: str, tls: TlsFiles | None,
                 options: Sequence[tuple[str, Any]] | None = None, name: str | None = None) -> Any:
    """channel()'s blocking-API twin (tests, tools that are not asyncio)."""
    import grpc
    if tls is None:
        return grpc.insecure_channel(target, options=list(options or ()))
    return grpc.secure_channel(target, _credentials(tls), options=_options(options, name, target))


def from_env(env: Mapping[str, str] = os.environ) -> TlsFiles | None:
    """ERAFT_TLS_CA / ERAFT_TLS_CERT / ERAFT_TLS_KEY, or None when ERAFT_TLS_CA is unset."""
    ca = env.get(ENV_CA, "")
    if not ca:
        if env.get(ENV_CERT) or env.get(ENV_KEY):
            raise TlsError(f"{ENV_CERT}/{ENV_KEY} are set but {ENV_CA} is not: set it to the cluster's "
                           f"CA certificate")
        return None
    return TlsFiles(ca, env.get(ENV_CERT, ""), env.get(ENV_KEY, ""))
