"""Runs an iptables rule set on a flow, hook by hook, as the kernel's xtables would.

Matches are evaluated for the first packet of a new connection with no history: `recent
--rcheck` finds no entry, conntrack state is NEW (plus DNAT once a DNAT happened). A `statistic`
rule splits the flow: one branch takes the rule with its probability, the other goes on with the
rest, so every endpoint a connection can reach is found with the chance of reaching it.
"""

from __future__ import annotations

from svcnet.netfilter.addr import (
    LocalAddresses,
    format_addr,
    format_endpoint,
    format_net,
    net_contains,
    parse_addr,
)
from svcnet.netfilter.errors import RuleParseError, TraceError
from svcnet.netfilter.iptables import EXTENSION_TARGETS, IptablesRuleset, Match, Rule
from svcnet.netfilter.iptables_lazy import LazyRule
from svcnet.netfilter.trace import MAX_BRANCHES, MAX_JUMP_DEPTH, Flow, addr_type, run_rules

# Tables registered on each hook, in priority order (raw -300, mangle -150, nat -100 / 100,
# filter 0, security 50; nat INPUT/POSTROUTING run after filter/mangle).
HOOK_CHAINS: dict[str, tuple[tuple[str, str], ...]] = {
    "prerouting": (("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING")),
    "input": (("mangle", "INPUT"), ("filter", "INPUT"), ("security", "INPUT"), ("nat", "INPUT")),
    "forward": (("mangle", "FORWARD"), ("filter", "FORWARD"), ("security", "FORWARD")),
    "output": (
        ("raw", "OUTPUT"),
        ("mangle", "OUTPUT"),
        ("nat", "OUTPUT"),
        ("filter", "OUTPUT"),
        ("security", "OUTPUT"),
    ),
    "postrouting": (("mangle", "POSTROUTING"), ("nat", "POSTROUTING")),
}

ASSUMED = "assumed"
_NON_TERMINAL_NOTED = {"LOG", "NFLOG", "ULOG", "TRACE", "CT", "NOTRACK", "CHECKSUM", "TCPMSS", "CONNMARK"}


