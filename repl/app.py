"""`eraftd shell` and the one-shot commands: where the shell meets the terminal.

    eraftd shell [--controllers A,B,C | --config FILE] [-f FILE] [--keep-going] [--json]
                 [--timeout 10s] [--history FILE] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]
    eraftd [--controllers A,B,C | --config FILE] put k v     # any shell command, once

The controller addresses come from --controllers, else a node's TOML file (--config), else
$ERAFT_CONTROLLERS; the TLS files from --tls-*, else $ERAFT_TLS_*, else --config's [tls]
(tls_from).  With stdin a terminal (and no -f) the shell is a prompt-toolkit REPL:
one PromptSession, history in a file with suggestions from it, completion from the live
cluster (completer.py), a prompt and toolbar saying where you are; Ctrl-C cancels the running
command or clears the line, Ctrl-D leaves.  Otherwise the lines of stdin or of -f are a batch
script (batch.py).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from eraftd import config as config_mod
from eraftd import logs
from eraftd import tls as tls_mod
from eraftd.durations import DurationError, parse_duration
from eraftd.members import looks_like_address

from .batch import emit, report, run_batch, run_oneshot, stream_lines
from .commands import (COMMANDS, EXIT_OK, EXIT_USAGE, GRAMMAR, Outcome, Session, answer_offline,
                       execute)
from .output import format_count, status_count

ENV_CONTROLLERS = "ERAFT_CONTROLLERS"
ENV_HISTORY = "ERAFT_HISTORY"
DEFAULT_HISTORY = "~/.eraft_history"
DEFAULT_TIMEOUT = "10s"


# ---------------------------------------------------------------- arguments

def add_cluster_arguments(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """--controllers / --config: where the cluster is (see controllers_from)."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--controllers", metavar="ADDR,ADDR,...", default=d(None),
                   help=f"the controller peers (else --config, else ${ENV_CONTROLLERS})")
    p.add_argument("--config", dest="cluster_config", metavar="FILE", default=d(None),
                   help="take the controller peers (and its [node.dial] map and [tls] files) from "
                        "this node's TOML file")
    add_tls_arguments(p, suppress)


