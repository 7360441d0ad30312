"""Logging set-up from the [log] section: one line per event, to stderr or a file.

    2026-11-26T12:00:00.123 INFO eraftd.raft: message
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Hashable

LEVELS = ("debug", "info", "warning", "error", "critical")


class OneLineFormatter(logging.Formatter):
    """Local time to the millisecond; a multi-line message or traceback is folded onto one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "").replace("\n", "\\n")


class Every:
    """For rate-limited log lines: `every(key)` is true at most once per `interval` seconds per
    key (a peer, a caller); the keys kept are bounded (forgotten all at once beyond max_keys)."""

    def __init__(self, interval: float = 60.0, max_keys: int = 4096) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[Hashable, float] = {}

    def __call__(self, key: Hashable) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self.interval:
            return False
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        return True


class ClientGoneFilter(logging.Filter):
    """grpc.aio logs an ExecuteBatchError, traceback and all, at ERROR when a handler's answer
    cannot be sent because the client has already gone (its deadline passed, it cancelled, the
    connection closed: e.g. while this process was paused).  Nothing failed on our side and the
    client retries; say so in one INFO line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ == "ExecuteBatchError":
            method = record.getMessage().rpartition(" by servicer method ")[2] or "a call"
            record.msg, record.args = "a client went away before its answer to %s could be sent", (method,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True


def setup(level: str = "info", file: str = "") -> None:
    """Route every logger through one handler at `level` (one of LEVELS).

    `file` empty means stderr; otherwise append to it, creating its directory.
    Raises ValueError for an unknown level and OSError when the file cannot be opened.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}, expected one of {', '.join(LEVELS)}")
    if file:
        os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
        handler: logging.Handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    handler.addFilter(ClientGoneFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
