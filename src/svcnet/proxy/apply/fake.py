"""An in-memory stand-in for IPTables (as upstream's iptables testing fake), for tests.

It keeps the set of nat chains the way `iptables-restore --noflush` would leave them, records
every restore input and ensured jump rule, and can be told to fail the next restore.
"""

from __future__ import annotations

from svcnet.proxy.apply.iptables import RestoreError, extract_lines


class FakeIPTables:
    def __init__(self) -> None:
        self.nat_chains: set[str] = set()
        self.restores: list[str] = []
        self.ensured: list[tuple[str, str, tuple[str, ...]]] = []
        self.fail_next = False
        self.sysctls: dict[str, str] = {}

    def set_sysctl(self, name: str, value: str) -> None:
        # Recorded, never written: a test must not change the machine's own namespace.
        self.sysctls[name] = value

    def ensure_chain(self, table: str, chain: str) -> bool:
        return True

    def ensure_rule(self, table: str, chain: str, args: list[str], prepend: bool = True) -> bool:
        self.ensured.append((table, chain, tuple(args)))
        return False

    def chains(self, table: str) -> set[str]:
        return set(self.nat_chains)

    def chain_exists(self, table: str, chain: str) -> bool:
        return True

    def has_random_fully(self) -> bool:
        return True

    def restore_all(self, text: str) -> None:
        self.restores.append(text)
        if self.fail_next:
            self.fail_next = False
            raise RestoreError("iptables-restore: line 3 failed", 3, extract_lines(text, 3))
        nat = text.split("*nat\n", 1)[1]
        for line in nat.splitlines():
            if line.startswith(":"):
                self.nat_chains.add(line[1:].split()[0])
            elif line.startswith("-X "):
                self.nat_chains.discard(line[3:])
