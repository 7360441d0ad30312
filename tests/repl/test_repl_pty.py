"""The interactive REPL, typed at: in-process through prompt-toolkit's pipe input (to read the
completion menu itself), and the real `eraftd shell` on a pseudo-terminal through pexpect.

Completion candidates come from the live cluster: a group joined a moment ago (by someone
else) is offered, and move's gid candidates are exactly the live groups."""
from __future__ import annotations

import asyncio
import io
import re

import pexpect
import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from repl_support import G100, cluster, shell_env, until  # noqa: F401

from eraftd.controller.client import ControllerClient
from eraftd.testing import eraftd_command, free_port
from repl.app import Repl
from repl.commands import Session

pytestmark = pytest.mark.e2e

G101 = 101


class Typist:
    """Types into an in-process Repl and reads what it shows."""

    def __init__(self, repl: Repl, inp, out: io.StringIO, err: io.StringIO) -> None:
        self.repl, self.inp, self.out, self.err = repl, inp, out, err

    @property
    def buffer(self):
        return self.repl.prompt.default_buffer

    async def menu(self, text: str) -> list[tuple[str, str]]:
        """Clear the line, type `text`, and return the live completion menu's (text, meta)."""
        self.inp.send_text("\x15" + text)                       # Ctrl-U clears the line first
        state = await until(lambda: (s := self.buffer.complete_state) is not None
                            and s.original_document.text == text and s, 10, f"completions of {text!r}")
        return [(c.text, c.display_meta_text) for c in state.completions]

    async def tab(self) -> str:
        before = self.buffer.text
        self.inp.send_text("\t")
        return await until(lambda: self.buffer.text != before and self.buffer.text, 10, "Tab to complete")

    async def run(self, line: str, expect: str) -> None:
        """Type a whole line and Enter; wait until stdout or stderr shows `expect`."""
        self.inp.send_text("\x15" + line + "\r")
        await until(lambda: expect in self.out.getvalue() + self.err.getvalue(), 30, f"{line!r} to print {expect!r}")


@pytest.fixture
async def typist(cluster, tmp_path):  # noqa: F811
    with create_pipe_input() as inp:
        out, err = io.StringIO(), io.StringIO()
        repl = Repl(Session(cluster.addresses, timeout=10), history_path=str(tmp_path / "history"),
                    input=inp, output=DummyOutput(), out=out, err=err, refresh_every=0.2)
        task = asyncio.create_task(repl.run())
        try:
            await until(lambda: repl.metadata.view.status is not None, 30, "the first metadata refresh")
            yield Typist(repl, inp, out, err)
            inp.send_text("\x15\x04")                            # Ctrl-D on an empty line leaves
            assert await asyncio.wait_for(task, 30) == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_completion_candidates_come_from_the_live_cluster(cluster, typist):  # noqa: F811
    t = typist
    assert await t.menu("mo") == [("move", "give shard SHARD (0..9) to group GID")]
    assert await t.menu("move 3 ") == [(str(G100), f"10 shards · {', '.join(cluster.addresses)}")]
    shards = await t.menu("move ")
    assert [s for s, _ in shards] == [str(i) for i in range(10)]
    assert all(meta == f"gid {G100} · Serving" for _, meta in shards)

    # someone else joins a group: the background refresh offers it, move's gids are the live groups
    [addr] = cluster.add_group(G101, replicas=1)
    async with ControllerClient(cluster.addresses) as ctl:
        await ctl.join({G101: [addr]})
        await until(lambda: G101 in t.repl.metadata.view.config.groups, 30, "the join to be seen")
        assert [g for g, _ in await t.menu("move 3 ")] == [str(G100), str(G101)]
        assert [g for g, _ in await t.menu("leave 10")] == [str(G100), str(G101)]
        assert await t.tab() == f"leave {G100}"                  # Tab takes the first candidate
        # this shell makes it leave: offered again to join, as a whole spec; move offers 100 alone
        await t.run(f"leave {G101}", "OK")
        assert [g for g, _ in await t.menu("move 3 ")] == [str(G100)]
        assert await t.menu("join ") == [(f"{G101}={addr}", "left earlier"),
                                         (f"{G100}={','.join(cluster.addresses)}", "a group in the configuration")]
        assert await t.menu(f"join 105={cluster.addresses[0]},") == [
            (f"105={cluster.addresses[0]},{a}", "") for a in cluster.addresses[1:] + [addr]]
        assert t.repl.message().startswith(f"eraftd cfg {(await ctl.query()).num}")


