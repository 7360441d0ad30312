"""The shell tests' error-line collector: every Outcome error of an in-process command (Session,
Repl, batch) and every stderr of a real `eraftd` (repl_support.eraftd) lands in
repl_support.ERROR_LINES; test_zz_error_lines.py, moved to the end, checks them all."""
from __future__ import annotations

import pytest
from repl_support import saw_errors

from repl import batch, commands

LAST = "test_zz_error_lines.py"


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.fspath.basename == LAST)     # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _collect_error_lines(monkeypatch, request):
    real = commands.run_words

    async def run_words(session, words):
        outcome = await real(session, words)
        if outcome.error:
            saw_errors(outcome.error, f"{request.node.name}: {' '.join(map(str, words))[:60]}")
        return outcome
    monkeypatch.setattr(commands, "run_words", run_words)
    monkeypatch.setattr(batch, "run_words", run_words)
    yield
