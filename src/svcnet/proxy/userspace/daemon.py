"""The user-space proxy daemon: objects from an ObjectSource, syncs through the bounded-frequency
runner, /healthz and /livez on --healthz-bind-address, /metrics (kube-proxy's sync metrics and
the per service/endpoint forwarding metrics) on --metrics-bind-address. Runs on uvloop.

On SIGTERM/SIGINT it closes its listeners and removes its REDIRECT rules: unlike kernel rules,
they would only black-hole traffic once the process that serves them is gone.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from dataclasses import dataclass, field

from aiohttp import web

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.daemonbase import DaemonBase
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


class UserspaceDaemon(DaemonBase):
    log = log

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

    def _states(self) -> list:
        return [self.proxier.state]

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            self.proxier.expire_affinity()

    async def _active_checks(self) -> None:
        while True:
            await asyncio.sleep(self.opts.proxy.health_check_interval)
            await self.proxier.active_check()

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
        if not await self._start_source():
            return 2
        src = self.source
        state = self.proxier.state
        state.services_synced = state.slices_synced = True
        self.runner.start()
        self.runner.run()
        self._tasks.append(loop.create_task(self._housekeeping()))
        if self.opts.proxy.health_check_interval > 0:
            self._tasks.append(loop.create_task(self._active_checks()))
        if self.opts.files:
            self._tasks.append(loop.create_task(self._file_poll_loop()))
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
