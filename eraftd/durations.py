"""Human durations ("500ms", "5s", "1.5s", "2m", "1m30s") -> whole milliseconds.

`parse_duration` doubles as an argparse `type=`: its error is both a ValueError (for plain callers)
and an argparse.ArgumentTypeError (so argparse prints our message, not a generic one).
"""
from __future__ import annotations

import argparse
import re
from decimal import Decimal

_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
_PART = r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)"
_WHOLE = re.compile(f"(?:{_PART})+")
_PARTS = re.compile(_PART)


class DurationError(ValueError, argparse.ArgumentTypeError):
    """A malformed duration; str() is a complete, user-facing message."""


def parse_duration(text: str) -> int:
    """Return `text` as a whole, non-negative number of milliseconds."""
    s = text.strip() if isinstance(text, str) else ""
    if not _WHOLE.fullmatch(s):
        raise DurationError(f"invalid duration {text!r}: expected a number and a unit "
                            f"(ms, s, m, h), e.g. 500ms, 5s, 1.5s, 2m, 1m30s")
    ms = sum(Decimal(n) * _UNITS[unit] for n, unit in _PARTS.findall(s))
    if ms != ms.to_integral_value():
        raise DurationError(f"invalid duration {text!r}: not a whole number of milliseconds")
    return int(ms)
