"""Tracing what the nftables renderer writes (`svcnet trace --mode nftables -f`): the packet
flows of upstream's nftables tests (TestOverallNFTablesRules' services, TestNoEndpointsReject,
TestClusterIPGeneral's wrong-port and unallocated cases) give upstream's answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcnet.cli.main import build
from svcnet.netfilter.api import Node, trace_text
from svcnet.netfilter.trace import Packet
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.objects import Snapshot, load_files
from svcnet.proxy.render import render_full

FIXTURES = Path(__file__).parent / "golden" / "iptables"
NODE_IPS = ["192.168.0.2", "192.168.1.2"]


def rendered(fixture: str) -> str:
    node = NodeConfig(node_name="test-node", node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"],
                      service_cidrs=["172.30.0.0/16"])
    return render_full("nftables", load_files([str(FIXTURES / fixture)]), node)


OVERALL = rendered("overall.yaml")
REJECT = rendered("reject.yaml")


def flow(text: str, src: str, dst: str, port: int, proto: str = "tcp") -> tuple[str, str, bool]:
    r = trace_text("nftables", text, Packet(src, dst, port, proto), Node(NODE_IPS))
    out = ", ".join(r.endpoints) if r.verdict == "DNAT" else r.verdict
    return out, r.verdict, r.masquerade


@pytest.mark.parametrize(("src", "dst", "port", "output", "masq"), [
    ("10.0.0.2", "172.30.0.41", 80, "10.180.0.1:80", False),  # pod to ClusterIP
    ("10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", True),  # hairpin
    ("203.0.113.2", "172.30.0.41", 80, "10.180.0.1:80", True),  # outside client to ClusterIP
    ("10.0.0.2", "172.30.0.44", 80, "10.180.0.4:80, 10.180.0.5:80", False),  # spread over two
    ("203.0.113.2", "192.168.0.2", 3003, "10.180.0.3:80", True),  # NodePort from outside
    ("203.0.113.2", "192.168.99.33", 80, "10.180.0.4:80, 10.180.0.5:80", True),  # external IP
    ("10.0.0.2", "192.168.99.22", 80, "10.180.0.2:80", False),  # eTP=Local: pods short-circuit
    ("203.0.113.2", "1.2.3.4", 80, "DROP", False),  # eTP=Local, no local endpoint: outside dropped
    ("203.0.113.2", "192.168.0.2", 3001, "DROP", False),
    ("203.0.113.2", "5.6.7.8", 80, "10.180.0.3:80", True),  # LB within the source ranges
    ("203.0.113.130", "5.6.7.8", 80, "DROP", False),  # LB outside the source ranges
    ("10.0.0.2", "172.30.0.46", 80, "REJECT", False),  # no endpoints
    ("10.0.0.2", "172.30.0.41", 443, "REJECT", False),  # a port the ClusterIP does not have
    ("10.0.0.2", "172.30.0.50", 80, "DROP", False),  # an unallocated ClusterIP
])
def test_overall_packet_flows(src: str, dst: str, port: int, output: str, masq: bool) -> None:
    got, _verdict, got_masq = flow(OVERALL, src, dst, port)
    assert got == output
    if got not in ("DROP", "REJECT"):
        assert got_masq == masq


def test_wrong_protocol_of_cluster_ip_is_rejected() -> None:
    assert flow(OVERALL, "10.0.0.2", "172.30.0.41", 80, "udp")[0] == "REJECT"


@pytest.mark.parametrize(("src", "dst", "port"), [
    ("10.0.0.2", "172.30.0.41", 80), ("203.0.113.2", "192.168.99.11", 80),
    ("10.0.0.2", "192.168.0.2", 3001), ("203.0.113.2", "192.168.0.2", 3001),
    ("10.0.0.2", "1.2.3.4", 80), ("203.0.113.2", "1.2.3.4", 80),
])
def test_no_endpoints_reject_every_destination(src: str, dst: str, port: int) -> None:
    assert flow(REJECT, src, dst, port)[0] == "REJECT"


def test_nodeports_only_on_the_nodeport_ips() -> None:
    # upstream TestNodePorts: the secondary node IP does not accept NodePorts in nftables mode
    assert flow(OVERALL, "203.0.113.2", "192.168.0.2", 3003)[0] == "10.180.0.3:80"
    assert flow(OVERALL, "203.0.113.2", "192.168.1.2", 3003)[1] not in ("DNAT", "REJECT", "DROP")


def test_trace_cli_renders_nftables() -> None:
    res = CliRunner().invoke(build(), [
        "trace", "--mode", "nftables", "-f", str(FIXTURES / "three.yaml"), "--node-name", "test-node",
        "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8", "--service-cidr", "172.30.0.0/16",
        "--src", "10.0.0.2", "--dst", "172.30.0.41:80", "--output", "json"])
    assert res.exit_code == 0, res.output
    assert '"verdict": "DNAT"' in res.output
    assert "10.180.0.1:80" in res.output and "10.180.0.3:80" in res.output


def test_a_large_rendered_transaction_is_traced() -> None:
    # The renderer flushes every chain it writes (each flush once rescanned every rule read so
    # far: quadratic). How long this takes is bench/trace.py's business, not a unit test's;
    # here: the answer through 2,000 services' worth of flushed and refilled chains is right.
    services, slices = [], []
    for i in range(2000):
        ip = f"172.30.{i // 250}.{i % 250 + 1}"
        services.append({"kind": "Service", "metadata": {"namespace": "ns", "name": f"s{i}"},
                         "spec": {"clusterIP": ip, "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}})
        slices.append({"kind": "EndpointSlice", "addressType": "IPv4",
                       "metadata": {"namespace": "ns", "name": f"s{i}-1",
                                    "labels": {"kubernetes.io/service-name": f"s{i}"}},
                       "endpoints": [{"addresses": [f"10.{k}.{i // 250}.{i % 250}"]} for k in range(1, 6)],
                       "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}]})
    node = NodeConfig(node_name="test-node", node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"])
    text = render_full("nftables", Snapshot(services, slices, []), node)
    r = trace_text("nftables", text, Packet("10.0.0.2", "172.30.7.250", 80), Node(NODE_IPS))
    assert r.endpoints == [f"10.{k}.7.249:8080" for k in range(1, 6)]
