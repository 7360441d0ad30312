"""eraftd: a Raft-replicated, sharded key-value store.  The client library (eraftd.Client,
eraftd.AsyncClient and their errors) is imported on first use, so that `eraftd --version`
and the CLI stay quick to start."""
__version__ = "0.1.0"

_LIBRARY = {"Client": "client", "AsyncClient": "client",
            "Error": "errors", "Refused": "errors", "Unavailable": "errors", "TlsFiles": "tls"}


def __getattr__(name: str):
    if name in _LIBRARY:
        import importlib
        return getattr(importlib.import_module(f"eraftd.{_LIBRARY[name]}"), name)
    raise AttributeError(f"module 'eraftd' has no attribute {name!r}")
