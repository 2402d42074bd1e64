"""The packet tracer's common part: the packet, its state along the path, the hook order the
kernel follows for a new connection, and the answer (verdict, endpoints, masquerade, path).

A backend (iptables or nftables) only knows how to run one netfilter hook on a flow; it may split
the flow into weighted branches at `statistic` / `numgen` rules. This module walks the hooks in
the kernel's order for every branch and folds the branches into one answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from svcnet.netfilter.addr import Addr, LocalAddresses, format_addr, format_endpoint, parse_addr

# Most rules never look at the source port; when one does, it sees a typical ephemeral port.
DEFAULT_SOURCE_PORT = 40000
MAX_JUMP_DEPTH = 64
# Random branches multiply when a chain that splits is jumped to from a chain that splits; a rule
# set crafted that way could otherwise keep the tracer busy for ever.
MAX_BRANCHES = 10000
PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    dport: int
    proto: str = "tcp"
    from_node: bool = False
    sport: int = DEFAULT_SOURCE_PORT

    def __str__(self) -> str:
        return f"{self.src} → {format_endpoint(parse_addr(self.dst), self.dport)}/{self.proto}"


@dataclass(slots=True)
class Step:
    """One rule that matched (or a chain policy that applied) on the way."""

    hook: str
    table: str
    chain: str
    rule: str
    line_no: int
    matched: str
    action: str
    probability: float
    depth: int

    def to_json(self) -> dict:
        return {
            "hook": self.hook,
            "table": self.table,
            "chain": self.chain,
            "rule": self.rule,
            "line": self.line_no,
            "matched": self.matched,
            "action": self.action,
            "probability": round(self.probability, 10),
        }


@dataclass(slots=True)
class Flow:
    """A new connection's state on one branch of the trace."""

    src: Addr
    dst: Addr
    proto: str
    sport: int
    dport: int
    from_node: bool
    prob: float = 1.0
    mark: int = 0
    dnat: tuple[Addr, int] | None = None
    masquerade: bool = False
    snat_to: str | None = None
    final: str | None = None  # DROP / REJECT once a rule ends the packet
    final_step: Step | None = None
    accepted: bool = False  # an explicit ACCEPT verdict was reached
    hook: str = ""
    iif: str | None = None
    oif: str | None = None
    steps: list[Step] = field(default_factory=list)
    dst_text: str = ""  # the destination as text, for rules read lazily (see iptables_lazy)

    def fork(self, factor: float) -> Flow:
        twin = Flow(
            self.src,
            self.dst,
            self.proto,
            self.sport,
            self.dport,
            self.from_node,
            self.prob * factor,
            self.mark,
            self.dnat,
            self.masquerade,
            self.snat_to,
            self.final,
            self.final_step,
            self.accepted,
            self.hook,
            self.iif,
            self.oif,
            list(self.steps),
            self.dst_text,
        )
        return twin

    @property
    def ct_states(self) -> frozenset[str]:
        states = {"NEW"}
        if self.dnat:
            states.add("DNAT")
        if self.snat_to or self.masquerade:
            states.add("SNAT")
        return frozenset(states)

    def step(
        self, table: str, chain: str, rule: str, line_no: int, matched: str, action: str, depth: int
    ) -> Step:
        s = Step(self.hook, table, chain, rule, line_no, matched, action, self.prob, depth)
        self.steps.append(s)
        return s


class Engine(Protocol):
    """A rule-set backend: runs every chain registered on one hook, in priority order."""

    def run_hook(self, hook: str, flow: Flow) -> list[Flow]: ...

    notes: list[str]


@dataclass
class TraceResult:
    packet: Packet
    verdict: str
    endpoints: list[str]
    probabilities: list[float]
    masquerade: bool
    path: list[Step]
    dropped: list[tuple[str, float, Step | None]]
    notes: list[str]
    accepted_by: Step | None = None
    masqueraded_endpoints: list[bool] = field(default_factory=list)  # per endpoint, any branch

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "endpoints": self.endpoints,
            "masquerade": self.masquerade,
            "path": [s.to_json() for s in self.path],
        }


Branch = tuple[Flow, str | None]  # a flow and its verdict (None: fell off the chain or returned)


def run_rules(
    rules: Sequence[Any],
    flow: Flow,
    step: Callable[[int, Flow, list[tuple[int, Flow]]], tuple[list[Branch], list[Flow]] | None],
) -> list[Branch]:
    """Run a chain's rules over a flow and every branch it forks into. ``step(index, f, pending)``
    evaluates rule ``index`` for ``f``: None when the rule does not apply (go on with the next),
    else (finished branches, branches that continue after the rule); it may push forks that
    start at a later rule onto ``pending``. Returns (flow, None) for each branch that falls off
    the end of the chain, with the finished ones."""
    results: list[Branch] = []
    pending: list[tuple[int, Flow]] = [(0, flow)]
    while pending:
        index, f = pending.pop()
        while True:
            if index >= len(rules):
                results.append((f, None))
                break
            outcome = step(index, f, pending)
            if outcome is None:
                index += 1
                continue
            done, conts = outcome
            results.extend(done)
            if not conts:
                break
            # Branches coming back from a sub-chain continue after this rule, in order.
            for g in reversed(conts[1:]):
                pending.append((index + 1, g))
            f = conts[0]
            index += 1
    return results


