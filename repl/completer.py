"""Completion from the live cluster, without ever waiting on it.

ClusterMetadata refreshes a ClusterView in the background (the latest configuration and
every node's status, with short timeouts) and swaps it in whole: readers take `.view` once
and see one consistent snapshot.  A command that changes the configuration (join, leave,
move, query) hands its answer over at once, so a group joined a moment ago is offered
straight away.  ShellCompleter asks suggest.suggest what goes under the cursor and answers
from the snapshot and the session's keys: it never does I/O.
"""
from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from eraftd.controller.client import ControllerClient
from eraftd.controller.state import NSHARDS, Config
from eraftd.tls import TlsFiles

from . import suggest as sg
from .output import ClusterStatus
from .probe import Probe, scrub

REFRESH_EVERY_S = 2.0
TIMEOUT_S = 1.0
# one slow refresh under load must not flip the prompt to "(unreachable)": only this many
# failed refreshes in a row, or failures for this long, do (a first contact fails at once)
FAILURES_BEFORE_UNREACHABLE = 3
FAILING_FOR_S = 5.0


@dataclass(frozen=True)
class ClusterView:
    """What the shell knows of the cluster at one moment (immutable; replaced whole)."""
    config: Config | None = None
    leader: str | None = None
    reachable: bool | None = None              # None: not asked yet
    problem: str = ""
    status: ClusterStatus | None = None        # of `config`, when the nodes were asked
    known_groups: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # every group seen
    checked_at: float = 0.0

    def with_config(self, cfg: Config, leader: str | None) -> "ClusterView":
        if self.config is not None and cfg.num < self.config.num:
            return self
        known = {**self.known_groups, **cfg.groups}
        status = self.status if self.status and self.status.config.num == cfg.num else None
        return replace(self, config=cfg, leader=leader or self.leader, reachable=True, problem="",
                       status=status, known_groups=known, checked_at=time.monotonic())


class ClusterMetadata:
    """The background refresher.  `on_change` is called after each swap (e.g. to redraw)."""

    def __init__(self, controllers: Sequence[str], interval: float = REFRESH_EVERY_S,
                 timeout: float = TIMEOUT_S, dial: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.monotonic, tls: TlsFiles | None = None) -> None:
        self.view = ClusterView()
        self.interval = interval
        self.ctl = ControllerClient(controllers, total_timeout=timeout, call_timeout=timeout / 2,
                                    dial=dial, tls=tls)
        self.probe = Probe(self.ctl, timeout=timeout / 2, dial=dial, tls=tls)
        self.on_change: Callable[[], None] | None = None
        self._wake = asyncio.Event()
        self.clock = clock
        self._failures = 0                 # failed refreshes in a row
        self._failing_since = 0.0

    def failed(self, problem: str) -> None:
        """A refresh could not reach the controllers: unreachable only when it keeps failing."""
        now = self.clock()
        if self._failures == 0:
            self._failing_since = now
        self._failures += 1
        if (self.view.reachable is None or self._failures >= FAILURES_BEFORE_UNREACHABLE
                or now - self._failing_since >= FAILING_FOR_S):
            self._swap(replace(self.view, reachable=False, problem=problem, leader=None,
                               checked_at=now))

    def unreachable(self) -> str:
        """Why the controllers are known not to answer, or "" (for commands.Session)."""
        v = self.view
        return (v.problem or "no answer") if v.reachable is False else ""

    def _swap(self, view: ClusterView) -> None:
        self.view = view
        if self.on_change is not None:
            self.on_change()

    def saw_config(self, cfg: Config, leader: str | None = None) -> None:
        """A configuration a command received: offer it now, then look at the nodes again."""
        self._swap(self.view.with_config(cfg, leader))
        self._wake.set()

    async def refresh(self) -> ClusterView:
        try:
            cfg = await self.ctl.query()
        except Exception as e:                      # unreachable: keep what we knew, say so
            self.failed(scrub(str(e)) or type(e).__name__)
            return self.view
        self._failures = 0
        view = self.view.with_config(cfg, self.ctl.leader)
        self._swap(view)                             # the config first: nodes may be slow
        st = await self.probe.status(cfg)
        if self.view.config is not None and self.view.config.num == cfg.num:
            self._swap(replace(self.view, status=st, leader=st.leader or self.view.leader))
        return self.view

    async def run(self) -> None:
        """Refresh every `interval` (or at once when woken) until cancelled."""
        while True:
            self._wake.clear()
            try:
                await self.refresh()
            except Exception as e:                  # a bug must not stop the refreshing
                self._swap(replace(self.view, problem=f"refresh failed: {type(e).__name__}: {e}"))
            try:
                async with asyncio.timeout(self.interval):   # not wait_for: see transport._connect
                    await self._wake.wait()
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        await self.probe.close()
        await self.ctl.close()


# ---------------------------------------------------------------- candidates (pure)

