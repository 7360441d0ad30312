"""Logging set-up from the [log] section: one line per event, to stderr or a file.

    2026-11-26T12:00:00.123 INFO eraftd.raft: message
"""
from __future__ import annotations

import logging
import os
import sys

LEVELS = ("debug", "info", "warning", "error", "critical")


class OneLineFormatter(logging.Formatter):
    """Local time to the millisecond; a multi-line message or traceback is folded onto one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "").replace("\n", "\\n")


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
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
