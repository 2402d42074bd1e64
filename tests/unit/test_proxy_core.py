"""Proxy core: service ports, endpoint merging, CategorizeEndpoints, change tracking, partial syncs."""

from __future__ import annotations

import logging
import re

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.ipnet import parse_cidr, parse_ip
from svcnet.proxy.iptables import compute_probability, render
from svcnet.proxy.model import EndpointInfo, ServicePortName, service_to_port_map
from svcnet.proxy.state import ProxyState
from svcnet.proxy.topology import categorize_endpoints

NODE = "test-node"


def svc(ns: str, name: str, ip: str, port: int = 80, **spec) -> dict:
    ports = spec.pop("ports", [{"name": "p80", "port": port, "protocol": "TCP"}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": ports, **spec}}


def eps(ns: str, svc_name: str, *endpoints: dict, slice_name: str | None = None, port: int = 80,
        family: str = "IPv4") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": slice_name or f"{svc_name}-1",
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "addressType": family, "endpoints": list(endpoints),
            "ports": [{"name": "p80", "port": port, "protocol": "TCP"}]}


def ep(ip: str, **kw) -> dict:
    return {"addresses": [ip], **kw}


def state_of(services, slices, node_name=NODE) -> ProxyState:
    st = ProxyState("IPv4", node_name)
    st.replace_all(services, slices, [])
    st.take_changes()
    return st


def node_cfg(**kw) -> NodeConfig:
    return NodeConfig(node_name=NODE, node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"],
                      short_masquerade_mark=True, random_fully=False, **kw)


# --- addresses ---

def test_leading_zeros_are_decimal_as_upstream_reads_them() -> None:
    assert str(parse_ip("010.000.000.001")) == "10.0.0.1"
    assert str(parse_cidr("010.0.0.0/8")) == "10.0.0.0/8"
    assert parse_ip("256.1.1.1") is None
    assert parse_ip("10.0.0") is None
    st = state_of([svc("ns", "a", "172.030.0.010")], [eps("ns", "a", ep("010.180.0.001"))])
    text = render(st.svc_port_map, st.endpoints_map, node_cfg()).text
    assert "-d 172.30.0.10 --dport 80" in text
    assert "--to-destination 10.180.0.1:80" in text


def test_unusable_objects_are_skipped_with_a_reason_and_others_render(caplog) -> None:
    caplog.set_level(logging.WARNING, "svcnet.proxy")
    services = [
        svc("ns", "badip", "not-an-ip"),
        svc("ns", "badproto", "172.30.0.2", ports=[{"name": "x", "port": 80, "protocol": "ICMP"},
                                                   {"name": "p80", "port": 80, "protocol": "TCP"}]),
        svc("ns", "good", "172.30.0.3"),
    ]
    slices = [eps("ns", "good", ep("10.0.0.1"), ep("bogus")), eps("ns", "badproto", ep("10.0.0.2"))]
    st = state_of(services, slices)
    names = {str(s) for s in st.svc_port_map}
    assert names == {"ns/badproto:p80", "ns/good:p80"}
    assert [e.ip for e in st.endpoints_map[ServicePortName("ns", "good", "p80", "TCP")]] == ["10.0.0.1"]
    log = caplog.text
    assert "unparsable cluster IP 'not-an-ip'" in log
    assert "unknown protocol 'ICMP'" in log
    assert "'bogus'" in log
    text = render(st.svc_port_map, st.endpoints_map, node_cfg()).text
    assert '"ns/good:p80 cluster IP"' in text and '"ns/badproto:p80 cluster IP"' in text


def test_headless_externalname_and_other_family_services_are_ignored() -> None:
    assert service_to_port_map(svc("ns", "h", "None"), "IPv4") == {}
    assert service_to_port_map(svc("ns", "e", "172.30.0.1", type="ExternalName"), "IPv4") == {}
    assert service_to_port_map(svc("ns", "v6", "fd00::1"), "IPv4") == {}
    dual = svc("ns", "d", "172.30.0.1", clusterIPs=["172.30.0.1", "fd00::1"], ipFamilies=["IPv4", "IPv6"])
    (info,) = service_to_port_map(dual, "IPv6").values()
    assert info.cluster_ip == "fd00::1"


def test_lb_ingress_with_ipmode_proxy_is_not_a_vip() -> None:
    s = svc("ns", "lb", "172.30.0.1", type="LoadBalancer")
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ipMode": "Proxy"}, {"ip": "5.6.7.8"}]}}
    (info,) = service_to_port_map(s, "IPv4").values()
    assert info.load_balancer_vips == ("5.6.7.8",)


# --- endpoints ---

def test_endpoints_sorted_by_string_and_deduplicated_across_slices() -> None:
    terminating = ep("10.1.1.11", conditions={"terminating": True})
    slices = [eps("ns", "a", ep("10.1.1.1"), terminating, slice_name="a-1"),
              eps("ns", "a", ep("10.1.1.11"), slice_name="a-2")]
    st = state_of([svc("ns", "a", "172.30.0.1")], slices)
    got = st.endpoints_map[ServicePortName("ns", "a", "p80", "TCP")]
    # plain string order: "10.1.1.11:80" < "10.1.1.1:80"
    assert [str(e) for e in got] == ["10.1.1.11:80", "10.1.1.1:80"]
    assert not got[0].terminating


def _info(**spec):
    (info,) = service_to_port_map(svc("ns", "s", "172.30.0.1", **spec), "IPv4").values()
    return info


def _ep(ip, local=False, ready=True, serving=True, terminating=False, zones=(), nodes=()):
    return EndpointInfo(ip=ip, port=80, is_local=local, ready=ready, serving=serving, terminating=terminating,
                        zone_hints=frozenset(zones), node_hints=frozenset(nodes))


def test_categorize_ready_first_then_serving_terminating() -> None:
    info = _info()
    a = _ep("10.0.0.1", ready=False, serving=True, terminating=True)
    b = _ep("10.0.0.2", ready=False, serving=False, terminating=True)
    c = _ep("10.0.0.3")
    cluster, local, reachable, has_any = categorize_endpoints([a, b, c], info, NODE, {})
    assert cluster == [c] and reachable == [c] and local == [] and has_any
    cluster, _, _, has_any = categorize_endpoints([a, b], info, NODE, {})
    assert cluster == [a] and has_any
    assert categorize_endpoints([b], info, NODE, {})[3] is False


def test_categorize_external_policy_local() -> None:
    info = _info(type="NodePort", externalTrafficPolicy="Local",
                 ports=[{"name": "p80", "port": 80, "nodePort": 30001, "protocol": "TCP"}])
    loc = _ep("10.0.0.1", local=True)
    rem = _ep("10.0.0.2")
    cluster, local, reachable, has_any = categorize_endpoints([loc, rem], info, NODE, {})
    assert cluster == [loc, rem] and local == [loc] and reachable == [loc, rem] and has_any
    # only a terminating local endpoint: it is used for Local, and reachable is the union
    term = _ep("10.0.0.3", local=True, ready=False, terminating=True)
    cluster, local, reachable, _ = categorize_endpoints([rem, term], info, NODE, {})
    assert cluster == [rem] and local == [term] and {str(e) for e in reachable} == {str(rem), str(term)}


def test_categorize_internal_policy_local_uses_only_local() -> None:
    info = _info(internalTrafficPolicy="Local")
    loc = _ep("10.0.0.1", local=True)
    rem = _ep("10.0.0.2")
    cluster, local, reachable, has_any = categorize_endpoints([loc, rem], info, NODE, {})
    assert cluster == [] and local == [loc] and reachable == [loc] and has_any
    cluster, local, reachable, has_any = categorize_endpoints([rem], info, NODE, {})
    assert local == [] and reachable == [] and has_any  # => DROP "has no local endpoints"


def test_topology_hints_need_every_ready_endpoint_hinted_and_one_for_the_zone() -> None:
    info = _info()
    a = _ep("10.0.0.1", zones={"zone-a"})
    b = _ep("10.0.0.2", zones={"zone-b"})
    labels = {"topology.kubernetes.io/zone": "zone-a"}
    assert categorize_endpoints([a, b], info, NODE, labels)[0] == [a]
    # a node without a zone label ignores hints
    assert categorize_endpoints([a, b], info, NODE, {})[0] == [a, b]
    # one unhinted endpoint disables topology
    c = _ep("10.0.0.3")
    assert categorize_endpoints([a, b, c], info, NODE, labels)[0] == [a, b, c]
    # no hint for our zone: all endpoints
    assert categorize_endpoints([b], info, NODE, labels)[0] == [b]


def test_prefer_same_node_hints() -> None:
    info = _info()
    a = _ep("10.0.0.1", zones={"z"}, nodes={NODE})
    b = _ep("10.0.0.2", zones={"z"}, nodes={"other"})
    assert categorize_endpoints([a, b], info, NODE, {"topology.kubernetes.io/zone": "z"})[0] == [a]


def test_hints_come_from_endpoint_slices_and_node_labels() -> None:
    slices = [eps("ns", "a", ep("10.0.0.1", hints={"forZones": [{"name": "za"}]}),
                  ep("10.0.0.2", hints={"forZones": [{"name": "zb"}]}))]
    st = ProxyState("IPv4", NODE)
    node = {"kind": "Node", "metadata": {"name": NODE, "labels": {"topology.kubernetes.io/zone": "zb"}}}
    st.replace_all([svc("ns", "a", "172.30.0.1")], slices, [node])
    st.take_changes()
    text = render(st.svc_port_map, st.endpoints_map, node_cfg(node_labels=st.node_labels)).text
    assert "10.0.0.2:80" in text and "10.0.0.1:80" not in text


# --- probabilities and rule text details ---

def test_probabilities_have_ten_decimals() -> None:
    assert compute_probability(1) == "1.0000000000"
    assert compute_probability(3) == "0.3333333333"
    assert compute_probability(1000) == "0.0010000000"
    assert compute_probability(100001) == "0.0000099999"


def test_large_clusters_drop_per_endpoint_comments() -> None:
    services = [svc("ns", f"s{i}", f"172.30.{i // 250}.{i % 250 + 1}") for i in range(201)]
    slices = [eps("ns", f"s{i}", *[ep(f"10.{i // 250}.{i % 250}.{j}") for j in range(1, 6)])
              for i in range(201)]
    st = state_of(services, slices)
    text = render(st.svc_port_map, st.endpoints_map, node_cfg()).text
    assert re.search(r"^-A KUBE-SEP-\w+ -m tcp -p tcp -j DNAT --to-destination 10\.0\.0\.1:80$", text, re.M)
    assert " -> " not in text
    assert '"ns/s0:p80 cluster IP"' in text  # KUBE-SERVICES rules keep their comments


# --- change tracking and partial syncs (KEP-3453) ---

def _chains(text: str) -> set[str]:
    return set(re.findall(r"^:(\S+)", text, re.M))


def test_partial_sync_of_1000_services_holds_only_the_changed_service() -> None:
    services = [svc("ns", f"s{i}", f"172.30.{i // 250}.{i % 250 + 1}") for i in range(1000)]
    slices = [eps("ns", f"s{i}", ep(f"10.{i // 250}.{i % 250}.1"), ep(f"10.{i // 250}.{i % 250}.2"))
              for i in range(1000)]
    st = state_of(services, slices)
    node = node_cfg()
    full = render(st.svc_port_map, st.endpoints_map, node)
    assert len([c for c in _chains(full.text) if c.startswith("KUBE-SVC-")]) == 1000

    st.on_endpoint_slice(eps("ns", "s7", ep("10.0.7.1"), ep("10.0.7.3")))
    changes = st.take_changes()
    assert changes.updated_services == {("ns", "s7")}
    partial = render(st.svc_port_map, st.endpoints_map, node, changed=changes.updated_services,
                     existing_nat_chains=full.active_nat_chains)
    top = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
           "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL"}
    svc_chains = {c for c in _chains(partial.text) if c not in top}
    s7 = ServicePortName("ns", "s7", "p80", "TCP")
    from svcnet.proxy.iptables import endpoint_chain_name, service_port_chain_names
    svc_chain = service_port_chain_names(s7)[0]
    new_sep = endpoint_chain_name("ns/s7:p80", "tcp", "10.0.7.3:80")
    old_sep = endpoint_chain_name("ns/s7:p80", "tcp", "10.0.7.2:80")
    kept_sep = endpoint_chain_name("ns/s7:p80", "tcp", "10.0.7.1:80")
    assert svc_chains == {svc_chain, new_sep, old_sep, kept_sep}
    assert f"-X {old_sep}" in partial.text.splitlines()
    # every rule outside the top-level chains belongs to s7
    for line in partial.text.splitlines():
        if line.startswith("-A ") and line.split()[1] not in top:
            assert line.split()[1] in svc_chains
    # KUBE-SERVICES is still written in full
    assert partial.text.count("cluster IP\" -m tcp") == 1000 + 1  # + the SVC masquerade rule of s7
    assert partial.nat_rules_total == full.nat_rules_total  # one endpoint replaced by another