async def test_keys_history_toolbar_and_ctrl_c_at_the_prompt(cluster, typist):  # noqa: F811
    t = typist
    await t.run("put 'greeting key' 'hello there'", "OK")
    await t.run("get 'greeting key'", "hello there")
    assert await t.menu("get gr") == [("'greeting key'", "")]     # a key used this session, quoted
    t.inp.send_text("\x15get 'gr")                                # auto-suggest from the history
    await until(lambda: t.buffer.suggestion is not None and t.buffer.suggestion.text == "eeting key'",
                10, "a suggestion from history")
    t.inp.send_text("\x03")                                       # Ctrl-C: a fresh, empty line
    await until(lambda: t.buffer.text == "", 10, "the line to be cleared")
    await t.run("get 'greeting key'", "hello there\nhello there")   # still running
    await t.run("get 'no such key'", "(nil)\n")                   # missing: (nil), as redis-cli
    await t.run("get 'greeting key' --json", '{"key": "greeting key", "value": "hello there"}')
    await t.run("help get", "usage: get KEY")
    await t.run("put --help", "usage: put KEY VALUE")
    await t.run("move 42 100", "error: move: the shard must be 0..9, got 42; usage: move SHARD GID [--wait]\n")
    bar = await until(lambda: " · 3 nodes up (3 controller peers, 3 replicas)" in (b := t.repl.toolbar()) and b, 30, "every node up")
    assert bar.startswith(" config ") and " · leader 127.0.0.1:" in bar and " · 1 group · " in bar


async def test_an_unreachable_cluster_shows_in_prompt_and_toolbar(tmp_path):
    dead = [f"127.0.0.1:{free_port()}"]
    with create_pipe_input() as inp:
        out, err = io.StringIO(), io.StringIO()
        repl = Repl(Session(dead, timeout=1), history_path=None, input=inp, output=DummyOutput(),
                    out=out, err=err, refresh_every=0.2)
        task = asyncio.create_task(repl.run())
        try:
            await until(lambda: repl.metadata.view.reachable is False, 30, "the refresh to fail")
            assert repl.message() == "eraftd (unreachable)> "
            assert repl.toolbar().startswith(" unreachable: ") and dead[0] in repl.toolbar()
            inp.send_text("get k\r")                              # fails in plain words, stays open
            await until(lambda: "error: " in err.getvalue(), 30, "the error")
            assert dead[0] in err.getvalue() and err.getvalue().count("\n") == 1
            assert "Traceback" not in err.getvalue()
            inp.send_text("quit\r")
            assert await asyncio.wait_for(task, 30) == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# ---------------------------------------------------------------- the real executable on a pty

