"""The user-space proxy daemon: objects from an ObjectSource, syncs through the bounded-frequency
runner, /healthz and /livez on --healthz-bind-address, /metrics (kube-proxy's sync metrics and
the per service/endpoint forwarding metrics) on --metrics-bind-address. Runs on uvloop.

On SIGTERM/SIGINT it closes its listeners and removes its REDIRECT rules: unlike kernel rules,
they would only black-hole traffic once the process that serves them is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from svcnet.client.filesource import FileSource, ObjectsFileError
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.daemon import PROXY_LABEL_SELECTOR, split_host_port
from svcnet.proxy.endpointslicecache import SERVICE_NAME_LABEL
from svcnet.proxy.healthcheck import ProxierHealth
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.runner import BoundedFrequencyRunner
from svcnet.proxy.userspace.metrics import UserspaceCollector
from svcnet.proxy.userspace.options import UserspaceOptions
from svcnet.proxy.userspace.proxier import UserspaceProxier

log = logging.getLogger("svcnet.proxy.userspace")

HOUSEKEEPING_INTERVAL = 10.0


@dataclass
class UserspaceDaemonOptions:
    files: list[str] = field(default_factory=list)
    kubeconfig: str | None = None
    node: NodeConfig = field(default_factory=NodeConfig)
    proxy: UserspaceOptions = field(default_factory=UserspaceOptions)
    min_sync_period: float = 0.0
    sync_period: float = 30.0
    healthz_bind_address: str = "0.0.0.0:10256"
    metrics_bind_address: str = "127.0.0.1:10249"
    file_poll_interval: float = 1.0


def raise_fd_limit(cap: int = 1 << 20) -> int:
    """Every proxied TCP connection holds two descriptors (four more while splicing): raise the
    soft RLIMIT_NOFILE to the hard limit, as haproxy and nginx do. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-files limit from %d: %s", soft, e)
    return soft


def _ignored(obj: dict) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return "service.kubernetes.io/service-proxy-name" in labels or "service.kubernetes.io/headless" in labels


class UserspaceDaemon:
    def __init__(self, opts: UserspaceDaemonOptions) -> None:
        self.opts = opts
        self.metrics = ProxyMetrics()
        self.health = ProxierHealth(2 * opts.sync_period)
        self.source = None
        self.proxier = UserspaceProxier(opts.node, opts.proxy, raw_slices=self._raw_slices)
        self.metrics.registry.register(UserspaceCollector(self.proxier))
        self.runner = BoundedFrequencyRunner("userspace-sync", self._sync, opts.min_sync_period,
                                             opts.sync_period)
        self._stop = asyncio.Event()
        self._sites: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task] = []

    def _raw_slices(self, namespace: str, name: str) -> list[dict]:
        if self.source is None:
            return []
        return [s for s in self.source.store("endpointslices").list(namespace)
                if ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == name]

    async def _sync(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self.proxier.sync()
        fam = "IPv6" if self.opts.node.is_ipv6 else "IPv4"
        self.metrics.sync_duration.labels(fam).observe(loop.time() - start)
        self.metrics.last_timestamp.labels(fam).set_to_current_time()
        self.health.updated()

    def _changed(self) -> None:
        self.health.queued_update()
        if self.proxier.state.initialized:
            self.runner.run()

    def _on_service(self, obj: dict, deleted: bool = False) -> None:
        self.proxier.state.on_service(obj, deleted=deleted or _ignored(obj))
        self.metrics.service_changes.inc()
        self._changed()

    def _on_slice(self, obj: dict, deleted: bool = False) -> None:
        self.proxier.state.on_endpoint_slice(obj, deleted=deleted or _ignored(obj))
        self.metrics.endpoint_changes.inc()
        self._changed()

    def _on_node(self, obj: dict, deleted: bool = False) -> None:
        if (obj.get("metadata") or {}).get("name") != self.opts.node.node_name:
            return
        self.proxier.state.on_node(obj, deleted=deleted)
        if self.proxier.state.has_changes:
            self._changed()

    def _make_source(self):
        if self.opts.files:
            return FileSource(self.opts.files)
        from svcnet.client.informer import InformerSource

        src = InformerSource.from_kubeconfig(self.opts.kubeconfig)
        src.watch("services", label_selector=PROXY_LABEL_SELECTOR)
        src.watch("endpointslices", label_selector=PROXY_LABEL_SELECTOR)
        src.watch("nodes", field_selector=f"metadata.name={self.opts.node.node_name}")
        return src

    async def _serve(self, app: web.Application, address: str) -> None:
        host, port = split_host_port(address)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        self._sites.append(runner)

    def _metrics_app(self) -> web.Application:
        async def metrics(_req: web.Request) -> web.Response:
            body = generate_latest(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            self.proxier.expire_affinity()

    async def _active_checks(self) -> None:
        while True:
            await asyncio.sleep(self.opts.proxy.health_check_interval)
            await self.proxier.active_check()

    async def _file_poll(self) -> None:
        def stamp() -> tuple:
            out = []
            for p in self.opts.files:
                try:
                    st = os.stat(p)
                    out.append((st.st_mtime_ns, st.st_size))
                except OSError:
                    out.append(None)
            return tuple(out)

        last = stamp()
        while True:
            await asyncio.sleep(self.opts.file_poll_interval)
            now = stamp()
            if now == last:
                continue
            last = now
            try:
                await self.source.reload()
            except ObjectsFileError as e:
                log.error("not reloading objects: %s", e)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        log.info("open-files limit: %d", raise_fd_limit())
        try:
            if self.opts.healthz_bind_address:
                await self._serve(self.health.app(), self.opts.healthz_bind_address)
            if self.opts.metrics_bind_address:
                await self._serve(self._metrics_app(), self.opts.metrics_bind_address)
        except OSError as e:
            log.error("cannot serve health or metrics: %s", e)
            return 1
        self.source = src = self._make_source()
        src.add_handler("services", on_add=self._on_service, on_update=lambda _o, n: self._on_service(n),
                        on_delete=lambda o: self._on_service(o, deleted=True))
        src.add_handler("endpointslices", on_add=self._on_slice, on_update=lambda _o, n: self._on_slice(n),
                        on_delete=lambda o: self._on_slice(o, deleted=True))
        src.add_handler("nodes", on_add=self._on_node, on_update=lambda _o, n: self._on_node(n),
                        on_delete=lambda o: self._on_node(o, deleted=True))
        try:
            await src.start()
        except ObjectsFileError as e:
            log.error("%s", e)
            return 2
        await src.wait_synced()
        state = self.proxier.state
        state.services_synced = state.slices_synced = True
        self.runner.start()
        self.runner.run()
        self._tasks.append(loop.create_task(self._housekeeping()))
        if self.opts.proxy.health_check_interval > 0:
            self._tasks.append(loop.create_task(self._active_checks()))
        if self.opts.files:
            self._tasks.append(loop.create_task(self._file_poll()))
        log.info("user-space proxy running (scheduler %s)", self.opts.proxy.scheduler)
        await self._stop.wait()
        log.info("stopping: closing listeners, removing REDIRECT rules")
        for t in self._tasks:
            t.cancel()
        await self.runner.stop()
        await src.stop()
        await self.proxier.stop()
        for r in self._sites:
            await r.cleanup()
        return 0


def run(opts: UserspaceDaemonOptions) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        return asyncio.run(UserspaceDaemon(opts).run())
    return uvloop.run(UserspaceDaemon(opts).run())
