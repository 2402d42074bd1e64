"""UDP conntrack cleanup after a sync (upstream's event-driven CleanStaleEntries).

UDP has no connection teardown, so a conntrack entry DNATing a client to an endpoint that went
away keeps black-holing that client's packets; and a service that had no endpoints may have
left entries for packets that were rejected. Both are deleted with the `conntrack` tool.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

from svcnet.proxy.state import ChangeResult

log = logging.getLogger("svcnet.proxy.conntrack")


class Conntrack:
    def __init__(self, ipv6: bool = False, binary: str = "conntrack") -> None:
        self.family = ["-f", "ipv6"] if ipv6 else ["-f", "ipv4"]
        self.binary = shutil.which(binary)
        if self.binary is None:
            log.warning("conntrack tool not found: stale UDP entries will not be cleared")

    def _delete(self, *args: str) -> None:
        if self.binary is None:
            return
        cmd = [self.binary, "-D", *self.family, "-p", "udp", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        # exit status 1 with "0 flow entries have been deleted" just means nothing matched
        if res.returncode not in (0, 1):
            log.error("%s: %s", " ".join(cmd), res.stderr.strip())

    def clear_entries_for_ip(self, ip: str) -> None:
        self._delete("--orig-dst", ip)

    def clear_entries_for_port(self, port: int) -> None:
        self._delete("--dport", str(port))

    def clear_entries_for_nat(self, orig_ip: str, dest_ip: str) -> None:
        self._delete("--orig-dst", orig_ip, "--dst-nat", dest_ip)

    def clear_entries_for_port_nat(self, dest_ip: str, port: int) -> None:
        self._delete("--dport", str(port), "--dst-nat", dest_ip)

    def clean_stale_entries(self, changes: ChangeResult) -> None:
        for ip in sorted(changes.deleted_udp_cluster_ips):
            self.clear_entries_for_ip(ip)
        for info in changes.newly_active_udp:
            # "a UDP service that changes from 0 to non-0 endpoints is newly active"
            for ip in (info.cluster_ip, *info.external_ips, *info.load_balancer_vips):
                self.clear_entries_for_ip(ip)
            if info.node_port:
                self.clear_entries_for_port(info.node_port)
        for info, endpoint_ip in changes.deleted_udp_endpoints:
            if info.node_port:
                self.clear_entries_for_port_nat(endpoint_ip, info.node_port)
            for ip in (info.cluster_ip, *info.external_ips, *info.load_balancer_vips):
                self.clear_entries_for_nat(ip, endpoint_ip)
