"""A node's TOML file -> frozen dataclasses, validated; the first problem found is one ConfigError line.

A node is a controller peer ([controller]), a shardkv replica ([shardkv]) or both, on one port. Its id in
a peer list is the 0-based position of its advertise address there, except in a section with
`join = true` (a node joining an existing group: see ControllerSection). Durations are integer milliseconds
in keys ending `_ms`. Relative paths are relative to the TOML file's directory. Loading never creates
anything on disk. See eraft.toml.example for every key.
"""
from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

from eraftd.logs import LEVELS
from eraftd.names import MAX_ADDRESS_CHARS, MAX_GID, gid_problem, is_address, shown
from eraftd.sessions import DEFAULT_TTL_MS, MIN_TTL_MS
from eraftd.tls import TlsFiles


class ConfigError(Exception):
    """str() is the whole user-facing line: `eraftd: config error: FILE: [section] key: problem`."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path, self.key, self.problem = path, key, problem
        super().__init__(f"eraftd: config error: {path}: {f'{key}: ' if key else ''}{problem}")


# ---------------------------------------------------------------- the result

@dataclass(frozen=True)
class NodeSection:
    listen: str                 # host:port of the one gRPC server for every service on this node
    data_dir: str               # absolute
    advertise: str              # the address peers and clients use for this node (default: listen)
    http: str = ""              # /metrics, /healthz; "" = off
    dial: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    testing: bool = False       # serve the test-only entry points (NodeAdmin Propose/Read)
    # admission (eraftd/node/admission.py): client request bytes in flight, client connections
    max_inflight_bytes: int = 32 << 20                  # for the node (half the 64 MiB message cap)
    max_inflight_bytes_per_connection: int = 24 << 20   # for one connection (> a 16 MiB value)
    max_connections: int = 0    # 0 = as many as the open-file limit allows after a reserve
    connection_idle_ms: int = 300_000                   # close a connection without calls after this

    def dial_address(self, addr: str) -> str:
        """Where to connect to reach the peer known as `addr` (a proxy or NAT mapping, or itself)."""
        return self.dial.get(addr, addr)


@dataclass(frozen=True)
class ControllerSection:
    """A Raft group's membership as the TOML gives it (the [shardkv] section's peers/id/join alike).

    join = false (the default): this node is one of the group's founding members; `peers` lists
    them all, in id order, this node's [node] advertise address among them, and `id` is its position.

    join = true: this node joins a group that already runs. `peers` names (some of) the group's
    existing members, whom it asks to be added; it need not include this node's own address
    ([node] advertise says who it is; it is in peers when a member at that address is replaced,
    e.g. after a wiped disk) but must name at least one other node. `id` is None: the group's
    leader assigns it when it adds the node (`eraftd member add`); until then it serves nothing.
    (Not built yet: `eraftd run` refuses join = true; eraftd/node/server.py _refuse_join.)
    """
    peers: tuple[str, ...]
    id: int | None              # position of this node's advertise address in peers; None when joining
    join: bool = False
    session_ttl_ms: int = DEFAULT_TTL_MS   # a client session idle this long is dropped (sessions.py)


@dataclass(frozen=True)
class ShardKVSection:
    """peers, id and join as in ControllerSection, for the replicas of group `gid`."""
    gid: int
    peers: tuple[str, ...]
    id: int | None              # position of this node's advertise address in peers; None when joining
    controllers: tuple[str, ...]
    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20
    join: bool = False
    migration_chunk_bytes: int = 512 << 10   # the most one pulled chunk of an arriving shard carries
    session_ttl_ms: int = DEFAULT_TTL_MS   # a client session idle this long is dropped (sessions.py)


@dataclass(frozen=True)
class RaftSection:
    heartbeat_ms: int = 100
    election_ms: int = 1000
    fsync: bool = True
    snapshot_entries: int = 10_000
    max_batch_bytes: int = 1 << 20   # bytes of entries per append message
    max_inflight: int = 256          # append messages in flight to one follower
    pre_vote: bool = True
    check_quorum: bool = True


@dataclass(frozen=True)
class TlsSection:
    """[tls]: every service on the node's port is TLS; peers are dialled with mutual TLS."""
    files: TlsFiles             # ca_file, cert_file, key_file (absolute)
    client_auth: str = "require"  # "require": clients present a certificate of ca_file; "none": server TLS only
    admins: tuple[str, ...] = ()  # client certificate common names allowed the admin commands

    @property
    def require_client_auth(self) -> bool:
        return self.client_auth == "require"


