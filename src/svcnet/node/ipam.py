"""Pod addresses from the node's podCIDR, allocated as the CNI host-local plugin does.

host-local hands out addresses round-robin after the last one reserved (so a replacement pod
gets a new address rather than the one just freed), skips the network, gateway and broadcast
addresses, and keeps its reservations on disk so an agent restart does not hand an address
out twice. One JSON file per range under the agent's data directory, written atomically.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path


class IpamExhaustedError(RuntimeError):
    pass


class HostLocalIpam:
    def __init__(self, data_dir: Path, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        if self.network.num_addresses < 4:
            raise ValueError(f"pod CIDR {cidr} is too small")
        self.gateway = self.network.network_address + 1
        self.path = data_dir / "ipam" / (str(self.network).replace("/", "_").replace(":", "-") + ".json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.last: str | None = None
        self.allocated: dict[str, str] = {}  # ip -> owner (pod uid)
        self._load()

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return
        self.last = data.get("last")
        self.allocated = {str(k): str(v) for k, v in (data.get("allocated") or {}).items()}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"last": self.last, "allocated": self.allocated}, indent=1))
        os.replace(tmp, self.path)

    def owned_by(self, owner: str) -> str | None:
        for ip, who in self.allocated.items():
            if who == owner:
                return ip
        return None

    def allocate(self, owner: str) -> str:
        """The owner's address (the same one again if it already has one)."""
        existing = self.owned_by(owner)
        if existing:
            return existing
        first = int(self.network.network_address) + 2
        last = int(self.network.broadcast_address) - (1 if self.network.version == 4 else 0)
        size = last - first + 1
        start = int(ipaddress.ip_address(self.last)) + 1 if self.last else first
        for i in range(size):
            candidate = first + (start - first + i) % size
            ip = str(ipaddress.ip_address(candidate))
            if ip not in self.allocated:
                self.allocated[ip] = owner
                self.last = ip
                self._save()
                return ip
        raise IpamExhaustedError(f"no free address left in {self.network}")

    def release(self, owner: str) -> None:
        gone = [ip for ip, who in self.allocated.items() if who == owner]
        for ip in gone:
            del self.allocated[ip]
        if gone:
            self._save()

    def owners(self) -> set[str]:
        return set(self.allocated.values())
