"""What names a node and a group, in one place: the TOML, the shell and the controller use it.

An address is HOST:PORT (a name or IPv4 address, or an IPv6 address in brackets; a port in
1-65535), at most MAX_ADDRESS_CHARS long.  A group id is the wire's int32 above 0 (1..MAX_GID);
the controller group is 0.
"""
from __future__ import annotations

import re

MAX_ADDRESS_CHARS = 261      # a 255-character host name, ':' and a port
MAX_GID = (1 << 31) - 1

_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})")


def is_address(v: str) -> bool:
    if len(v) > MAX_ADDRESS_CHARS:
        return False
    m = _ADDRESS.fullmatch(v)
    return bool(m) and 1 <= int(m["port"]) <= 65535


def gid_problem(gid: int) -> str | None:
    """Why `gid` cannot name a replica group, or None."""
    return None if 1 <= gid <= MAX_GID else f"gid {gid} is not valid: group ids are 1..{MAX_GID}"


def shown(v: str, limit: int = 60) -> str:
    """A string for an error line: quoted, cut short when long."""
    return repr(v) if len(v) <= limit else f"{v[:limit]!r}... ({len(v)} characters)"
