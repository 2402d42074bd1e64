"""Packet-flow cases of upstream kube-proxy's iptables tests, traced through what svcnet's
iptables renderer writes for the same setups.

Conventions as upstream's tests: pods 10.0.0.0/8, ClusterIPs 172.30.0.0/16, this node
192.168.0.2 (also 192.168.1.2), external IPs 192.168.99.0/24, load-balancer IPs 1.2.3.4 and
5.6.7.8, clients outside the cluster 203.0.113.0/24 (LB source range 203.0.113.0/25). An
endpoint with nodeName test-node is local; any other is not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from svcnet.netfilter.api import Node, trace_text
from svcnet.netfilter.trace import Packet
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.objects import load_files
from svcnet.proxy.render import render_full

NODE_IP = "192.168.0.2"
NODE_IP_ALT = "192.168.1.2"
POD = "10.0.0.2"
OUTSIDE = "203.0.113.2"
OUTSIDE_BLOCKED = "203.0.113.130"


def service(name: str, cluster_ip: str, ports: list[dict], **spec: object) -> dict:
    status = spec.pop("status", None)
    obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "ns1", "name": name},
        "spec": {"clusterIP": cluster_ip, "ports": ports, **spec},
    }
    if status:
        obj["status"] = status
    return obj


def endpoints(name: str, eps: list[dict], ports: list[dict]) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"namespace": "ns1", "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": ports,
    }


def ep(ip: str, local: bool = False, **conditions: bool) -> dict:
    out: dict = {"addresses": [ip]}
    if local:
        out["nodeName"] = "test-node"
    if conditions:
        out["conditions"] = conditions
    return out


P80 = [{"name": "p80", "port": 80, "protocol": "TCP"}]
EP80 = [{"name": "p80", "port": 80, "protocol": "TCP"}]


@pytest.fixture
def rules(tmp_path: Path):
    """Render objects with svcnet's iptables renderer, as `svcnet proxy render` does."""

    def make(objs: list[dict], **node: object) -> str:
        path = tmp_path / "objects.yaml"
        path.write_text(yaml.safe_dump_all(objs))
        config = NodeConfig(
            node_name="test-node",
            node_ips=[NODE_IP],
            cluster_cidrs=node.pop("cluster_cidrs", ["10.0.0.0/8"]),  # type: ignore[arg-type]
            **node,  # type: ignore[arg-type]
        )
        return render_full("iptables", load_files([str(path)]), config)

    return make


def trace(text: str, src: str, dst: str, port: int, proto: str = "tcp", from_node: bool = False):
    result = trace_text(
        "iptables", text, Packet(src, dst, port, proto, from_node), Node([NODE_IP, NODE_IP_ALT])
    )
    return result


def answer(text: str, src: str, dst: str, port: int, proto: str = "tcp") -> tuple[str, list[str], bool]:
    r = trace(text, src, dst, port, proto)
    return r.verdict, r.endpoints, r.masquerade


def test_cluster_ip_one_endpoint_hairpin_and_outside(rules):
    text = rules(
        [
            service("svc1", "172.30.0.41", P80),
            endpoints("svc1", [ep("10.180.0.1")], EP80),
        ]
    )
    assert answer(text, POD, "172.30.0.41", 80) == ("DNAT", ["10.180.0.1:80"], False)
    # hairpin: the endpoint reaching its own service lands on itself, masqueraded
    assert answer(text, "10.180.0.1", "172.30.0.41", 80) == ("DNAT", ["10.180.0.1:80"], True)
    # not from a pod (no local-detector match): masqueraded
    assert answer(text, OUTSIDE, "172.30.0.41", 80) == ("DNAT", ["10.180.0.1:80"], True)
    assert answer(text, NODE_IP, "172.30.0.41", 80) == ("DNAT", ["10.180.0.1:80"], True)


