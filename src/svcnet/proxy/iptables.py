"""The iptables backend's renderer: services + endpoints + node config -> iptables-restore text.

A pure function that writes what upstream kube-proxy's syncProxyRules writes
(pkg/proxy/iptables/proxier.go): the same chains, chain-name hashes, rule text and rule order
per service port. Services are visited in sorted order (upstream walks a Go map, so its order
between services is random; its tests sort, see sort_restore_text).

A partial render (KEP-3453) writes the top-level chains in full and the per-service chains
only for services in `changed`; chains that exist in the kernel but are no longer used are
flushed and deleted with `-X`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.ipnet import parse_cidr, parse_ip
from svcnet.proxy.model import EndpointInfo, ServicePortInfo, ServicePortName, port_order
from svcnet.proxy.topology import categorize_endpoints

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
KUBE_FIREWALL = "KUBE-FIREWALL"

SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000

LOCALHOST_NPS_COUNTER = "localhost_nps_accepted_pkts"
CT_INVALID_COUNTER = "ct_state_invalid_dropped_pkts"


@dataclass(frozen=True)
class JumpChain:
    table: str
    dst_chain: str
    src_chain: str
    comment: str
    extra_args: tuple[str, ...] = ()

    def rule_args(self) -> list[str]:
        args = list(self.extra_args)
        if self.comment:
            args += ["-m", "comment", "--comment", self.comment]
        return [*args, "-j", self.dst_chain]


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
_EXTERNAL = "kubernetes externally-visible service portals"
JUMP_CHAINS: tuple[JumpChain, ...] = (
    JumpChain("filter", KUBE_EXTERNAL_SERVICES, "INPUT", _EXTERNAL, _NEW),
    JumpChain("filter", KUBE_EXTERNAL_SERVICES, "FORWARD", _EXTERNAL, _NEW),
    JumpChain("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports"),
    JumpChain("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", _NEW),
    JumpChain("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", _NEW),
    JumpChain("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules"),
    JumpChain("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", _NEW),
    JumpChain("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", _NEW),
    JumpChain("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", _NEW),
    JumpChain("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals"),
    JumpChain("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals"),
    JumpChain("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules"),
)
KUBELET_JUMP_CHAINS: tuple[JumpChain, ...] = (
    JumpChain("filter", KUBE_FIREWALL, "INPUT", ""),
    JumpChain("filter", KUBE_FIREWALL, "OUTPUT", ""),
)


# --- chain names ---

def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


@lru_cache(maxsize=131072)
def port_proto_hash(service_port_name: str, protocol: str) -> str:
    return _hash16(service_port_name + protocol)


def service_port_chain_names(spn: ServicePortName) -> tuple[str, str, str, str]:
    """(KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-FW-) names of one service port."""
    h = port_proto_hash(str(spn), spn.protocol.lower())
    return (f"KUBE-SVC-{h}", f"KUBE-SVL-{h}", f"KUBE-EXT-{h}", f"KUBE-FW-{h}")


@lru_cache(maxsize=262144)
def endpoint_chain_name(service_port_name: str, protocol: str, endpoint: str) -> str:
    return "KUBE-SEP-" + _hash16(service_port_name + protocol + endpoint)


def is_service_chain_name(chain: str) -> bool:
    return chain.startswith(SERVICE_CHAIN_PREFIXES)


def compute_probability(n: int) -> str:
    return f"{1.0 / n:0.10f}"


_PROBABILITIES: list[str] = ["<bad value>"]


def probability(n: int) -> str:
    while len(_PROBABILITIES) <= n:
        _PROBABILITIES.append(compute_probability(len(_PROBABILITIES)))
    return _PROBABILITIES[n]


def chain_line(chain: str) -> str:
    return f":{chain} - [0:0]"


# --- rendering ---

@dataclass
class RenderResult:
    text: str
    active_nat_chains: set[str]
    filter_rules: int
    nat_rules: int  # rules written to the restore input (minus -X lines)
    nat_rules_total: int  # what the nat table holds after the restore
    deleted_chains: int
    no_local_endpoints_internal: int = 0
    no_local_endpoints_external: int = 0
    services_written: set[tuple[str, str]] = field(default_factory=set)


class _Sink:
    """A line buffer that can also just count (upstream's discard buffers)."""

    __slots__ = ("count", "keep", "lines")

    def __init__(self, keep: bool = True) -> None:
        self.lines: list[str] = []
        self.count = 0
        self.keep = keep

    def write(self, line: str) -> None:
        self.count += 1
        if self.keep:
            self.lines.append(line)


def render(svc_port_map: Mapping[ServicePortName, ServicePortInfo],
           endpoints_map: Mapping[ServicePortName, Sequence[EndpointInfo]],
           node: NodeConfig,
           changed: set[tuple[str, str]] | None = None,
           existing_nat_chains: Iterable[str] | None = None) -> RenderResult:
    """Render the iptables-restore input of one sync.

    changed: None for a full sync; otherwise the (namespace, name) of services whose
    Service or EndpointSlices changed since the last successful restore (partial sync).
    existing_nat_chains: chains the nat table holds now; stale service chains among them are
    deleted.
    """
    mark = node.masquerade_mark
    is_v6 = node.is_ipv6
    localhost_nodeports = node.effective_localhost_nodeports()
    local_cidr = node.local_cidr
    if_local = f"-s {local_cidr}" if local_cidr else ""
    if_not_local = f"! -s {local_cidr}" if local_cidr else ""
    node_ip = parse_ip(node.primary_node_ip or "") if node.primary_node_ip else None

    filter_chains = [chain_line(c) for c in (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD,
                                              KUBE_NODEPORTS, KUBE_PROXY_FIREWALL)]
    filter_rules: list[str] = []
    nat_chains = _Sink()
    nat_rules = _Sink()
    for c in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ):
        nat_chains.write(chain_line(c))
    skipped_chains = _Sink(keep=False)
    skipped_rules = _Sink(keep=False)

    nat_rules.write(f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN")
    nat_rules.write(f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}")
    masq = (f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
            "-j MASQUERADE")
    nat_rules.write(masq + (" --random-fully" if node.random_fully else ""))
    nat_rules.write(f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}")

    if not is_v6 and localhost_nodeports:
        filter_chains.append(chain_line(KUBE_FIREWALL))
        filter_rules.append(
            f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" '
            "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")

    active: set[str] = set()
    total_endpoints = sum(len(endpoints_map.get(spn, ())) for spn in svc_port_map)
    large_cluster = total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
    no_local_int = 0
    no_local_ext = 0
    written: set[tuple[str, str]] = set()
    nfacct_localhost = node.nfacct and localhost_nodeports and not is_v6

    for spn in sorted(svc_port_map, key=port_order):
        svc = svc_port_map[spn]
        proto = svc.protocol.lower()
        name = svc.name_string
        svc_chain, svl_chain, ext_chain, fw_chain = service_port_chain_names(spn)
        cluster_eps, local_eps, reachable, has_endpoints = categorize_endpoints(
            endpoints_map.get(spn, ()), svc, node.node_name, node.node_labels)

        uses_cluster_chain = bool(cluster_eps) and svc.uses_cluster_endpoints
        uses_local_chain = bool(local_eps) and svc.uses_local_endpoints

        internal_chain = svc_chain
        has_internal = has_endpoints
        if svc.internal_policy_local:
            internal_chain = svl_chain
            if not local_eps:
                has_internal = False
        external_policy_chain = svc_chain
        has_external = has_endpoints
        if svc.external_policy_local:
            external_policy_chain = svl_chain
            if not local_eps:
                has_external = False

        uses_ext_chain = has_endpoints and svc.externally_accessible
        uses_fw_chain = (has_endpoints and bool(svc.load_balancer_vips)
                         and bool(svc.load_balancer_source_ranges))
        lb_chain = fw_chain if uses_fw_chain else ext_chain

        int_target = int_comment = ext_target = ext_comment = ""
        if not has_endpoints:
            int_target = ext_target = "REJECT"
            int_comment = ext_comment = f'"{name} has no endpoints"'
        else:
            if not has_internal:
                int_target = "DROP"
                int_comment = f'"{name} has no local endpoints"'
                no_local_int += 1
            if not has_external:
                ext_target = "DROP"
                ext_comment = f'"{name} has no local endpoints"'
                no_local_ext += 1

        match = f"-m {proto} -p {proto}"
        cip_dport = f"-d {svc.cluster_ip} --dport {svc.port}"
        if has_internal:
            nat_rules.write(f'-A {KUBE_SERVICES} -m comment --comment "{name} cluster IP" '
                            f"{match} {cip_dport} -j {internal_chain}")
        else:
            filter_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {int_comment} "
                                f"{match} {cip_dport} -j {int_target}")

        for ext_ip in svc.external_ips:
            if has_endpoints:
                nat_rules.write(f'-A {KUBE_SERVICES} -m comment --comment "{name} external IP" '
                                f"{match} -d {ext_ip} --dport {svc.port} -j {ext_chain}")
            if not has_external:
                filter_rules.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                                    f"{match} -d {ext_ip} --dport {svc.port} -j {ext_target}")

        for lb_ip in svc.load_balancer_vips:
            if has_endpoints:
                nat_rules.write(f'-A {KUBE_SERVICES} -m comment --comment "{name} loadbalancer IP" '
                                f"{match} -d {lb_ip} --dport {svc.port} -j {lb_chain}")
            if uses_fw_chain:
                filter_rules.append(
                    f'-A {KUBE_PROXY_FIREWALL} -m comment --comment "{name} traffic not accepted by '
                    f'{fw_chain}" '
                    f"{match} -d {lb_ip} --dport {svc.port} -j DROP")
        if not has_external:
            for lb_ip in svc.load_balancer_vips:
                filter_rules.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                                    f"{match} -d {lb_ip} --dport {svc.port} -j {ext_target}")

        if svc.node_port:
            if has_endpoints:
                if nfacct_localhost:
                    nat_rules.write(f"-A {KUBE_NODEPORTS} -m comment --comment {name} {match} "
                                    f"-d 127.0.0.0/8 --dport {svc.node_port} "
                                    f"-m nfacct --nfacct-name {LOCALHOST_NPS_COUNTER} -j {ext_chain}")
                nat_rules.write(f"-A {KUBE_NODEPORTS} -m comment --comment {name} {match} "
                                f"--dport {svc.node_port} -j {ext_chain}")
            if not has_external:
                filter_rules.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                                    f"-m addrtype --dst-type LOCAL {match} --dport {svc.node_port} "
                                    f"-j {ext_target}")

        if svc.health_check_node_port:
            filter_rules.append(f'-A {KUBE_NODEPORTS} -m comment --comment "{name} health check node port" '
                                f"-m tcp -p tcp --dport {svc.health_check_node_port} -j ACCEPT")

        # Per-service chains: skipped (only counted) when a partial sync does not need them.
        if changed is not None and spn.service not in changed:
            chains, rules = skipped_chains, skipped_rules
        else:
            chains, rules = nat_chains, nat_rules
            written.add(spn.service)

        if has_internal:
            args = f'-m comment --comment "{name} cluster IP" {match} {cip_dport}'
            if node.masquerade_all:
                rules.write(f"-A {internal_chain} {args} -j {KUBE_MARK_MASQ}")
            elif local_cidr:
                rules.write(f"-A {internal_chain} {args} {if_not_local} -j {KUBE_MARK_MASQ}")

        if uses_ext_chain:
            chains.write(chain_line(ext_chain))
            active.add(ext_chain)
            if not svc.external_policy_local:
                rules.write(f'-A {ext_chain} -m comment --comment "masquerade traffic for {name} '
                            f'external destinations" -j {KUBE_MARK_MASQ}')
            else:
                if local_cidr:
                    rules.write(f'-A {ext_chain} -m comment --comment "pod traffic for {name} '
                                f'external destinations" {if_local} -j {svc_chain}')
                rules.write(f'-A {ext_chain} -m comment --comment "masquerade LOCAL traffic for {name} '
                            f'external destinations" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}')
                rules.write(f'-A {ext_chain} -m comment --comment "route LOCAL traffic for {name} '
                            f'external destinations" -m addrtype --src-type LOCAL -j {svc_chain}')
            if has_external:
                rules.write(f"-A {ext_chain} -j {external_policy_chain}")

        if uses_fw_chain:
            chains.write(chain_line(fw_chain))
            active.add(fw_chain)
            fw_args = f'-A {fw_chain} -m comment --comment "{name} loadbalancer IP"'
            allow_from_node = False
            for cidr in svc.load_balancer_source_ranges:
                rules.write(f"{fw_args} -s {cidr} -j {ext_chain}")
                net = parse_cidr(cidr)
                if node_ip is not None and net is not None and node_ip in net:
                    allow_from_node = True
            if allow_from_node:
                for lb_ip in svc.load_balancer_vips:
                    rules.write(f"{fw_args} -s {lb_ip} -j {ext_chain}")
            rules.write(f'-A {fw_chain} -m comment --comment "other traffic to {name} will be dropped '
                        f'by {KUBE_PROXY_FIREWALL}"')

        if uses_cluster_chain:
            chains.write(chain_line(svc_chain))
            active.add(svc_chain)
            _write_service_to_endpoint_rules(rules, name, proto, svc, svc_chain, cluster_eps, large_cluster)
        if uses_local_chain:
            chains.write(chain_line(svl_chain))
            active.add(svl_chain)
            _write_service_to_endpoint_rules(rules, name, proto, svc, svl_chain, local_eps, large_cluster)

        comment = "" if large_cluster else f" -m comment --comment {name}"
        for ep in reachable:
            ep_chain = endpoint_chain_name(name, proto, ep.endpoint_string)
            chains.write(chain_line(ep_chain))
            active.add(ep_chain)
            rules.write(f"-A {ep_chain}{comment} -s {ep.ip} -j {KUBE_MARK_MASQ}")
            affinity = f" -m recent --name {ep_chain} --set" if svc.session_affinity_client_ip else ""
            rules.write(f"-A {ep_chain}{comment}{affinity} {match} -j DNAT "
                        f"--to-destination {ep.endpoint_string}")

    deleted = 0
    if existing_nat_chains is not None:
        for chain in sorted(set(existing_nat_chains) - active):
            if not is_service_chain_name(chain):
                continue
            nat_chains.write(chain_line(chain))
            nat_rules.write(f"-X {chain}")
            deleted += 1

    tail = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
            'last rule in this chain"')
    if node.nodeports_match_all:
        dest = "-m addrtype --dst-type LOCAL"
        if is_v6:
            dest += " ! -d ::1/128"
        elif not localhost_nodeports:
            dest += " ! -d 127.0.0.0/8"
        nat_rules.write(f"{tail} {dest} -j {KUBE_NODEPORTS}")
    else:
        for ip in node.nodeport_ips():
            addr = parse_ip(ip)
            if addr is not None and addr.is_loopback and (is_v6 or not localhost_nodeports):
                continue
            nat_rules.write(f"{tail} -d {ip} -j {KUBE_NODEPORTS}")

    if not node.conntrack_tcp_liberal:
        nfacct = f" -m nfacct --nfacct-name {CT_INVALID_COUNTER}" if node.nfacct else ""
        filter_rules.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{nfacct} -j DROP")
    filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                        f"-m mark --mark {mark}/{mark} -j ACCEPT")
    filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")

    parts = ["*filter", *filter_chains, *filter_rules, "COMMIT", "*nat", *nat_chains.lines,
             *nat_rules.lines, "COMMIT", ""]
    return RenderResult(
        text="\n".join(parts),
        active_nat_chains=active,
        filter_rules=len(filter_rules),
        nat_rules=nat_rules.count - deleted,
        nat_rules_total=nat_rules.count + skipped_rules.count - deleted,
        deleted_chains=deleted,
        no_local_endpoints_internal=no_local_int,
        no_local_endpoints_external=no_local_ext,
        services_written=written,
    )