@dataclass(frozen=True)
class LogSection:
    level: str = "info"         # one of eraftd.logs.LEVELS
    file: str = ""              # absolute; "" = stderr


@dataclass(frozen=True)
class Config:
    path: str                   # absolute path of the TOML file ("<string>" from loads)
    node: NodeSection
    controller: ControllerSection | None
    shardkv: ShardKVSection | None
    raft: RaftSection
    log: LogSection
    tls: TlsSection | None = None

    def roles(self) -> list[str]:
        return [name for name in ("controller", "shardkv") if getattr(self, name) is not None]

    def identity(self) -> dict[str, Any]:
        """What a data_dir belongs to; JSON-able, compared on restart."""
        c, s = self.controller, self.shardkv
        return {
            "advertise": self.node.advertise,
            "roles": self.roles(),
            "controller_peers": list(c.peers) if c else None,
            "gid": s.gid if s else None,
            "shardkv_peers": list(s.peers) if s else None,
        }


def load(path: str) -> Config:
    """Read and validate the TOML file at `path`; raises ConfigError."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, "", f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    return loads(text, path)


def loads(text: str, path: str = "<string>") -> Config:
    """Validate TOML `text` as if read from `path` (relative paths resolve against its directory,
    or against the working directory when `path` is like "<string>")."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "", f"TOML syntax: {e}") from None
    base = os.getcwd() if path.startswith("<") else os.path.dirname(os.path.abspath(path))
    return _Loader(path, base).config(doc)


# ---------------------------------------------------------------- the schema

class _Kind(NamedTuple):
    name: str
    test: Callable[[Any], bool]


_STR = _Kind("a string", lambda v: isinstance(v, str))
_INT = _Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
_BOOL = _Kind("a boolean (true or false)", lambda v: isinstance(v, bool))
_STRS = _Kind("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
_STR_TABLE = _Kind("a table of strings",
                   lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()))

_WILDCARD_HOSTS = {"0.0.0.0", "[::]"}


def _address(v: str) -> str | None:
    if not is_address(v):
        return (f"must be host:port with a port in 1-65535 (at most {MAX_ADDRESS_CHARS} "
                f"characters), got {_show(v) if len(v) <= 80 else shown(v)}")
    return None


def _optional_address(v: str) -> str | None:
    return None if v == "" else _address(v)


def _peers(v: list[str]) -> str | None:
    if not v:
        return "must list at least one host:port"
    for i, a in enumerate(v):
        if problem := _address(a):
            return problem
        if a in v[:i]:
            return f"lists {_show(a)} twice"
    return None


def _dial(v: dict[str, str]) -> str | None:
    for peer, to in v.items():
        if problem := _address(peer) or _address(to):
            return f"entry {_show(peer)} = {_show(to)}: {problem}"
    return None


def _positive(v: int) -> str | None:
    return None if v > 0 else f"must be a positive integer, got {v}"


def _not_negative(v: int) -> str | None:
    return None if v >= 0 else f"must be 0 or more, got {v}"


def _gid(v: int) -> str | None:
    return f"must be 1..{MAX_GID} (a group id), got {v}" if gid_problem(v) else None


# a value travels whole in one gRPC message (a get's answer, a migration chunk, a Raft append)
# of at most 64 MiB (eraftd/node/transport.py MAX_MESSAGE_BYTES), with other data beside it
MAX_VALUE_BYTES = 16 << 20
REQUEST_OVERHEAD_BYTES = 64 << 10   # a request's bytes beside its key and value (ids, framing)


def _value_bound(v: int) -> str | None:
    return _positive(v) or (None if v <= MAX_VALUE_BYTES else
                            f"must be at most {MAX_VALUE_BYTES} (16 MiB: a value travels whole in "
                            f"one message), got {v}")


