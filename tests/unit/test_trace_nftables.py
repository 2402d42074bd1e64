# ruff: noqa: E501  (rules are kept whole, one per line, as kube-proxy writes them)
"""Packet flows through kube-proxy's nftables table, hand-written in upstream's format (the
nftables renderer, issue #7, does not exist yet). Same conventions as the iptables cases; the
answers are upstream's nftables ones: a wrong port or protocol of a ClusterIP is rejected, an
unallocated ClusterIP dropped, NodePorts only on the nodeport-ips set."""

from __future__ import annotations

from svcnet.netfilter.api import Node, trace_text
from svcnet.netfilter.trace import Packet

NODE = Node(["192.168.0.2", "192.168.1.2"])

BASE = """add table ip kube-proxy { comment "rules for kube-proxy" ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }
add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }
add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
add chain ip kube-proxy cluster-ips-check
add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }
add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }
add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }
add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }
add chain ip kube-proxy firewall-check
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy nodeport-endpoints-check
add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
add chain ip kube-proxy services
add chain ip kube-proxy service-endpoints-check
add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"
add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check
add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip kube-proxy filter-input ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-output ct state new jump cluster-ips-check
add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
add rule ip kube-proxy reject-chain reject
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
"""


def endpoint(svc: str, ip: str, port: int = 80) -> str:
    chain = f"endpoint-XXXXXXXX-{svc}__{ip}/{port}"
    return (
        f"add chain ip kube-proxy {chain}\n"
        f"add rule ip kube-proxy {chain} ip saddr {ip} jump mark-for-masquerade\n"
        f"add rule ip kube-proxy {chain} meta l4proto tcp dnat to {ip}:{port}\n"
    ), chain


def dispatch(chain: str, eps: list[str]) -> str:
    entries = " , ".join(f"{i} : goto {c}" for i, c in enumerate(eps))
    return f"add rule ip kube-proxy {chain} numgen random mod {len(eps)} vmap {{ {entries} }}\n"


