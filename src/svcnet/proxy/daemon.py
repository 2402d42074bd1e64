"""`svcnet proxy`: the kube-proxy daemon (iptables mode).

Objects come from an ObjectSource: informers against an API server (--kubeconfig) or files
(-f, re-read when they change on disk). Events feed the change tracker and poke the
bounded-frequency runner; the canary monitor forces a full sync if someone flushes our chains.
/healthz and /livez are served on --healthz-bind-address, /metrics on --metrics-bind-address.
On SIGTERM/SIGINT the daemon stops and leaves its rules in place, as upstream does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

from aiohttp import web

from svcnet.proxy.apply.iptables import IPTables, detect_backend
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.conntrack import Conntrack
from svcnet.proxy.daemonbase import DaemonBase
from svcnet.proxy.healthcheck import ProxierHealth, ServiceHealthServers
from svcnet.proxy.ipnet import IPV4, IPV6, family_of_text
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.proxier import IptablesProxier, cleanup_iptables
from svcnet.proxy.runner import BoundedFrequencyRunner

log = logging.getLogger("svcnet.proxy")

CANARY_CHECK_MIN = 1.0


@dataclass
class DaemonOptions:
    mode: str = "iptables"
    files: list[str] = field(default_factory=list)
    kubeconfig: str | None = None
    node: NodeConfig = field(default_factory=NodeConfig)
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    healthz_bind_address: str = "0.0.0.0:10256"
    metrics_bind_address: str = "127.0.0.1:10249"
    file_poll_interval: float = 1.0
    ipvs_scheduler: str = "rr"


def local_addresses() -> list[str]:
    """The addresses on this namespace's interfaces (for --nodeport-addresses)."""
    res = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=False)
    try:
        links = json.loads(res.stdout or "[]")
    except ValueError:
        return []
    return [a["local"] for link in links for a in link.get("addr_info", []) if a.get("local")]


def daemon_families(node: NodeConfig) -> list[str]:
    """The IP families to proxy: both when --node-ip names one of each (a dual-stack node, as
    upstream's meta-proxier), else the --ip-family one."""
    families = {fam for fam in (family_of_text(ip) for ip in node.node_ips) if fam}
    if families == {IPV4, IPV6}:
        primary = family_of_text(node.node_ips[0])
        return [primary, IPV6 if primary == IPV4 else IPV4]
    return [node.family]


