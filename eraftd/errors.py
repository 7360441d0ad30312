"""The errors of eraftd's clients, one family for the library's users (eraftd.Error and its two
kinds); the clients raise subclasses that say which part answered (shardkv or controller)."""
from __future__ import annotations


class Error(Exception):
    """Something eraftd could not do; the message is one line in plain words."""


class Refused(Error):
    """The cluster refused the operation (bad input, a rule it would break): nothing changed."""


class Unavailable(Error):
    """No answer within the time allowed; the message says what was tried.  A write's outcome
    is then unknown: it may or may not have been applied."""