def build() -> str:
    out = [BASE]
    # ns1/svc1: ClusterIP 172.30.0.41:80, three endpoints, session affinity set (dynamic)
    svc = "service-ULMVA6XW-ns1/svc1/tcp/p80"
    eps = [endpoint("ns1/svc1/tcp/p80", ip) for ip in ("10.180.0.1", "10.180.0.2", "10.180.0.3")]
    out += [e for e, _ in eps]
    out.append(
        "add set ip kube-proxy affinity-AAAAAAAA-ns1/svc1/tcp/p80__10.180.0.1/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n"
    )
    out.append(f"add chain ip kube-proxy {svc}\n")
    out.append(
        f"add rule ip kube-proxy {svc} ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade\n"
    )
    out.append(
        f"add rule ip kube-proxy {svc} ip saddr @affinity-AAAAAAAA-ns1/svc1/tcp/p80__10.180.0.1/80 goto {eps[0][1]}\n"
    )
    out.append(dispatch(svc, [c for _, c in eps]))
    out.append(
        "add element ip kube-proxy affinity-AAAAAAAA-ns1/svc1/tcp/p80__10.180.0.1/80 { 10.0.0.2 timeout 10800s }\n"
    )
    out.append(
        f"add element ip kube-proxy cluster-ips {{ 172.30.0.41 }}\nadd element ip kube-proxy service-ips {{ 172.30.0.41 . tcp . 80 : goto {svc} }}\n"
    )
    # ns2/svc2: LoadBalancer, eTP Local, one local endpoint (10.180.0.4) and one remote (10.180.2.4)
    svc, ext, loc = (
        "service-BBBBBBBB-ns2/svc2/tcp/p80",
        "external-BBBBBBBB-ns2/svc2/tcp/p80",
        "local-BBBBBBBB-ns2/svc2/tcp/p80",
    )
    eps = [endpoint("ns2/svc2/tcp/p80", ip) for ip in ("10.180.0.4", "10.180.2.4")]
    out += [e for e, _ in eps]
    out.append(
        f"add chain ip kube-proxy {svc}\nadd chain ip kube-proxy {ext}\nadd chain ip kube-proxy {loc}\n"
    )
    out.append(
        f"add rule ip kube-proxy {svc} ip daddr 172.30.0.42 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade\n"
    )
    out.append(dispatch(svc, [c for _, c in eps]))
    out.append(dispatch(loc, [eps[0][1]]))
    out.append(
        f'add rule ip kube-proxy {ext} ip saddr 10.0.0.0/8 goto {svc} comment "short-circuit pod traffic"\n'
    )
    out.append(
        f'add rule ip kube-proxy {ext} fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"\n'
    )
    out.append(
        f'add rule ip kube-proxy {ext} fib saddr type local goto {svc} comment "short-circuit local traffic"\n'
    )
    out.append(f"add rule ip kube-proxy {ext} goto {loc}\n")
    out.append(
        f"add element ip kube-proxy cluster-ips {{ 172.30.0.42 }}\n"
        f"add element ip kube-proxy service-ips {{ 172.30.0.42 . tcp . 80 : goto {svc} }}\n"
        f"add element ip kube-proxy service-ips {{ 192.168.99.22 . tcp . 80 : goto {ext} }}\n"
        f"add element ip kube-proxy service-ips {{ 1.2.3.4 . tcp . 80 : goto {ext} }}\n"
        f"add element ip kube-proxy service-nodeports {{ tcp . 3001 : goto {ext} }}\n"
    )
    # ns3/svc3: NodePort 3003, no endpoints
    out.append(
        "add element ip kube-proxy cluster-ips { 172.30.0.43 }\n"
        'add element ip kube-proxy no-endpoint-services { 172.30.0.43 . tcp . 80 comment "ns3/svc3:p80" : goto reject-chain }\n'
        'add element ip kube-proxy no-endpoint-nodeports { tcp . 3003 comment "ns3/svc3:p80" : goto reject-chain }\n'
    )
    # ns4/svc4: LoadBalancer 5.6.7.8 with source range 203.0.113.0/25, eTP Cluster
    svc, ext, fw = (
        "service-DDDDDDDD-ns4/svc4/tcp/p80",
        "external-DDDDDDDD-ns4/svc4/tcp/p80",
        "firewall-DDDDDDDD-ns4/svc4/tcp/p80",
    )
    e, c = endpoint("ns4/svc4/tcp/p80", "10.180.0.6")
    out.append(e)
    out.append(
        f"add chain ip kube-proxy {svc}\nadd chain ip kube-proxy {ext}\nadd chain ip kube-proxy {fw}\n"
    )
    out.append(
        f"add rule ip kube-proxy {svc} ip daddr 172.30.0.44 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade\n"
    )
    out.append(dispatch(svc, [c]))
    out.append(
        f'add rule ip kube-proxy {ext} jump mark-for-masquerade comment "masquerade traffic from external sources"\n'
    )
    out.append(f"add rule ip kube-proxy {ext} goto {svc}\n")
    out.append(
        f'add rule ip kube-proxy {fw} ip saddr != {{ 203.0.113.0/25 }} drop comment "ns4/svc4:p80 firewall"\n'
    )
    out.append(
        "add element ip kube-proxy cluster-ips { 172.30.0.44 }\n"
        f"add element ip kube-proxy service-ips {{ 172.30.0.44 . tcp . 80 : goto {svc} }}\n"
        f"add element ip kube-proxy service-ips {{ 5.6.7.8 . tcp . 80 : goto {ext} }}\n"
        f"add element ip kube-proxy firewall-ips {{ 5.6.7.8 . tcp . 80 : goto {fw} }}\n"
    )
    # ns5/svc5: internalTrafficPolicy Local without local endpoints
    out.append(
        "add element ip kube-proxy cluster-ips { 172.30.0.45 }\n"
        'add element ip kube-proxy no-endpoint-services { 172.30.0.45 . tcp . 80 comment "ns5/svc5:p80" : drop }\n'
    )
    return "".join(out)


