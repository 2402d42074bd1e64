"""The jump rules kube-proxy installs into the built-in chains itself.

kube-proxy's restore input only holds its own KUBE-* chains; the jumps from PREROUTING, OUTPUT,
INPUT, FORWARD and POSTROUTING into them are added one by one with `iptables -I` (upstream's
iptablesJumpChains, each prepended). A rendered rule set therefore has to get them before it is
traced, or no packet would ever reach KUBE-SERVICES. A dump from a node already has them; a
jump already present is never added twice.
"""

from __future__ import annotations

from svcnet.netfilter.iptables import IptablesRuleset, parse_rule
from svcnet.netfilter.iptables_lazy import LazyRule

_NEW = "-m conntrack --ctstate NEW "
# (table, built-in chain, kube-proxy chain, match prefix, comment), in upstream's order.
KUBE_PROXY_JUMPS: tuple[tuple[str, str, str, str, str], ...] = (
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", _NEW, "kubernetes externally-visible service portals"),
    ("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", _NEW, "kubernetes externally-visible service portals"),
    ("filter", "INPUT", "KUBE-NODEPORTS", "", "kubernetes health check service ports"),
    ("filter", "FORWARD", "KUBE-SERVICES", _NEW, "kubernetes service portals"),
    ("filter", "OUTPUT", "KUBE-SERVICES", _NEW, "kubernetes service portals"),
    ("filter", "FORWARD", "KUBE-FORWARD", "", "kubernetes forwarding rules"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", _NEW, "kubernetes load balancer firewall"),
    ("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", _NEW, "kubernetes load balancer firewall"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", _NEW, "kubernetes load balancer firewall"),
    ("nat", "OUTPUT", "KUBE-SERVICES", "", "kubernetes service portals"),
    ("nat", "PREROUTING", "KUBE-SERVICES", "", "kubernetes service portals"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", "", "kubernetes postrouting rules"),
    ("filter", "INPUT", "KUBE-FIREWALL", "", ""),
    ("filter", "OUTPUT", "KUBE-FIREWALL", "", ""),
)


def add_kube_proxy_jumps(ruleset: IptablesRuleset) -> list[str]:
    """Prepend each missing jump whose target chain exists; returns one note per rule added."""
    added: list[str] = []
    for table, builtin, target, prefix, comment in KUBE_PROXY_JUMPS:
        t = ruleset.table(table)
        if t is None or target not in t.chains or builtin not in t.chains:
            continue
        chain = t.chains[builtin]
        rules = chain.rules
        for i, rule in enumerate(rules):
            if isinstance(rule, LazyRule):
                rules[i] = rule.parse()
        if any(r.target == target for r in rules):
            continue
        comment_args = f'-m comment --comment "{comment}" ' if comment else ""
        text = f"-A {builtin} {prefix}{comment_args}-j {target}"
        chain.rules.insert(0, parse_rule(table, text))
        added.append(f"{table} {builtin}: added kube-proxy's own jump `{text}`")
    return added
