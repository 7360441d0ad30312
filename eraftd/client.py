"""The client library: what an application imports to use an eraftd cluster.

    import eraftd

    with eraftd.Client(["127.0.0.1:6001", "127.0.0.1:6002", "127.0.0.1:6003"]) as kv:
        kv.put("greeting", "hello")
        kv.append("greeting", " world")
        assert kv.get("greeting") == b"hello world"
        kv.cas("greeting", "hello world", "bye")        # (True, None): swapped
        for key, value in kv.scan("gr"):                # every key starting with "gr", in order
            print(key, value)
        kv.delete("greeting")

    async with eraftd.AsyncClient(controllers) as kv:   # the same methods, awaited
        await kv.put("k", "v")
        async for key, value in kv.scan("k"):
            ...

Keys and values are bytes or str (str is encoded as UTF-8); what comes back is bytes.  Every
key-value operation is linearizable; writes are applied exactly once even when the client
retries them.  The client finds the cluster from the controllers, routes each key to the group
that serves its shard and follows the cluster as shards move and leaders change.

Errors (all subclasses of eraftd.Error):
    eraftd.Refused       the cluster refused the operation (a key or value over the limits, a
                         move to an unknown group, ...): nothing was changed; the message says why.
    eraftd.Unavailable   no answer within `timeout` (the cluster, or the group serving the key,
                         is unreachable or has no leader): a write's outcome is then unknown.

`timeout` bounds each operation (default 10 s); `dial` maps the addresses the cluster
advertises to the ones to connect to (a NAT or port-forward setup, like `[node.dial]`); `tls`
connects with TLS to a cluster with a [tls] section:

    tls = eraftd.TlsFiles("certs/ca.crt", "certs/client.app.crt", "certs/client.app.key")
    with eraftd.Client(controllers, tls=tls) as kv: ...

(the CA file alone when the cluster has client_auth = "none"; eraftd.tls.from_env() reads
ERAFT_TLS_CA/_CERT/_KEY).

AsyncClient runs on the caller's event loop.  Client runs one of its own in a background
thread, so it can be used from plain (threaded) code; one Client may be shared by threads.
"""
from __future__ import annotations

import asyncio
import threading
from typing import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence

from .controller.client import ControllerClient
from .controller.state import Config
from .errors import Error, Refused, Unavailable
from .shardkv.clerk import Clerk
from .tls import TlsFiles

Data = bytes | str

__all__ = ["AsyncClient", "Client", "Config", "Error", "Refused", "TlsFiles", "Unavailable"]

_CALL_TIMEOUT_S = 3.0


