"""The nftables backend's renderer: services + endpoints -> `nft -f` transactions.

Writes what upstream kube-proxy's nftables mode writes (pkg/proxy/nftables/proxier.go, with
the newest base-chain layout of its tests): one table `ip kube-proxy` / `ip6 kube-proxy`,
service dispatch through the verdict maps service-ips and service-nodeports, per service-port
chains named `service-HASH-ns/name/proto/port` (and local-, external-, firewall-, endpoint-),
endpoint choice by `numgen random mod N vmap`, ClientIP affinity through per-endpoint sets
with timeouts, cluster-ips-check, masquerading by mark.

The text is one statement per line (`add table/chain/set/map/rule/element`, `flush`,
`delete`), the form knftables hands `nft -f`.

`NftablesSyncer` keeps an in-memory mirror of what the kernel holds (upstream's
nftElementStorage plus the chains it created): the first sync (and any sync after a failure)
is a full transaction that recreates everything; later syncs only send the elements that
changed and the chains of services that changed. Chains no longer used are flushed at once
and deleted once they have been unreferenced for STALE_CHAIN_DELAY seconds (kernels before
6.2 notice a removed map element's chain reference only a little later).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.ipnet import parse_cidr, parse_ip
from svcnet.proxy.model import EndpointInfo, ServicePortInfo, ServicePortName, port_order
from svcnet.proxy.topology import categorize_endpoints

log = logging.getLogger("svcnet.proxy")

TABLE = "kube-proxy"

SERVICES_CHAIN = "services"
SERVICE_IPS_MAP = "service-ips"
SERVICE_NODEPORTS_MAP = "service-nodeports"
NODEPORT_IPS_SET = "nodeport-ips"
CLUSTER_IPS_SET = "cluster-ips"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
NO_ENDPOINT_SERVICES_MAP = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS_MAP = "no-endpoint-nodeports"
REJECT_CHAIN = "reject-chain"
CLUSTER_IPS_CHECK = "cluster-ips-check"
FIREWALL_IPS_MAP = "firewall-ips"
FIREWALL_CHECK = "firewall-check"
MARK_MASQ_CHAIN = "mark-for-masquerade"
MASQUERADING_CHAIN = "masquerading"

CLUSTER_PREFIX = "service-"
LOCAL_PREFIX = "local-"
EXTERNAL_PREFIX = "external-"
ENDPOINT_PREFIX = "endpoint-"
AFFINITY_PREFIX = "affinity-"
FIREWALL_PREFIX = "firewall-"

NAME_LENGTH_MAX = 256  # knftables.NameLengthMax
CHAIN_NAME_BASE_MAX = NAME_LENGTH_MAX - 16

STALE_CHAIN_DELAY = 1.0

# (name, type, hook, priority): the newest upstream layout (filters before DNAT at -110,
# endpoint checks after it at 0).
BASE_CHAINS: tuple[tuple[str, str, str, int], ...] = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-forward", "filter", "forward", 0),
    ("filter-input", "filter", "input", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)

# (destination, source base chain, extra match): the jumps out of the base chains.
JUMP_CHAINS: tuple[tuple[str, str, str], ...] = (
    (NODEPORT_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-forward", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-output", "ct state new"),
    (FIREWALL_CHECK, "filter-prerouting-pre-dnat", "ct state new"),
    (FIREWALL_CHECK, "filter-output-pre-dnat", "ct state new"),
    (SERVICES_CHAIN, "nat-output", ""),
    (SERVICES_CHAIN, "nat-prerouting", ""),
    (MASQUERADING_CHAIN, "nat-postrouting", ""),
    (CLUSTER_IPS_CHECK, "filter-forward", "ct state new"),
    (CLUSTER_IPS_CHECK, "filter-output", "ct state new"),
)

ELEMENT_CONTAINERS: tuple[tuple[str, str], ...] = (
    ("set", CLUSTER_IPS_SET),
    ("map", SERVICE_IPS_MAP),
    ("map", FIREWALL_IPS_MAP),
    ("map", NO_ENDPOINT_SERVICES_MAP),
    ("map", NO_ENDPOINT_NODEPORTS_MAP),
    ("map", SERVICE_NODEPORTS_MAP),
)
CONTAINER_KIND = dict((name, kind) for kind, name in ELEMENT_CONTAINERS)


# --- names ---

def hash_and_truncate(name: str) -> str:
    encoded = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    name = encoded[:8] + "-" + name
    if len(name) > CHAIN_NAME_BASE_MAX:
        name = name[:CHAIN_NAME_BASE_MAX - 3] + "..."
    return name


@lru_cache(maxsize=131072)
def service_chain_base(spn: ServicePortName) -> str:
    return hash_and_truncate(f"{spn.namespace}/{spn.name}/{spn.protocol.lower()}/{spn.port}")


@lru_cache(maxsize=262144)
def endpoint_chain_base(spn: ServicePortName, ip: str, port: int) -> str:
    # Chain names may not hold ':', so IPv6 endpoint addresses are written with '.'.
    return hash_and_truncate(f"{spn.namespace}/{spn.name}/{spn.protocol.lower()}/{spn.port}__"
                             f"{ip.replace(':', '.')}/{port}")


def is_service_chain_name(chain: str) -> bool:
    return "/" in chain


def is_affinity_set_name(name: str) -> bool:
    return name.startswith(AFFINITY_PREFIX)


# --- per service-port output ---

Element = tuple[str, str, str, str | None]  # (container, key, value, comment)


@dataclass
class PortOutput:
    """Everything one service port contributes to the table."""

    elements: list[Element] = field(default_factory=list)
    chains: dict[str, list[str]] = field(default_factory=dict)  # chain -> rule bodies, in order
    affinity_sets: dict[str, int] = field(default_factory=dict)  # set name -> timeout seconds
    no_local_internal: bool = False
    no_local_external: bool = False


@dataclass(frozen=True)
class FamilyWords:
    ip: str  # "ip" | "ip6"
    addr_type: str  # "ipv4_addr" | "ipv6_addr"
    no_localhost: str
    nft_family: str

    @staticmethod
    def of(node: NodeConfig) -> FamilyWords:
        if node.is_ipv6:
            return FamilyWords("ip6", "ipv6_addr", "ip6 daddr != ::1", "ip6")
        return FamilyWords("ip", "ipv4_addr", "ip daddr != 127.0.0.0/8", "ip")


def _dnat_target(ep: EndpointInfo) -> str:
    return ep.endpoint_string  # "ip:port" / "[ip6]:port", as nft reads it


def render_port(spn: ServicePortName, svc: ServicePortInfo, endpoints: Sequence[EndpointInfo],
                node: NodeConfig, words: FamilyWords, local_cidr: str | None) -> PortOutput:
    """What upstream's syncProxyRules writes for one service port (elements and chains).

    local_cidr is node.local_cidr, read once per sync by the caller (it parses the cluster
    CIDRs: a tenth of a full sync at 10k services when read per port)."""
    out = PortOutput()
    ipx = words.ip
    proto = svc.protocol.lower()
    base = service_chain_base(spn)
    cluster_chain = CLUSTER_PREFIX + base
    local_chain = LOCAL_PREFIX + base
    external_chain = EXTERNAL_PREFIX + base
    fw_chain = FIREWALL_PREFIX + base
    name = svc.name_string
    cluster_eps, local_eps, reachable, has_endpoints = categorize_endpoints(
        endpoints, svc, node.node_name, node.node_labels)
    ep_base = {ep.endpoint_string: endpoint_chain_base(spn, ep.ip, ep.port) for ep in reachable}
    for ep in cluster_eps + local_eps:
        ep_base.setdefault(ep.endpoint_string, endpoint_chain_base(spn, ep.ip, ep.port))

    uses_cluster_chain = bool(cluster_eps) and svc.uses_cluster_endpoints
    uses_local_chain = bool(local_eps) and svc.uses_local_endpoints

    internal_chain = cluster_chain
    has_internal = has_endpoints
    if svc.internal_policy_local:
        internal_chain = local_chain
        if not local_eps:
            has_internal = False
    external_policy_chain = cluster_chain
    has_external = has_endpoints
    if svc.external_policy_local:
        external_policy_chain = local_chain
        if not local_eps:
            has_external = False
    uses_external_chain = has_endpoints and svc.externally_accessible

    int_verdict = ext_verdict = ""
    if not has_endpoints:
        int_verdict = ext_verdict = f"goto {REJECT_CHAIN}"
    else:
        if not has_internal:
            int_verdict = "drop"
            out.no_local_internal = True
        if not has_external:
            ext_verdict = "drop"
            out.no_local_external = True

    port = str(svc.port)
    els = out.elements
    els.append((CLUSTER_IPS_SET, svc.cluster_ip, "", None))
    if has_internal:
        els.append((SERVICE_IPS_MAP, f"{svc.cluster_ip} . {proto} . {port}", f"goto {internal_chain}", None))
    else:
        els.append((NO_ENDPOINT_SERVICES_MAP, f"{svc.cluster_ip} . {proto} . {port}", int_verdict, name))
    for ext_ip in svc.external_ips:
        key = f"{ext_ip} . {proto} . {port}"
        if has_endpoints:
            els.append((SERVICE_IPS_MAP, key, f"goto {external_chain}", None))
        if not has_external:
            els.append((NO_ENDPOINT_SERVICES_MAP, key, ext_verdict, name))
    uses_fw_chain = bool(svc.load_balancer_vips) and bool(svc.load_balancer_source_ranges)
    for lb_ip in svc.load_balancer_vips:
        key = f"{lb_ip} . {proto} . {port}"
        if has_endpoints:
            els.append((SERVICE_IPS_MAP, key, f"goto {external_chain}", None))
        if uses_fw_chain:
            els.append((FIREWALL_IPS_MAP, key, f"goto {fw_chain}", None))
    if not has_external:
        for lb_ip in svc.load_balancer_vips:
            els.append((NO_ENDPOINT_SERVICES_MAP, f"{lb_ip} . {proto} . {port}", ext_verdict, name))
    if svc.node_port:
        key = f"{proto} . {svc.node_port}"
        if has_endpoints:
            els.append((SERVICE_NODEPORTS_MAP, key, f"goto {external_chain}", None))
        if not has_external:
            els.append((NO_ENDPOINT_NODEPORTS_MAP, key, ext_verdict, name))

    chains = out.chains
    # Chains are created in upstream's order: endpoint chains, then the policy chains.
    for ep in reachable:
        chains[ENDPOINT_PREFIX + ep_base[ep.endpoint_string]] = []
    if uses_cluster_chain:
        chains[cluster_chain] = []
    if uses_local_chain:
        chains[local_chain] = []
    if uses_external_chain:
        chains[external_chain] = []
    if uses_fw_chain:
        chains[fw_chain] = []

    if has_internal:
        if node.masquerade_all:
            chains[internal_chain].append(f"{ipx} daddr {svc.cluster_ip} jump {MARK_MASQ_CHAIN}")
        elif local_cidr:
            chains[internal_chain].append(
                f"{ipx} daddr {svc.cluster_ip} {ipx} saddr != {local_cidr} jump {MARK_MASQ_CHAIN}")

    if uses_external_chain:
        rules = chains[external_chain]
        if not svc.external_policy_local:
            rules.append(f"jump {MARK_MASQ_CHAIN}")
        else:
            if local_cidr:
                rules.append(f"{ipx} saddr {local_cidr} goto {cluster_chain} "
                             'comment "short-circuit pod traffic"')
            rules.append(f'fib saddr type local jump {MARK_MASQ_CHAIN} comment "masquerade local traffic"')
            rules.append(f'fib saddr type local goto {cluster_chain} comment "short-circuit local traffic"')
        if has_external:
            rules.append(f"goto {external_policy_chain}")

    if uses_fw_chain:
        sources = list(svc.load_balancer_source_ranges)
        node_ip = parse_ip(node.primary_node_ip or "") if node.primary_node_ip else None
        allow_from_node = False
        for cidr in svc.load_balancer_source_ranges:
            net = parse_cidr(cidr)
            if node_ip is not None and net is not None and node_ip in net:
                allow_from_node = True
        if allow_from_node:
            sources += list(svc.load_balancer_vips)
        # knftables.Concat joins the "," tokens with spaces
        chains[fw_chain].append(f"{ipx} saddr != {{ {' , '.join(sources)} }} drop")

    affinity = svc.session_affinity_client_ip
    if affinity:
        for ep in reachable:
            out.affinity_sets[AFFINITY_PREFIX + ep_base[ep.endpoint_string]] = svc.sticky_max_age_seconds

    if uses_cluster_chain:
        _service_to_endpoint_rules(chains[cluster_chain], ipx, affinity, cluster_eps, ep_base)
    if uses_local_chain:
        _service_to_endpoint_rules(chains[local_chain], ipx, affinity, local_eps, ep_base)

    for ep in reachable:
        b = ep_base[ep.endpoint_string]
        rules = chains[ENDPOINT_PREFIX + b]
        rules.append(f"{ipx} saddr {ep.ip} jump {MARK_MASQ_CHAIN}")
        if affinity:
            rules.append(f"update @{AFFINITY_PREFIX}{b} {{ {ipx} saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {_dnat_target(ep)}")
    return out


def _service_to_endpoint_rules(rules: list[str], ipx: str, affinity: bool,
                               endpoints: Sequence[EndpointInfo], ep_base: dict[str, str]) -> None:
    if affinity:
        for ep in endpoints:
            b = ep_base[ep.endpoint_string]
            rules.append(f"{ipx} saddr @{AFFINITY_PREFIX}{b} goto {ENDPOINT_PREFIX}{b}")
    targets = " , ".join(f"{i} : goto {ENDPOINT_PREFIX}{ep_base[ep.endpoint_string]}"
                         for i, ep in enumerate(endpoints))
    rules.append(f"numgen random mod {len(endpoints)} vmap {{ {targets} }}")


# --- transactions ---

class Tx:
    """An `nft -f` transaction being written: one statement per line.

    A full transaction is written as upstream writes it (`add rule`, `add element`). An
    incremental one (`incremental=True`) states the same changes in forms that nft 1.0.x can
    evaluate without first reading the whole table back from the kernel: a chain's rules as
    `add chain NAME { rule ; rule ; }` and new elements as `add map NAME { spec ; elements =
    { ... } ; }`. Both forms need only nft's table cache, while `add rule` and `add element`
    make it dump every chain and set of the table (about 75 ms at 10k services; see
    docs/nftables.md and docs/benchmarks.md). Element deletions have no such form and still pay
    for the dump.
    """

    __slots__ = ("incremental", "lines", "pending", "prefix", "specs")

    def __init__(self, family: str, incremental: bool = False,
                 specs: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.prefix = f"{family} {TABLE}"
        self.lines: list[str] = []
        self.incremental = incremental
        self.specs = specs or {}  # container -> (set|map, spec), for incremental element adds
        self.pending: dict[str, dict[str, str]] = {}  # container -> key -> element text

    def add_chain(self, chain: str, spec: str = "") -> None:
        self.lines.append(f"add chain {self.prefix} {chain}{' { ' + spec + ' ; }' if spec else ''}")

    def flush_chain(self, chain: str) -> None:
        self.lines.append(f"flush chain {self.prefix} {chain}")

    def delete_chain(self, chain: str) -> None:
        self.lines.append(f"delete chain {self.prefix} {chain}")

    def ensure_chain(self, chain: str) -> None:
        self.add_chain(chain)
        self.flush_chain(chain)

    def rule(self, chain: str, body: str) -> None:
        self.lines.append(f"add rule {self.prefix} {chain} {body}")

    def chain_rules(self, chain: str, bodies: Sequence[str]) -> None:
        """Append these rules to an existing (just flushed) chain."""
        if not bodies:
            return
        if self.incremental:
            self.lines.append(f"add chain {self.prefix} {chain} {{ {' ; '.join(bodies)} ; }}")
        else:
            for body in bodies:
                self.rule(chain, body)

    def add_element(self, container: str, key: str, value: str, comment: str | None) -> None:
        c = f' comment "{comment}"' if comment else ""
        v = f" : {value}" if value else ""
        if self.incremental and container in self.specs:
            # written at the end, one statement per container, once every chain exists
            self.pending.setdefault(container, {})[key] = f"{key}{c}{v}"
        else:
            self.lines.append(f"add element {self.prefix} {container} {{ {key}{c}{v} }}")

    def delete_element(self, container: str, key: str) -> None:
        pending = self.pending.get(container)
        if pending is not None and key in pending:
            # added earlier in this transaction; an older version, if any, is deleted above
            del pending[key]
            return
        self.lines.append(f"delete element {self.prefix} {container} {{ {key} }}")

    def finish(self) -> None:
        """Write the pending element additions."""
        for container, items in self.pending.items():
            if items:
                kind, spec = self.specs[container]
                self.lines.append(f"add {kind} {self.prefix} {container} {{ {spec} ; "
                                  f"elements = {{ {' , '.join(items.values())} }} ; }}")
        self.pending = {}

    def text(self) -> str:
        self.finish()
        return "\n".join(self.lines) + ("\n" if self.lines else "")


def container_specs(words: FamilyWords) -> dict[str, tuple[str, str]]:
    """container -> (set|map, what `add set/map` states about it), as upstream declares them."""
    addr_key = f"type {words.addr_type} . inet_proto . inet_service : verdict"
    port_key = "type inet_proto . inet_service : verdict"
    return {
        CLUSTER_IPS_SET: ("set", f'type {words.addr_type} ; comment "Active ClusterIPs"'),
        NO_ENDPOINT_SERVICES_MAP: (
            "map", f'{addr_key} ; comment "vmap to drop or reject packets to services with no endpoints"'),
        NO_ENDPOINT_NODEPORTS_MAP: (
            "map", f'{port_key} ; comment "vmap to drop or reject packets to service nodeports '
                   'with no endpoints"'),
        FIREWALL_IPS_MAP: (
            "map", f'{addr_key} ; comment "destinations that are subject to LoadBalancerSourceRanges"'),
        SERVICE_IPS_MAP: ("map", f'{addr_key} ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"'),
        SERVICE_NODEPORTS_MAP: ("map", f'{port_key} ; comment "NodePort traffic"'),
    }


def affinity_set_spec(words: FamilyWords, timeout: int) -> str:
    return f"type {words.addr_type} ; flags dynamic,timeout ; timeout {timeout}s"


@dataclass
class SyncPlan:
    """One sync's transaction plus what the mirror becomes once the kernel accepts it."""

    text: str
    full: bool
    lines: int
    outputs: dict[ServicePortName, PortOutput]
    elements: dict[str, dict[str, tuple[str, str | None, ServicePortName | None]]]
    chains: set[str]
    affinity_sets: set[str]
    stale_chains: dict[str, float]
    no_local_internal: int = 0
    no_local_external: int = 0
    ports: list[ServicePortName] = field(default_factory=list)  # the ports this plan rendered


