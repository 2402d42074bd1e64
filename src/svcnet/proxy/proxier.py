"""The iptables proxier: one sync = take changes, render, restore, then conntrack and health.

Follows upstream's syncProxyRules around the renderer: the first sync (and any sync after a
failure, a canary loss or a topology change) is full and re-ensures the jump rules from the
built-in chains; later syncs are partial (KEP-3453) and only rewrite the chains of services
that changed. Stale service chains found in the nat table are deleted. A failed restore is
logged with the offending line, counted, and followed by a full resync.
"""

from __future__ import annotations

import asyncio
import logging
import time

from svcnet.proxy import iptables as render_mod
from svcnet.proxy.apply.iptables import IPTables, RestoreError
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.conntrack import Conntrack
from svcnet.proxy.healthcheck import ProxierHealth, ServiceHealthServers
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.proxierbase import ProxierBase

log = logging.getLogger("svcnet.proxy")

CANARY_TABLES = ("mangle", "nat", "filter")


class IptablesProxier(ProxierBase):
    def __init__(self, node: NodeConfig, ipt: IPTables, metrics: ProxyMetrics, health: ProxierHealth,
                 service_health: ServiceHealthServers | None = None, conntrack: Conntrack | None = None,
                 sync_period: float = 30.0) -> None:
        super().__init__(node, metrics, health, service_health, conntrack, sync_period)
        self.ipt = ipt
        self.last_cleanup = 0.0
        self.last_restore_text = ""
        self.last_sync_full = False

    # --- jump rules, canary ---

    def ensure_base_rules(self) -> None:
        for jump in (*render_mod.JUMP_CHAINS, *render_mod.KUBELET_JUMP_CHAINS):
            self.ipt.ensure_chain(jump.table, jump.dst_chain)
            self.ipt.ensure_rule(jump.table, jump.src_chain, jump.rule_args(), prepend=True)

    def ensure_canary(self) -> None:
        for table in CANARY_TABLES:
            self.ipt.ensure_chain(table, render_mod.KUBE_PROXY_CANARY)

    def canary_present(self) -> bool:
        return all(self.ipt.chain_exists(t, render_mod.KUBE_PROXY_CANARY) for t in CANARY_TABLES)

    def set_route_localnet(self) -> None:
        if self.node.is_ipv6 or not self.node.effective_localhost_nodeports():
            return
        log.info("Setting route_localnet=1 to allow node-ports on localhost; to change this either "
                 "disable --localhost-nodeports or set --nodeport-addresses to filter loopback addresses")
        try:
            self.ipt.set_sysctl("net/ipv4/conf/all/route_localnet", "1")
        except OSError as e:
            log.error("cannot set route_localnet: %s", e)

    # --- sync ---

    async def _sync(self) -> None:
        if not self.state.initialized:
            log.info("Not syncing iptables until Services and Endpoints have been received")
            return
        start = time.monotonic()
        changes = self._take_changes()
        full = self.need_full_sync or changes.topology_changed
        try:
            if full:
                await asyncio.to_thread(self.ensure_base_rules)
            existing = None
            total_eps = sum(len(v) for v in self.state.endpoints_map.values())
            large = total_eps > render_mod.LARGE_CLUSTER_ENDPOINTS_THRESHOLD
            if not large or time.monotonic() - self.last_cleanup > self.sync_period:
                try:
                    existing = await asyncio.to_thread(self.ipt.chains, "nat")
                    self.last_cleanup = time.monotonic()
                except RuntimeError as e:
                    log.error("Failed to execute iptables-save: stale chains will not be deleted: %s", e)
            result = render_mod.render(self.state.svc_port_map, self.state.endpoints_map, self.node,
                                       changed=None if full else changes.updated_services,
                                       existing_nat_chains=existing)
            self.last_restore_text = result.text
            self.last_sync_full = full
            await asyncio.to_thread(self.ipt.restore_all, result.text)
        except RestoreError as e:
            log.error("Failed to execute iptables-restore (%s sync): %s\n%s", "full" if full else "partial",
                      e, "\n".join(e.context))
            self._failed(full)
            return
        except Exception:
            log.exception("iptables sync failed")
            self._failed(full)
            return
        self.need_full_sync = False
        elapsed = time.monotonic() - start
        fam = self.family_label
        self.metrics.iptables_total.labels("filter", fam).set(result.filter_rules)
        self.metrics.iptables_last.labels("filter", fam).set(result.filter_rules)
        self.metrics.iptables_total.labels("nat", fam).set(result.nat_rules_total)
        self.metrics.iptables_last.labels("nat", fam).set(result.nat_rules)
        self._record_sync(elapsed, full, changes.trigger_times,
                          (result.no_local_endpoints_internal, result.no_local_endpoints_external))
        log.info("synced iptables (%s): %d services, %d bytes, %.3fs", "full" if full else "partial",
                 len(self.state.svc_port_map), len(result.text), elapsed)
        await self._after_sync(changes)


def cleanup_iptables(ipt: IPTables) -> bool:
    """Remove every rule and chain kube-proxy's iptables mode created (`--cleanup`)."""
    ok = True
    for jump in (*render_mod.JUMP_CHAINS, *render_mod.KUBELET_JUMP_CHAINS):
        ipt.delete_rule(jump.table, jump.src_chain, jump.rule_args())
    for table in ("nat", "filter", "mangle"):
        try:
            chains = ipt.chains(table)
        except RuntimeError as e:
            log.error("%s", e)
            ok = False
            continue
        ours = [c for c in chains if c.startswith("KUBE-")]
        # flush everything first so no chain is still referenced when deleted
        for chain in ours:
            ipt.flush_chain(table, chain)
        for chain in ours:
            ipt.delete_chain(table, chain)
    return ok
