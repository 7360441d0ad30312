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
    DELETE: _ClassVar[Op]
    EXISTS: _ClassVar[Op]
    CAS: _ClassVar[Op]
    CAS_ABSENT: _ClassVar[Op]

class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OK: _ClassVar[Code]
    NO_KEY: _ClassVar[Code]
    WRONG_GROUP: _ClassVar[Code]
    REFUSED: _ClassVar[Code]
    MISMATCH: _ClassVar[Code]
    SESSION_EXPIRED: _ClassVar[Code]
PUT: Op
APPEND: Op
GET: Op
DELETE: Op
EXISTS: Op
CAS: Op
CAS_ABSENT: Op
OK: Code
NO_KEY: Code
WRONG_GROUP: Code
REFUSED: Code
MISMATCH: Code
SESSION_EXPIRED: Code

class BatchRequest(_message.Message):
    __slots__ = ("session", "floor", "ops", "keys", "values", "seqs", "expected", "opened")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    session: int
    floor: int
    ops: _containers.RepeatedScalarFieldContainer[Op]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    seqs: _containers.RepeatedScalarFieldContainer[int]
    expected: _containers.RepeatedScalarFieldContainer[bytes]
    opened: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, session: _Optional[int] = ..., floor: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[Op, str]]] = ..., keys: _Optional[_Iterable[bytes]] = ..., values: _Optional[_Iterable[bytes]] = ..., seqs: _Optional[_Iterable[int]] = ..., expected: _Optional[_Iterable[bytes]] = ..., opened: _Optional[_Iterable[bool]] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("err", "leader", "codes", "values", "messages", "session_ttl_ms", "untried")
    class MessagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    ERR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SESSION_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    UNTRIED_FIELD_NUMBER: _ClassVar[int]
    err: str
    leader: str
    codes: _containers.RepeatedScalarFieldContainer[Code]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    messages: _containers.ScalarMap[int, str]
    session_ttl_ms: int
    untried: bool
    def __init__(self, err: _Optional[str] = ..., leader: _Optional[str] = ..., codes: _Optional[_Iterable[_Union[Code, str]]] = ..., values: _Optional[_Iterable[bytes]] = ..., messages: _Optional[_Mapping[int, str]] = ..., session_ttl_ms: _Optional[int] = ..., untried: _Optional[bool] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("shard", "prefix", "cursor", "limit", "max_bytes")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    shard: int
    prefix: bytes
    cursor: bytes
    limit: int
    max_bytes: int
    def __init__(self, shard: _Optional[int] = ..., prefix: _Optional[bytes] = ..., cursor: _Optional[bytes] = ..., limit: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("err", "leader", "code", "keys", "values", "more", "next", "message")
    ERR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    err: str
    leader: str
    code: Code
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    more: bool
    next: bytes
    message: str
    def __init__(self, err: _Optional[str] = ..., leader: _Optional[str] = ..., code: _Optional[_Union[Code, str]] = ..., keys: _Optional[_Iterable[bytes]] = ..., values: _Optional[_Iterable[bytes]] = ..., more: _Optional[bool] = ..., next: _Optional[bytes] = ..., message: _Optional[str] = ...) -> None: ...
