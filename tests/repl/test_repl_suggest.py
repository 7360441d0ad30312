"""suggest(): what kind of thing goes under the cursor.  Pure: plain asserts, no cluster."""
from __future__ import annotations

from repl.commands import GRAMMAR
from repl.suggest import (ADDRESS, COMMAND, CONFIG_NUM, GID, GROUP_SPEC, KEY, NOTHING, OPTION,
                          SHARD, SUBCOMMAND, TOPIC, VALUE, split_words, suggest)


def kind(text: str) -> str:
    return suggest(text, GRAMMAR).kind


def test_the_first_word_is_a_command():
    assert kind("") == COMMAND
    assert kind("mo") == COMMAND
    assert suggest("mo", GRAMMAR).word == "mo"
    assert kind("  ") == COMMAND


def test_key_value_commands():
    assert kind("get ") == KEY
    assert kind("get ab") == KEY
    assert kind("put k ") == VALUE
    assert kind("put k v ") == NOTHING
    assert kind("append k") == KEY
    assert kind("get k ") == NOTHING


def test_configuration_commands():
    assert kind("move ") == SHARD
    assert kind("move 3") == SHARD
    assert kind("move 3 ") == GID
    assert kind("move 3 10") == GID
    assert kind("move 3 100 ") == NOTHING
    assert kind("leave ") == GID
    assert kind("leave 100 ") == GID          # leave takes many gids
    assert kind("join ") == GROUP_SPEC
    assert kind("join 101=a:1 ") == GROUP_SPEC
    assert kind("query ") == CONFIG_NUM
    assert kind("help ") == TOPIC
    assert kind("status ") == NOTHING
    assert kind("nosuch ") == NOTHING
    assert kind("shard ") == SUBCOMMAND
    assert kind("shard abandon ") == SHARD
    assert kind("shard abandon 3 ") == SHARD            # many shards
    assert kind("shard abandon 3 --yes") == OPTION
    assert kind("join 101=a:1 --f") == OPTION


def test_an_address_inside_a_join_spec():
    s = suggest("join 101=127.0.0.1:7001,127.0.0.1:70", GRAMMAR)
    assert (s.kind, s.gid, s.taken, s.word) == (ADDRESS, "101", ("127.0.0.1:7001",), "127.0.0.1:70")
    assert s.raw == "101=127.0.0.1:7001,127.0.0.1:70"
    s = suggest("join 101=", GRAMMAR)
    assert (s.kind, s.gid, s.taken, s.word) == (ADDRESS, "101", (), "")


def test_bench_options_anywhere_and_their_values():
    assert kind("bench -") == OPTION
    assert kind("bench --un") == OPTION
    assert kind("bench 1000 16 --") == OPTION
    assert kind("bench -n ") == NOTHING        # a number goes here
    assert kind("bench 100 ") == NOTHING
    assert suggest("bench -n 5 --v", GRAMMAR).args == ("-n", "5")
    assert kind("query --") == OPTION          # every command knows --json, --help, --timeout
    assert kind("put k -") == OPTION           # a dash: put's options are offered
    assert kind("put -- -") == KEY             # after --, every word is a word
    assert kind("put -- -k -") == VALUE
    assert kind("get k --timeout ") == NOTHING  # a duration goes here


def test_quotes_and_escapes_like_a_shell():
    s = suggest("get 'my ke", GRAMMAR)          # an unclosed quote is the word being typed
    assert (s.kind, s.word, s.raw) == (KEY, "my ke", "'my ke")
    s = suggest('put "a b" ', GRAMMAR)
    assert (s.kind, s.args) == (VALUE, ("a b",))
    assert split_words(r"put a\ b c") == [("put", "put"), (r"a\ b", "a b"), ("c", "c")]
    assert split_words("get ") == [("get", "get"), ("", "")]
    assert split_words('x "q\\"r"') == [("x", "x"), ('"q\\"r"', 'q"r')]
