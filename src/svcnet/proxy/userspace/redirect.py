"""REDIRECT rules that send service traffic to the proxy's listeners when service addresses
are not local (upstream's old user-space mode: KUBE-PORTALS-CONTAINER from PREROUTING for
traffic arriving at the node, KUBE-PORTALS-HOST from OUTPUT for traffic the node sends).

Rendering is pure (entries -> iptables-restore text or `nft -f` text); applying is the thin
`Redirector` step. iptables: the two chains are declared in the restore input, which replaces
their content atomically (--noflush keeps every other chain), and jump rules are ensured once.
nftables: one table of our own, deleted and re-created in the same transaction.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger("svcnet.proxy.userspace")

CONTAINER_CHAIN = "KUBE-PORTALS-CONTAINER"
HOST_CHAIN = "KUBE-PORTALS-HOST"
NFT_TABLE = "svcnet-userspace"
_JUMPS = (("PREROUTING", CONTAINER_CHAIN, "handle ClusterIPs; NOTE: this must be before the NodePort rules"),
          ("OUTPUT", HOST_CHAIN, "handle ClusterIPs; NOTE: this must be before the NodePort rules"))


@dataclass(frozen=True, order=True)
class RedirectEntry:
    """Traffic to ip:port/protocol goes to the local listener on proxy_port."""

    ip: str
    port: int
    protocol: str  # "tcp" | "udp"
    proxy_port: int
    comment: str = ""


def _of_family(entries: list[RedirectEntry], ipv6: bool) -> list[RedirectEntry]:
    """The entries of one IP family, in a stable order (unchanged entries render the same text)."""
    return sorted(e for e in entries if (":" in e.ip) == ipv6)


def render_iptables(entries: list[RedirectEntry], ipv6: bool = False) -> str:
    mask = "/128" if ipv6 else "/32"
    mine = _of_family(entries, ipv6)
    lines = ["*nat", f":{CONTAINER_CHAIN} - [0:0]", f":{HOST_CHAIN} - [0:0]"]
    for chain in (CONTAINER_CHAIN, HOST_CHAIN):
        for e in mine:
            comment = f'-m comment --comment "{e.comment}" ' if e.comment else ""
            lines.append(f"-A {chain} {comment}-p {e.protocol} -m {e.protocol} -d {e.ip}{mask} "
                         f"--dport {e.port} -j REDIRECT --to-ports {e.proxy_port}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_nft(entries: list[RedirectEntry], ipv6: bool = False) -> str:
    family = "ip6" if ipv6 else "ip"
    rules = "".join(f"\t\t{family} daddr {e.ip} {e.protocol} dport {e.port} redirect to :{e.proxy_port}"
                    + (f' comment "{e.comment}"' if e.comment else "") + "\n"
                    for e in _of_family(entries, ipv6))
    chains = [f"\tchain {hook} {{\n\t\ttype nat hook {hook} priority -100; policy accept;\n{rules}\t}}"
              for hook in ("prerouting", "output")]
    table = f"table {family} {NFT_TABLE} {{\n" + "\n".join(chains) + "\n}\n"
    # add + delete + define: replaces the table in one transaction whether it existed or not
    return f"add table {family} {NFT_TABLE}\ndelete table {family} {NFT_TABLE}\n{table}"


def nft_works() -> bool:
    if shutil.which("nft") is None:
        return False
    res = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return res.returncode == 0


class Redirector:
    """Applies the rendered rules; `backend` is "iptables" or "nftables"."""

    def __init__(self, backend: str, ipv6: bool = False) -> None:
        self.backend = backend
        self.ipv6 = ipv6
        self.last_text: str | None = None
        self._iptables = "ip6tables" if ipv6 else "iptables"

    def render(self, entries: list[RedirectEntry]) -> str:
        render = render_iptables if self.backend == "iptables" else render_nft
        return render(entries, self.ipv6)

    @staticmethod
    def _run(args: list[str], text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(args, input=text, capture_output=True, text=True, check=False, timeout=30)

    def _jump(self, op: str, src: str, chain: str, comment: str) -> subprocess.CompletedProcess:
        return self._run([self._iptables, "-w", "5", "-t", "nat", op, src,
                          "-m", "comment", "--comment", comment, "-j", chain])

    def apply(self, entries: list[RedirectEntry]) -> bool:
        """Install the rules (skipped when unchanged); False after logging a failure."""
        text = self.render(entries)
        if text == self.last_text:
            return True
        try:
            if self.backend == "iptables":
                res = self._run([f"{self._iptables}-restore", "-w", "5", "--noflush"], text)
                if res.returncode != 0:
                    raise RuntimeError(f"{self._iptables}-restore failed: {res.stderr.strip()}")
                for src, chain, comment in _JUMPS:
                    if self._jump("-C", src, chain, comment).returncode != 0:
                        res = self._jump("-I", src, chain, comment)
                        if res.returncode != 0:
                            raise RuntimeError(f"cannot add the jump to {chain}: {res.stderr.strip()}")
            else:
                res = self._run(["nft", "-f", "-"], text)
                if res.returncode != 0:
                    raise RuntimeError(f"nft -f failed: {res.stderr.strip()}")
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            log.error("installing REDIRECT rules failed: %s", e)
            self.last_text = None
            return False
        self.last_text = text
        return True

    def cleanup(self) -> None:
        """Remove our rules (listeners die with the process: leaving rules would black-hole)."""
        try:
            if self.backend == "iptables":
                for src, chain, comment in _JUMPS:
                    while self._jump("-D", src, chain, comment).returncode == 0:
                        pass
                    self._run([self._iptables, "-w", "5", "-t", "nat", "-F", chain])
                    self._run([self._iptables, "-w", "5", "-t", "nat", "-X", chain])
            else:
                family = "ip6" if self.ipv6 else "ip"
                self._run(["nft", "delete", "table", family, NFT_TABLE])
        except (OSError, subprocess.SubprocessError) as e:
            log.error("removing REDIRECT rules failed: %s", e)
        self.last_text = None