def test_cluster_ip_several_endpoints_with_target_port(rules):
    text = rules(
        [
            service(
                "svc1", "172.30.0.41", [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
            ),
            endpoints(
                "svc1",
                [ep("10.180.0.1"), ep("10.180.2.1"), ep("10.180.0.2")],
                [{"name": "http", "port": 8080, "protocol": "TCP"}],
            ),
        ]
    )
    r = trace(text, POD, "172.30.0.41", 80)
    assert r.verdict == "DNAT"
    # upstream orders endpoints by their "ip:port" string
    assert r.endpoints == ["10.180.0.1:8080", "10.180.0.2:8080", "10.180.2.1:8080"]
    assert [round(p, 6) for p in r.probabilities] == [0.333333] * 3
    assert r.masquerade is False
    assert answer(text, POD, "172.30.0.41", 8080) == ("NONE", [], False)


def test_tcp_udp_sctp_on_one_port(rules):
    ports = [
        {"name": "dns-udp", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        {"name": "dns-sctp", "port": 53, "protocol": "SCTP"},
    ]
    text = rules(
        [
            service("dns", "172.30.0.10", ports),
            endpoints(
                "dns",
                [ep("10.180.0.5")],
                [
                    {"name": "dns-udp", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
                    {"name": "dns-sctp", "port": 5454, "protocol": "SCTP"},
                ],
            ),
        ]
    )
    assert answer(text, POD, "172.30.0.10", 53, "udp") == ("DNAT", ["10.180.0.5:53"], False)
    assert answer(text, POD, "172.30.0.10", 53, "tcp") == ("DNAT", ["10.180.0.5:5353"], False)
    assert answer(text, POD, "172.30.0.10", 53, "sctp") == ("DNAT", ["10.180.0.5:5454"], False)


def test_protocol_or_port_the_service_lacks(rules):
    text = rules([service("svc1", "172.30.0.41", P80), endpoints("svc1", [ep("10.180.0.1")], EP80)])
    assert answer(text, POD, "172.30.0.41", 80, "udp") == ("NONE", [], False)
    assert answer(text, POD, "172.30.0.41", 443) == ("NONE", [], False)
    assert answer(text, POD, "172.30.0.99", 80) == ("NONE", [], False)


def test_no_endpoints_rejects_cluster_ip_and_node_port(rules):
    text = rules(
        [
            service("svc1", "172.30.0.41", [{**P80[0], "nodePort": 3001}], type="NodePort"),
        ]
    )
    r = trace(text, POD, "172.30.0.41", 80)
    assert (r.verdict, r.endpoints) == ("REJECT", [])
    assert "has no endpoints" in r.dropped[0][2].rule
    assert answer(text, OUTSIDE, NODE_IP, 3001) == ("REJECT", [], False)


def test_node_port_from_outside_node_and_localhost(rules):
    objs = [
        service("svc1", "172.30.0.41", [{**P80[0], "nodePort": 3001}], type="NodePort"),
        endpoints("svc1", [ep("10.180.0.1", local=True), ep("10.180.2.1")], EP80),
    ]
    text = rules(objs)
    both = ["10.180.0.1:80", "10.180.2.1:80"]
    assert answer(text, OUTSIDE, NODE_IP, 3001) == ("DNAT", both, True)
    assert answer(text, OUTSIDE, NODE_IP_ALT, 3001) == ("DNAT", both, True)
    assert answer(text, POD, NODE_IP, 3001) == ("DNAT", both, True)
    r = trace(text, NODE_IP, NODE_IP, 3001, from_node=True)
    assert (r.verdict, r.endpoints, r.masquerade) == ("DNAT", both, True)
    assert r.path[0].hook == "output" and r.path[0].table == "nat"
    assert answer(text, "127.0.0.1", "127.0.0.1", 3001) == ("DNAT", both, True)
    assert answer(text, OUTSIDE, NODE_IP, 3002) == ("NONE", [], False)
    # without localhost NodePorts, 127.0.0.1:NodePort is left alone
    text = rules(objs, localhost_nodeports=False)
    assert answer(text, "127.0.0.1", "127.0.0.1", 3001) == ("NONE", [], False)
    assert answer(text, OUTSIDE, NODE_IP, 3001) == ("DNAT", both, True)


def test_load_balancer_source_ranges(rules):
    text = rules(
        [
            service(
                "svc1",
                "172.30.0.41",
                [{**P80[0], "nodePort": 3001}],
                type="LoadBalancer",
                loadBalancerSourceRanges=["203.0.113.0/25"],
                status={"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}},
            ),
            endpoints("svc1", [ep("10.180.0.1", local=True)], EP80),
        ]
    )
    assert answer(text, OUTSIDE, "5.6.7.8", 80) == ("DNAT", ["10.180.0.1:80"], True)
    r = trace(text, OUTSIDE_BLOCKED, "5.6.7.8", 80)
    assert r.verdict == "DROP"
    assert r.dropped[0][2].chain == "KUBE-PROXY-FIREWALL"
    # the source ranges guard the LB IP only: the ClusterIP and NodePort stay open
    assert answer(text, OUTSIDE_BLOCKED, NODE_IP, 3001) == ("DNAT", ["10.180.0.1:80"], True)
    assert answer(text, POD, "172.30.0.41", 80) == ("DNAT", ["10.180.0.1:80"], False)


def _local_policy_objs(policy: str, local_endpoint: bool = True) -> list[dict]:
    return [
        service(
            "svc1",
            "172.30.0.41",
            [{**P80[0], "nodePort": 3001}],
            type="LoadBalancer",
            externalIPs=["192.168.99.11"],
            externalTrafficPolicy=policy,
            status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
        ),
        endpoints("svc1", [ep("10.180.0.1", local=local_endpoint), ep("10.180.2.1")], EP80),
    ]


def test_external_traffic_policy_local_vs_cluster(rules):
    both = ["10.180.0.1:80", "10.180.2.1:80"]
    local = ["10.180.0.1:80"]
    text = rules(_local_policy_objs("Local"))
    # from outside: only the local endpoint, client IP kept
    assert answer(text, OUTSIDE, "192.168.99.11", 80) == ("DNAT", local, False)
    assert answer(text, OUTSIDE, "1.2.3.4", 80) == ("DNAT", local, False)
    assert answer(text, OUTSIDE, NODE_IP, 3001) == ("DNAT", local, False)
    # pods and the node are short-circuited to every endpoint; the node's traffic masqueraded
    assert answer(text, POD, "192.168.99.11", 80) == ("DNAT", both, False)
    assert answer(text, POD, "172.30.0.41", 80) == ("DNAT", both, False)
    r = trace(text, NODE_IP, NODE_IP, 3001, from_node=True)
    assert (r.verdict, r.endpoints, r.masquerade) == ("DNAT", both, True)

    text = rules(_local_policy_objs("Cluster"))
    assert answer(text, OUTSIDE, "192.168.99.11", 80) == ("DNAT", both, True)
    assert answer(text, OUTSIDE, NODE_IP, 3001) == ("DNAT", both, True)
    assert answer(text, POD, "192.168.99.11", 80) == ("DNAT", both, True)


def test_external_traffic_policy_local_without_local_endpoints_drops_outside(rules):
    text = rules(_local_policy_objs("Local", local_endpoint=False))
    for dst, port in (("192.168.99.11", 80), ("1.2.3.4", 80), (NODE_IP, 3001)):
        r = trace(text, OUTSIDE, dst, port)
        assert r.verdict == "DROP", dst
        assert "has no local endpoints" in r.dropped[0][2].rule
    both = ["10.180.0.1:80", "10.180.2.1:80"]
    assert answer(text, POD, "192.168.99.11", 80) == ("DNAT", both, False)


def test_internal_traffic_policy_local(rules):
    objs = [
        service("svc1", "172.30.0.41", P80, internalTrafficPolicy="Local"),
        endpoints("svc1", [ep("10.180.0.1", local=True), ep("10.180.2.1")], EP80),
    ]
    assert answer(rules(objs), POD, "172.30.0.41", 80) == ("DNAT", ["10.180.0.1:80"], False)
    objs[1] = endpoints("svc1", [ep("10.180.2.1"), ep("10.180.2.2")], EP80)
    r = trace(rules(objs), POD, "172.30.0.41", 80)
    assert (r.verdict, r.endpoints) == ("DROP", [])
    assert "has no local endpoints" in r.dropped[0][2].rule


def test_terminating_endpoints_fallback(rules):
    terminating = {"ready": False, "serving": True, "terminating": True}
    gone = {"ready": False, "serving": False, "terminating": True}
    objs = [
        service("svc1", "172.30.0.41", P80),
        endpoints(
            "svc1", [ep("10.180.0.1", **terminating), ep("10.180.0.2", **gone), ep("10.180.0.3")], EP80
        ),
    ]
    # a ready endpoint exists: terminating ones get no new connections
    assert answer(rules(objs), POD, "172.30.0.41", 80) == ("DNAT", ["10.180.0.3:80"], False)
    # none ready: serving-but-terminating endpoints are used, non-serving never
    objs[1] = endpoints("svc1", [ep("10.180.0.1", **terminating), ep("10.180.0.2", **gone)], EP80)
    assert answer(rules(objs), POD, "172.30.0.41", 80) == ("DNAT", ["10.180.0.1:80"], False)
    # eTP Local: the local terminating endpoint serves outside clients, remote ready ones do not
    objs = _local_policy_objs("Local")
    objs[1] = endpoints("svc1", [ep("10.180.0.1", local=True, **terminating), ep("10.180.2.1")], EP80)
    assert answer(rules(objs), OUTSIDE, "192.168.99.11", 80) == ("DNAT", ["10.180.0.1:80"], False)


def test_masquerade_all(rules):
    objs = [service("svc1", "172.30.0.41", P80), endpoints("svc1", [ep("10.180.0.1")], EP80)]
    assert answer(rules(objs, masquerade_all=True), POD, "172.30.0.41", 80) == (
        "DNAT",
        ["10.180.0.1:80"],
        True,
    )


def test_no_local_detector(rules):
    objs = [service("svc1", "172.30.0.41", P80), endpoints("svc1", [ep("10.180.0.1")], EP80)]
    text = rules(objs, cluster_cidrs=[])
    # nothing tells pods from outsiders: ClusterIP traffic is not masqueraded at all
    assert answer(text, POD, "172.30.0.41", 80) == ("DNAT", ["10.180.0.1:80"], False)
    assert answer(text, OUTSIDE, "172.30.0.41", 80) == ("DNAT", ["10.180.0.1:80"], False)
    # eTP Local: a pod going to an external IP is treated as an outside client
    text = rules(_local_policy_objs("Local"), cluster_cidrs=[])
    assert answer(text, POD, "192.168.99.11", 80) == ("DNAT", ["10.180.0.1:80"], False)


def test_session_affinity_reaches_every_endpoint_on_a_new_connection(rules):
    text = rules(
        [
            service("svc1", "172.30.0.41", P80, sessionAffinity="ClientIP"),
            endpoints("svc1", [ep("10.180.0.1"), ep("10.180.0.2")], EP80),
        ]
    )
    r = trace(text, POD, "172.30.0.41", 80)
    assert (r.verdict, r.endpoints, r.masquerade) == ("DNAT", ["10.180.0.1:80", "10.180.0.2:80"], False)
    assert [round(p, 6) for p in r.probabilities] == [0.5, 0.5]


def test_health_check_node_port_accepted(rules):
    objs = _local_policy_objs("Local")
    objs[0]["spec"]["healthCheckNodePort"] = 30000
    r = trace(rules(objs), OUTSIDE, NODE_IP, 30000)
    assert (r.verdict, r.endpoints) == ("ACCEPT", [])
    assert r.accepted_by is not None and "health check node port" in r.accepted_by.rule


def test_hairpin_sentence_names_the_masqueraded_branch(rules):
    from svcnet.netfilter.explain import summary

    text = rules(
        [
            service("svc1", "172.30.0.41", P80),
            endpoints("svc1", [ep("10.180.0.1"), ep("10.180.0.2")], EP80),
        ]
    )
    r = trace(text, "10.180.0.2", "172.30.0.41", 80)
    assert r.masqueraded_endpoints == [False, True]
    assert summary(r) == (
        "10.180.0.2 → 172.30.0.41:80/tcp: DNAT to 10.180.0.1:80 or 10.180.0.2:80 (50% each), "
        "masqueraded only when it lands on 10.180.0.2:80"
    )
    assert summary(trace(text, POD, "172.30.0.41", 80)).endswith("(50% each), not masqueraded")
