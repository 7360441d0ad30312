"""A node's HTTP side ([node] http = "ADDR"): /metrics, /healthz, /readyz; HTTPS when the node
has [tls] (its own certificate; client certificates required iff client_auth = "require").

* /metrics  the Prometheus text format (eraftd/metrics.py).
* /healthz  200 "ok" while the process serves (the event loop answers).
* /readyz   200 "ready" when every group this node hosts knows its leader and this node has
            applied everything it knows to be committed (metrics.readiness documents the rule);
            503 with one line per group that is not, otherwise.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import metrics


def make_app(driver: Any) -> web.Application:
    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(),
                            headers={"Content-Type": metrics.CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        ready, problems = metrics.readiness(driver)
        if ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n" + "".join(p + "\n" for p in problems))

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class HttpServer:
    """Started and stopped by `eraftd run` inside the node's event loop."""

    def __init__(self, driver: Any, address: str, tls: Any = None) -> None:
        """tls: the node's [tls] section (a config.TlsSection): then HTTPS with the node's
        certificate, client certificates of the cluster's CA required iff client_auth = "require"."""
        self.address = address
        self.runner = web.AppRunner(make_app(driver), access_log=None)
        self.ssl = (tls.files.ssl_context(server=True, require_client_auth=tls.require_client_auth)
                    if tls is not None else None)

    async def start(self) -> None:
        host, _, port = self.address.rpartition(":")
        await self.runner.setup()
        await web.TCPSite(self.runner, host.strip("[]") or None, int(port), ssl_context=self.ssl).start()

    async def stop(self) -> None:
        await self.runner.cleanup()