def _session_ttl(v: int) -> str | None:
    if v < MIN_TTL_MS:
        return (f"must be at least {MIN_TTL_MS} (1 s; keep it well above eRaft unary clients' timeouts, "
                f"default {DEFAULT_TTL_MS} = 1 hour), got {v}")
    return None


def _non_empty(v: str) -> str | None:
    return None if v else "must not be empty"


def _level(v: str) -> str | None:
    return None if v.lower() in LEVELS else f"must be one of {', '.join(LEVELS)}, got {_show(v)}"


def _client_auth(v: str) -> str | None:
    return None if v in ("require", "none") else f'must be "require" or "none", got {_show(v)}'


def _admins(v: list[str]) -> str | None:
    bad = [a for a in v if not a.strip()]
    return f"lists an empty name; give certificate common names, e.g. {_show(['ops'])}" if bad else None


class _Key(NamedTuple):
    kind: _Kind
    check: Callable[[Any], str | None] | None = None
    required: bool = False


# Absent optional keys take the dataclass defaults above (or the rule noted).
_SCHEMA: dict[str, dict[str, _Key]] = {
    "node": {
        "listen": _Key(_STR, _address, required=True),
        "data_dir": _Key(_STR, _non_empty, required=True),
        "advertise": _Key(_STR, _optional_address),      # default: listen
        "http": _Key(_STR, _optional_address),
        "dial": _Key(_STR_TABLE, _dial),
        "testing": _Key(_BOOL),
        "max_inflight_bytes": _Key(_INT, _positive),
        "max_inflight_bytes_per_connection": _Key(_INT, _positive),
        "max_connections": _Key(_INT, _not_negative),
        "connection_idle_ms": _Key(_INT, _positive),
    },
    "controller": {
        "peers": _Key(_STRS, _peers, required=True),
        "join": _Key(_BOOL),
        "session_ttl_ms": _Key(_INT, _session_ttl),
    },
    "shardkv": {
        "gid": _Key(_INT, _gid, required=True),
        "peers": _Key(_STRS, _peers, required=True),
        "controllers": _Key(_STRS, _peers),              # default: [controller] peers, if any
        "max_key_bytes": _Key(_INT, _positive),
        "max_value_bytes": _Key(_INT, _value_bound),
        "join": _Key(_BOOL),
        "migration_chunk_bytes": _Key(_INT, _positive),
        "session_ttl_ms": _Key(_INT, _session_ttl),
    },
    "raft": {
        "heartbeat_ms": _Key(_INT, _positive),
        "election_ms": _Key(_INT, _positive),
        "fsync": _Key(_BOOL),
        "snapshot_entries": _Key(_INT, _positive),
        "max_batch_bytes": _Key(_INT, _positive),
        "max_inflight": _Key(_INT, _positive),
        "pre_vote": _Key(_BOOL),
        "check_quorum": _Key(_BOOL),
    },
    "log": {
        "level": _Key(_STR, _level),
        "file": _Key(_STR),
    },
    "tls": {
        "ca_file": _Key(_STR, _non_empty, required=True),
        "cert_file": _Key(_STR, _non_empty, required=True),
        "key_file": _Key(_STR, _non_empty, required=True),
        "client_auth": _Key(_STR, _client_auth),
        "admins": _Key(_STRS, _admins),
    },
}


