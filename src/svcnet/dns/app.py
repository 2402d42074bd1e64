"""`svcnet dns` as a running service: the index fed from an ObjectSource, the DNS server, and
the HTTP side (/metrics, /health, /ready)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import web

from svcnet.dns.index import ClusterIndex
from svcnet.dns.lookup import ZoneOptions
from svcnet.dns.metrics import DnsMetrics, build_http_app, server_label
from svcnet.dns.server import DnsServer, ServerOptions

log = logging.getLogger(__name__)


def attach(index: ClusterIndex, source: object, pods: bool) -> None:
    """Feed the index from an ObjectSource's add/update/delete handlers."""
    src = source  # an svcnet.client.source.ObjectSource
    src.add_handler("services", on_add=index.set_service,  # type: ignore[attr-defined]
                    on_update=lambda _old, new: index.set_service(new), on_delete=index.delete_service)
    src.add_handler("endpointslices", on_add=index.set_slice,  # type: ignore[attr-defined]
                    on_update=lambda _old, new: index.set_slice(new), on_delete=index.delete_slice)
    src.add_handler("namespaces", on_add=index.set_namespace,  # type: ignore[attr-defined]
                    on_update=lambda _old, new: index.set_namespace(new), on_delete=index.delete_namespace)
    if pods:
        src.add_handler("pods", on_add=index.set_pod,  # type: ignore[attr-defined]
                        on_update=lambda _old, new: index.set_pod(new), on_delete=index.delete_pod)


@dataclass
class DnsService:
    zone_options: ZoneOptions
    server_options: ServerOptions
    metrics_listen: tuple[str, int] | None = None
    index: ClusterIndex = field(default_factory=ClusterIndex)
    server: DnsServer | None = None
    http_port: int | None = None
    _runner: web.AppRunner | None = None

    async def start(self, source: object | None) -> None:
        """Start serving at once (SERVFAIL for cluster names until the first sync), then load
        the source in the background."""
        opts = self.server_options
        self.server = DnsServer(self.index, self.zone_options, opts,
                                DnsMetrics(server_label(opts.host, opts.port)))
        await self.server.start()
        self.server.metrics.server = server_label(opts.host, self.server.port)  # port 0 is now known
        if self.metrics_listen is not None:
            app = build_http_app(self.server.metrics, lambda: self.index.synced)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.metrics_listen[0], self.metrics_listen[1])
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.http_port = sockets[0].getsockname()[1] if sockets else self.metrics_listen[1]
        if source is not None:
            attach(self.index, source, self.zone_options.pods == "verified")
            await source.start()  # type: ignore[attr-defined]
            self.server.spawn(self._sync(source))

    async def _sync(self, source: object) -> None:
        while not await source.wait_synced(timeout=5.0):  # type: ignore[attr-defined]
            log.info("waiting for the first sync of services, endpointslices and namespaces")
        self.index.mark_synced()
        log.info("synced: %d services, %d endpoint slices, %d namespaces", len(self.index.services),
                 len(self.index.slices), len(self.index.namespaces))

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def serve_forever(self) -> None:
        await asyncio.Event().wait()
