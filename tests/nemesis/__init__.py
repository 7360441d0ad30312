"""Nemesis suite (issue 7): real eraftd processes under faults, histories checked for
linearizability.  See nemesis.py for the fault kinds and long.py for the long run."""