class IptablesEngine:
    def __init__(
        self, ruleset: IptablesRuleset, local: LocalAddresses, primary_ip: str | None = None
    ) -> None:
        self.ruleset = ruleset
        self.local = local
        self.primary_ip = primary_ip
        self.notes: list[str] = []
        self.branches = 0

    # --- hooks and chains ---------------------------------------------------------------
    def run_hook(self, hook: str, flow: Flow) -> list[Flow]:
        flows = [flow]
        for table, chain_name in HOOK_CHAINS[hook]:
            chain = self.ruleset.chain(table, chain_name)
            if chain is None:
                continue
            nxt: list[Flow] = []
            for f in flows:
                if f.final:
                    nxt.append(f)
                    continue
                for g, verdict in self._run_chain(table, chain_name, f, 0, ()):
                    if verdict is None and chain.policy == "DROP":
                        g.final = "DROP"
                        g.final_step = g.step(
                            table,
                            chain_name,
                            f":{chain_name} DROP",
                            chain.line_no,
                            "no rule ended the chain",
                            "policy DROP",
                            0,
                        )
                    elif verdict in ("DROP", "REJECT"):
                        g.final = verdict
                    nxt.append(g)
            flows = nxt
        return flows

    def _run_chain(
        self, table: str, chain_name: str, flow: Flow, depth: int, stack: tuple[str, ...]
    ) -> list[tuple[Flow, str | None]]:
        """Run one chain. Returns (flow, verdict) per branch; verdict None = fell off the end
        or RETURNed, "GOTO-RETURN" never leaks out (goto returns to our caller's caller)."""
        chain = self.ruleset.chain(table, chain_name)
        if chain is None:
            raise TraceError(f"{table} chain {chain_name} does not exist")
        if depth > MAX_JUMP_DEPTH:
            raise TraceError(f"jump depth limit ({MAX_JUMP_DEPTH}) exceeded at {table} {chain_name}")
        stack = (*stack, chain_name)
        rules = chain.rules

        def step(index: int, f: Flow, pending: list[tuple[int, Flow]]):
            rule = rules[index]
            if rule.__class__ is LazyRule:  # read from a large dump: parse only if it can match
                if rule.dst_hint is not None and rule.dst_hint != f.dst_text:
                    return None
                rule = rules[index] = rule.parse()
            outcome = self._match(rule, f)
            if outcome is False:
                return None
            probability, notes = outcome
            if probability < 1.0:
                # Later rules see the connections this rule did not take.
                if probability <= 0.0:
                    return None
                self._count_branch()
                pending.append((index + 1, f.fork(1.0 - probability)))
                f = f.fork(probability)
            return self._apply(rule, f, notes, depth, stack)

        return run_rules(rules, flow, step)

    def _apply(
        self, rule: Rule, f: Flow, notes: list[str], depth: int, stack: tuple[str, ...]
    ) -> tuple[list[tuple[Flow, str | None]], list[Flow]]:
        """Run a matched rule's target. Returns (finished branches, branches that continue)."""
        target = rule.target
        matched = _describe(rule, f, notes)
        if target is None:
            f.step(rule.table, rule.chain, rule.text, rule.line_no, matched, "no target: continue", depth)
            return [], [f]
        if target in ("ACCEPT", "DROP", "REJECT", "QUEUE", "NFQUEUE"):
            verdict = "ACCEPT" if target in ("ACCEPT", "QUEUE", "NFQUEUE") else target
            step = f.step(rule.table, rule.chain, rule.text, rule.line_no, matched, verdict, depth)
            if verdict == "ACCEPT":
                f.accepted = True
            else:
                f.final_step = step
            return [(f, verdict)], []
        if target == "RETURN":
            f.step(rule.table, rule.chain, rule.text, rule.line_no, matched, "RETURN", depth)
            return [(f, None)], []
        if target in ("DNAT", "REDIRECT"):
            self._dnat(rule, f)
            assert f.dnat is not None
            action = f"DNAT to {_endpoint_text(f)}"
            f.step(rule.table, rule.chain, rule.text, rule.line_no, matched, action, depth)
            return [(f, "ACCEPT")], []
        if target in ("MASQUERADE", "SNAT"):
            f.masquerade = True
            action = "MASQUERADE"
            if target == "SNAT":
                to = rule.target_opts.get("to")
                f.snat_to = to[0] if isinstance(to, tuple) else str(to)
                action = f"SNAT to {f.snat_to}"
            f.step(rule.table, rule.chain, rule.text, rule.line_no, matched, action, depth)
            return [(f, "ACCEPT")], []
        if target == "MARK":
            before = f.mark
            f.mark = _mark_target(rule, f.mark)
            f.step(
                rule.table,
                rule.chain,
                rule.text,
                rule.line_no,
                matched,
                f"MARK {before:#x} -> {f.mark:#x}",
                depth,
            )
            return [], [f]
        if target in self.ruleset.tables[rule.table].chains:
            if target in stack:
                cycle = " -> ".join((*stack[stack.index(target) :], target))
                raise TraceError(
                    f"jump cycle in table {rule.table}: {cycle} (line {rule.line_no}: {rule.text})"
                )
            verb = "goto" if rule.goto else "jump"
            f.step(rule.table, rule.chain, rule.text, rule.line_no, matched, f"{verb} {target}", depth)
            done: list[tuple[Flow, str | None]] = []
            conts: list[Flow] = []
            for g, verdict in self._run_chain(rule.table, target, f, depth + 1, stack):
                if verdict is not None:
                    done.append((g, verdict))
                elif rule.goto:
                    done.append((g, None))  # goto: the end of the target returns past us
                else:
                    conts.append(g)
            return done, conts
        if target not in EXTENSION_TARGETS:
            raise RuleParseError(rule.line_no, rule.text, f"jump to a chain that does not exist: {target}")
        # An extension target that does not decide the packet's fate (LOG, CONNMARK, ...).
        if target not in _NON_TERMINAL_NOTED:
            self._note(f"target {target} is not modelled; treated as continuing")
        f.step(rule.table, rule.chain, rule.text, rule.line_no, matched, f"{target}: continue", depth)
        return [], [f]

    def _dnat(self, rule: Rule, f: Flow) -> None:
        if rule.target == "REDIRECT":
            host = "127.0.0.1" if f.from_node else (self.primary_ip or "127.0.0.1")
            ports = rule.target_opts.get("to-ports")
            port = int(str(ports).split("-")[0]) if isinstance(ports, str) else f.dport
            to = (host, port)
        else:
            opt = rule.target_opts.get("to")
            if not isinstance(opt, tuple):
                raise TraceError(f"DNAT without --to-destination (line {rule.line_no}: {rule.text})")
            to = opt
        addr = parse_addr(to[0])
        port = to[1] if to[1] is not None else f.dport
        f.dst, f.dport = addr, port
        f.dst_text = format_addr(addr)
        f.dnat = (addr, port)

    def _count_branch(self) -> None:
        self.branches += 1
        if self.branches > MAX_BRANCHES:
            raise TraceError(
                f"more than {MAX_BRANCHES} random branches: the rule set splits too often to follow"
            )

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # --- matches ------------------------------------------------------------------------
    def _match(self, rule: Rule, f: Flow) -> tuple[float, list[str]] | bool:
        probability = 1.0
        notes: list[str] = []
        for m in rule.matches:
            result = self._eval(m, f)
            if result is False:
                return False
            if result is True:
                continue
            if result == ASSUMED:
                notes.append(f"{m.text}: not evaluated, assumed to match")
                continue
            probability *= float(result)
        return probability, notes

    def _eval(self, m: Match, f: Flow) -> bool | float | str:
        kind = m.kind
        neg = m.negated
        if kind == "comment:comment" or kind == "nfacct:nfacct-name":
            return True
        if kind == "proto":
            return (m.value == "all" or m.value == f.proto) != neg
        if kind == "dst":
            return any(net_contains(n, f.dst) for n in m.value) != neg  # type: ignore[attr-defined]
        if kind == "src":
            return any(net_contains(n, f.src) for n in m.value) != neg  # type: ignore[attr-defined]
        if kind in ("tcp:dport", "udp:dport", "sctp:dport"):
            lo, hi = m.value  # type: ignore[misc]
            return (lo <= f.dport <= hi) != neg
        if kind in ("tcp:sport", "udp:sport", "sctp:sport"):
            lo, hi = m.value  # type: ignore[misc]
            return (lo <= f.sport <= hi) != neg
        if kind in ("addrtype:dst-type", "addrtype:src-type"):
            addr = f.dst if kind == "addrtype:dst-type" else f.src
            return (addr_type(addr, self.local) in m.value) != neg  # type: ignore[operator]
        if kind == "conntrack:ctstate":
            return bool(f.ct_states & m.value) != neg  # type: ignore[operator]
        if kind == "conntrack:ctstatus":
            return ("NONE" in m.value) != neg  # type: ignore[operator]
        if kind in ("mark:mark", "connmark:mark"):
            value, mask = m.value  # type: ignore[misc]
            current = f.mark if kind == "mark:mark" else 0
            return ((current & mask) == value) != neg
        if kind == "statistic:probability":
            p = float(m.value)  # type: ignore[arg-type]
            return 1.0 - p if neg else p
        if kind == "statistic:every":
            p = 1.0 / int(m.value)  # type: ignore[call-overload]
            return 1.0 - p if neg else p
        if kind.startswith("statistic:"):
            return True
        if kind in ("recent:rcheck", "recent:update", "recent:remove"):
            return neg  # a new connection's source is in no `recent` list yet
        if kind.startswith("recent:"):
            return True
        if kind.startswith("multiport:"):
            which = kind.split(":")[1]
            ports = (
                (f.dport,) if which == "dports" else (f.sport,) if which == "sports" else (f.dport, f.sport)
            )
            hit = any(lo <= p <= hi for lo, hi in m.value for p in ports)  # type: ignore[attr-defined]
            return hit != neg
        if kind == "tcp:syn":
            return (f.proto == "tcp") != neg
        if kind == "tcp:tcp-flags":
            mask, comp = m.value  # type: ignore[misc]
            flags = {"SYN"}
            every = {"SYN", "ACK", "FIN", "RST", "URG", "PSH"}
            mask = every if "ALL" in mask else set() if "NONE" in mask else set(mask)
            comp = every if "ALL" in comp else set() if "NONE" in comp else set(comp)
            return ((flags & mask) == comp) != neg
        if kind == "fragment":
            return neg  # the first packet of a connection is not a fragment
        if kind in ("in", "out"):
            iface = f.iif if kind == "in" else f.oif
            if iface is None:
                return ASSUMED
            pattern = str(m.value)
            hit = iface.startswith(pattern[:-1]) if pattern.endswith("+") else iface == pattern
            return hit != neg
        if kind.startswith("addrtype:limit-iface"):
            return True
        return ASSUMED


