"""Generated protobuf / gRPC modules: do not edit.

Regenerate from proto/*.proto with: python scripts/gen_protos.py
(tests/test_protos_drift.py fails when these files and proto/ disagree).
"""
