"""Runs after every other shell test (conftest.py moves it last): no error line they produced
may show a gRPC status name or a b'' repr."""
from __future__ import annotations

import pytest
from repl_support import ERROR_LINES

FORBIDDEN = ("b'", 'b"', "UNIMPLEMENTED", "DEADLINE_EXCEEDED", "StatusCode", "UNAVAILABLE", "INTERNAL")


def test_no_error_line_leaks_status_names_or_reprs(request):
    others = [i for i in request.session.items if i.fspath.basename != "test_zz_error_lines.py"]
    if not others:
        pytest.skip("run with the other shell tests: it checks the error lines they produce")
    assert ERROR_LINES, "no error line was collected: the collector is broken"
    bad = [f"{where}: {line}" for where, line in ERROR_LINES if any(f in line for f in FORBIDDEN)]
    assert bad == [], "\n".join(bad)