class AsyncClient:
    """An eraftd cluster, for asyncio code.  Use `async with`, or call close()."""

    def __init__(self, controllers: Sequence[str] | str, timeout: float = 10.0,
                 dial: Callable[[str], str] | None = None, tls: TlsFiles | None = None) -> None:
        addrs = [a.strip() for a in controllers.split(",")] if isinstance(controllers, str) else list(controllers)
        addrs = [a for a in addrs if a]
        if not addrs:
            raise ValueError("AsyncClient needs the controller addresses (HOST:PORT, ...)")
        if timeout <= 0:
            raise ValueError(f"timeout must be more than 0 seconds, got {timeout}")
        self.controllers = addrs
        self.timeout = timeout
        call = min(_CALL_TIMEOUT_S, timeout)
        extra: dict = {"tls": tls, **({"dial": dial} if dial is not None else {})}
        self._kv = Clerk(addrs, total_timeout=timeout, call_timeout=call, **extra)
        self._ctl = ControllerClient(addrs, total_timeout=timeout, call_timeout=call, **extra)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._kv.close()
        await self._ctl.close()

    # ---------------------------------------------------------------- keys and values
    async def get(self, key: Data) -> bytes | None:
        """The value of key; None when it has none."""
        return await self._kv.get(key)

    async def put(self, key: Data, value: Data) -> None:
        await self._kv.put(key, value)

    async def append(self, key: Data, value: Data) -> None:
        """Add value to the end of key's value (a missing key counts as empty)."""
        await self._kv.append(key, value)

    async def delete(self, key: Data) -> bool:
        """Remove key; True if it had a value."""
        return await self._kv.delete(key)

    async def exists(self, key: Data) -> bool:
        return await self._kv.exists(key)

    async def cas(self, key: Data, expected: Data | None, new: Data) -> tuple[bool, bytes | None]:
        """Set key to `new` if its value is `expected` (None: if it has no value).
        (True, None) when it did; else (False, the current value, or None if it has none)."""
        return await self._kv.cas(key, expected, new)

    def scan(self, prefix: Data = b"", limit: int | None = None) -> AsyncIterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with prefix, in key order, at most `limit`;
        streamed page by page (each page read linearizably from its shard's group)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, got {limit}")
        return self._kv.scan(prefix, limit)

    # ---------------------------------------------------------------- the cluster
    async def query(self, num: int = -1) -> Config:
        """Configuration num (default: the latest): .num, .shards (shard -> gid), .groups."""
        return await self._ctl.query(num)

    async def join(self, groups: Mapping[int, Iterable[str]], force: bool = False) -> Config:
        """Add replica groups (gid -> server addresses); the new configuration.  Refused when
        none of a group's servers answers as that gid, unless `force`."""
        return await self._ctl.join(groups, force=force)

    async def leave(self, gids: Iterable[int]) -> Config:
        return await self._ctl.leave(gids)

    async def move(self, shard: int, gid: int) -> Config:
        return await self._ctl.move(shard, gid)


class Client:
    """An eraftd cluster, for plain (blocking, possibly threaded) code: AsyncClient's methods,
    each run on a private event loop in a background thread.  Use `with`, or call close()."""

    def __init__(self, controllers: Sequence[str] | str, timeout: float = 10.0,
                 dial: Callable[[str], str] | None = None, tls: TlsFiles | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eraftd-client", daemon=True)
        self._thread.start()
        try:
            self._async = self._run(self._make(controllers, timeout, dial, tls))
        except BaseException:
            self._stop()
            raise
        self.controllers, self.timeout = self._async.controllers, timeout

    @staticmethod
    async def _make(controllers, timeout, dial, tls) -> AsyncClient:
        return AsyncClient(controllers, timeout, dial, tls)     # the clerk needs a running loop

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._async.close())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coro):
        if self._loop.is_closed():
            coro.close()
            raise Error("this eraftd.Client is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()               # e.g. KeyboardInterrupt in the caller: stop the operation
            raise

    def get(self, key: Data) -> bytes | None:
        return self._run(self._async.get(key))

    def put(self, key: Data, value: Data) -> None:
        self._run(self._async.put(key, value))

    def append(self, key: Data, value: Data) -> None:
        self._run(self._async.append(key, value))

    def delete(self, key: Data) -> bool:
        return self._run(self._async.delete(key))

    def exists(self, key: Data) -> bool:
        return self._run(self._async.exists(key))

    def cas(self, key: Data, expected: Data | None, new: Data) -> tuple[bool, bytes | None]:
        return self._run(self._async.cas(key, expected, new))

    def scan(self, prefix: Data = b"", limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """As AsyncClient.scan; the pages are fetched as the iteration goes."""
        it = self._async.scan(prefix, limit)
        try:
            while True:
                try:
                    yield self._run(it.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(_aclose(it))

    def query(self, num: int = -1) -> Config:
        return self._run(self._async.query(num))

    def join(self, groups: Mapping[int, Iterable[str]], force: bool = False) -> Config:
        return self._run(self._async.join(groups, force))

    def leave(self, gids: Iterable[int]) -> Config:
        return self._run(self._async.leave(gids))

    def move(self, shard: int, gid: int) -> Config:
        return self._run(self._async.move(shard, gid))


async def _aclose(it: AsyncIterator) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()
