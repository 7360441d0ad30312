"""The shard controller: numbered configurations (shard -> group, group -> servers) kept by
group 0's Raft log.  state.py is the pure logic, machine.py the replicated state machine and
its byte formats, service.py the eRaft-compatible gRPC service, client.py the async client."""
