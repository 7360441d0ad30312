from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GroupStatus(_message.Message):
    __slots__ = ("group", "id", "role", "term", "leader_id", "leader_address", "commit_index", "last_applied", "last_index", "first_index", "snapshot_index", "peers", "proposals", "entries_appended", "entries_applied", "leader_changes", "elections", "snapshots", "learners", "problem", "refused")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLIED_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_APPENDED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    LEADER_CHANGES_FIELD_NUMBER: _ClassVar[int]
    ELECTIONS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    group: int
    id: int
    role: str
    term: int
    leader_id: int
    leader_address: str
    commit_index: int
    last_applied: int
    last_index: int
    first_index: int
    snapshot_index: int
    peers: _containers.RepeatedScalarFieldContainer[str]
    proposals: int
    entries_appended: int
    entries_applied: int
    leader_changes: int
    elections: int
    snapshots: int
    learners: _containers.RepeatedScalarFieldContainer[str]
    problem: str
    refused: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[int] = ..., id: _Optional[int] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ..., commit_index: _Optional[int] = ..., last_applied: _Optional[int] = ..., last_index: _Optional[int] = ..., first_index: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., peers: _Optional[_Iterable[str]] = ..., proposals: _Optional[int] = ..., entries_appended: _Optional[int] = ..., entries_applied: _Optional[int] = ..., leader_changes: _Optional[int] = ..., elections: _Optional[int] = ..., snapshots: _Optional[int] = ..., learners: _Optional[_Iterable[str]] = ..., problem: _Optional[str] = ..., refused: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("address", "version", "roles", "storage_size", "groups", "requests", "operations", "node_uid", "cluster_id", "problem", "latency", "migrations", "cpu_seconds", "rss_bytes", "open_files", "start_time")
    class RequestsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    NODE_UID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    MIGRATIONS_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPEN_FILES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    address: str
    version: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    storage_size: int
    groups: _containers.RepeatedCompositeFieldContainer[GroupStatus]
    requests: _containers.ScalarMap[str, int]
    operations: int
    node_uid: int
    cluster_id: int
    problem: str
    latency: _containers.RepeatedCompositeFieldContainer[LatencyHistogram]
    migrations: _containers.RepeatedCompositeFieldContainer[MigrationProgress]
    cpu_seconds: float
    rss_bytes: int
    open_files: int
    start_time: float
    def __init__(self, address: _Optional[str] = ..., version: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., storage_size: _Optional[int] = ..., groups: _Optional[_Iterable[_Union[GroupStatus, _Mapping]]] = ..., requests: _Optional[_Mapping[str, int]] = ..., operations: _Optional[int] = ..., node_uid: _Optional[int] = ..., cluster_id: _Optional[int] = ..., problem: _Optional[str] = ..., latency: _Optional[_Iterable[_Union[LatencyHistogram, _Mapping]]] = ..., migrations: _Optional[_Iterable[_Union[MigrationProgress, _Mapping]]] = ..., cpu_seconds: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., open_files: _Optional[int] = ..., start_time: _Optional[float] = ...) -> None: ...

class LatencyHistogram(_message.Message):
    __slots__ = ("op", "bounds", "counts", "sum", "count")
    OP_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    op: str
    bounds: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    sum: float
    count: int
    def __init__(self, op: _Optional[str] = ..., bounds: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ..., sum: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class MigrationProgress(_message.Message):
    __slots__ = ("shard", "config_num", "from_group", "to_group", "keys", "bytes", "total_keys", "total_bytes", "chunks", "started", "updated", "done")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NUM_FIELD_NUMBER: _ClassVar[int]
    FROM_GROUP_FIELD_NUMBER: _ClassVar[int]
    TO_GROUP_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_KEYS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    shard: int
    config_num: int
    from_group: int
    to_group: int
    keys: int
    bytes: int
    total_keys: int
    total_bytes: int
    chunks: int
    started: float
    updated: float
    done: bool
    def __init__(self, shard: _Optional[int] = ..., config_num: _Optional[int] = ..., from_group: _Optional[int] = ..., to_group: _Optional[int] = ..., keys: _Optional[int] = ..., bytes: _Optional[int] = ..., total_keys: _Optional[int] = ..., total_bytes: _Optional[int] = ..., chunks: _Optional[int] = ..., started: _Optional[float] = ..., updated: _Optional[float] = ..., done: _Optional[bool] = ...) -> None: ...

class ProposeRequest(_message.Message):
    __slots__ = ("group", "commands")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    group: int
    commands: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, group: _Optional[int] = ..., commands: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ProposeResponse(_message.Message):
    __slots__ = ("err", "leader_hint", "results", "index")
    ERR_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    err: str
    leader_hint: str
    results: _containers.RepeatedScalarFieldContainer[bytes]
    index: int
    def __init__(self, err: _Optional[str] = ..., leader_hint: _Optional[str] = ..., results: _Optional[_Iterable[bytes]] = ..., index: _Optional[int] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("group", "key", "local")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    group: int
    key: bytes
    local: bool
    def __init__(self, group: _Optional[int] = ..., key: _Optional[bytes] = ..., local: _Optional[bool] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("err", "leader_hint", "value", "found", "read_index")
    ERR_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    READ_INDEX_FIELD_NUMBER: _ClassVar[int]
    err: str
    leader_hint: str
    value: bytes
    found: bool
    read_index: int
    def __init__(self, err: _Optional[str] = ..., leader_hint: _Optional[str] = ..., value: _Optional[bytes] = ..., found: _Optional[bool] = ..., read_index: _Optional[int] = ...) -> None: ...

class MembersRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: int
    def __init__(self, group: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "address", "uid", "role", "match", "state", "problem")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    id: int
    address: str
    uid: int
    role: str
    match: int
    state: str
    problem: str
    def __init__(self, id: _Optional[int] = ..., address: _Optional[str] = ..., uid: _Optional[int] = ..., role: _Optional[str] = ..., match: _Optional[int] = ..., state: _Optional[str] = ..., problem: _Optional[str] = ...) -> None: ...

class MembersResponse(_message.Message):
    __slots__ = ("err", "leader_hint", "leader_id", "last_index", "commit_index", "members", "change_pending", "is_leader")
    ERR_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CHANGE_PENDING_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    err: str
    leader_hint: str
    leader_id: int
    last_index: int
    commit_index: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    change_pending: bool
    is_leader: bool
    def __init__(self, err: _Optional[str] = ..., leader_hint: _Optional[str] = ..., leader_id: _Optional[int] = ..., last_index: _Optional[int] = ..., commit_index: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., change_pending: _Optional[bool] = ..., is_leader: _Optional[bool] = ...) -> None: ...

class ChangeMemberRequest(_message.Message):
    __slots__ = ("group", "op", "address", "node_id")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    group: int
    op: str
    address: str
    node_id: int
    def __init__(self, group: _Optional[int] = ..., op: _Optional[str] = ..., address: _Optional[str] = ..., node_id: _Optional[int] = ...) -> None: ...

class ChangeMemberResponse(_message.Message):
    __slots__ = ("err", "leader_hint", "node_id", "index")
    ERR_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    err: str
    leader_hint: str
    node_id: int
    index: int
    def __init__(self, err: _Optional[str] = ..., leader_hint: _Optional[str] = ..., node_id: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...
