"""Shardkv replica groups: each a Raft group serving the shards the latest configuration gives
its gid.  state.py is the pure logic (shard states, configuration steps, deduplication),
machine.py the replicated state machine and its byte formats, service.py the gRPC services
(eRaft's ShardKVService, the native KVBatch, ShardMigration), migration.py the leader's
configuration poller, shard pulls and garbage collection, node.py how `eraftd run` hosts it
all, clerk.py the async client."""
