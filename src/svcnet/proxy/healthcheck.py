"""Health endpoints: the proxier's /healthz and /livez, and one server per healthCheckNodePort.

Upstream semantics (pkg/proxy/healthcheck): the proxier is healthy once it has synced and no
queued update has waited longer than healthTimeout (2 x --sync-period); /healthz is also 503 when
the node is being deleted, /livez ignores that. A service health server answers 200 with the
number of local ready endpoints when there is at least one, 503 otherwise, so external load
balancers send traffic only to nodes that have endpoints (externalTrafficPolicy Local).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import orjson
from aiohttp import web

log = logging.getLogger("svcnet.proxy.healthz")


def _go_time(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")


class ProxierHealth:
    def __init__(self, health_timeout: float) -> None:
        self.health_timeout = health_timeout
        self.last_updated: float | None = None
        self.oldest_pending: float | None = None
        self.node_eligible = True

    def queued_update(self) -> None:
        if self.oldest_pending is None:
            self.oldest_pending = time.time()

    def updated(self) -> None:
        self.last_updated = time.time()
        self.oldest_pending = None

    def healthy(self) -> bool:
        if self.last_updated is None:
            return False
        waiting = self.oldest_pending is not None and time.time() - self.oldest_pending > self.health_timeout
        return not waiting

    def _reply(self, ok: bool) -> web.Response:
        body = (f'{{"lastUpdated": "{_go_time(self.last_updated)}","currentTime": "{_go_time(time.time())}", '
                f'"nodeEligible": {"true" if self.node_eligible else "false"}}}')
        return web.Response(status=200 if ok else 503, text=body, content_type="application/json",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def healthz(self, _request: web.Request) -> web.Response:
        return self._reply(self.healthy() and self.node_eligible)

    async def livez(self, _request: web.Request) -> web.Response:
        return self._reply(self.healthy())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/livez", self.livez)
        return app


class ServiceHealthServers:
    """One HTTP listener per healthCheckNodePort, reporting local ready endpoints."""

    def __init__(self, health: ProxierHealth, host: str = "0.0.0.0") -> None:
        self.health = health
        self.host = host
        self.services: dict[tuple[str, str], int] = {}
        self.local_endpoints: dict[tuple[str, str], int] = {}
        self._runners: dict[int, tuple[tuple[str, str], web.AppRunner]] = {}

    async def sync_services(self, ports: dict[tuple[str, str], int]) -> None:
        self.services = dict(ports)
        wanted = {port: key for key, port in ports.items()}
        for port in list(self._runners):
            if wanted.get(port) != self._runners[port][0]:
                _, runner = self._runners.pop(port)
                await runner.cleanup()
        for port, key in wanted.items():
            if port in self._runners:
                continue
            runner = web.AppRunner(self._app(key), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, self.host, port, reuse_address=True).start()
            except OSError as e:
                log.error("cannot open health check node port %d for %s/%s: %s", port, *key, e)
                await runner.cleanup()
                continue
            self._runners[port] = (key, runner)

    def sync_endpoints(self, counts: dict[tuple[str, str], int]) -> None:
        self.local_endpoints = dict(counts)

    def _app(self, key: tuple[str, str]) -> web.Application:
        async def handle(_request: web.Request) -> web.Response:
            count = self.local_endpoints.get(key, 0)
            healthy = self.health.healthy()
            body = orjson.dumps({"service": {"namespace": key[0], "name": key[1]},
                                 "localEndpoints": count, "serviceProxyHealthy": healthy})
            return web.Response(status=200 if count > 0 and healthy else 503, body=body,
                                content_type="application/json",
                                headers={"X-Content-Type-Options": "nosniff",
                                         "X-Load-Balancing-Endpoint-Weight": str(count)})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    async def close(self) -> None:
        for _, runner in self._runners.values():
            await runner.cleanup()
        self._runners.clear()