def _write_service_to_endpoint_rules(rules: _Sink, name: str, proto: str, svc: ServicePortInfo,
                                     chain: str, endpoints: Sequence[EndpointInfo], large: bool) -> None:
    ep_chains = [endpoint_chain_name(name, proto, ep.endpoint_string) for ep in endpoints]
    if svc.session_affinity_client_ip:
        for ep, ep_chain in zip(endpoints, ep_chains, strict=True):
            comment = "" if large else f' -m comment --comment "{name} -> {ep.endpoint_string}"'
            rules.write(f"-A {chain}{comment} -m recent --name {ep_chain} --rcheck --seconds "
                        f"{svc.sticky_max_age_seconds} --reap -j {ep_chain}")
    n = len(endpoints)
    for i, (ep, ep_chain) in enumerate(zip(endpoints, ep_chains, strict=True)):
        comment = "" if large else f' -m comment --comment "{name} -> {ep.endpoint_string}"'
        stat = f" -m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
        rules.write(f"-A {chain}{comment}{stat} -j {ep_chain}")


# --- upstream's test-side rule sort (sortIPTablesRules), for comparing outputs ---

_SERVICE_NAME_RE = re.compile(r'--comment "?([^" :]*)')


def _service_name_of(rule: str) -> str:
    m = _SERVICE_NAME_RE.search(rule)
    return m.group(1) if m else ""


