"""`eraftd` command line: one registry of subcommands, each `handler(args) -> exit code`.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from typing import Any, Callable, NamedTuple, Sequence

from eraftd import __version__, config, logs

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class Command(NamedTuple):
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None   # adds the subcommand's flags
    #   (None: a shell command, whose words are parsed by the shell's registry)
    handler: Callable[[argparse.Namespace], int]


def _config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, metavar="FILE", help="the node's TOML file")


def _load(path: str) -> config.Config | None:
    """The validated config, or None after printing the one-line error."""
    try:
        return config.load(path)
    except config.ConfigError as e:
        print(e, file=sys.stderr)
        return None


# ---------------------------------------------------------------- run

def _run_arguments(p: argparse.ArgumentParser) -> None:
    _config_argument(p)
    p.add_argument("--log-level", choices=logs.LEVELS, help="override [log] level")
    # tests and benchmarks only: run a trivial state machine in every group and serve
    # NodeAdmin.Propose/Read for it (eraftd/node/statemachine.py)
    p.add_argument("--test-state-machine", choices=("register", "noop"), help=argparse.SUPPRESS)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_USAGE
    if args.log_level:
        cfg = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, level=args.log_level))
    try:
        logs.setup(cfg.log.level, cfg.log.file)
    except OSError as e:
        print(config.ConfigError(args.config, "[log] file", f"cannot open {cfg.log.file}: {e.strerror}"),
              file=sys.stderr)
        return EXIT_USAGE
    if args.test_state_machine and not cfg.node.testing:
        print(config.ConfigError(args.config, "[node] testing", "--test-state-machine is a test-only "
                                 "mode: it needs testing = true in [node]"), file=sys.stderr)
        return EXIT_USAGE
    from eraftd.node.server import serve   # lazily: the CLI works without the node's dependencies
    try:
        return serve(cfg, test_machine=args.test_state_machine)
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------- check-config

def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_USAGE
    print(f"eraftd: config ok: {args.config}: {summary(cfg)}")
    return EXIT_OK


def summary(cfg: config.Config) -> str:
    """One line: who this node is and where it keeps its data."""
    parts = [f"advertise {cfg.node.advertise}"]
    if cfg.node.listen != cfg.node.advertise:
        parts.append(f"listen {cfg.node.listen}")
    if c := cfg.controller:
        parts.append(f"controller {_member(c)}")
    if s := cfg.shardkv:
        parts.append(f"shardkv gid {s.gid} {_member(s)}")
    parts.append(f"data_dir {cfg.node.data_dir}")
    return ", ".join(parts)


def _member(section: config.ControllerSection | config.ShardKVSection) -> str:
    n = len(section.peers)
    if section.join:
        return f"joining via {n} existing peer{'s' if n != 1 else ''}"
    return f"id {section.id} of {n}"


# ---------------------------------------------------------------- shell and one-shot commands
# Their arguments and handlers live in the shell (repl/): `eraftd put k v` runs through the same
# command registry and parser as the REPL's `put k v`.

def _shell_arguments(p: argparse.ArgumentParser) -> None:
    from repl.app import add_shell_arguments
    add_shell_arguments(p)


def cmd_shell(args: argparse.Namespace) -> int:
    from repl.app import main_shell
    return main_shell(args)


def cmd_oneshot(args: argparse.Namespace) -> int:
    from repl.app import main_oneshot
    return main_oneshot(args)


def oneshot_commands() -> dict[str, Command]:
    """Every shell command that makes sense once (help too); its words go to the shell's
    parser as they are (the option rule: repl/commands.py).
    (Imported when the parser is built, after main() has quietened gRPC.)"""
    from repl.commands import COMMANDS as SHELL
    return {c.name: Command(c.help, None, cmd_oneshot)
            for c in SHELL.values() if c.oneshot}


# ---------------------------------------------------------------- lazily imported commands

def _lazy(module: str, name: str) -> Callable[..., Any]:
    """module.name, imported when first called (a command's module loads only when it runs)."""
    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args)
    return call


# ---------------------------------------------------------------- --version and the protobuf backend

def protobuf_backend() -> str:
    """The protobuf implementation in use ("upb", "python", ...), after importing every generated
    module explicitly (so that PyInstaller bundles them and the frozen binary gets upb)."""
    from eraftd._pb import (admin_pb2, kvbatch_pb2, raft_pb2, shardctrler_pb2,  # noqa: F401
                            shardkv_pb2, shardmigration_pb2)
    from google.protobuf.internal import api_implementation
    return api_implementation.Type()


def version_line() -> str:
    v = sys.version_info
    frozen = ", single-file binary" if getattr(sys, "frozen", False) else ""
    return f"eraftd {__version__} (protobuf {protobuf_backend()}, python {v.major}.{v.minor}.{v.micro}{frozen})"


def _check_frozen_backend() -> None:
    """The frozen binary must run protobuf's compiled backend; say so loudly when it does not."""
    if getattr(sys, "frozen", False) and (backend := protobuf_backend()) != "upb":
        print(f"eraftd: warning: protobuf uses its slow {backend!r} backend, not upb; "
              f"this binary was built wrongly", file=sys.stderr)


# ---------------------------------------------------------------- dashboard

