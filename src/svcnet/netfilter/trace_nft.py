"""Runs an nft rule set on a flow: every base chain on a hook, in priority order, as the kernel's
nf_tables does.

A new connection with no history: `ct state` is new, dynamic sets (the affinity sets kube-proxy
fills with `update @set`) are empty. `numgen random mod N vmap {...}` splits the flow into N
branches of 1/N each, so every endpoint a connection can reach is found.
"""

from __future__ import annotations

from svcnet.netfilter.addr import LocalAddresses, format_addr, format_endpoint, parse_addr
from svcnet.netfilter.errors import TraceError
from svcnet.netfilter.nft import Expr, LazyNftRule, NftChain, NftRule, NftRuleset, NftSet, NftTable, Verdict
from svcnet.netfilter.trace import MAX_BRANCHES, MAX_JUMP_DEPTH, Flow, addr_type, run_rules

Outcome = tuple[Flow, str | None]


class NftEngine:
    def __init__(self, ruleset: NftRuleset, local: LocalAddresses, primary_ip: str | None = None) -> None:
        self.ruleset = ruleset
        self.local = local
        self.primary_ip = primary_ip
        self.notes: list[str] = []
        self.branches = 0

    def run_hook(self, hook: str, flow: Flow) -> list[Flow]:
        flows = [flow]
        for table, chain in self.ruleset.base_chains(hook, flow.dst[0]):
            nxt: list[Flow] = []
            for f in flows:
                if f.final:
                    nxt.append(f)
                    continue
                for g, verdict in self._run_chain(table, chain, (), f, 0):
                    if verdict is None and chain.policy == "drop":
                        verdict = "drop"
                        g.final_step = g.step(
                            table.key,
                            chain.name,
                            f"policy {chain.policy}",
                            chain.line_no,
                            "no rule ended the chain",
                            "policy drop",
                            0,
                        )
                    if verdict in ("drop", "reject"):
                        g.final = verdict.upper()
                    nxt.append(g)
            flows = nxt
        return flows

    def _run_chain(
        self, table: NftTable, chain: NftChain, g_stack: tuple[str, ...], flow: Flow, depth: int
    ) -> list[Outcome]:
        if depth > MAX_JUMP_DEPTH:
            raise TraceError(f"jump depth limit ({MAX_JUMP_DEPTH}) exceeded at {table.key} {chain.name}")
        stack = (*g_stack, chain.name)
        rules = self.ruleset.rules_of(table, chain)

        def step(index: int, f: Flow, _pending: list[tuple[int, Flow]]):
            rule = rules[index]
            if rule.__class__ is LazyNftRule:  # read as text; parsed when first reached
                rule = rules[index] = rule.parse()
            return self._rule(table, rule, f, depth, stack)

        return run_rules(rules, flow, step)

    def _rule(
        self, table: NftTable, rule: NftRule, f: Flow, depth: int, stack: tuple[str, ...]
    ) -> tuple[list[Outcome], list[Flow]]:
        """Evaluate one rule. Returns (finished branches, branches going on to the next rule)."""
        matched: list[str] = []
        for expr in rule.exprs:
            kind = expr.kind
            if kind == "match":
                if not self._match(table, expr, f):
                    return [], [f]
                matched.append(expr.text)
            elif kind == "assumed":
                matched.append(f"{expr.text}: not evaluated, assumed to match")
                self._note(f"`{expr.text}` is not evaluated; assumed to match")
            elif kind == "markset":
                before = f.mark
                op, value = expr.mark  # type: ignore[misc]
                f.mark = {"set": value, "or": before | value, "xor": before ^ value, "and": before & value}[
                    op
                ]
                self._step(f, rule, matched, f"mark {before:#x} -> {f.mark:#x}", depth)
            elif kind == "noop":
                continue
            elif kind == "nat":
                return [(self._nat(rule, expr, f, matched, depth), "accept")], []
            elif kind == "verdict":
                assert expr.verdict is not None
                return self._verdict(table, rule, expr.verdict, f, matched, depth, stack, expr.verdict.kind)
            elif kind == "vmap":
                key = self._key(expr.fields, f)
                if key is None:
                    return [], [f]
                verdict = self._lookup_verdict(table, expr, key)
                if verdict is None:
                    return [], [f]
                shown = " . ".join(_show(v) for v in key)
                matched.append(
                    f"{' . '.join(expr.fields)} = {shown} in {'@' + expr.set_ref if expr.set_ref else 'vmap'}"
                )
                return self._verdict(table, rule, verdict, f, matched, depth, stack, str(verdict))
            elif kind == "numgen":
                return self._numgen(table, rule, expr, f, matched, depth, stack)
        # a rule without a verdict: statements done, on to the next rule
        if matched or rule.exprs:
            self._step(f, rule, matched, "continue", depth)
        return [], [f]

    def _numgen(
        self,
        table: NftTable,
        rule: NftRule,
        expr: Expr,
        f: Flow,
        matched: list[str],
        depth: int,
        stack: tuple[str, ...],
    ) -> tuple[list[Outcome], list[Flow]]:
        done: list[Outcome] = []
        conts: list[Flow] = []
        share = 1.0 / expr.modulus
        self.branches += expr.modulus
        if self.branches > MAX_BRANCHES:
            raise TraceError(
                f"more than {MAX_BRANCHES} random branches: the rule set splits too often to follow"
            )
        for value in range(expr.offset, expr.offset + expr.modulus):
            g = f.fork(share)
            verdict = self._lookup_verdict(table, expr, (value,))
            if verdict is None:
                conts.append(g)
                continue
            d, c = self._verdict(
                table, rule, verdict, g, [*matched, f"numgen = {value}"], depth, stack, str(verdict)
            )
            done.extend(d)
            conts.extend(c)
        return done, conts

    def _verdict(
        self,
        table: NftTable,
        rule: NftRule,
        verdict: Verdict,
        f: Flow,
        matched: list[str],
        depth: int,
        stack: tuple[str, ...],
        action: str,
    ) -> tuple[list[Outcome], list[Flow]]:
        kind = verdict.kind
        step = self._step(f, rule, matched, action, depth)
        if kind in ("accept", "queue"):
            f.accepted = True
            return [(f, "accept")], []
        if kind in ("drop", "reject"):
            f.final_step = step
            return [(f, kind)], []
        if kind == "return":
            return [(f, None)], []
        if kind == "continue":
            return [], [f]
        target = table.chains.get(verdict.target or "")
        if target is None:
            raise TraceError(
                f"{kind} {verdict.target}: no such chain in table {table.key} "
                f"(reached from line {rule.line_no}: {rule.text})"
            )
        if target.name in stack:
            cycle = " -> ".join((*stack[stack.index(target.name) :], target.name))
            raise TraceError(f"jump cycle in table {table.key}: {cycle} (line {rule.line_no}: {rule.text})")
        done: list[Outcome] = []
        conts: list[Flow] = []
        for g, v in self._run_chain(table, target, stack, f, depth + 1):
            if v is not None:
                done.append((g, v))
            elif kind == "goto":
                done.append((g, None))
            else:
                conts.append(g)
        return done, conts

    def _nat(self, rule: NftRule, expr: Expr, f: Flow, matched: list[str], depth: int) -> Flow:
        kind, addr, port = expr.nat  # type: ignore[misc]
        if kind in ("dnat", "redirect"):
            if kind == "redirect" or addr is None:
                addr = "127.0.0.1" if f.from_node else (self.primary_ip or "127.0.0.1")
            target = parse_addr(addr)
            f.dst = target
            f.dst_text = format_addr(target)
            f.dport = port if port is not None else f.dport
            f.dnat = (target, f.dport)
            self._step(f, rule, matched, f"DNAT to {format_endpoint(target, f.dport)}", depth)
        else:
            f.masquerade = True
            if kind == "snat":
                f.snat_to = addr
            self._step(f, rule, matched, "MASQUERADE" if kind == "masquerade" else f"SNAT to {addr}", depth)
        return f

    def _step(self, f: Flow, rule: NftRule, matched: list[str], action: str, depth: int):
        return f.step(
            rule.table, rule.chain, rule.text, rule.line_no, ", ".join(matched) or "always", action, depth
        )

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # --- values and lookups -------------------------------------------------------------
    def _value(self, name: str, f: Flow) -> object:
        if name in ("ip saddr", "ip6 saddr"):
            return f.src if (name == "ip saddr") == (f.src[0] == 4) else None
        if name in ("ip daddr", "ip6 daddr"):
            return f.dst if (name == "ip daddr") == (f.dst[0] == 4) else None
        if name in ("meta l4proto", "ip protocol", "ip6 nexthdr"):
            return f.proto
        if name.endswith(" dport") or name.endswith(" sport"):
            proto = name.split()[0]
            if proto != "th" and proto != f.proto:
                return None
            return f.dport if name.endswith("dport") else f.sport
        if name == "fib daddr type":
            return addr_type(f.dst, self.local).lower()
        if name == "fib saddr type":
            return addr_type(f.src, self.local).lower()
        if name == "ct state":
            return "new"
        if name == "ct status":
            return "dnat" if f.dnat else "none"
        if name == "meta mark":
            return f.mark
        if name == "ct mark":
            return 0
        if name == "meta nfproto":
            return "ipv4" if f.dst[0] == 4 else "ipv6"
        if name in ("meta iifname", "meta iif"):
            return f.iif
        if name in ("meta oifname", "meta oif"):
            return f.oif
        return None

    def _key(self, fields: list[str], f: Flow) -> tuple | None:
        key = []
        for name in fields:
            value = self._value(name, f)
            if value is None:
                return None
            key.append(value)
        return tuple(key)

    def _match(self, table: NftTable, expr: Expr, f: Flow) -> bool:
        fields = expr.fields
        if any(n in ("meta iifname", "meta oifname", "meta iif", "meta oif") for n in fields) and (
            self._key(fields, f) is None
        ):
            self._note("interface names are not known for a traced packet; such matches are assumed")
            return True
        key = self._key(fields, f)
        if key is None:
            return False
        if expr.mask is not None:
            op, value = expr.mask
            v = key[0]
            assert isinstance(v, int)
            key = ({"and": v & value, "or": v | value, "xor": v ^ value}[op],)
        if expr.set_ref is not None:
            nset = table.sets[expr.set_ref]
            hit = self._in_set(nset, key) is not _MISSING
        else:
            hit = any(_key_matches(element, key) for element in expr.values or ())
        return hit != (expr.op == "!=")

    def _in_set(self, nset: NftSet, key: tuple) -> object:
        if nset.dynamic:
            return _MISSING  # filled by earlier connections only
        nset.load()
        if key in nset.exact:
            return nset.exact[key]
        for element, data in nset.ranged:
            if _key_matches(element, key):
                return data
        return _MISSING

    def _lookup_verdict(self, table: NftTable, expr: Expr, key: tuple) -> Verdict | None:
        if expr.set_ref is not None:
            data = self._in_set(table.sets[expr.set_ref], key)
            return data if isinstance(data, Verdict) else None
        for element, verdict in expr.mapping or ():
            if _key_matches(element, key):
                return verdict
        return None


_MISSING = object()


def _key_matches(element: tuple, key: tuple) -> bool:
    if len(element) != len(key):
        return False
    for want, have in zip(element, key, strict=True):
        if isinstance(want, tuple) and want and want[0] == "range":
            if not (want[1] <= have <= want[2]):
                return False
        elif isinstance(want, str) and isinstance(have, str) and want.endswith("*"):
            if not have.startswith(want[:-1]):
                return False
        elif want != have:
            return False
    return True


def _show(value: object) -> str:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return format_addr(value)  # type: ignore[arg-type]
    return str(value)
