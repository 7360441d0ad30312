"""The shell without a terminal: batch mode (a script from a pipe, a file or -f) and one-shot
commands (`eraftd put k v`).  Both run lines through commands.execute and write outcomes the
same way: output to stdout, one error line to stderr.

Batch mode: blank lines and lines starting with # are skipped; an error line is prefixed with
the script's line number; the first failing line stops the script unless keep_going, which
runs every line.  The exit code is the worst of the lines' (0 ok, 1 failed, 2 usage error);
`exit` or `quit` ends the script there.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Iterable, Sequence, TextIO

from .commands import EXIT_OK, Outcome, Session, emit, execute, run_words


def report(out: TextIO, err: TextIO, outcome: Outcome, prefix: str) -> None:
    emit(out, outcome.output)
    if outcome.error:
        err.write(f"{prefix}{outcome.error}\n")
        err.flush()


async def stream_lines(stream: TextIO) -> AsyncIterator[str]:
    """The lines of `stream` as they come (a pipe may be slow), without blocking the loop."""
    while True:
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        yield line


async def _lines(source: Iterable[str] | AsyncIterator[str]) -> AsyncIterator[str]:
    if hasattr(source, "__aiter__"):
        async for line in source:          # type: ignore[union-attr]
            yield line
    else:
        for line in source:                # type: ignore[union-attr]
            yield line


async def run_batch(session: Session, source: Iterable[str] | AsyncIterator[str], out: TextIO,
                    err: TextIO, keep_going: bool = False) -> int:
    worst = EXIT_OK
    number = 0
    session.out = out
    async for line in _lines(source):
        number += 1
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        outcome = await execute(session, text)
        report(out, err, outcome, f"line {number}: ")
        if outcome.leave:
            break
        worst = max(worst, outcome.code)
        if outcome.code != EXIT_OK and not keep_going:
            break
    return worst


async def run_oneshot(session: Session, words: Sequence[str], out: TextIO, err: TextIO) -> int:
    session.out = out
    outcome = await run_words(session, words)
    report(out, err, outcome, "eraftd: ")
    return outcome.code
