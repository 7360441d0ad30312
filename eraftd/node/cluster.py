"""The cluster identity: which cluster a node's data_dir belongs to, and refusing other clusters.

A cluster id is a random 64-bit number fixed when the cluster is bootstrapped: the first leader
of the controller group proposes it as an entry of the controller log (eraftd/controller/
machine.py), so every controller applies the same one; each node keeps it in its data_dir's
identity record (NodeStore.set_cluster_id) once learned, and never changes it.  A node learns
it once, from the first of:

* the controller log (a controller peer),
* a controller's answer (CommandResponse.cluster_id: a shardkv node polling its controllers),
* a peer's Raft batch (MessageBatch.cluster_tag: a replica whose leader knows it, a new node
  being added to a running group).

0 means "not known yet" and is accepted from anyone: a node that has just been created belongs
to the cluster that first talks to it.  Every peer batch, snapshot and shard-migration call
carries the sender's id; once both sides know theirs, a mismatch is refused (PERMISSION_DENIED
naming both ids) and logged at most once per peer per minute.  This guards against cross-wired
clusters (a TOML that names another cluster's nodes) with TLS off too; it is not a secret.
"""
from __future__ import annotations

import logging
from typing import Any

from ..logs import Every

log = logging.getLogger("eraftd.cluster")

METADATA_KEY = "x-eraftd-cluster"      # on migration calls: the caller's cluster id (hex)
LOG_INTERVAL_S = 60.0


def cluster_text(cid: int) -> str:
    return f"{cid:016x}" if cid else "(none yet)"


class ClusterIdentity:
    def __init__(self, store: Any) -> None:
        self.store = store              # NodeStore: cluster_id, set_cluster_id
        self._every = Every(LOG_INTERVAL_S)
        self.refused = 0

    @property
    def value(self) -> int:
        return self.store.cluster_id

    def learn(self, cid: int, source: str) -> str:
        """Take cid (from `source`, e.g. "127.0.0.1:7001") if this node knows none yet; "" when
        it is (now) ours or unknown there, else the refusal (logged, rate-limited)."""
        if not cid:
            return ""
        ours = self.store.cluster_id
        if not ours:
            self.store.set_cluster_id(cid)
            log.info("this node belongs to cluster %s (learned from %s)", cluster_text(cid), source)
            return ""
        if cid == ours:
            return ""
        why = (f"{source} belongs to cluster {cluster_text(cid)}, this node to cluster "
               f"{cluster_text(ours)}: a node of another cluster (check the peer and controller "
               f"lists in both TOML files)")
        self.refused += 1
        if self._every(source):
            log.error("refused: %s", why)
        return why

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What a migration call carries."""
        cid = self.store.cluster_id
        return ((METADATA_KEY, f"{cid:x}"),) if cid else ()

    def check_call(self, context: Any, source: str = "") -> str:
        """A migration call's cluster id against ours ("" = fine)."""
        raw = dict(context.invocation_metadata() or ()).get(METADATA_KEY, "")
        try:
            cid = int(raw, 16) if raw else 0
        except ValueError:
            return f"the caller's cluster id {raw[:32]!r} is not a number"
        if not cid or not self.store.cluster_id:
            return ""
        if not source:
            try:
                source = context.peer() or "the caller"
            except Exception:  # noqa: BLE001
                source = "the caller"
        return self.learn(cid, source)