def test_no_change_sync_writes_only_top_level_chains() -> None:
    st = state_of([svc("ns", "a", "172.30.0.1")], [eps("ns", "a", ep("10.0.0.1"))])
    full = render(st.svc_port_map, st.endpoints_map, node_cfg())
    st.on_service(svc("ns", "a", "172.30.0.1"))  # an update that changes nothing
    changes = st.take_changes()
    assert changes.updated_services == set()
    partial = render(st.svc_port_map, st.endpoints_map, node_cfg(), changed=set(),
                     existing_nat_chains=full.active_nat_chains)
    assert not any(c.startswith(("KUBE-SVC-", "KUBE-SEP-")) for c in _chains(partial.text))


def test_deleted_service_chains_are_flushed_and_deleted() -> None:
    st = state_of([svc("ns", "a", "172.30.0.1"), svc("ns", "b", "172.30.0.2")],
                  [eps("ns", "a", ep("10.0.0.1")), eps("ns", "b", ep("10.0.0.2"))])
    full = render(st.svc_port_map, st.endpoints_map, node_cfg())
    st.on_service(svc("ns", "b", "172.30.0.2"), deleted=True)
    changes = st.take_changes()
    assert changes.updated_services == {("ns", "b")}
    partial = render(st.svc_port_map, st.endpoints_map, node_cfg(), changed=changes.updated_services,
                     existing_nat_chains=full.active_nat_chains)
    deleted = [line.split()[1] for line in partial.text.splitlines() if line.startswith("-X ")]
    from svcnet.proxy.iptables import endpoint_chain_name, service_port_chain_names
    b = ServicePortName("ns", "b", "p80", "TCP")
    expected = {service_port_chain_names(b)[0], endpoint_chain_name("ns/b:p80", "tcp", "10.0.0.2:80")}
    assert set(deleted) == expected
    assert "ns/b:p80" not in partial.text