def add_tls_arguments(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """--tls-ca / --tls-cert / --tls-key: the PEM files of a TLS cluster (see tls_from)."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--tls-ca", dest="tls_ca", metavar="FILE", default=d(None),
                   help=f"connect with TLS, trusting this CA certificate (the cluster's ca.crt; "
                        f"else ${tls_mod.ENV_CA}, else --config's [tls])")
    p.add_argument("--tls-cert", dest="tls_cert", metavar="FILE", default=d(None),
                   help=f"present this client certificate (with --tls-key; else ${tls_mod.ENV_CERT})")
    p.add_argument("--tls-key", dest="tls_key", metavar="FILE", default=d(None),
                   help=f"the client certificate's private key (else ${tls_mod.ENV_KEY})")


def add_connection_arguments(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """--controllers / --config / --timeout / --json, for `eraftd` itself and for `eraftd shell`
    (a subcommand's copy must not overwrite what was given before the subcommand: SUPPRESS)."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    add_cluster_arguments(p, suppress)
    p.add_argument("--timeout", metavar="DURATION", default=d(DEFAULT_TIMEOUT),
                   help=f"how long one command may try (default {DEFAULT_TIMEOUT})")
    p.add_argument("--json", action="store_true", default=d(False),
                   help="every command prints one JSON object")


def add_shell_arguments(p: argparse.ArgumentParser) -> None:
    add_connection_arguments(p, suppress=True)
    p.add_argument("-f", "--file", metavar="FILE", help="run this batch script, then exit")
    p.add_argument("--keep-going", action="store_true",
                   help="batch mode: run every line even after one fails (exit 1 at the end)")
    p.add_argument("--history", metavar="FILE",
                   help=f"the REPL's history file (default ${ENV_HISTORY} or {DEFAULT_HISTORY})")


class Usage(Exception):
    """A usage or configuration problem (exit 2); the message is the whole line."""


def _load_config(args: argparse.Namespace) -> config_mod.Config | None:
    path = getattr(args, "cluster_config", None)
    if not path:
        return None
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as e:
        raise Usage(str(e)) from None


def controllers_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> list[str]:
    """The controller addresses: --controllers, else --config's file, else the environment.
    (The one home for this: the shell, the one-shots, status and the dashboard.)"""
    environ = os.environ if environ is None else environ
    if getattr(args, "controllers", None):
        text, where = args.controllers, "--controllers"
    elif (cfg := _load_config(args)) is not None:
        peers = cfg.controller.peers if cfg.controller else cfg.shardkv.controllers
        return list(peers)           # the advertised addresses: the clients dial them
    elif environ.get(ENV_CONTROLLERS, "").strip():
        text, where = environ[ENV_CONTROLLERS], f"${ENV_CONTROLLERS}"
    else:
        raise Usage(f"eraftd: no controller addresses: give --controllers HOST:PORT,HOST:PORT,..., "
                    f"or --config FILE (a node's TOML file), or set {ENV_CONTROLLERS}")
    addrs = [a.strip() for a in text.split(",") if a.strip()]
    if not addrs or not all(looks_like_address(a) for a in addrs):
        raise Usage(f"eraftd: {where}: expected HOST:PORT,HOST:PORT,..., got {text!r}")
    return addrs


def dial_from(args: argparse.Namespace) -> Callable[[str], str] | None:
    """--config's [node.dial] map (advertised address -> where to connect), for EVERY address
    the shell dials (controllers and replicas); None without --config or without a map."""
    cfg = _load_config(args)
    return cfg.node.dial_address if cfg is not None and cfg.node.dial else None


def tls_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> tls_mod.TlsFiles | None:
    """The TLS files every client of the cluster uses: --tls-ca/--tls-cert/--tls-key, else
    $ERAFT_TLS_CA/_CERT/_KEY, else --config's [tls] (the node's own files); None: plaintext.
    The first of these that names any file is used whole.  The files are read here, so that a
    missing or unreadable one, or one that is not PEM, is a Usage line before anything dials.
    (The one home for this: the shell, the one-shots, bench and the dashboard.)"""
    environ = os.environ if environ is None else environ
    ca, cert, key = (getattr(args, n, None) or "" for n in ("tls_ca", "tls_cert", "tls_key"))
    try:
        if ca or cert or key:
            if not ca:
                raise Usage("eraftd: --tls-cert/--tls-key need --tls-ca FILE too (the cluster's CA "
                            "certificate)")
            files: tls_mod.TlsFiles | None = tls_mod.TlsFiles(ca, cert, key)
        elif (files := tls_mod.from_env(environ)) is None and (cfg := _load_config(args)) is not None:
            files = cfg.tls.files if cfg.tls is not None else None
        if files is not None:
            files.read()
    except tls_mod.TlsError as e:
        raise Usage(f"eraftd: {e}") from None
    return files


def _timeout(args: argparse.Namespace) -> float:
    try:
        ms = parse_duration(getattr(args, "timeout", DEFAULT_TIMEOUT))
    except DurationError as e:
        raise Usage(f"eraftd: --timeout: {e}") from None
    if ms <= 0:
        raise Usage("eraftd: --timeout: must be more than 0")
    return ms / 1000


# ---------------------------------------------------------------- entry points (cli.py)

def main_shell(args: argparse.Namespace) -> int:
    try:
        controllers, timeout, dial = controllers_from(args), _timeout(args), dial_from(args)
        tls = tls_from(args)
    except Usage as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    return run_shell(controllers, timeout=timeout, json=args.json, file=args.file,
                     keep_going=args.keep_going, history=args.history, dial=dial, tls=tls)


def main_oneshot(args: argparse.Namespace) -> int:
    words = [args.command] + args.words
    offline = answer_offline(words, args.json)      # help needs no cluster
    if offline is not None:
        report(sys.stdout, sys.stderr, offline, "eraftd: ")
        return offline.code
    try:
        controllers, timeout, dial = controllers_from(args), _timeout(args), dial_from(args)
        tls = tls_from(args)
    except Usage as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE

    async def once() -> int:
        session = Session(controllers, timeout, json=args.json, progress=_terminal(sys.stderr),
                          dial=dial, tls=tls)
        session.stdin = sys.stdin.buffer if sys.stdin is not None else None
        try:
            return await run_oneshot(session, words, sys.stdout, sys.stderr)
        finally:
            await session.close()
    return _run(once())


def run_shell(controllers: Sequence[str], timeout: float = 10.0, json: bool = False,
              file: str | None = None, keep_going: bool = False, history: str | None = None,
              dial: Callable[[str], str] | None = None, tls: tls_mod.TlsFiles | None = None) -> int:
    """The shell: a batch script from `file` or a non-terminal stdin, else the REPL."""
    if file is not None:
        try:
            source: Any = open(file, encoding="utf-8")
        except OSError as e:
            print(f"eraftd: cannot read {file}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
    elif not sys.stdin.isatty():
        source = None
    else:
        return _run(_repl_main(controllers, timeout, json, history, dial, tls))

    async def batch() -> int:
        session = Session(controllers, timeout, json=json, progress=_terminal(sys.stderr), dial=dial,
                          tls=tls)
        try:
            lines = source if source is not None else stream_lines(sys.stdin)
            return await run_batch(session, lines, sys.stdout, sys.stderr, keep_going)
        finally:
            await session.close()
    try:
        return _run(batch())
    finally:
        if source is not None:
            source.close()


def _terminal(stream: TextIO) -> TextIO | None:
    try:
        return stream if stream.isatty() else None
    except (AttributeError, ValueError):
        return None


def _run(coro: Any) -> int:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        print("eraftd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:           # e.g. `eraftd status | head -1`
        return EXIT_OK


# ---------------------------------------------------------------- the REPL

async def _repl_main(controllers: Sequence[str], timeout: float, json: bool,
                     history: str | None, dial: Callable[[str], str] | None = None,
                     tls: tls_mod.TlsFiles | None = None) -> int:
    from prompt_toolkit.patch_stdout import patch_stdout
    # A command's own result is written straight to the terminal, synchronously, between two
    # prompts (no prompt is drawn while a command runs).  Through patch_stdout's proxy it would
    # be queued to a flush thread that prints it whenever it gets to it: after the next prompt
    # when lines were typed ahead, and sometimes not until the next key press.
    out, err = sys.stdout, sys.stderr
    with patch_stdout(raw=True):
        logs.setup("warning")         # after the patch: background log lines go above the prompt
        repl = Repl(Session(controllers, timeout, json=json, progress=_terminal(sys.__stderr__),
                            dial=dial, tls=tls),
                    history_path=history_file(history), out=out, err=err)
        return await repl.run()


def history_file(flag: str | None, environ: dict[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return os.path.expanduser(flag or environ.get(ENV_HISTORY) or DEFAULT_HISTORY)


class Repl:
    """One PromptSession over a Session; `input`/`output` are prompt-toolkit's (tests give a
    pipe input and DummyOutput), `out`/`err` where results and errors go (default: sys's)."""

    def __init__(self, session: Session, history_path: str | None = None, input: Any = None,
                 output: Any = None, out: TextIO | None = None, err: TextIO | None = None,
                 refresh_every: float | None = None) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        from .completer import REFRESH_EVERY_S, ClusterMetadata, ShellCompleter
        self.session = session
        self.out, self.err = out, err
        self.metadata = ClusterMetadata(session.controllers, interval=refresh_every or REFRESH_EVERY_S,
                                        dial=session.dial, tls=session.tls)
        session.on_config.append(self.metadata.saw_config)
        session.interactive = True                  # a missing key shows as (nil)
        session.out = out
        session.unreachable = self.metadata.unreachable   # say so at once, not after the timeout
        self.history_problem = ""
        history: Any = InMemoryHistory()
        if history_path:
            try:
                Path(history_path).parent.mkdir(parents=True, exist_ok=True)
                open(history_path, "a").close()
                history = FileHistory(history_path)
            except OSError as e:
                self.history_problem = f"history not saved: cannot write {history_path}: {e.strerror}"
        self.prompt = PromptSession(
            self.message, history=history, auto_suggest=AutoSuggestFromHistory(),
            completer=ShellCompleter(lambda: self.metadata.view, lambda: self.session.keys, GRAMMAR,
                                     {n: c.help for n, c in COMMANDS.items()}),
            complete_while_typing=True, bottom_toolbar=self.toolbar, input=input, output=output)
        self._running: asyncio.Future | None = None

    # -- where you are: the prompt (config number, reachable) and the toolbar (the details;
    #    prompt-toolkit shows a toolbar only on terminals that answer cursor position requests)
    def message(self) -> str:
        v = self.metadata.view
        if v.config is None:
            return "eraftd (unreachable)> " if v.reachable is False else "eraftd> "
        return f"eraftd cfg {v.config.num}{'' if v.reachable else ' (unreachable)'}> "

    def toolbar(self) -> str:
        v = self.metadata.view
        where = ", ".join(self.session.controllers)
        if v.reachable is None or (v.reachable and v.config is None):
            return f" connecting to {where} ..."
        if not v.reachable:
            return f" unreachable: {v.problem or where} (retrying)"
        groups = len(v.config.groups)
        parts = [f"config {v.config.num}", f"leader {v.leader or 'unknown'}",
                 f"{groups} group{'s' if groups != 1 else ''}"]
        if v.status is not None:
            parts.append(format_count(status_count(v.status)))
        return " " + " · ".join(parts) + "  (Tab completes, Ctrl-D leaves)"

    def _print(self, outcome: Outcome) -> None:
        data = outcome.output
        emit(self.out or sys.stdout, data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data)
        if outcome.error:
            err = self.err or sys.stderr
            err.write(f"error: {outcome.error}\n")
            err.flush()

    def _interrupt(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.cancel()

    def _catch_sigint(self, on: bool = True) -> None:
        """Ctrl-C outside the prompt cancels the running command (or nothing), never the shell.
        prompt-toolkit takes SIGINT over while it prompts and hands it back to Python's
        default (KeyboardInterrupt) when done, so this is called again after every prompt."""
        loop = asyncio.get_running_loop()
        try:
            if on:
                loop.add_signal_handler(signal.SIGINT, self._interrupt)
            else:
                loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError, ValueError):   # not the main thread
            pass

    async def run_line(self, line: str) -> Outcome:
        """Run one line as a task that Ctrl-C cancels; print what it gives."""
        self._running = asyncio.ensure_future(execute(self.session, line))
        try:
            await asyncio.wait({self._running})
        finally:
            task, self._running = self._running, None
        outcome = Outcome(1, error="cancelled") if task.cancelled() else task.result()
        self._print(outcome)
        return outcome

    async def run(self) -> int:
        self.metadata.on_change = self.prompt.app.invalidate
        refresher = asyncio.create_task(self.metadata.run())
        if self.history_problem:
            self._print(Outcome(error=self.history_problem))
        try:
            while True:
                try:
                    line = await self.prompt.prompt_async()
                except KeyboardInterrupt:         # Ctrl-C at the prompt: a fresh line
                    continue
                except EOFError:                  # Ctrl-D
                    break
                finally:
                    self._catch_sigint()
                if (await self.run_line(line)).leave:
                    break
        finally:
            self._catch_sigint(False)
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
            await self.metadata.close()
            await self.session.close()
        return EXIT_OK
