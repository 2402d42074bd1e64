"""The IPVS proxier: every sync renders the whole IPVS state and moves the kernel to it.

As upstream's IPVS proxier (a full sync each time, periodic): service addresses on kube-ipvs0,
the ipsets, the iptables rules that use them, then the virtual and real servers as ipvsadm
edits computed against what the kernel holds (read back with `ipvsadm-save -n` at the first
sync), with graceful termination of real servers (IpvsSyncer: weight 0, then deletion when
/proc/net/ip_vs shows no connections). Runs only where the kernel has IPVS; this machine has
not, so the kernel side (IpvsKernel) is exercised through a stand-in in the tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import subprocess
import time

from svcnet.proxy import iptables as iptables_render
from svcnet.proxy.apply.ipvs import DUMMY_DEVICE, IPVS_JUMPS, PROC_IP_VS
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.conntrack import Conntrack
from svcnet.proxy.healthcheck import ProxierHealth, ServiceHealthServers
from svcnet.proxy.ipvs import DEFAULT_SCHEDULER, IpvsState, IpvsSyncer, VsKey, parse_ipvsadm, render_state
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.proxierbase import ProxierBase

log = logging.getLogger("svcnet.proxy.ipvs")

_PROTOS = {"TCP", "UDP", "SCTP"}


def _hex_addr(text: str) -> tuple[str, int]:
    """'0A60000A:0050' or '[2001:0db8:...]:0050' (as /proc/net/ip_vs writes them) -> (ip, port)."""
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        ip = str(ipaddress.IPv6Address(host.strip("[]")))
    else:
        ip = str(ipaddress.IPv4Address(int(host, 16)))
    return ip, int(port, 16)


def parse_proc_ip_vs(text: str) -> dict[tuple[VsKey, str], int]:
    """Connections (active + inactive) per (virtual server, real server) from /proc/net/ip_vs."""
    out: dict[tuple[VsKey, str], int] = {}
    current: VsKey | None = None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] in _PROTOS:
            ip, port = _hex_addr(words[1])
            current = (words[0], ip, port)
        elif (words[0] == "->" and current is not None and len(words) >= 6
              and words[1][0] in "0123456789ABCDEF["):
            ip, port = _hex_addr(words[1])
            rs = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            out[(current, rs)] = int(words[4]) + int(words[5])
    return out


class IpvsKernel:
    """The node's IPVS, ipsets, dummy interface and iptables, driven by their tools."""

    def __init__(self, ipv6: bool = False) -> None:
        self.ipv6 = ipv6

    @staticmethod
    def _run(args: list[str], text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(args, input=text, capture_output=True, text=True, check=False)

    def _must(self, args: list[str], text: str | None = None) -> None:
        res = self._run(args, text)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip() or res.stdout.strip()}")

    def set_sysctls(self) -> None:
        """Upstream's IPVS sysctls: conntrack for IPVS (needed by masquerading), drop flows of
        deleted servers, expire persistence templates of quiesced ones, forwarding on."""
        for key in ("net/ipv4/vs/conntrack", "net/ipv4/vs/expire_nodest_conn",
                    "net/ipv4/vs/expire_quiescent_template", "net/ipv4/ip_forward"):
            try:
                with open(f"/proc/sys/{key}", "w") as f:
                    f.write("1")
            except OSError as e:
                log.error("cannot set %s: %s", key, e)

    def saved_servers(self) -> str:
        return self._run(["ipvsadm-save", "-n"]).stdout

    def connections(self) -> dict[tuple[VsKey, str], int]:
        try:
            with open(PROC_IP_VS) as f:  # both families are listed there
                return parse_proc_ip_vs(f.read())
        except OSError:
            return {}

    def bind_addresses(self, addresses: set[str]) -> None:
        made = self._run(["ip", "link", "add", DUMMY_DEVICE, "type", "dummy"])
        if made.returncode != 0 and self._run(["ip", "link", "show", DUMMY_DEVICE]).returncode != 0:
            raise RuntimeError(f"cannot create the {DUMMY_DEVICE} interface that holds the service addresses "
                               f"(kernel module dummy): {made.stderr.strip()}")
        fam = "-6" if self.ipv6 else "-4"
        listed = self._run(["ip", fam, "-o", "addr", "show", "dev", DUMMY_DEVICE]).stdout.split()
        have = {w.split("/")[0] for w in listed if "/" in w}
        width = 128 if self.ipv6 else 32
        for addr in sorted(addresses - have):
            self._must(["ip", "addr", "add", f"{addr}/{width}", "dev", DUMMY_DEVICE])
        for addr in sorted(have - addresses):
            self._run(["ip", "addr", "del", f"{addr}/{width}", "dev", DUMMY_DEVICE])

    def restore_ipsets(self, text: str) -> None:
        self._must(["ipset", "restore", "-exist"], text)

    def restore_iptables(self, text: str) -> None:
        binary = "ip6tables" if self.ipv6 else "iptables"
        self._must([f"{binary}-restore", "-w", "5", "--noflush"], text)
        jumps = [(j.table, j.src_chain, j.rule_args()) for j in iptables_render.JUMP_CHAINS
                 if j.table == "nat"] + [(t, c, list(a)) for t, c, a in IPVS_JUMPS]
        for table, chain, args in jumps:
            if self._run([binary, "-w", "5", "-t", table, "-C", chain, *args]).returncode != 0:
                self._must([binary, "-w", "5", "-t", table, "-I", chain, *args])

    def edit_servers(self, lines: list[str]) -> None:
        if lines:
            self._must(["ipvsadm-restore"], "\n".join(lines) + "\n")