def _mark_target(rule: Rule, mark: int) -> int:
    opts = rule.target_opts
    if "set-xmark" in opts:
        value, mask = opts["set-xmark"]  # type: ignore[misc]
        return (mark & ~mask & 0xFFFFFFFF) ^ value
    if "set-mark" in opts:
        value, mask = opts["set-mark"]  # type: ignore[misc]
        return (mark & ~mask & 0xFFFFFFFF) | value
    if "or-mark" in opts:
        return mark | opts["or-mark"][0]  # type: ignore[index]
    if "xor-mark" in opts:
        return mark ^ opts["xor-mark"][0]  # type: ignore[index]
    if "and-mark" in opts:
        return mark & opts["and-mark"][0]  # type: ignore[index]
    return mark


def _endpoint_text(f: Flow) -> str:
    assert f.dnat is not None
    return format_endpoint(*f.dnat)


def _describe(rule: Rule, f: Flow, notes: list[str]) -> str:
    """What matched, in words: each condition with the packet's value beside it."""
    parts: list[str] = []
    for m in rule.matches:
        kind = m.kind
        if kind == "comment:comment" or kind == "nfacct:nfacct-name" or kind.startswith(("statistic:mode",)):
            continue
        if kind in ("src", "dst"):
            addr = f.src if kind == "src" else f.dst
            nets = ",".join(format_net(n) for n in m.value)  # type: ignore[attr-defined]
            parts.append(f"{kind} {format_addr(addr)} {'not in' if m.negated else 'in'} {nets}")
        elif kind.endswith(":dport"):
            parts.append(f"dport {f.dport}")
        elif kind.startswith("addrtype:") and not kind.startswith("addrtype:limit"):
            parts.append(m.text)
        elif kind == "statistic:probability" or kind == "statistic:every":
            parts.append(f"random branch, p={m.value}")
        elif kind == "recent:rcheck" or kind == "recent:update":
            parts.append(f"{m.text} (no affinity entry yet)")
        elif kind.startswith("recent:") or kind == "proto" or kind.endswith(":sport"):
            continue
        elif kind != "unknown":
            parts.append(m.text)
    parts.extend(notes)
    return ", ".join(parts) if parts else "always"
