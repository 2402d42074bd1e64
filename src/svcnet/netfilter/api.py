"""One call from rule-set text and a packet to the answer: parse, prepare, trace."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from svcnet.netfilter.addr import LocalAddresses
from svcnet.netfilter.iptables_lazy import load_iptables
from svcnet.netfilter.kube_jumps import add_kube_proxy_jumps
from svcnet.netfilter.trace import Packet, TraceResult, trace_packet
from svcnet.netfilter.trace_iptables import IptablesEngine

MODES = ("iptables", "nftables")


@dataclass
class Node:
    """What the tracer needs to know of the node the rules run on."""

    node_ips: list[str] = field(default_factory=list)

    @property
    def local(self) -> LocalAddresses:
        return LocalAddresses(self.node_ips)


def trace_text(mode: str, text: str, packet: Packet, node: Node) -> TraceResult:
    """Parse `text` (iptables-save/restore or nft) and trace `packet` through it.
    Raises RuleParseError for a malformed rule set and TraceError for a jump cycle."""
    # Reading a large rule set allocates tens of thousands of small acyclic objects; letting
    # the cyclic collector walk the caller's heap each time costs more than the reading itself.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _trace_text(mode, text, packet, node)
    finally:
        if enabled:
            gc.enable()


def _trace_text(mode: str, text: str, packet: Packet, node: Node) -> TraceResult:
    local = node.local
    primary = node.node_ips[0] if node.node_ips else None
    if mode == "iptables":
        ruleset = load_iptables(text)
        added = add_kube_proxy_jumps(ruleset)
        notes = (
            [
                f"added {len(added)} jump rules kube-proxy installs itself outside its restore input "
                "(PREROUTING/OUTPUT/POSTROUTING/INPUT/FORWARD -> KUBE-*); shown as `kube-proxy's own jump`"
            ]
            if added
            else []
        )
        engine = IptablesEngine(ruleset, local, primary)
    elif mode == "nftables":
        from svcnet.netfilter.nft_lazy import load_nft
        from svcnet.netfilter.trace_nft import NftEngine

        engine = NftEngine(load_nft(text), local, primary)
        notes = []
    else:
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    result = trace_packet(engine, packet, local)
    result.notes[:0] = notes
    return result
