"""Safe defaults (issue 13): a node that anyone beyond loopback can reach without TLS, or with
TLS that authenticates nobody (client_auth = "none"), says so in one warning line at start.
The check is on the configuration (tests bind loopback only, so no process listens elsewhere)."""
from __future__ import annotations

import logging

import pytest

from eraftd.certs import create_ca, create_node
from eraftd.config import loads
from eraftd.node.server import _warn_if_open

BASE = '[node]\nlisten = "{listen}"\nadvertise = "127.0.0.1:7001"\ndata_dir = "d"\n[controller]\npeers = ["127.0.0.1:7001"]\n'


def warnings(caplog, text: str) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="eraftd.node"):
        _warn_if_open(loads(text))
    return [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("listen", ["0.0.0.0:7001", "10.1.2.3:7001", "[::]:7001"])
def test_beyond_loopback_without_tls_warns(caplog, listen):
    [line] = warnings(caplog, BASE.format(listen=listen))
    assert f"listening on {listen} without TLS" in line and "add a [tls] section" in line


@pytest.mark.parametrize("listen", ["127.0.0.1:7001", "127.0.0.2:7001", "localhost:7001", "[::1]:7001"])
def test_loopback_is_quiet(caplog, listen):
    assert warnings(caplog, BASE.format(listen=listen)) == []


def test_tls_without_client_certificates_warns_even_on_loopback(caplog, tmp_path, monkeypatch):
    create_ca(str(tmp_path))
    create_node(str(tmp_path), ["127.0.0.1"])
    monkeypatch.chdir(tmp_path)
    tls = '[tls]\nca_file = "ca.crt"\ncert_file = "node.crt"\nkey_file = "node.key"\n'
    assert warnings(caplog, BASE.format(listen="0.0.0.0:7001") + tls) == []
    [line] = warnings(caplog, BASE.format(listen="127.0.0.1:7001") + tls + 'client_auth = "none"\n')
    assert 'client_auth = "none"' in line and "no caller is authenticated" in line
