"""IPVS on this node: whether the kernel has it, and `--cleanup`.

IPVS lives in the kernel module ip_vs (with one module per scheduler, ip_vs_rr ...); without
it /proc/net/ip_vs does not exist and `--mode ipvs` cannot run. The state the IPVS backend
renders (svcnet.proxy.ipvs) is applied by svcnet.proxy.ipvs_proxier.IpvsKernel with the tools
upstream's proxier drives through netlink: `ip link/addr` for the kube-ipvs0 dummy interface,
`ipset restore`, `ipvsadm-restore` and `iptables-restore`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

log = logging.getLogger("svcnet.proxy.ipvs")

PROC_IP_VS = "/proc/net/ip_vs"
DUMMY_DEVICE = "kube-ipvs0"
# Jump rules the IPVS proxier adds to built-in chains beyond those of the iptables mode.
IPVS_JUMPS: tuple[tuple[str, str, list[str]], ...] = (
    ("filter", "INPUT", ["-m", "comment", "--comment", "kubernetes ipvs access filter",
                         "-j", "KUBE-IPVS-FILTER"]),
    ("filter", "OUTPUT", ["-m", "comment", "--comment", "kubernetes ipvs access filter",
                          "-j", "KUBE-IPVS-OUT-FILTER"]),
    ("filter", "INPUT", ["-m", "comment", "--comment", "kubernetes health check rules",
                         "-j", "KUBE-NODE-PORT"]),
)


def ipvs_unavailable_reason(proc_path: str | None = None) -> str | None:
    """None when this kernel can run IPVS mode; else what is missing, naming the module."""
    proc_path = proc_path or PROC_IP_VS
    if not os.path.exists(proc_path):
        return (f"this kernel has no IPVS ({proc_path} does not exist): the kernel module ip_vs is "
                "not loaded or not available (try `modprobe ip_vs ip_vs_rr`), or use --mode nftables")
    for tool in ("ipvsadm", "ipset"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {tool})"
    return None


def _run(args: list[str], text: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=text, capture_output=True, text=True, check=False)


def cleanup_ipvs() -> bool:
    """Remove IPVS mode's state: virtual servers, kube-ipvs0, KUBE-* ipsets, its jump rules."""
    ok = True
    if os.path.exists(PROC_IP_VS) and shutil.which("ipvsadm"):
        ok = _run(["ipvsadm", "-C"]).returncode == 0 and ok
    if _run(["ip", "link", "show", DUMMY_DEVICE]).returncode == 0:
        ok = _run(["ip", "link", "del", DUMMY_DEVICE]).returncode == 0 and ok
    if shutil.which("iptables"):
        for table, chain, args in IPVS_JUMPS:
            _run(["iptables", "-w", "5", "-t", table, "-D", chain, *args])
        for table in ("nat", "filter"):
            for chain in ("KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER",
                          "KUBE-SOURCE-RANGES-FIREWALL"):
                _run(["iptables", "-w", "5", "-t", table, "-F", chain])
                _run(["iptables", "-w", "5", "-t", table, "-X", chain])
    if shutil.which("ipset"):
        names = _run(["ipset", "list", "-n"]).stdout.split()
        for name in names:
            if name.startswith("KUBE-"):
                ok = _run(["ipset", "destroy", name]).returncode == 0 and ok
    return ok