def _chain_sort_key(chain: str) -> tuple[int, str]:
    if chain == KUBE_NODEPORTS:
        return (0, "")
    if chain == KUBE_SERVICES:
        return (1, "")
    if chain.startswith("KUBE-"):
        return (2, chain)
    return (3, chain)


def sort_restore_text(text: str) -> str:
    """Reorder restore text the way upstream's tests do before comparing (sortIPTablesRules)."""
    tables: dict[str, tuple[list[str], dict[str, list[str]], list[str]]] = {}
    current: tuple[list[str], dict[str, list[str]], list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], ([], {}, []))
        elif current is None:
            raise ValueError(f"rule outside a table: {line!r}")
        elif line.startswith(":"):
            chain = line[1:].split(" ", 1)[0]
            current[0].append(chain)
            current[1].setdefault(chain, [])
        elif line.startswith("-A "):
            chain = line.split(" ", 2)[1]
            current[1].setdefault(chain, []).append(line)
        elif line.startswith("-X "):
            current[2].append(line)
        else:
            raise ValueError(f"unexpected line: {line!r}")
    out: list[str] = []
    for table in sorted(tables):
        decls, rules, deletes = tables[table]
        chains = sorted(dict.fromkeys(decls), key=_chain_sort_key)
        out.append(f"*{table}")
        out += [chain_line(c) for c in chains]
        for chain in chains:
            chain_rules = rules.get(chain, [])
            if chain in (KUBE_NODEPORTS, KUBE_SERVICES):
                last = [r for r in chain_rules if "must be the last rule" in r] if table == "nat" else []
                body = [r for r in chain_rules if r not in last]
                chain_rules = sorted(body, key=_service_name_of) + last
            out += chain_rules
        out += deletes
        out.append("COMMIT")
    return "\n".join(out) + "\n"
