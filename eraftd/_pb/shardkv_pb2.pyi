from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PUT: _ClassVar[Op]
    APPEND: _ClassVar[Op]
    GET: _ClassVar[Op]
PUT: Op
APPEND: Op
GET: Op

class CommandRequest(_message.Message):
    __slots__ = ("key", "value", "op", "client_id", "command_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    op: Op
    client_id: int
    command_id: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., op: _Optional[_Union[Op, str]] = ..., client_id: _Optional[int] = ..., command_id: _Optional[int] = ...) -> None: ...

class CommandResponse(_message.Message):
    __slots__ = ("err", "value")
    ERR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    err: str
    value: str
    def __init__(self, err: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ShardOperationRequest(_message.Message):
    __slots__ = ("config_num", "shard_ids")
    CONFIG_NUM_FIELD_NUMBER: _ClassVar[int]
    SHARD_IDS_FIELD_NUMBER: _ClassVar[int]
    config_num: int
    shard_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, config_num: _Optional[int] = ..., shard_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class OperationContext(_message.Message):
    __slots__ = ("max_applied_command_id", "last_response")
    MAX_APPLIED_COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    max_applied_command_id: int
    last_response: CommandResponse
    def __init__(self, max_applied_command_id: _Optional[int] = ..., last_response: _Optional[_Union[CommandResponse, _Mapping]] = ...) -> None: ...

class ShardData(_message.Message):
    __slots__ = ("kv",)
    class KvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KV_FIELD_NUMBER: _ClassVar[int]
    kv: _containers.ScalarMap[str, str]
    def __init__(self, kv: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ShardOperationResponse(_message.Message):
    __slots__ = ("err", "config_num", "shards", "last_operations")
    class ShardsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: ShardData
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[ShardData, _Mapping]] = ...) -> None: ...
    class LastOperationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: OperationContext
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[OperationContext, _Mapping]] = ...) -> None: ...
    ERR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NUM_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    LAST_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    err: str
    config_num: int
    shards: _containers.MessageMap[int, ShardData]
    last_operations: _containers.MessageMap[int, OperationContext]
    def __init__(self, err: _Optional[str] = ..., config_num: _Optional[int] = ..., shards: _Optional[_Mapping[int, ShardData]] = ..., last_operations: _Optional[_Mapping[int, OperationContext]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("shard_id", "status", "keys", "bytes", "sessions")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    status: str
    keys: int
    bytes: int
    sessions: int
    def __init__(self, shard_id: _Optional[int] = ..., status: _Optional[str] = ..., keys: _Optional[int] = ..., bytes: _Optional[int] = ..., sessions: _Optional[int] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("id", "state", "term", "last_applied", "commit_index", "storage_size", "address", "gid", "shards")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLIED_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    STORAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    id: int
    state: str
    term: int
    last_applied: int
    commit_index: int
    storage_size: int
    address: str
    gid: int
    shards: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    def __init__(self, id: _Optional[int] = ..., state: _Optional[str] = ..., term: _Optional[int] = ..., last_applied: _Optional[int] = ..., commit_index: _Optional[int] = ..., storage_size: _Optional[int] = ..., address: _Optional[str] = ..., gid: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ...) -> None: ...
