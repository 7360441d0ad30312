from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Entry(_message.Message):
    __slots__ = ("term", "index", "type", "data")
    TERM_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    term: int
    index: int
    type: int
    data: bytes
    def __init__(self, term: _Optional[int] = ..., index: _Optional[int] = ..., type: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class RaftMessage(_message.Message):
    __slots__ = ("group", "type", "to", "frm", "term", "log_term", "index", "entries", "commit", "reject", "reject_hint", "has_snapshot", "snapshot_index", "snapshot_term", "context")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    FRM_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LOG_TERM_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    REJECT_FIELD_NUMBER: _ClassVar[int]
    REJECT_HINT_FIELD_NUMBER: _ClassVar[int]
    HAS_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_TERM_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    group: int
    type: int
    to: int
    frm: int
    term: int
    log_term: int
    index: int
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    commit: int
    reject: bool
    reject_hint: int
    has_snapshot: bool
    snapshot_index: int
    snapshot_term: int
    context: bytes
    def __init__(self, group: _Optional[int] = ..., type: _Optional[int] = ..., to: _Optional[int] = ..., frm: _Optional[int] = ..., term: _Optional[int] = ..., log_term: _Optional[int] = ..., index: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., commit: _Optional[int] = ..., reject: _Optional[bool] = ..., reject_hint: _Optional[int] = ..., has_snapshot: _Optional[bool] = ..., snapshot_index: _Optional[int] = ..., snapshot_term: _Optional[int] = ..., context: _Optional[bytes] = ...) -> None: ...

class MessageBatch(_message.Message):
    __slots__ = ("from_addr", "cluster_tag", "msgs", "from_uid", "to_uid", "views")
    FROM_ADDR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_TAG_FIELD_NUMBER: _ClassVar[int]
    MSGS_FIELD_NUMBER: _ClassVar[int]
    FROM_UID_FIELD_NUMBER: _ClassVar[int]
    TO_UID_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    from_addr: str
    cluster_tag: int
    msgs: _containers.RepeatedCompositeFieldContainer[RaftMessage]
    from_uid: int
    to_uid: int
    views: _containers.RepeatedCompositeFieldContainer[GroupView]
    def __init__(self, from_addr: _Optional[str] = ..., cluster_tag: _Optional[int] = ..., msgs: _Optional[_Iterable[_Union[RaftMessage, _Mapping]]] = ..., from_uid: _Optional[int] = ..., to_uid: _Optional[int] = ..., views: _Optional[_Iterable[_Union[GroupView, _Mapping]]] = ...) -> None: ...

class GroupView(_message.Message):
    __slots__ = ("group", "founders")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    FOUNDERS_FIELD_NUMBER: _ClassVar[int]
    group: int
    founders: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[int] = ..., founders: _Optional[_Iterable[str]] = ...) -> None: ...

class SendSummary(_message.Message):
    __slots__ = ("batches", "msgs")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    MSGS_FIELD_NUMBER: _ClassVar[int]
    batches: int
    msgs: int
    def __init__(self, batches: _Optional[int] = ..., msgs: _Optional[int] = ...) -> None: ...

class SnapshotHeader(_message.Message):
    __slots__ = ("from_addr", "cluster_tag", "msg")
    FROM_ADDR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_TAG_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    from_addr: str
    cluster_tag: int
    msg: RaftMessage
    def __init__(self, from_addr: _Optional[str] = ..., cluster_tag: _Optional[int] = ..., msg: _Optional[_Union[RaftMessage, _Mapping]] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: SnapshotHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[SnapshotHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class SnapshotAck(_message.Message):
    __slots__ = ("ok", "error")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: str
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...