RULES = build()


def answer(src: str, dst: str, port: int, proto: str = "tcp", from_node: bool = False):
    r = trace_text("nftables", RULES, Packet(src, dst, port, proto, from_node), NODE)
    return r.verdict, r.endpoints, r.masquerade


THREE = ["10.180.0.1:80", "10.180.0.2:80", "10.180.0.3:80"]


def test_cluster_ip_spread_with_numgen_and_no_affinity_history():
    r = trace_text("nftables", RULES, Packet("10.0.0.2", "172.30.0.41", 80), NODE)
    assert (r.verdict, r.endpoints, r.masquerade) == ("DNAT", THREE, False)
    assert [round(p, 6) for p in r.probabilities] == [0.333333] * 3
    # hairpin and outside clients are masqueraded
    assert answer("10.180.0.2", "172.30.0.41", 80) == ("DNAT", THREE, True)
    assert answer("203.0.113.2", "172.30.0.41", 80) == ("DNAT", THREE, True)


def test_cluster_ip_wrong_port_protocol_and_unallocated():
    assert answer("10.0.0.2", "172.30.0.41", 81)[0] == "REJECT"
    assert answer("10.0.0.2", "172.30.0.41", 80, "udp")[0] == "REJECT"
    assert answer("10.0.0.2", "172.30.0.99", 80)[0] == "DROP"
    assert answer("10.0.0.2", "10.1.2.3", 80) == ("NONE", [], False)


def test_no_endpoints_rejects_cluster_ip_and_node_port():
    assert answer("10.0.0.2", "172.30.0.43", 80) == ("REJECT", [], False)
    assert answer("203.0.113.2", "192.168.0.2", 3003) == ("REJECT", [], False)


def test_external_traffic_policy_local():
    both = ["10.180.0.4:80", "10.180.2.4:80"]
    assert answer("203.0.113.2", "192.168.99.22", 80) == ("DNAT", ["10.180.0.4:80"], False)
    assert answer("203.0.113.2", "1.2.3.4", 80) == ("DNAT", ["10.180.0.4:80"], False)
    assert answer("203.0.113.2", "192.168.0.2", 3001) == ("DNAT", ["10.180.0.4:80"], False)
    assert answer("10.0.0.2", "192.168.99.22", 80) == ("DNAT", both, False)
    assert answer("192.168.0.2", "192.168.0.2", 3001, from_node=True) == ("DNAT", both, True)
    # NodePorts answer on the nodeport-ips only, not on every local address
    assert answer("203.0.113.2", "192.168.1.2", 3001) == ("NONE", [], False)


def test_load_balancer_source_ranges():
    assert answer("203.0.113.2", "5.6.7.8", 80) == ("DNAT", ["10.180.0.6:80"], True)
    r = trace_text("nftables", RULES, Packet("203.0.113.130", "5.6.7.8", 80), NODE)
    assert r.verdict == "DROP"
    assert r.dropped[0][2].chain.startswith("firewall-") and r.dropped[0][2].hook == "prerouting"


def test_internal_traffic_policy_local_without_local_endpoints_drops():
    assert answer("10.0.0.2", "172.30.0.45", 80) == ("DROP", [], False)


def test_path_names_tables_chains_and_rules():
    r = trace_text("nftables", RULES, Packet("10.0.0.2", "172.30.0.41", 80), NODE)
    vmap = next(s for s in r.path if s.chain == "services")
    assert vmap.table == "ip kube-proxy" and "@service-ips" in vmap.matched
    assert vmap.action == "goto service-ULMVA6XW-ns1/svc1/tcp/p80"
    dnat = [s for s in r.path if s.action.startswith("DNAT")]
    assert [s.action for s in dnat] == [f"DNAT to {e}" for e in THREE]
    assert all(s.line_no > 0 and s.rule.startswith("add rule ip kube-proxy endpoint-") for s in dnat)
