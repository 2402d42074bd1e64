"""What the kernel proxiers (iptables, nftables, ipvs) share: their state and wiring, the
daemon's hooks (canary, route_localnet) where a mode has nothing to do, the failure bookkeeping,
the sync metrics and the health-check and conntrack updates that follow a sync."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.conntrack import Conntrack
from svcnet.proxy.healthcheck import ProxierHealth, ServiceHealthServers
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.state import ChangeResult, ProxyState


class ProxierBase:
    def __init__(self, node: NodeConfig, metrics: ProxyMetrics, health: ProxierHealth,
                 service_health: ServiceHealthServers | None, conntrack: Conntrack | None,
                 sync_period: float) -> None:
        self.node = node
        self.metrics = metrics
        self.health = health
        self.service_health = service_health
        self.conntrack = conntrack
        self.sync_period = sync_period
        self.state = ProxyState(node.family, node.node_name)
        self.need_full_sync = True
        self.retry: Callable[[float], None] | None = None  # set by the daemon: schedule a retry
        self.family_label = "IPv6" if node.is_ipv6 else "IPv4"
        self._lock = asyncio.Lock()

    # --- the daemon's hooks ---

    def ensure_canary(self) -> None:
        return None

    def force_full_sync(self) -> None:
        self.need_full_sync = True

    def set_route_localnet(self) -> None:
        return None

    # --- sync ---

    async def sync(self) -> None:
        async with self._lock:
            await self._sync()

    async def _sync(self) -> None:
        raise NotImplementedError

    def _take_changes(self) -> ChangeResult:
        """The changes since the last sync; a topology change also updates the node's labels,
        which the renderers read for topology hints."""
        changes = self.state.take_changes()
        if changes.topology_changed:
            self.node.node_labels = dict(self.state.node_labels)
        return changes

    def _failed(self, full: bool) -> None:
        # The change sets are consumed (and a mirror may not match): only a full sync repairs it.
        self.need_full_sync = True
        self.metrics.restore_failures.labels(self.family_label).inc()
        if not full:
            self.metrics.partial_restore_failures.labels(self.family_label).inc()
        if self.retry is not None:
            self.retry(self.sync_period)

    def _record_sync(self, elapsed: float, full: bool, trigger_times: Iterable[float] = (),
                     no_local: tuple[int, int] | None = None) -> None:
        """A successful sync's metrics (no_local: services without local endpoints, internal
        and external traffic), then the health timestamp."""
        fam = self.family_label
        self.metrics.sync_duration.labels(fam).observe(elapsed)
        kind = self.metrics.sync_full_duration if full else self.metrics.sync_partial_duration
        kind.labels(fam).observe(elapsed)
        if no_local is not None:
            self.metrics.no_local_endpoints.labels("internal", fam).set(no_local[0])
            self.metrics.no_local_endpoints.labels("external", fam).set(no_local[1])
        now = time.time()
        for trigger in trigger_times:
            self.metrics.network_programming.labels(fam).observe(max(now - trigger, 0))
        self.metrics.last_timestamp.labels(fam).set(now)
        self.health.updated()

    async def _after_sync(self, changes: ChangeResult) -> None:
        """Health-check node ports and local endpoints, then stale conntrack entries."""
        if self.service_health is not None:
            await self.service_health.sync_services(self.state.health_check_node_ports())
            self.service_health.sync_endpoints(self.state.local_ready_endpoints())
        if self.conntrack is not None:
            await asyncio.to_thread(self.conntrack.clean_stale_entries, changes)
