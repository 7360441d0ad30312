from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Session(_message.Message):
    __slots__ = ("client", "floor", "applied", "idle_ms")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    IDLE_MS_FIELD_NUMBER: _ClassVar[int]
    client: int
    floor: int
    applied: _containers.RepeatedScalarFieldContainer[int]
    idle_ms: int
    def __init__(self, client: _Optional[int] = ..., floor: _Optional[int] = ..., applied: _Optional[_Iterable[int]] = ..., idle_ms: _Optional[int] = ...) -> None: ...

class PullShardRequest(_message.Message):
    __slots__ = ("config_num", "shard", "cursor", "max_bytes", "gid", "chunked_sessions")
    CONFIG_NUM_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    CHUNKED_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    config_num: int
    shard: int
    cursor: bytes
    max_bytes: int
    gid: int
    chunked_sessions: bool
    def __init__(self, config_num: _Optional[int] = ..., shard: _Optional[int] = ..., cursor: _Optional[bytes] = ..., max_bytes: _Optional[int] = ..., gid: _Optional[int] = ..., chunked_sessions: _Optional[bool] = ...) -> None: ...

class PullShardResponse(_message.Message):
    __slots__ = ("err", "kvs", "sessions", "next", "done", "chunked_sessions", "total_keys", "total_bytes")
    ERR_FIELD_NUMBER: _ClassVar[int]
    KVS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    CHUNKED_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_KEYS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    err: str
    kvs: bytes
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    next: bytes
    done: bool
    chunked_sessions: bool
    total_keys: int
    total_bytes: int
    def __init__(self, err: _Optional[str] = ..., kvs: _Optional[bytes] = ..., sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., next: _Optional[bytes] = ..., done: _Optional[bool] = ..., chunked_sessions: _Optional[bool] = ..., total_keys: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class InsertChunk(_message.Message):
    __slots__ = ("config_num", "shard", "cursor", "next", "kvs", "sessions", "done")
    CONFIG_NUM_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    KVS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    config_num: int
    shard: int
    cursor: bytes
    next: bytes
    kvs: bytes
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    done: bool
    def __init__(self, config_num: _Optional[int] = ..., shard: _Optional[int] = ..., cursor: _Optional[bytes] = ..., next: _Optional[bytes] = ..., kvs: _Optional[bytes] = ..., sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class ReadShardRequest(_message.Message):
    __slots__ = ("shard", "max_bytes")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    shard: int
    max_bytes: int
    def __init__(self, shard: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class ReadShardChunk(_message.Message):
    __slots__ = ("err", "leader", "config_num", "index", "term", "keys", "kvs", "done")
    ERR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NUM_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    KVS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    err: str
    leader: str
    config_num: int
    index: int
    term: int
    keys: int
    kvs: bytes
    done: bool
    def __init__(self, err: _Optional[str] = ..., leader: _Optional[str] = ..., config_num: _Optional[int] = ..., index: _Optional[int] = ..., term: _Optional[int] = ..., keys: _Optional[int] = ..., kvs: _Optional[bytes] = ..., done: _Optional[bool] = ...) -> None: ...
