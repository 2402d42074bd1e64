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

from svcnet.proxy.apply.nft import Nft, NftError
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.conntrack import Conntrack
from svcnet.proxy.healthcheck import ProxierHealth, ServiceHealthServers
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.nftables import STALE_CHAIN_DELAY, NftablesSyncer, SyncPlan
from svcnet.proxy.proxierbase import ProxierBase

log = logging.getLogger("svcnet.proxy")


class NftablesProxier(ProxierBase):
    def __init__(self, node: NodeConfig, nft: Nft, metrics: ProxyMetrics, health: ProxierHealth,
                 service_health: ServiceHealthServers | None = None, conntrack: Conntrack | None = None,
                 sync_period: float = 30.0) -> None:
        super().__init__(node, metrics, health, service_health, conntrack, sync_period)
        self.nft = nft
        self.syncer = NftablesSyncer(node)
        self.last_transaction = ""
        self.last_sync_full = False
        self.last_plan: SyncPlan | None = None

    # The daemon's canary hooks: nftables mode keeps no canary chain (ensure_canary does
    # nothing); a vanished table is noticed by canary_present() and answered with a full sync.
    # No localhost NodePorts in nftables mode: set_route_localnet does nothing.
    def canary_present(self) -> bool:
        return not self.syncer.synced or self.nft.table_exists()

    async def _sync(self) -> None:
        if not self.state.initialized:
            log.info("Not syncing nftables until Services and Endpoints have been received")
            return
        start = time.monotonic()
        changes = self._take_changes()
        full = self.need_full_sync or changes.topology_changed
        if full:
            # A full sync trusts the kernel, not the mirror: the service chains and affinity sets
            # it holds (an earlier run's, or ours from before a failure) are flushed and later
            # deleted unless still wanted.
            self.syncer.reset()
            chains, sets = await asyncio.to_thread(self.nft.names)
            self.syncer.adopt_existing(chains, sets)
        plan = self.syncer.plan(self.state.svc_port_map, self.state.endpoints_map,
                                changed=None if full else changes.updated_services,
                                changed_ports=changes.updated_ports)
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
        self._record_sync(elapsed, full, changes.trigger_times,
                          (plan.no_local_internal, plan.no_local_external))
        log.info("synced nftables (%s): %d service ports, %d statements, %.3fs",
                 "full" if full else "partial", len(self.state.svc_port_map), plan.lines, elapsed)
        if plan.stale_chains and self.retry is not None:
            # come back to delete the chains that were just flushed
            self.retry(STALE_CHAIN_DELAY + 0.1)
        await self._after_sync(changes)


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