def _dashboard_arguments(p: argparse.ArgumentParser) -> None:
    from eraftd.durations import parse_duration
    from repl.app import add_cluster_arguments
    add_cluster_arguments(p, suppress=True)      # as every other command: see controllers_from
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="where to serve the page (default 127.0.0.1:8080)")
    p.add_argument("--interval", default=parse_duration("5s"), type=parse_duration, metavar="DURATION",
                   help="how often to poll the cluster and refresh the page (default 5s)")
    p.epilog = ("TLS: --tls-ca (with --tls-cert/--tls-key when the cluster requires client "
                "certificates) dials a TLS cluster; given --tls-cert and --tls-key, the page is "
                "served over HTTPS with that certificate too (make one that names the dashboard's "
                "host, e.g. `eraftd cert create-node DIR HOST:PORT`).  The same files come from "
                "ERAFT_TLS_CA/_CERT/_KEY or --config's [tls].")


def cmd_dashboard(args: argparse.Namespace) -> int:
    import asyncio

    from repl.app import Usage, controllers_from, dial_from, tls_from
    logs.setup("warning", "")
    try:
        controllers, dial, tls = controllers_from(args), dial_from(args), tls_from(args)
    except Usage as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    if args.interval <= 0:
        print("eraftd dashboard: --interval must be above 0", file=sys.stderr)
        return EXIT_USAGE
    from eraftd.dashboard.server import serve
    from eraftd.tls import TlsError
    try:
        asyncio.run(serve(controllers, args.listen, args.interval / 1000, dial=dial, tls=tls))
    except TlsError as e:
        print(f"eraftd dashboard: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"eraftd dashboard: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


# ---------------------------------------------------------------- the registry
# Later: dashboard.

COMMANDS: dict[str, Command] = {
    "run": Command("run a node (controller peer, shardkv replica, or both)", _run_arguments, cmd_run),
    "check-config": Command("validate a node's TOML file and print a summary", _config_argument,
                            cmd_check_config),
    "dashboard": Command("serve a live web view of the cluster (and /api/cluster JSON)",
                         _dashboard_arguments, cmd_dashboard),
    "shell": Command("the interactive shell (a batch script from a pipe or -f)", _shell_arguments,
                     cmd_shell),
    "demo": Command("a whole local cluster (controllers + 2 groups) and the shell, in one command",
                    _lazy("eraftd.demo", "add_arguments"), _lazy("eraftd.demo", "cmd_demo")),
    "backup": Command("copy every shard (each at one applied index) and the configuration into a "
                      "directory", _lazy("eraftd.backup", "add_backup_arguments"),
                      _lazy("eraftd.backup", "cmd_backup")),
    "restore": Command("load a backup into a cluster whose groups are joined (every key; sessions "
                       "start afresh)", _lazy("eraftd.backup", "add_restore_arguments"),
                       _lazy("eraftd.backup", "cmd_restore")),
    "cert": Command("make the cluster's TLS certificates: create-ca, create-node, create-client, show",
                    _lazy("eraftd.certs", "add_arguments"), _lazy("eraftd.certs", "cmd_cert")),
}


def build_parser() -> argparse.ArgumentParser:
    from repl.app import add_connection_arguments
    # allow_abbrev=False: the top parser sees every word, so an abbreviation rule would read a
    # subcommand's own flag (demo --tls) as a prefix of its options (--tls-ca, --tls-cert, ...)
    parser = argparse.ArgumentParser(prog="eraftd", description="A Raft-replicated, sharded key-value store.",
                                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=version_line())
    add_connection_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in {**COMMANDS, **oneshot_commands()}.items():
        if cmd.arguments is None:     # a shell command: its words go to the shell's parser as they are
            p = sub.add_parser(name, help=cmd.help, description=cmd.help, add_help=False,
                               prefix_chars="\0")
            p.add_argument("words", nargs="*")
        else:
            p = sub.add_parser(name, help=cmd.help, description=cmd.help)
            cmd.arguments(p)
        p.set_defaults(handler=cmd.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's C core logs its own errors to stderr; ours say the same in one line.
    # (Must be set before grpc is first imported; GRPC_VERBOSITY=ERROR brings them back.)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    _check_frozen_backend()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    argv = _help_of_own_command(parser, argv)
    head, words = _split_shell_words(parser, argv)
    try:
        args = parser.parse_args(head)
    except SystemExit as e:   # --help, --version (0) and usage errors (2)
        return int(e.code or 0)
    if words is not None:
        args.words = words
    return args.handler(args)


def _help_of_own_command(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`eraftd help CMD [ACTION]` for a command of this registry (run, demo, cert, ...) is
    `eraftd CMD [ACTION] --help`; the shell's commands keep the shell's own help."""
    i = _command_index(parser, argv)
    if i is not None and argv[i] == "help" and len(argv) > i + 1 and argv[i + 1] in COMMANDS:
        return argv[:i] + argv[i + 1:] + ["--help"]
    return argv


def _command_index(parser: argparse.ArgumentParser, argv: list[str]) -> int | None:
    """Where the command word is in argv (after the global options), or None."""
    takes_value = {o for a in parser._actions for o in a.option_strings if a.nargs is None
                   and not isinstance(a, (argparse._StoreTrueAction, argparse._VersionAction,
                                          argparse._HelpAction))}
    i = 0
    while i < len(argv):
        w = argv[i]
        if w.startswith("-"):
            i += 2 if w in takes_value else 1
            continue
        return i
    return None


def _split_shell_words(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`eraftd [OPTIONS] CMD WORDS...` for a shell command: (up to CMD, WORDS untouched), so that
    the shell's option rule (repl/commands.py: `--`, options after the command word) sees them
    as typed; argparse would eat a `--`.  Other commands: (argv, None)."""
    i = _command_index(parser, argv)
    if i is not None and argv[i] in oneshot_commands():
        return argv[:i + 1], argv[i + 1:]
    return argv, None


if __name__ == "__main__":
    sys.exit(main())
