from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOIN: _ClassVar[Op]
    LEAVE: _ClassVar[Op]
    MOVE: _ClassVar[Op]
    QUERY: _ClassVar[Op]
    SET_SERVERS: _ClassVar[Op]
    ABANDON: _ClassVar[Op]
JOIN: Op
LEAVE: Op
MOVE: Op
QUERY: Op
SET_SERVERS: Op
ABANDON: Op

class Config(_message.Message):
    __slots__ = ("num", "shards", "groups", "abandoned")
    class GroupsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: Servers
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[Servers, _Mapping]] = ...) -> None: ...
    class AbandonedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    NUM_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    ABANDONED_FIELD_NUMBER: _ClassVar[int]
    num: int
    shards: _containers.RepeatedScalarFieldContainer[int]
    groups: _containers.MessageMap[int, Servers]
    abandoned: _containers.ScalarMap[int, int]
    def __init__(self, num: _Optional[int] = ..., shards: _Optional[_Iterable[int]] = ..., groups: _Optional[_Mapping[int, Servers]] = ..., abandoned: _Optional[_Mapping[int, int]] = ...) -> None: ...

class Servers(_message.Message):
    __slots__ = ("servers",)
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    servers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, servers: _Optional[_Iterable[str]] = ...) -> None: ...

class CommandRequest(_message.Message):
    __slots__ = ("servers", "gids", "shard", "gid", "num", "op", "client_id", "command_id", "abandon_shards", "force")
    class ServersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: Servers
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[Servers, _Mapping]] = ...) -> None: ...
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    GIDS_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    NUM_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    ABANDON_SHARDS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    servers: _containers.MessageMap[int, Servers]
    gids: _containers.RepeatedScalarFieldContainer[int]
    shard: int
    gid: int
    num: int
    op: Op
    client_id: int
    command_id: int
    abandon_shards: _containers.RepeatedScalarFieldContainer[int]
    force: bool
    def __init__(self, servers: _Optional[_Mapping[int, Servers]] = ..., gids: _Optional[_Iterable[int]] = ..., shard: _Optional[int] = ..., gid: _Optional[int] = ..., num: _Optional[int] = ..., op: _Optional[_Union[Op, str]] = ..., client_id: _Optional[int] = ..., command_id: _Optional[int] = ..., abandon_shards: _Optional[_Iterable[int]] = ..., force: _Optional[bool] = ...) -> None: ...

class CommandResponse(_message.Message):
    __slots__ = ("err", "config", "cluster_id")
    ERR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    err: str
    config: Config
    cluster_id: int
    def __init__(self, err: _Optional[str] = ..., config: _Optional[_Union[Config, _Mapping]] = ..., cluster_id: _Optional[int] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("id", "state", "term", "last_applied", "commit_index", "storage_size", "sessions")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLIED_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    STORAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    id: int
    state: str
    term: int
    last_applied: int
    commit_index: int
    storage_size: int
    sessions: int
    def __init__(self, id: _Optional[int] = ..., state: _Optional[str] = ..., term: _Optional[int] = ..., last_applied: _Optional[int] = ..., commit_index: _Optional[int] = ..., storage_size: _Optional[int] = ..., sessions: _Optional[int] = ...) -> None: ...