def _flag(output: PortOutput | None, name: str) -> int:
    return 1 if output is not None and getattr(output, name) else 0


class NftablesSyncer:
    """Builds full and incremental transactions against a mirror of the kernel's table."""

    def __init__(self, node: NodeConfig) -> None:
        self.node = node
        self.words = FamilyWords.of(node)
        self.specs = container_specs(self.words)
        self.flushed_base_chains = False  # upstream's once-per-process add+delete of base chains
        self.reset()

    def reset(self) -> None:
        """Forget the mirror: the next plan must be full."""
        self.outputs: dict[ServicePortName, PortOutput] = {}
        # container -> key -> (value, comment, owner)
        self.elements: dict[str, dict[str, tuple[str, str | None, ServicePortName | None]]] = {
            name: {} for _kind, name in ELEMENT_CONTAINERS}
        self.chains: set[str] = set()  # per-service chains the kernel holds (flushed stale ones too)
        self.affinity_sets: set[str] = set()
        self.stale_chains: dict[str, float] = {}
        self.by_service: dict[tuple[str, str], set[ServicePortName]] = {}  # ports in outputs
        self.no_local_internal = self.no_local_external = 0
        self.synced = False

    # -- setup --

    def nodeport_ips(self) -> list[str] | None:
        """None = every local address (fib daddr type local); else the nodeport-ips set.

        The nftables backend defaults --nodeport-addresses to the node's primary IP.
        """
        node = self.node
        if node.nodeport_addresses:
            if node.nodeports_match_all:
                return None
            ips = node.nodeport_ips()
        else:
            primary = node.primary_node_ip
            if primary is None:
                return None
            ips = [primary]
        out = []
        for ip in ips:
            addr = parse_ip(ip)
            if addr is not None and addr.is_loopback:
                log.error("--nodeport-addresses includes localhost but localhost NodePorts are not supported "
                          "(address %s)", ip)
                continue
            out.append(ip)
        return out

    def service_cidrs(self) -> list[str]:
        nets = [parse_cidr(c) for c in self.node.service_cidrs]
        want_v6 = self.node.is_ipv6
        return [str(n) for n in nets if n is not None and (n.version == 6) == want_v6]

    def _setup(self, tx: Tx) -> None:
        w = self.words
        ipx = w.ip
        mark = self.node.masquerade_mark
        tx.lines.append(f'add table {tx.prefix} {{ comment "rules for kube-proxy" ; }}')
        if not self.flushed_base_chains:
            # Recreate base chains once, so a changed priority never fails the transaction.
            for name, _t, _h, _p in BASE_CHAINS:
                tx.add_chain(name)
                tx.delete_chain(name)
        for name, ctype, hook, prio in BASE_CHAINS:
            tx.add_chain(name, f"type {ctype} hook {hook} priority {prio}")
            tx.flush_chain(name)
        created: set[str] = set()
        for dst, src, extra in JUMP_CHAINS:
            if dst not in created:
                tx.ensure_chain(dst)
                created.add(dst)
            tx.rule(src, f"{extra} jump {dst}" if extra else f"jump {dst}")
        for chain in (SERVICES_CHAIN, CLUSTER_IPS_CHECK, MASQUERADING_CHAIN, MARK_MASQ_CHAIN):
            if chain not in created:
                tx.ensure_chain(chain)
                created.add(chain)
        tx.rule(MARK_MASQ_CHAIN, f"mark set mark or {mark}")
        tx.rule(MASQUERADING_CHAIN, f"mark and {mark} == 0 return")
        tx.rule(MASQUERADING_CHAIN, f"mark set mark xor {mark}")
        tx.rule(MASQUERADING_CHAIN, "masquerade fully-random")
        specs = self.specs
        tx.lines.append(f"add set {tx.prefix} {CLUSTER_IPS_SET} {{ {specs[CLUSTER_IPS_SET][1]} ; }}")
        tx.rule(CLUSTER_IPS_CHECK, f'{ipx} daddr @{CLUSTER_IPS_SET} reject '
                                   'comment "Reject traffic to invalid ports of ClusterIPs"')
        cidrs = self.service_cidrs()
        if cidrs:
            tx.rule(CLUSTER_IPS_CHECK, f"{ipx} daddr {{ {','.join(cidrs)} }} drop "
                                       'comment "Drop traffic to unallocated ClusterIPs"')
        tx.lines.append(f'add set {tx.prefix} {NODEPORT_IPS_SET} {{ type {w.addr_type} ; '
                        'comment "IPs that accept NodePort traffic" ; }')
        nodeport_ips = self.nodeport_ips()
        if nodeport_ips is None:
            tx.lines.append(f"delete set {tx.prefix} {NODEPORT_IPS_SET}")
        else:
            tx.lines.append(f"flush set {tx.prefix} {NODEPORT_IPS_SET}")
            for ip in nodeport_ips:
                tx.add_element(NODEPORT_IPS_SET, ip, "", None)
        for name in (NO_ENDPOINT_SERVICES_MAP, NO_ENDPOINT_NODEPORTS_MAP):
            tx.lines.append(f"add map {tx.prefix} {name} {{ {specs[name][1]} ; }}")
        tx.add_chain(REJECT_CHAIN, 'comment "helper for @no-endpoint-services / @no-endpoint-nodeports"')
        tx.flush_chain(REJECT_CHAIN)
        tx.rule(REJECT_CHAIN, "reject")
        tx.rule(SERVICE_ENDPOINTS_CHECK,
                f"{ipx} daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES_MAP}")
        if nodeport_ips is None:
            tx.rule(NODEPORT_ENDPOINTS_CHECK,
                    f"{w.no_localhost} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS_MAP}")
        else:
            tx.rule(NODEPORT_ENDPOINTS_CHECK,
                    f"{ipx} daddr @{NODEPORT_IPS_SET} meta l4proto . th dport "
                    f"vmap @{NO_ENDPOINT_NODEPORTS_MAP}")
        tx.lines.append(f"add map {tx.prefix} {FIREWALL_IPS_MAP} {{ {specs[FIREWALL_IPS_MAP][1]} ; }}")
        if FIREWALL_CHECK not in created:
            tx.ensure_chain(FIREWALL_CHECK)
        tx.rule(FIREWALL_CHECK, f"{ipx} daddr . meta l4proto . th dport vmap @{FIREWALL_IPS_MAP}")
        for name in (SERVICE_IPS_MAP, SERVICE_NODEPORTS_MAP):
            tx.lines.append(f"add map {tx.prefix} {name} {{ {specs[name][1]} ; }}")
        tx.rule(SERVICES_CHAIN, f"{ipx} daddr . meta l4proto . th dport vmap @{SERVICE_IPS_MAP}")
        if nodeport_ips is None:
            tx.rule(SERVICES_CHAIN, f"fib daddr type local {w.no_localhost} meta l4proto . th dport "
                                    f"vmap @{SERVICE_NODEPORTS_MAP}")
        else:
            tx.rule(SERVICES_CHAIN, f"{ipx} daddr @{NODEPORT_IPS_SET} meta l4proto . th dport "
                                    f"vmap @{SERVICE_NODEPORTS_MAP}")
        for kind, name in ELEMENT_CONTAINERS:
            tx.lines.append(f"flush {kind} {tx.prefix} {name}")

    # -- planning --

    def plan(self, svc_port_map: Mapping[ServicePortName, ServicePortInfo],
             endpoints_map: Mapping[ServicePortName, Sequence[EndpointInfo]],
             changed: set[tuple[str, str]] | None = None, now: float | None = None,
             changed_ports: set[ServicePortName] | None = None) -> SyncPlan:
        """The transaction of one sync. changed=None (or no earlier sync) means full.

        changed_ports, when the caller knows them (ChangeResult.updated_ports), are the ports of
        the changed services, so that one change does not scan every service port."""
        now = time.monotonic() if now is None else now
        full = changed is None or not self.synced
        tx = Tx(self.words.nft_family, incremental=not full, specs=self.specs)
        if full:
            self._setup(tx)
            outputs: dict[ServicePortName, PortOutput] = {}
            elements: dict[str, dict] = {name: {} for _k, name in ELEMENT_CONTAINERS}
            todo = sorted(svc_port_map, key=port_order)
        else:
            outputs = dict(self.outputs)
            elements = {name: dict(v) for name, v in self.elements.items()} if changed else self.elements
            todo_set: set[ServicePortName] = set()
            for key in changed:
                todo_set.update(self.by_service.get(key, ()))
            if changed_ports is None:
                changed_ports = {spn for spn in svc_port_map if spn.service in changed}
            todo_set.update(spn for spn in changed_ports if spn.service in changed)
            todo = sorted(todo_set, key=port_order)
        old_affinity = self.affinity_sets
        stale = dict(self.stale_chains)
        # Stale chains unreferenced long enough are deleted first (they are already empty).
        deleted: set[str] = set()
        for chain, since in sorted(stale.items()):
            if now - since >= STALE_CHAIN_DELAY:
                tx.delete_chain(chain)
                del stale[chain]
                deleted.add(chain)
        # What the kernel holds once those are gone. Read only: at 10k services it is some 60k
        # chains, and a partial sync copies it once (into `chains`), not for every question.
        old_chains = self.chains - deleted if deleted else self.chains
        chains = set(old_chains) if not full else set()
        dropped: list[str] = []  # chains of re-rendered ports that their new output lacks
        affinity = set(old_affinity) if not full else set()
        words = self.words
        local_cidr = self.node.local_cidr
        for spn in todo:
            svc = svc_port_map.get(spn)
            old = None if full else outputs.pop(spn, None)
            new = (render_port(spn, svc, endpoints_map.get(spn, ()), self.node, words, local_cidr)
                   if svc else None)
            if new is not None:
                outputs[spn] = new
            if old is not None:
                for chain in old.chains:
                    if new is None or chain not in new.chains:
                        chains.discard(chain)
                        dropped.append(chain)
                for name in old.affinity_sets:
                    if new is None or name not in new.affinity_sets:
                        affinity.discard(name)
            if new is not None:
                # Sets and chains first: elements and rules may only name what exists.
                for name, timeout in new.affinity_sets.items():
                    if old is None or old.affinity_sets.get(name) != timeout:
                        spec = affinity_set_spec(words, timeout)
                        tx.lines.append(f"add set {tx.prefix} {name} {{ {spec} ; }}")
                    affinity.add(name)
                # A chain whose rules did not change is left alone (the mirror says what it holds).
                rewrite = [c for c, rules in new.chains.items()
                           if old is None or old.chains.get(c) != rules or c not in old_chains]
                for chain in rewrite:
                    tx.ensure_chain(chain)
                for chain in rewrite:
                    tx.chain_rules(chain, new.chains[chain])
                for chain in new.chains:
                    chains.add(chain)
                    stale.pop(chain, None)
            self._diff_elements(tx, elements, spn, old, new, full)
        # Service chains the kernel still holds but nothing uses: flush now, delete later. A
        # partial sync can only have stopped using the chains it dropped.
        unused = (old_chains - chains if full
                  else {c for c in dropped if c in old_chains and c not in chains})
        for chain in sorted(unused):
            if chain not in stale:
                tx.flush_chain(chain)
                stale[chain] = now
        for name in sorted(old_affinity - affinity):
            tx.lines.append(f"delete set {tx.prefix} {name}")
        chains.update(stale)  # flushed, still in the kernel until deleted
        if full:
            no_int = sum(1 for o in outputs.values() if o.no_local_internal)
            no_ext = sum(1 for o in outputs.values() if o.no_local_external)
        else:  # adjust the counts of the last sync by what the changed ports did
            no_int, no_ext = self.no_local_internal, self.no_local_external
            for spn in todo:
                before, after = self.outputs.get(spn), outputs.get(spn)
                no_int += _flag(after, "no_local_internal") - _flag(before, "no_local_internal")
                no_ext += _flag(after, "no_local_external") - _flag(before, "no_local_external")
        text = tx.text()
        return SyncPlan(text=text, full=full, lines=len(tx.lines), outputs=outputs, elements=elements,
                        chains=chains, affinity_sets=affinity, stale_chains=stale,
                        no_local_internal=no_int, no_local_external=no_ext, ports=todo)

    @staticmethod
    def _diff_elements(tx: Tx, elements: dict, spn: ServicePortName, old: PortOutput | None,
                       new: PortOutput | None, full: bool) -> None:
        new_keys: set[tuple[str, str]] = set()
        if new is not None:
            for container, key, value, comment in new.elements:
                new_keys.add((container, key))
                current = elements[container].get(key)
                if current is not None:
                    if current[0] == value and current[1] == comment:
                        # unchanged; a partial sync hands it to this port (its old owner may be
                        # going), a full one leaves it with the first port that wrote it
                        if not full:
                            elements[container][key] = (value, comment, spn)
                        continue
                    tx.delete_element(container, key)
                tx.add_element(container, key, value, comment)
                elements[container][key] = (value, comment, spn)
        if old is not None:
            for container, key, _v, _c in old.elements:
                if (container, key) in new_keys:
                    continue
                current = elements[container].get(key)
                if current is not None and current[2] == spn:
                    tx.delete_element(container, key)
                    del elements[container][key]

    def commit(self, plan: SyncPlan) -> None:
        """The kernel accepted plan.text: the mirror now matches it."""
        if plan.full:
            self.flushed_base_chains = True
        self.outputs = plan.outputs
        if plan.full:
            self.by_service = {}
            for spn in plan.outputs:
                self.by_service.setdefault(spn.service, set()).add(spn)
        else:
            for spn in plan.ports:
                if spn in plan.outputs:
                    self.by_service.setdefault(spn.service, set()).add(spn)
                else:
                    ports = self.by_service.get(spn.service)
                    if ports is not None:
                        ports.discard(spn)
                        if not ports:  # a deleted service leaves no key behind
                            del self.by_service[spn.service]
        self.no_local_internal = plan.no_local_internal
        self.no_local_external = plan.no_local_external
        self.elements = plan.elements
        self.chains = plan.chains
        self.affinity_sets = plan.affinity_sets
        self.stale_chains = plan.stale_chains
        self.synced = True

    def adopt_existing(self, chains: set[str], sets: set[str]) -> None:
        """Service chains and affinity sets found in the kernel at start-up (a restart): the
        first full sync flushes and later deletes those it does not reuse."""
        self.chains |= {c for c in chains if is_service_chain_name(c)}
        self.affinity_sets |= {s for s in sets if is_affinity_set_name(s)}


def render_full(svc_port_map: Mapping[ServicePortName, ServicePortInfo],
                endpoints_map: Mapping[ServicePortName, Sequence[EndpointInfo]],
                node: NodeConfig) -> str:
    """The first-sync transaction (`svcnet proxy render --mode nftables`)."""
    return NftablesSyncer(node).plan(svc_port_map, endpoints_map).text