def _shard_meta(view: ClusterView, shard: int) -> str:
    cfg = view.config
    if cfg is None:
        return ""
    gid = cfg.shards[shard]
    if gid == 0:
        return "unassigned"
    status = view.status.shards[shard].status if view.status is not None else ""
    return f"gid {gid}" + (f" · {status}" if status else "")


def _gid_meta(cfg: Config, gid: int) -> str:
    shards = cfg.shards_of(gid)
    return f"{len(shards)} shard{'s' if len(shards) != 1 else ''} · {', '.join(cfg.groups[gid])}"


MEMBER_OF_GROUP = ("promote", "remove", "replace")    # member subcommands naming a present member


def _members_of(view: ClusterView, group: int) -> list[tuple[str, str]]:
    """(address, meta) of the group's members as the live view knows them: the configured
    servers (a gid's) and every node the last status listed for it (learners too)."""
    st = view.status
    listed = [m for m in st.members() if m.gid == group] if st is not None else []
    configured = list(view.config.groups.get(group, ())) if view.config is not None and group else []
    meta = {m.address: m.role + (", learner" if m.learner else "") for m in listed}
    return [(a, meta.get(a, "")) for a in dict.fromkeys(configured + [m.address for m in listed])]


def candidates(s: sg.Suggestion, view: ClusterView, keys: Iterable[str],
               commands: Mapping[str, str], options: Sequence[str] = (),
               subcommands: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(word to insert, what to display, display_meta) for suggestion `s`, whose word they all
    start with.  `commands`: name -> help; `keys`: the keys used, oldest first; `subcommands`:
    the command's (name -> help)."""
    cfg = view.config
    out: list[tuple[str, str, str]] = []
    if s.kind in (sg.COMMAND, sg.TOPIC):
        out = [(name, name, help) for name, help in commands.items()]
    elif s.kind == sg.KEY:
        out = [(k, k, "") for k in reversed(list(keys))]
    elif s.kind == sg.SHARD:
        out = [(str(i), str(i), _shard_meta(view, i)) for i in range(NSHARDS)]
    elif s.kind == sg.GID and cfg is not None:
        out = [(str(g), str(g), _gid_meta(cfg, g)) for g in cfg.groups]
    elif s.kind == sg.CONFIG_NUM and cfg is not None:
        out = [(str(n), str(n), "latest" if n == cfg.num else "")
               for n in range(cfg.num, max(-1, cfg.num - 10), -1)]
    elif s.kind == sg.GROUP_SPEC:
        live = set(cfg.groups) if cfg is not None else set()
        typed = {a.partition("=")[0] for a in s.args}
        out = [(f"{g}=" + ",".join(servers), f"{g}=" + ",".join(servers),
                "a group in the configuration" if g in live else "left earlier")
               for g, servers in sorted(view.known_groups.items(), key=lambda kv: kv[0] in live)
               if str(g) not in typed]
    elif s.kind == sg.ADDRESS:
        head = f"{s.gid}=" + "".join(a + "," for a in s.taken)
        seen = list(dict.fromkeys(a for servers in view.known_groups.values() for a in servers))
        out = [(head + a, a, "") for a in seen if a not in s.taken]
        return [c for c in out if c[1].startswith(s.word)]
    elif s.kind == sg.OPTION:
        out = [(o, o, "") for o in options]
    elif s.kind == sg.SUBCOMMAND:
        out = [(name, name, help) for name, help in (subcommands or {}).items()]
    elif s.kind == sg.MEMBER_GROUP:
        out = [("ctrl", "ctrl", "the controller group")]
        if cfg is not None:
            out += [(str(g), str(g), _gid_meta(cfg, g)) for g in cfg.groups]
    elif s.kind == sg.MEMBER and s.args and s.args[0] in MEMBER_OF_GROUP and len(s.args) > 1:
        try:
            group = 0 if s.args[1].lower() == "ctrl" else int(s.args[1])
        except ValueError:
            return []
        out = [(a, a, meta) for a, meta in _members_of(view, group)]
    return [c for c in out if c[0].startswith(s.word)]


class ShellCompleter(Completer):
    def __init__(self, metadata: Callable[[], ClusterView], keys: Callable[[], Iterable[str]],
                 grammar: Mapping[str, sg.Grammar], commands: Mapping[str, str]) -> None:
        self.metadata = metadata
        self.keys = keys
        self.grammar = grammar
        self.commands = commands

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        s = sg.suggest(document.text_before_cursor, self.grammar)
        g = self.grammar.get(s.command)
        options = list(g.options or ()) if g is not None else []
        subcommands = g.subcommands if g is not None else None
        for text, display, meta in candidates(s, self.metadata(), self.keys(), self.commands, options,
                                              subcommands):
            yield Completion(shlex.quote(text), start_position=-len(s.raw), display=display,
                             display_meta=meta)

    async def get_completions_async(self, document: Document, complete_event: CompleteEvent):
        for c in self.get_completions(document, complete_event):    # a snapshot: no waiting
            yield c
