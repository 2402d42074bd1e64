"""The nft rule-set model: tables, chains, sets and maps, rules and their statements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from svcnet.netfilter.nft import LazyNftRule

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
CT_STATES = {"new", "established", "related", "invalid", "untracked"}
PROTO_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp"}
VERDICT_WORDS = {"accept", "drop", "reject", "return", "continue", "jump", "goto", "queue"}

# Selector -> value type.
FIELDS: dict[str, str] = {
    "ip saddr": "addr",
    "ip daddr": "addr",
    "ip6 saddr": "addr",
    "ip6 daddr": "addr",
    "meta l4proto": "proto",
    "ip protocol": "proto",
    "ip6 nexthdr": "proto",
    "th dport": "port",
    "th sport": "port",
    "tcp dport": "port",
    "tcp sport": "port",
    "udp dport": "port",
    "udp sport": "port",
    "sctp dport": "port",
    "sctp sport": "port",
    "fib daddr type": "fibtype",
    "fib saddr type": "fibtype",
    "ct state": "ctstate",
    "ct status": "ctstatus",
    "ct mark": "int",
    "meta mark": "int",
    "meta iifname": "ifname",
    "meta oifname": "ifname",
    "meta iif": "ifname",
    "meta oif": "ifname",
    "meta nfproto": "nfproto",
}
SHORT_FIELDS = {
    "mark": "meta mark",
    "iifname": "meta iifname",
    "oifname": "meta oifname",
    "iif": "meta iif",
    "oif": "meta oif",
    "l4proto": "meta l4proto",
}
TYPE_NAMES = {
    "ipv4_addr": "addr",
    "ipv6_addr": "addr",
    "inet_proto": "proto",
    "inet_service": "port",
    "mark": "int",
    "ifname": "ifname",
    "verdict": "verdict",
    "ct_state": "ctstate",
}


@dataclass(slots=True)
class Tok:
    text: str
    line: int


@dataclass
class Verdict:
    kind: str  # accept drop reject return continue jump goto queue
    target: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.target}" if self.target else self.kind


@dataclass
class NftSet:
    name: str
    key_types: list[str]
    data_type: str | None  # "verdict" for a verdict map, None for a set
    flags: set[str] = field(default_factory=set)
    exact: dict[tuple, object] = field(default_factory=dict)  # key -> data (None for sets)
    ranged: list[tuple[tuple, object]] = field(default_factory=list)  # keys with CIDRs / ranges
    dynamic: bool = False  # filled by the packet path itself (affinity): empty for a new flow
    line_no: int = 0
    # Elements as written (line number, text inside the braces), read on first lookup: a map
    # of 10,000 services costs nothing until a packet needs it.
    pending: list[tuple[int, str]] = field(default_factory=list)
    loader: Callable[[NftSet], None] | None = None

    unscanned: bool = False  # elements still to be located in the text (_FastTransaction)

    def load(self) -> None:
        if (self.pending or self.unscanned) and self.loader is not None:
            self.loader(self)

    def clear(self) -> None:
        self.pending.clear()
        self.exact.clear()
        self.ranged.clear()

    def add(self, key: tuple, data: object) -> None:
        for part in key:
            if part.__class__ is tuple and part[0] == "range":
                self.ranged.append((key, data))
                return
        self.exact[key] = data

    def remove(self, key: tuple) -> None:
        self.exact.pop(key, None)
        self.ranged = [(k, d) for k, d in self.ranged if k != key]

    def size(self) -> int:
        self.load()
        return len(self.exact) + len(self.ranged)


@dataclass
class Expr:
    """One statement of a rule."""

    kind: str  # match | vmap | numgen | verdict | nat | markset | noop | assumed
    fields: list[str] = field(default_factory=list)
    mask: tuple[str, int] | None = None  # ("and"/"or"/"xor", value) applied to the field
    op: str = "=="
    values: list[tuple] | None = None  # literal rhs: list of keys (anonymous set)
    set_ref: str | None = None
    mapping: list[tuple[tuple, Verdict]] | None = None  # anonymous vmap
    verdict: Verdict | None = None
    nat: tuple[str, str | None, int | None] | None = None  # (dnat|snat|masquerade|redirect, ip, port)
    mark: tuple[str, int] | None = None  # ("set"|"or"|"xor"|"and", value)
    modulus: int = 0
    offset: int = 0
    text: str = ""


@dataclass
class NftRule:
    table: str
    chain: str
    line_no: int
    text: str
    exprs: list[Expr]
    comment: str | None = None


@dataclass
class NftChain:
    name: str
    rules: list[NftRule | LazyNftRule] = field(default_factory=list)
    hook: str | None = None
    chain_type: str | None = None
    priority: int = 0
    policy: str = "accept"
    line_no: int = 0


@dataclass
class NftTable:
    family: str
    name: str
    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.family} {self.name}"


@dataclass
class NftRuleset:
    tables: dict[str, NftTable] = field(default_factory=dict)  # "family name" -> table
    # For a large transaction read by _FastTransaction: finds a chain's rules on first use.
    rule_loader: Callable[[NftTable, NftChain], list[LazyNftRule]] | None = None
    loaded: set[int] = field(default_factory=set)

    def rules_of(self, table: NftTable, chain: NftChain) -> list[NftRule | LazyNftRule]:
        if self.rule_loader is not None and id(chain) not in self.loaded:
            self.loaded.add(id(chain))
            chain.rules.extend(self.rule_loader(table, chain))
        return chain.rules

    def base_chains(self, hook: str, version: int) -> list[tuple[NftTable, NftChain]]:
        """Base chains registered on `hook` for packets of IP `version`, in priority order."""
        families = ("ip", "inet") if version == 4 else ("ip6", "inet")
        found = [
            (t, c)
            for t in self.tables.values()
            if t.family in families
            for c in t.chains.values()
            if c.hook == hook
        ]
        return sorted(found, key=lambda tc: tc[1].priority)