class _Loader:
    """Checks a parsed document in a fixed order and raises at the first problem."""

    def __init__(self, path: str, base: str) -> None:
        self.path, self.base = path, base

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.path, key, problem)

    def config(self, doc: dict[str, Any]) -> Config:
        sections = self.sections(doc)
        node = self.node(sections["node"])
        controller = self.controller(sections["controller"], node)
        return Config(
            path=self.path if self.path.startswith("<") else os.path.abspath(self.path),
            node=node,
            controller=controller,
            shardkv=self.shardkv(sections["shardkv"], node, controller),
            raft=self.raft(sections["raft"]),
            log=self.log(sections["log"]),
            tls=self.tls(sections["tls"]),
        )

    def sections(self, doc: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
        """Each known section's checked keys (None when absent); unknown or missing sections fail."""
        names = ", ".join(f"[{s}]" for s in _SCHEMA)
        for name, value in doc.items():
            if name in _SCHEMA and not isinstance(value, dict):
                raise self.error(f"[{name}]", f"must be a table, got {_show(value)}")
            if name not in _SCHEMA and isinstance(value, dict):
                raise self.error(f"[{name}]", f"unknown section; expected one of {names}")
            if name not in _SCHEMA:
                raise self.error(name, f"unknown top-level key; keys belong in a section ({names})")
        if "node" not in doc:
            raise self.error("[node]", "missing section (it needs at least listen and data_dir)")
        if "controller" not in doc and "shardkv" not in doc:
            raise self.error("", "needs a [controller] section, a [shardkv] section, or both")
        return {name: self.keys(name, doc[name]) if name in doc else None for name in _SCHEMA}

    def keys(self, section: str, table: dict[str, Any]) -> dict[str, Any]:
        """The keys present in `table`, each checked for name, type and value."""
        schema = _SCHEMA[section]
        for key in table:
            if key not in schema:
                raise self.error(f"[{section}] {key}", f"unknown key; expected one of {', '.join(schema)}")
        for key, spec in schema.items():
            if key not in table:
                if spec.required:
                    raise self.error(f"[{section}] {key}", "missing (required)")
                continue
            value = table[key]
            if not spec.kind.test(value):
                raise self.error(f"[{section}] {key}", f"must be {spec.kind.name}, got {_show(value)}")
            if spec.check and (problem := spec.check(value)):
                raise self.error(f"[{section}] {key}", problem)
        return table

    def resolve(self, p: str) -> str:
        return os.path.abspath(os.path.join(self.base, os.path.expanduser(p)))

    def node(self, t: dict[str, Any]) -> NodeSection:
        data_dir = self.resolve(t["data_dir"])
        if os.path.exists(data_dir) and not os.path.isdir(data_dir):
            raise self.error("[node] data_dir", f"exists and is not a directory: {data_dir}")
        advertise = t.get("advertise") or t["listen"]
        if advertise.rsplit(":", 1)[0] in _WILDCARD_HOSTS:
            raise self.error("[node] advertise", f"must be an address other nodes can reach, got "
                             f"{_show(advertise)} (set it when listen is a wildcard address)")
        http = t.get("http", "")
        if http and http == t["listen"]:
            raise self.error("[node] http", f"must differ from [node] listen, got {_show(http)}")
        per_conn = t.get("max_inflight_bytes_per_connection",
                         NodeSection.max_inflight_bytes_per_connection)
        total = t.get("max_inflight_bytes", NodeSection.max_inflight_bytes)
        if per_conn > total:
            raise self.error("[node] max_inflight_bytes_per_connection",
                             f"must be at most max_inflight_bytes ({total}), got {per_conn}")
        return NodeSection(listen=t["listen"], data_dir=data_dir, advertise=advertise, http=http,
                           dial=MappingProxyType(dict(t.get("dial", {}))),
                           **{k: t[k] for k in ("testing", "max_inflight_bytes",
                                                "max_inflight_bytes_per_connection",
                                                "max_connections", "connection_idle_ms") if k in t})

    def own_id(self, section: str, t: dict[str, Any], node: NodeSection) -> int | None:
        """This node's id in the section's peers: its advertise address's position; None when it
        joins an existing group (the group assigns the id when it adds the node)."""
        key, peers = f"[{section}] peers", t["peers"]
        if t.get("join", False):
            if peers == [node.advertise]:
                raise self.error(key, f"with join = true, must name at least one existing member of the "
                                 f"group other than this node {_show(node.advertise)}, got {_show(peers)}")
            return None
        if node.advertise not in peers:
            raise self.error(key, f"must include this node's advertise address {_show(node.advertise)}, "
                             f"got {_show(peers)} (or set join = true in [{section}] to join a running group)")
        return peers.index(node.advertise)

    def controller(self, t: dict[str, Any] | None, node: NodeSection) -> ControllerSection | None:
        if t is None:
            return None
        return ControllerSection(peers=tuple(t["peers"]), id=self.own_id("controller", t, node),
                                 join=t.get("join", False),
                                 session_ttl_ms=t.get("session_ttl_ms", DEFAULT_TTL_MS))

    def shardkv(self, t: dict[str, Any] | None, node: NodeSection,
                controller: ControllerSection | None) -> ShardKVSection | None:
        if t is None:
            return None
        if "controllers" in t:
            controllers = tuple(t["controllers"])
        elif controller is not None:
            controllers = controller.peers
        else:
            raise self.error("[shardkv] controllers", "missing (required on a node without a [controller] "
                             "section: list the controller peers' addresses)")
        skv = ShardKVSection(gid=t["gid"], peers=tuple(t["peers"]), id=self.own_id("shardkv", t, node),
                             controllers=controllers,
                             **{k: t[k] for k in ("max_key_bytes", "max_value_bytes", "join",
                                                "migration_chunk_bytes", "session_ttl_ms") if k in t})
        # a request carrying one key and one value at the limits must be admitted
        need = skv.max_key_bytes + skv.max_value_bytes + REQUEST_OVERHEAD_BYTES
        if node.max_inflight_bytes_per_connection < need:
            raise self.error("[node] max_inflight_bytes_per_connection",
                             f"must be at least [shardkv] max_key_bytes + max_value_bytes + "
                             f"{REQUEST_OVERHEAD_BYTES} ({need}: a request with one key and one "
                             f"value at the limits), got {node.max_inflight_bytes_per_connection}")
        return skv

    def raft(self, t: dict[str, Any] | None) -> RaftSection:
        raft = RaftSection(**(t or {}))
        if raft.election_ms <= raft.heartbeat_ms:
            raise self.error("[raft] election_ms", f"must be greater than heartbeat_ms ({raft.heartbeat_ms}), "
                             f"got {raft.election_ms}")
        return raft

    def tls(self, t: dict[str, Any] | None) -> TlsSection | None:
        if t is None:
            return None
        paths = {}
        for key in ("ca_file", "cert_file", "key_file"):
            p = paths[key] = self.resolve(t[key])
            if not os.path.isfile(p):
                raise self.error(f"[tls] {key}", f"no such file: {p} (make the cluster's certificates "
                                 f"with `eraftd cert`)")
        client_auth = t.get("client_auth", "require")
        if client_auth == "none" and t.get("admins"):
            raise self.error("[tls] admins", 'needs client_auth = "require": without client '
                             'certificates no caller can be told apart')
        return TlsSection(files=TlsFiles(**paths), client_auth=client_auth,
                          admins=tuple(a.strip() for a in t.get("admins", ())))

    def log(self, t: dict[str, Any] | None) -> LogSection:
        log = LogSection(**(t or {}))
        return LogSection(level=log.level.lower(), file=self.resolve(log.file) if log.file else "")


# ---------------------------------------------------------------- writing TOML

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dump_toml(data: Mapping[str, Any]) -> str:
    """Write the simple subset of TOML this project uses: tables (nested ones become [a.b]), strings,
    ints, floats, bools and lists of those. Keys whose value is None are left out."""
    lines: list[str] = []
    _dump_table(lines, (), data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(lines: list[str], name: tuple[str, ...], table: Mapping[str, Any]) -> None:
    values = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if name and (values or not tables):
        lines += ["", f"[{'.'.join(map(_toml_key, name))}]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values]
    for k, v in tables:
        _dump_table(lines, name + (k,), v)


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _toml_string(k)


def _toml_string(s: str) -> str:
    # JSON's escapes (\" \\ \n \t \uXXXX ...) are all valid in TOML basic strings; TOML also forbids raw DEL.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(_toml_value, v)) + "]"
    raise TypeError(f"dump_toml: cannot write a {type(v).__name__}")


def _show(v: Any) -> str:
    """A value as it would appear in the file, for error messages."""
    if isinstance(v, dict):
        return "a table"
    try:
        return _toml_value(v)
    except TypeError:
        return "an array of tables" if isinstance(v, list) else f"{v} ({type(v).__name__})"