def test_the_real_shell_on_a_terminal(cluster, tmp_path):  # noqa: F811
    history = tmp_path / "history"
    cmd = eraftd_command() + ["shell", "--controllers", cluster.controllers, "--history", str(history)]
    p = pexpect.spawn(cmd[0], cmd[1:], env=shell_env(), dimensions=(40, 160), timeout=30,
                      encoding="utf-8", cwd=str(tmp_path))
    log = io.StringIO()
    p.logfile_read = log
    prompt = r"eraftd cfg \d+>"          # drawn whole once the previous command has printed
    try:
        p.expect("cfg")                                 # the prompt says where we are (redrawn in place)
        p.send("put sessionkey hello-from-the-pty\r")
        p.expect("OK")
        p.expect(prompt)
        p.send("get sess")
        p.expect("sessionkey")                          # the live menu shows the key
        p.send("\t\r")                                  # Tab takes it; Enter runs `get sessionkey`
        p.expect("hello-from-the-pty")
        p.expect(prompt)
        p.send("bench 1000000 1\r")                     # long: Ctrl-C cancels it, the shell stays
        p.expect(r"\] \d+/1000000")                     # its progress bar
        p.sendintr()
        p.expect(r"interrupted after \d+ of 1000000 requests")    # the summary of what was done
        p.expect(r"cleanup     removed \d+ bench keys")         # and its keys are gone again
        p.expect("error: cancelled")
        p.expect(prompt)
        p.send("put half")                              # Ctrl-C at the prompt clears the line
        p.sendintr()
        p.send("get sessionkey\r")
        p.expect("hello-from-the-pty")
        p.expect(prompt)
        p.sendcontrol("d")                              # Ctrl-D leaves
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 0, log.getvalue()[-2000:]
    finally:
        if p.isalive():
            p.terminate(force=True)
    assert "Traceback" not in log.getvalue()
    lines = [line[1:] for line in history.read_text().splitlines() if line.startswith("+")]
    assert lines == ["put sessionkey hello-from-the-pty", "get sessionkey", "bench 1000000 1",
                     "get sessionkey"]


def test_batch_mode_when_stdin_is_not_a_terminal_even_from_a_pty_parent(cluster):  # noqa: F811
    # stdin a pipe (from /bin/sh) while stdout is a terminal: still batch mode, no prompt
    cmd = " ".join(eraftd_command() + ["shell", "--controllers", cluster.controllers])
    p = pexpect.spawn("/bin/sh", ["-c", f"printf 'put b 1\\nget b\\n' | {cmd}; echo rc=$?"],
                      env=shell_env(), timeout=60, encoding="utf-8")
    try:
        p.expect(pexpect.EOF)
    finally:
        if p.isalive():
            p.terminate(force=True)
    assert p.before.replace("\r", "").split("\n")[-4:] == ["OK", "1", "rc=0", ""]


def test_type_ahead_output_shows_before_the_next_prompt(cluster, tmp_path):  # noqa: F811
    """A fast typist (or a paste) sends `put` and `get` in one go, and then types nothing more:
    the value must be on the screen before the next prompt is drawn, every time (prompt-toolkit's
    patch_stdout queued it to a thread that could leave it unprinted until the next key press)."""
    cmd = eraftd_command() + ["shell", "--controllers", cluster.controllers, "--history",
                              str(tmp_path / "history")]
    p = pexpect.spawn(cmd[0], cmd[1:], env=shell_env(), dimensions=(40, 160), timeout=30,
                      encoding="utf-8", cwd=str(tmp_path))
    log = io.StringIO()
    p.logfile_read = log
    prompt = r"eraftd cfg \d+>"
    try:
        p.expect(r"cfg \d+>")                   # the first prompt is redrawn in place
        for i in range(50):
            put, get, value = f"put ta{i} value-{i}-x", f"get ta{i}", f"value-{i}-x"
            p.send(f"{put}\r{get}\r")                    # type-ahead: both lines at once
            # nothing more is typed: the value must come on its own ...
            got = p.expect([f"{value}\r\n", pexpect.TIMEOUT], timeout=20)
            assert got == 0, f"round {i}: the value was not shown:\n{log.getvalue()[-1500:]}"
            p.expect(prompt)
            # ... and each result right after its own line, before any prompt is drawn again
            # (the line itself is drawn after a prompt, so look from its last drawing on)
            text = log.getvalue()
            for line, result in ((put, "OK\r\n"), (get, f"{value}\r\n")):
                at = text.rindex(line, 0, text.rindex(result))
                between = text[at + len(line):text.index(result, at)]
                assert not re.search(r"cfg \d+>", between), f"round {i}: a prompt before the result of {line!r}"
        p.sendcontrol("d")
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 0, log.getvalue()[-2000:]
    finally:
        if p.isalive():
            p.terminate(force=True)
    assert "Traceback" not in log.getvalue()
