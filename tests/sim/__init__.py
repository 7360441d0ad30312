"""Deterministic simulation harness for the sans-I/O Raft core (eraftd.raft).

    sim.py         Cluster: seeded network + logical clock + the driver loop around RawNode
    invariants.py  safety checks run incrementally after every step
    chaos.py       random fault schedules for the seeded simulation tests

Test modules import it after putting tests/ on sys.path (see tests/raft/test_simulation.py).
"""