def test_udp_conntrack_inputs() -> None:
    udp = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    s = svc("ns", "dns", "172.30.0.10", ports=udp)
    sl = eps("ns", "dns", ep("10.0.0.1"))
    sl["ports"] = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    st = ProxyState("IPv4", NODE)
    st.on_service(s)
    first = st.take_changes()
    assert first.newly_active_udp == []
    st.on_endpoint_slice(sl)
    ch = st.take_changes()
    assert [i.cluster_ip for i in ch.newly_active_udp] == ["172.30.0.10"]
    sl2 = eps("ns", "dns", ep("10.0.0.2"))
    sl2["ports"] = sl["ports"]
    st.on_endpoint_slice(sl2)
    ch = st.take_changes()
    assert [(i.cluster_ip, ip) for i, ip in ch.deleted_udp_endpoints] == [("172.30.0.10", "10.0.0.1")]
    st.on_service(s, deleted=True)
    assert st.take_changes().deleted_udp_cluster_ips == {"172.30.0.10"}


def test_nodeport_addresses_select_node_ips_and_zero_cidr_matches_all() -> None:
    st = state_of([svc("ns", "np", "172.30.0.9", type="NodePort",
                       ports=[{"name": "p80", "port": 80, "nodePort": 30009, "protocol": "TCP"}])],
                  [eps("ns", "np", ep("10.0.0.9"))])
    tail = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'

    def tails(**kw) -> list[str]:
        text = render(st.svc_port_map, st.endpoints_map, node_cfg(**kw)).text
        return [line.split(tail, 1)[1].strip() for line in text.splitlines() if tail in line]

    assert tails() == ["-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"]
    assert tails(nodeport_addresses=["0.0.0.0/0"]) == ["-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"]
    assert tails(nodeport_addresses=["192.168.0.0/16", "fd00::/8"]) == ["-d 192.168.0.2 -j KUBE-NODEPORTS"]
    # loopback in the CIDRs keeps localhost NodePorts (and its per-IP rule) on IPv4
    assert tails(nodeport_addresses=["127.0.0.0/8", "192.168.0.0/16"]) == [
        "-d 192.168.0.2 -j KUBE-NODEPORTS", "-d 127.0.0.1 -j KUBE-NODEPORTS"]
    assert tails(localhost_nodeports=False) == [
        "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS"]
