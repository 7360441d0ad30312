"""The client library as an application uses it: eraftd.Client (blocking, threads) and
eraftd.AsyncClient against real processes, and its documented errors."""
from __future__ import annotations

import concurrent.futures
import time

import pytest

import eraftd
from eraftd.testing import ShardedCluster, free_port, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = ShardedCluster(tmp_path_factory.mktemp("library"), gids=(100,), replicas=1, controllers=1)
    try:
        c.start()
        with eraftd.Client(c.controller_addresses(), timeout=60) as kv:
            kv.join({100: c.addresses(100)})
            wait_for(lambda: kv.put("0warm-up", "x") is None, 60, "group 100 to serve")
        yield c
    finally:
        c.close()
    for n in c.nodes:
        assert "Traceback" not in n.log_text(), n.name


def test_blocking_client_every_operation(cluster):
    with eraftd.Client(cluster.controller_addresses()) as kv:
        kv.put("lib/a", "1")
        kv.append("lib/a", "2")
        assert kv.get("lib/a") == b"12"
        assert kv.get("lib/missing") is None
        assert kv.exists("lib/a") and not kv.exists("lib/missing")
        assert kv.cas("lib/a", "12", "3") == (True, None)
        assert kv.cas("lib/a", "12", "4") == (False, b"3")
        assert kv.cas("lib/new", None, "n") == (True, None)        # create if missing
        assert kv.cas("lib/new", None, "m") == (False, b"n")
        kv.put(b"lib/\xff", b"\x00binary")                          # bytes in, bytes out
        assert list(kv.scan("lib/")) == [(b"lib/a", b"3"), (b"lib/new", b"n"), (b"lib/\xff", b"\x00binary")]
        assert list(kv.scan("lib/", limit=1)) == [(b"lib/a", b"3")]
        assert kv.delete("lib/a") is True and kv.delete("lib/a") is False
        assert kv.get("lib/a") is None
        cfg = kv.query()
        assert cfg.num >= 1 and set(cfg.shards) == {100}


def test_blocking_client_is_shared_by_threads(cluster):
    with eraftd.Client(cluster.controller_addresses()) as kv:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: kv.append("lib/threads", f"<{i}>"), range(40)))
        value = kv.get("lib/threads").decode()
        assert sorted(value[1:-1].split("><"), key=int) == [str(i) for i in range(40)]


async def test_async_client(cluster):
    async with eraftd.AsyncClient(",".join(cluster.controller_addresses())) as kv:
        await kv.put("alib/k", "v")
        assert await kv.get("alib/k") == b"v"
        assert [k async for k, _ in kv.scan("alib/")] == [b"alib/k"]


def test_errors_are_the_documented_ones(cluster):
    with eraftd.Client(cluster.controller_addresses()) as kv:
        with pytest.raises(eraftd.Refused, match="longer than the limit") as e:
            kv.put("k" * 5000, "v")
        assert "b'" not in str(e.value)
        with pytest.raises(eraftd.Refused):
            kv.move(3, 999)                                         # no such group
    dead = [f"127.0.0.1:{free_port()}"]
    with eraftd.Client(dead, timeout=1) as kv:
        t0 = time.monotonic()
        with pytest.raises(eraftd.Unavailable) as e:
            kv.get("k")
        assert time.monotonic() - t0 < 30                           # bounded (not a timing test)
        assert dead[0] in str(e.value) and isinstance(e.value, eraftd.Error)
    with pytest.raises(ValueError, match="controller addresses"):
        eraftd.Client([])
    c = eraftd.Client(dead)
    c.close()
    with pytest.raises(eraftd.Error, match="closed"):
        c.get("k")


def test_the_readme_example_as_written(cluster, capsys):
    """The README's client-library example, run literally (only the addresses differ)."""
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## The client library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"127.0.0.1:6001,127.0.0.1:6002,127.0.0.1:6003"' in code
    code = code.replace("127.0.0.1:6001,127.0.0.1:6002,127.0.0.1:6003", ",".join(cluster.controller_addresses()))
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:7] == ["b'apple pie'", "None", "(True, None)", "(False, b'tart')", "(True, None)",
                         "b'fruit' b'tart'", "True True False"]
    assert lines[7].startswith("refused: ") and "longer than the limit" in lines[7]
    assert int(lines[8]) >= 1 and len(lines) == 9
