"""What kind of thing goes here? A pure function of the text before the cursor.

    >>> suggest("move 3 ", GRAMMAR).kind
    'gid'

No I/O and no cluster: the completer (completer.py) turns a Suggestion into candidates from
its cached cluster metadata.  The grammar (which slots each command has) comes from the one
command registry (commands.GRAMMAR), so help, completion and dispatch cannot disagree.

Words are split as the shell splits them (shlex rules: quotes, backslashes), leniently: an
unclosed quote is simply the word being typed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# slot kinds: what one word of a command is
COMMAND = "command"      # a command name
KEY = "key"              # a key (candidates: keys used this session)
VALUE = "value"          # free text: nothing to suggest
GID = "gid"              # a live group id
SHARD = "shard"          # a shard number, 0..NSHARDS-1
GROUP_SPEC = "group"     # join's GID=ADDR,ADDR,...
ADDRESS = "address"      # one server address inside a GROUP_SPEC, after the '='
CONFIG_NUM = "num"       # a configuration number
TOPIC = "topic"          # help's argument: a command name
OPTION = "option"        # an option of a command that takes options (bench)
SUBCOMMAND = "subcommand"  # the first word of a command with subcommands (shard abandon, member add)
MEMBER_GROUP = "member group"   # member's group: a live gid, or ctrl (the controller group)
MEMBER = "member"        # an address of a member of the group named before (member promote/remove/replace)
NOTHING = "nothing"      # nothing (more) goes here


@dataclass(frozen=True)
class Grammar:
    """The words a command takes: `slots` in order; with `repeat` the last slot repeats;
    `options` (name -> takes a value) are recognised anywhere after the command word, up to --;
    `subcommands` (name -> help) are what a SUBCOMMAND slot offers."""
    slots: tuple[str, ...] = ()
    repeat: bool = False
    options: Mapping[str, bool] | None = None
    subcommands: Mapping[str, str] | None = None     # SUBCOMMAND's words: name -> help


@dataclass(frozen=True)
class Suggestion:
    kind: str
    word: str = ""                    # the word under the cursor, unquoted (candidates start with it)
    raw: str = ""                     # the same word as typed (what a completion replaces)
    command: str = ""
    args: tuple[str, ...] = ()        # the complete words between the command and the cursor
    gid: str = ""                     # ADDRESS: the gid before '='
    taken: tuple[str, ...] = ()       # ADDRESS: the addresses already in this spec


def split_words(text: str) -> list[tuple[str, str]]:
    """(raw, value) for each word of `text` by shlex rules; a trailing unclosed quote or
    backslash is tolerated.  A text ending in whitespace gets a last ("", "") word: the cursor
    is at the start of a new word."""
    words: list[tuple[str, str]] = []
    raw: list[str] = []
    val: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                val.append(ch)
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\$`\n':
                raw.append(ch)
                i += 1
                ch = text[i]
                val.append(ch)
            else:
                val.append(ch)
        elif ch.isspace():
            if in_word:
                words.append(("".join(raw), "".join(val)))
                raw, val, in_word = [], [], False
            i += 1
            continue
        elif ch in "'\"":
            quote = ch
        elif ch == "\\":
            if i + 1 < len(text):
                raw.append(ch)
                i += 1
                ch = text[i]
                val.append(ch)
        else:
            val.append(ch)
        raw.append(ch)
        in_word = True
        i += 1
    words.append(("".join(raw), "".join(val)))
    return words


def suggest(text: str, grammar: Mapping[str, Grammar]) -> Suggestion:
    """What goes at the end of `text` (the line before the cursor)."""
    words = split_words(text)
    raw, word = words[-1]
    if len(words) == 1:
        return Suggestion(COMMAND, word, raw)
    command = words[0][1]
    g = grammar.get(command)
    if g is None:
        return Suggestion(NOTHING, word, raw, command)
    args = tuple(v for _, v in words[1:-1])
    base = dict(word=word, raw=raw, command=command, args=args)
    opts = g.options or {}
    positional: list[str] = []
    expect_value = False
    words_only = False                 # after --, every word is a word (commands.split_options)
    for a in args:                     # options (and their values) are not positional words
        if words_only:
            positional.append(a)
        elif expect_value:
            expect_value = False
        elif a == "--":
            words_only = True
        elif a in opts:
            expect_value = opts[a]
        else:
            positional.append(a)
    if expect_value:
        return Suggestion(NOTHING, **base)
    if opts and word.startswith("-") and not words_only:
        return Suggestion(OPTION, **base)
    n = len(positional)
    if n < len(g.slots):
        kind = g.slots[n]
    elif g.repeat and g.slots:
        kind = g.slots[-1]
    else:
        kind = NOTHING
    if kind == GROUP_SPEC and "=" in word:
        gid, _, addrs = word.partition("=")
        parts = addrs.split(",")
        return Suggestion(ADDRESS, parts[-1], raw, command, args, gid=gid,
                          taken=tuple(p for p in parts[:-1] if p))
    return Suggestion(kind, **base)
