"""Fixtures of the e2e tests: `cluster(**kw)` makes an eraftd.testing.Cluster in the test's
tmp_path; every process of every cluster it made is killed at the end, even on failure."""
from __future__ import annotations

import pytest

from eraftd.testing import Cluster


@pytest.fixture
def cluster(tmp_path):
    made: list[Cluster] = []

    def make(**kw) -> Cluster:
        c = Cluster(tmp_path, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()