class IpvsProxier(ProxierBase):
    def __init__(self, node: NodeConfig, kernel: IpvsKernel, metrics: ProxyMetrics,
                 health: ProxierHealth, service_health: ServiceHealthServers | None = None,
                 conntrack: Conntrack | None = None,
                 sync_period: float = 30.0, scheduler: str = DEFAULT_SCHEDULER) -> None:
        super().__init__(node, metrics, health, service_health, conntrack, sync_period)
        self.kernel = kernel
        self.scheduler = scheduler
        self.servers = IpvsSyncer()
        self.started = False
        self.last_edits: list[str] = []

    def canary_present(self) -> bool:
        return True  # every IPVS sync is full and periodic

    def force_full_sync(self) -> None:
        return None

    def set_route_localnet(self) -> None:
        # the daemon's start-up hook: IPVS mode's sysctls instead
        set_sysctls = getattr(self.kernel, "set_sysctls", None)
        if set_sysctls is not None:
            set_sysctls()

    async def _sync(self) -> None:
        if not self.state.initialized:
            log.info("Not syncing ipvs rules until Services and Endpoints have been received")
            return
        start = time.monotonic()
        changes = self._take_changes()
        st = render_state(self.state.svc_port_map, self.state.endpoints_map, self.node,
                          self.scheduler, self.state.services)
        try:
            await asyncio.to_thread(self._apply, st)
        except Exception as e:
            log.error("ipvs sync failed: %s", e)
            self.metrics.restore_failures.labels(self.family_label).inc()
            self.started = False  # read the kernel's servers again next time
            if self.retry is not None:
                self.retry(self.sync_period)
            return
        elapsed = time.monotonic() - start
        self._record_sync(elapsed, full=True)
        log.info("synced ipvs: %d virtual servers, %d edits, %.3fs", len(st.virtual_servers),
                 len(self.last_edits), elapsed)
        if self.servers.terminating and self.retry is not None:
            self.retry(min(self.sync_period, 60.0))  # upstream re-checks every minute
        await self._after_sync(changes)

    def _apply(self, st: IpvsState) -> None:
        k = self.kernel
        if not self.started:
            # what the kernel holds now (a restart keeps open connections on their servers)
            vss, rss = parse_ipvsadm(k.saved_servers())
            self.servers.current = IpvsState(virtual_servers=vss, real_servers=rss)
            self.servers.terminating.clear()
        k.bind_addresses(st.bound_addresses)
        k.restore_ipsets(st.ipset_text(self.node.is_ipv6))
        k.restore_iptables(st.iptables)
        previous = (self.servers.current, dict(self.servers.terminating), dict(self.servers.removed_vs))
        self.last_edits = self.servers.update(st, k.connections())
        try:
            k.edit_servers(self.last_edits)
        except Exception:
            self.servers.current, self.servers.terminating, self.servers.removed_vs = previous
            raise
        self.started = True