def trace_packet(engine: Engine, packet: Packet, local: LocalAddresses) -> TraceResult:
    """Follow a new connection the way the kernel does and fold every branch into one answer."""
    if packet.proto not in PROTOCOLS:
        raise ValueError(f"unsupported protocol {packet.proto!r} (tcp, udp or sctp)")
    src, dst = parse_addr(packet.src), parse_addr(packet.dst)
    if src[0] != dst[0]:
        raise ValueError("source and destination are of different IP families")
    notes: list[str] = []
    from_node = packet.from_node or local.is_local(src)
    if from_node and not packet.from_node:
        notes.append(f"{packet.src} is a node address: traced as sent from the node (nat OUTPUT)")
    start = Flow(src, dst, packet.proto, packet.sport, packet.dport, from_node, dst_text=format_addr(dst))
    flows = _walk(engine, start, local)
    notes.extend(getattr(engine, "notes", []))
    return _fold(packet, flows, notes)


def _walk(engine: Engine, start: Flow, local: LocalAddresses) -> list[Flow]:
    def run(hook: str, flows: list[Flow]) -> list[Flow]:
        out: list[Flow] = []
        for flow in flows:
            if flow.final:
                out.append(flow)
                continue
            flow.hook = hook
            out.extend(engine.run_hook(hook, flow))
        return out

    finished: list[Flow] = []
    if start.from_node:
        # Locally generated: OUTPUT (nat OUTPUT does the DNAT), POSTROUTING, and a packet for a
        # local address then comes back in through loopback to INPUT.
        for flow in run("output", [start]):
            for after in run("postrouting", [flow]):
                if not after.final and local.is_local(after.dst):
                    after.iif = "lo"
                    finished.extend(run("input", [after]))
                else:
                    finished.append(after)
        return finished
    for flow in run("prerouting", [start]):
        # The routing decision sees the destination after DNAT.
        if flow.final or local.is_local(flow.dst):
            finished.extend(run("input", [flow]))
        else:
            finished.extend(run("postrouting", run("forward", [flow])))
    return finished


def _fold(packet: Packet, flows: list[Flow], notes: list[str]) -> TraceResult:
    survivors = [f for f in flows if not f.final]
    dropped = [(f.final or "", f.prob, f.final_step) for f in flows if f.final]
    endpoints: list[str] = []
    probs: list[float] = []
    masq_by_endpoint: list[bool] = []
    accepted_by: Step | None = None
    if not survivors:
        verdict = (
            max(("REJECT", "DROP"), key=lambda v: sum(p for kind, p, _ in dropped if kind == v))
            if dropped
            else "NONE"
        )
    else:
        for f in survivors:
            if f.dnat is None:
                continue
            text = format_endpoint(*f.dnat)
            if text in endpoints:
                probs[endpoints.index(text)] += f.prob
                masq_by_endpoint[endpoints.index(text)] |= f.masquerade
            else:
                endpoints.append(text)
                probs.append(f.prob)
                masq_by_endpoint.append(f.masquerade)
        if endpoints:
            verdict = "DNAT"
        elif any(f.accepted for f in survivors):
            verdict = "ACCEPT"
            accepted_by = next(
                (s for f in survivors for s in reversed(f.steps) if s.action == "ACCEPT"), None
            )
        else:
            verdict = "NONE"
    masquerade = any(f.masquerade for f in survivors)
    return TraceResult(
        packet,
        verdict,
        endpoints,
        probs,
        masquerade,
        _flatten(flows),
        dropped,
        notes,
        accepted_by,
        masq_by_endpoint,
    )


def _flatten(flows: list[Flow]) -> list[Step]:
    """Branches share the steps before they split; list every step once, in walk order."""
    seen: set[int] = set()
    path: list[Step] = []
    for flow in flows:
        for s in flow.steps:
            if id(s) not in seen:
                seen.add(id(s))
                path.append(s)
    return path


def addr_type(addr: Addr, local: LocalAddresses) -> str:
    """The `addrtype` / `fib ... type` class of an address, as the routing table sees it."""
    if local.is_local(addr):
        return "LOCAL"
    version, value = addr
    if version == 4:
        if value >> 28 == 0xE:
            return "MULTICAST"
        if value == 0xFFFFFFFF:
            return "BROADCAST"
    elif value >> 120 == 0xFF:
        return "MULTICAST"
    return "UNICAST"