class ProxyDaemon(DaemonBase):
    log = log
    log_details = True

    def __init__(self, opts: DaemonOptions, ipt: IPTables | None = None,
                 conntrack: Conntrack | None = None, nft=None, ipvs=None) -> None:
        """ipt/nft/ipvs/conntrack: injected in tests (single family); by default the node's tools."""
        self.opts = opts
        self._conntrack = conntrack
        if opts.node.nodeport_addresses:
            opts.node.local_addresses = local_addresses()
        self.metrics = ProxyMetrics()
        self.health = ProxierHealth(2 * opts.sync_period)
        self.service_health = ServiceHealthServers(self.health)
        self.proxiers: list[IptablesProxier] = []
        self.runners: list[BoundedFrequencyRunner] = []
        not_iptables = opts.mode in ("nftables", "ipvs")
        if opts.mode == "nftables":
            self._init_nftables(opts, nft)
        elif opts.mode == "ipvs":
            self._init_ipvs(opts, ipvs)
        backend = detect_backend() if ipt is None and not not_iptables else None
        if backend:
            log.info("using %s (the iptables backend this node already uses)", backend)
        for i, family in enumerate([] if not_iptables else daemon_families(opts.node)):
            node = self._family_node(family)
            fam_ipt = ipt if ipt is not None else IPTables(ipv6=node.is_ipv6, binary=backend)
            if ipt is None:
                node.random_fully = fam_ipt.has_random_fully()
            proxier = IptablesProxier(node, fam_ipt, self.metrics, self.health,
                                      # health-check node ports are served once, by the primary family
                                      self.service_health if i == 0 else None,
                                      conntrack or Conntrack(ipv6=node.is_ipv6), sync_period=opts.sync_period)
            # iptables mode: event-driven syncs; the canary monitor (every sync period) catches
            # flushes. maxInterval is upstream's arbitrary hour.
            self._add_proxier(proxier, family, 3600.0)
        self.proxier = self.proxiers[0]
        self.ipt = getattr(self.proxier, "ipt", None)
        self.source = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._sites: list[web.AppRunner] = []

    def _init_nftables(self, opts: DaemonOptions, nft) -> None:
        """--mode nftables: one NftablesProxier per family (upstream's nftables proxier)."""
        from svcnet.proxy.apply.nft import node_nft
        from svcnet.proxy.nftables_proxier import NftablesProxier

        for i, family in enumerate(daemon_families(opts.node)):
            node = self._family_node(family)
            fam_nft = nft if nft is not None else node_nft("ip6" if node.is_ipv6 else "ip")
            proxier = NftablesProxier(node, fam_nft, self.metrics, self.health,
                                      self.service_health if i == 0 else None,
                                      self.conntrack_for(node), sync_period=opts.sync_period)
            # nftables mode: event-driven syncs plus one every sync period (upstream's runner)
            self._add_proxier(proxier, family, opts.sync_period)

    def _init_ipvs(self, opts: DaemonOptions, kernel) -> None:
        """--mode ipvs: one IpvsProxier per family; full syncs, at least every sync period."""
        from svcnet.proxy.ipvs_proxier import IpvsKernel, IpvsProxier

        for i, family in enumerate(daemon_families(opts.node)):
            node = self._family_node(family)
            proxier = IpvsProxier(node, kernel or IpvsKernel(ipv6=node.is_ipv6), self.metrics, self.health,
                                  self.service_health if i == 0 else None, self.conntrack_for(node),
                                  sync_period=opts.sync_period, scheduler=opts.ipvs_scheduler)
            self._add_proxier(proxier, family, opts.sync_period)

    def _family_node(self, family: str) -> NodeConfig:
        """This node's config for one IP family (its own copy of the labels)."""
        node = self.opts.node
        return dataclasses.replace(node, family=family, node_labels=dict(node.node_labels))

    def _add_proxier(self, proxier, family: str, max_interval: float) -> None:
        """Run `proxier` through its own bounded-frequency runner; the runner also retries it."""
        runner = BoundedFrequencyRunner(f"sync-runner-{family}", proxier.sync, self.opts.min_sync_period,
                                        max_interval)
        proxier.retry = runner.retry_after
        self.proxiers.append(proxier)
        self.runners.append(runner)

    def conntrack_for(self, node: NodeConfig) -> Conntrack:
        return self._conntrack or Conntrack(ipv6=node.is_ipv6)

    # --- events ---

    def _changed(self) -> None:
        self.health.queued_update()
        for proxier, runner in zip(self.proxiers, self.runners, strict=True):
            self.metrics.last_queued_timestamp.labels(proxier.family_label).set_to_current_time()
            if proxier.state.initialized:
                runner.run()

    def _states(self) -> list:
        return [p.state for p in self.proxiers]

    def _own_node(self, obj: dict, deleted: bool) -> None:
        meta = obj.get("metadata") or {}
        self.health.node_eligible = not deleted and not meta.get("deletionTimestamp")

    # --- loops ---

    async def _canary_loop(self) -> None:
        interval = max(self.opts.sync_period, CANARY_CHECK_MIN)
        while True:
            await asyncio.sleep(interval)
            for proxier, runner in zip(self.proxiers, self.runners, strict=True):
                if await asyncio.to_thread(proxier.canary_present):
                    continue
                log.warning("%s: our rules are gone (tables flushed?): forcing a full resync",
                            getattr(getattr(proxier, "ipt", None), "iptables", self.opts.mode))
                await asyncio.to_thread(proxier.ensure_canary)
                proxier.force_full_sync()
                runner.run()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, install_signal_handlers: bool = True) -> int:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
        for proxier in self.proxiers:
            await asyncio.to_thread(proxier.set_route_localnet)
            await asyncio.to_thread(proxier.ensure_canary)
        await self._serve(self.health.app(), self.opts.healthz_bind_address)
        if self.opts.metrics_bind_address:
            await self._serve(self._metrics_app(), self.opts.metrics_bind_address)
        if not await self._start_source():
            return 2
        src = self.source
        for proxier, runner in zip(self.proxiers, self.runners, strict=True):
            proxier.state.services_synced = proxier.state.slices_synced = True
            runner.start()
            runner.run()
        self._tasks.append(loop.create_task(self._canary_loop()))
        if self.opts.files:
            self._tasks.append(loop.create_task(self._file_poll_loop()))
        await self._stop.wait()
        log.info("stopping; the %s rules are left in place", self.opts.mode)
        for t in self._tasks:
            t.cancel()
        for runner in self.runners:
            await runner.stop()
        await src.stop()
        await self.service_health.close()
        for r in self._sites:
            await r.cleanup()
        return 0


def run(opts: DaemonOptions) -> int:
    return asyncio.run(ProxyDaemon(opts).run())


def cleanup() -> int:
    """Remove the proxy's state of every mode (iptables, nftables, ipvs), for both IP families,
    whichever --mode was given (as upstream's --cleanup)."""
    ok = True
    for ipv6, binary in ((False, "iptables-nft"), (True, "iptables-nft"), (False, "iptables-legacy"),
                         (True, "iptables-legacy")):
        if shutil.which(binary) is None:
            continue
        try:
            ipt = IPTables(ipv6=ipv6, binary=binary)
        except FileNotFoundError as e:
            log.warning("%s", e)
            continue
        ok = cleanup_iptables(ipt) and ok
    from svcnet.proxy.apply.ipvs import cleanup_ipvs
    from svcnet.proxy.nftables_proxier import cleanup_nftables

    ok = cleanup_nftables() and ok
    ok = cleanup_ipvs() and ok
    return 0 if ok else 1
