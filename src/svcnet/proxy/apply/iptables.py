"""Running iptables: restore, ensure chains and jump rules, list chains, the canary check.

Mirrors the parts of upstream's pkg/util/iptables that kube-proxy's iptables mode uses. The
binaries are the node's default `iptables`/`ip6tables` (the Debian alternative: iptables-nft
or iptables-legacy, whichever the node uses); `--iptables-bin` style overrides go through the
constructor.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger("svcnet.proxy.iptables")

WAIT = ["-w", "5"]


class RestoreError(RuntimeError):
    def __init__(self, message: str, line: int | None = None, context: list[str] | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.context = context or []


def extract_lines(text: str, line: int, count: int = 3) -> list[str]:
    """Up to `count` lines around 1-based `line`, numbered (ExtractLines)."""
    lines = text.splitlines()
    start = max(line - count - 1, 0)
    end = min(line + count, len(lines))
    return [f"{i + 1}: {lines[i]}" + ("   <-- here" if i + 1 == line else "") for i in range(start, end)]


_FAILED_LINE = re.compile(r"line:? (\d+)", re.I)


def _count_rules(save_binaries: list[str]) -> int:
    total = 0
    for binary in save_binaries:
        if shutil.which(binary) is None:
            continue
        res = subprocess.run([binary], capture_output=True, text=True, check=False)
        total += sum(1 for line in res.stdout.splitlines() if line.startswith("-"))
    return total


def detect_backend() -> str:
    """'iptables-nft' or 'iptables-legacy': whichever the node already uses.

    As upstream's iptables-wrapper decides: a KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY chain
    in nft's mangle table means nft; otherwise the backend holding more rules wins (ties: nft).
    """
    have_nft = shutil.which("iptables-nft") is not None
    have_legacy = shutil.which("iptables-legacy") is not None
    if not (have_nft and have_legacy):
        return "iptables-nft" if have_nft else ("iptables-legacy" if have_legacy else "iptables")
    mangle = subprocess.run(["iptables-nft-save", "-t", "mangle"], capture_output=True, text=True,
                            check=False)
    if re.search(r"^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) ", mangle.stdout, re.M):
        return "iptables-nft"
    legacy = _count_rules(["iptables-legacy-save", "ip6tables-legacy-save"])
    nft = _count_rules(["iptables-nft-save", "ip6tables-nft-save"])
    return "iptables-legacy" if legacy > nft else "iptables-nft"


@dataclass
class IPTables:
    ipv6: bool = False
    binary: str | None = None

    def __post_init__(self) -> None:
        base = self.binary or "iptables"  # "iptables", "iptables-nft" or "iptables-legacy"
        if self.ipv6:
            base = "ip6" + base.removeprefix("ip")
        self.iptables = base
        self.restore_bin = f"{base}-restore"
        self.save_bin = f"{base}-save"
        if shutil.which(self.iptables) is None:
            raise FileNotFoundError(f"{self.iptables} not found in PATH")

    def _run(self, args: list[str], input_text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(args, input=input_text, capture_output=True, text=True, check=False)

    def version(self) -> str:
        return self._run([self.iptables, "--version"]).stdout.strip()

    def has_random_fully(self) -> bool:
        # --random-fully needs iptables >= 1.6.2 (upstream's MinCheckVersion for it)
        m = re.search(r"v(\d+)\.(\d+)\.(\d+)", self.version())
        return bool(m) and tuple(int(x) for x in m.groups()) >= (1, 6, 2)

    def set_sysctl(self, name: str, value: str) -> None:
        """Write a sysctl of the namespace this proxy programs (e.g. net/ipv4/conf/all/route_localnet).
        Kept beside the iptables calls so that a fake node (tests) fakes both."""
        with open(f"/proc/sys/{name}", "w") as f:
            f.write(value)

    # --- chains and rules ---

    def ensure_chain(self, table: str, chain: str) -> bool:
        """Create `chain` if missing; True if it already existed."""
        if self.chain_exists(table, chain):
            return True
        res = self._run([self.iptables, *WAIT, "-t", table, "-N", chain])
        if res.returncode != 0 and not self.chain_exists(table, chain):
            raise RuntimeError(f"{self.iptables} -t {table} -N {chain}: {res.stderr.strip()}")
        return False

    def chain_exists(self, table: str, chain: str) -> bool:
        return self._run([self.iptables, *WAIT, "-t", table, "-S", chain]).returncode == 0

    def ensure_rule(self, table: str, chain: str, args: list[str], prepend: bool = True) -> bool:
        """Add the rule unless it exists; True if it already existed."""
        if self._run([self.iptables, *WAIT, "-t", table, "-C", chain, *args]).returncode == 0:
            return True
        op = ["-I", chain, "1"] if prepend else ["-A", chain]
        res = self._run([self.iptables, *WAIT, "-t", table, *op, *args])
        if res.returncode != 0:
            raise RuntimeError(f"{self.iptables} -t {table} {' '.join(op)}: {res.stderr.strip()}")
        return False

    def delete_rule(self, table: str, chain: str, args: list[str]) -> None:
        while self._run([self.iptables, *WAIT, "-t", table, "-D", chain, *args]).returncode == 0:
            pass

    def flush_chain(self, table: str, chain: str) -> None:
        self._run([self.iptables, *WAIT, "-t", table, "-F", chain])

    def delete_chain(self, table: str, chain: str) -> None:
        self._run([self.iptables, *WAIT, "-t", table, "-X", chain])

    def save(self, table: str) -> str:
        res = self._run([self.save_bin, "-t", table])
        if res.returncode != 0:
            raise RuntimeError(f"{self.save_bin} -t {table}: {res.stderr.strip()}")
        return res.stdout

    def chains(self, table: str) -> set[str]:
        """Every chain of `table` (GetChainsFromTable over iptables-save output)."""
        return {line[1:].split(" ", 1)[0] for line in self.save(table).splitlines() if line.startswith(":")}

    # --- restore ---

    def restore_all(self, text: str) -> None:
        """iptables-restore --noflush --counters: chains named in `text` are replaced, others kept."""
        res = self._run([self.restore_bin, *WAIT, "--noflush", "--counters"], input_text=text)
        if res.returncode == 0:
            return
        stderr = res.stderr.strip()
        m = _FAILED_LINE.search(stderr)
        line = int(m.group(1)) if m else None
        context = extract_lines(text, line) if line else []
        raise RestoreError(f"{self.restore_bin} failed: {stderr}", line, context)
