"""The nftables proxier: one sync = take changes, plan a transaction against the mirror, run it.

As upstream's nftables syncProxyRules: the first sync (and any sync after a failure or a
topology change) is a full transaction that recreates the table's contents; later syncs send
only the elements that changed and the chains of services that changed. nft applies a
transaction atomically, so a refused one changes nothing: it is logged with nft's message,
counted, and the next sync (scheduled after the sync period) is full.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from svcnet.proxy.apply.nft import Nft, NftError
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.conntrack import Conntrack
from svcnet.proxy.healthcheck import ProxierHealth, ServiceHealthServers
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.nftables import STALE_CHAIN_DELAY, NftablesSyncer, SyncPlan
from svcnet.proxy.state import ProxyState

log = logging.getLogger("svcnet.proxy")


class NftablesProxier:
    def __init__(self, node: NodeConfig, nft: Nft, metrics: ProxyMetrics, health: ProxierHealth,
                 service_health: ServiceHealthServers | None = None, conntrack: Conntrack | None = None,
                 sync_period: float = 30.0) -> None:
        self.node = node
        self.nft = nft
        self.metrics = metrics
        self.health = health
        self.service_health = service_health
        self.conntrack = conntrack
        self.sync_period = sync_period
        self.state = ProxyState(node.family, node.node_name)
        self.syncer = NftablesSyncer(node)
        self.need_full_sync = True
        self.last_transaction = ""
        self.last_sync_full = False
        self.last_plan: SyncPlan | None = None
        self.retry: Callable[[float], None] | None = None
        self.family_label = "IPv6" if node.is_ipv6 else "IPv4"
        self._lock = asyncio.Lock()

    # The daemon's canary hooks: nftables mode keeps no canary chain; a vanished table is
    # noticed by canary_present() and answered with a full sync.
    def ensure_canary(self) -> None:
        return None

    def canary_present(self) -> bool:
        return not self.syncer.synced or self.nft.table_exists()

    def force_full_sync(self) -> None:
        self.need_full_sync = True

    def set_route_localnet(self) -> None:
        return None  # no localhost NodePorts in nftables mode

    async def sync(self) -> None:
        async with self._lock:
            await self._sync()

    async def _sync(self) -> None:
        if not self.state.initialized:
            log.info("Not syncing nftables until Services and Endpoints have been received")
            return
        start = time.monotonic()
        changes = self.state.take_changes()
        full = self.need_full_sync or changes.topology_changed
        if changes.topology_changed:
            self.node.node_labels = dict(self.state.node_labels)
        if full:
            # A full sync trusts the kernel, not the mirror: the service chains and affinity sets
            # it holds (an earlier run's, or ours from before a failure) are flushed and later
            # deleted unless still wanted.
            self.syncer.reset()
            chains, sets = await asyncio.to_thread(self.nft.names)
            self.syncer.adopt_existing(chains, sets)
        plan = self.syncer.plan(self.state.svc_port_map, self.state.endpoints_map,
                                changed=None if full else changes.updated_services)
        self.last_transaction = plan.text
        self.last_sync_full = full
        self.last_plan = plan
        try:
            if plan.text:  # nothing changed: nothing to send
                await asyncio.to_thread(self.nft.run, plan.text)
        except NftError as e:
            log.error("nftables %s sync failed; nothing was changed (the transaction is atomic); a full "
                      "resync follows: %s", "full" if full else "partial", e)
            self._failed(full)
            return
        except Exception:
            log.exception("nftables sync failed")
            self._failed(full)
            return
        self.syncer.commit(plan)
        self.need_full_sync = False
        elapsed = time.monotonic() - start
        fam = self.family_label
        self.metrics.sync_duration.labels(fam).observe(elapsed)
        kind = self.metrics.sync_full_duration if full else self.metrics.sync_partial_duration
        kind.labels(fam).observe(elapsed)
        self.metrics.no_local_endpoints.labels("internal", fam).set(plan.no_local_internal)
        self.metrics.no_local_endpoints.labels("external", fam).set(plan.no_local_external)
        now = time.time()
        for trigger in changes.trigger_times:
            self.metrics.network_programming.labels(fam).observe(max(now - trigger, 0))
        self.metrics.last_timestamp.labels(fam).set(now)
        self.health.updated()
        log.info("synced nftables (%s): %d service ports, %d statements, %.3fs",
                 "full" if full else "partial", len(self.state.svc_port_map), plan.lines, elapsed)
        if plan.stale_chains and self.retry is not None:
            # come back to delete the chains that were just flushed
            self.retry(STALE_CHAIN_DELAY + 0.1)
        if self.service_health is not None:
            await self.service_health.sync_services(self.state.health_check_node_ports())
            self.service_health.sync_endpoints(self.state.local_ready_endpoints())
        if self.conntrack is not None:
            await asyncio.to_thread(self.conntrack.clean_stale_entries, changes)

    def _failed(self, full: bool) -> None:
        # The change sets are consumed and the mirror may not match: only a full sync repairs it.
        self.need_full_sync = True
        self.metrics.restore_failures.labels(self.family_label).inc()
        if not full:
            self.metrics.partial_restore_failures.labels(self.family_label).inc()
        if self.retry is not None:
            self.retry(self.sync_period)


def cleanup_nftables() -> bool:
    """Remove the kube-proxy tables of both families (`--cleanup`)."""
    ok = True
    for family in ("ip", "ip6"):
        try:
            nft = Nft(family)
        except RuntimeError as e:
            log.warning("%s", e)
            return True
        if not nft.delete_table():
            log.error("could not delete table %s kube-proxy", family)
            ok = False
    return ok
