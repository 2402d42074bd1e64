"""kube-proxy iptables mode in a real kernel, inside throwaway network namespaces.

One lab per module (tests/e2e/conftest.py): a node namespace with a pod bridge, endpoint pods
running small servers, a pod client and an external client. `svcnet proxy --mode iptables -f`
runs inside the node namespace and re-reads its objects file when a test changes it.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from svcnet.proxy.iptables import endpoint_chain_name

if TYPE_CHECKING:
    from conftest import NetnsLab

pytestmark = pytest.mark.root

NODE_NAME = "node1"
SVC = {  # name -> cluster IP
    "spread": "10.96.0.10", "hairpin": "10.96.0.11", "noeps": "10.96.0.12", "np-cluster": "10.96.0.13",
    "np-local": "10.96.0.14", "extip": "10.96.0.15", "affinity": "10.96.0.16", "removal": "10.96.0.17",
    "udp": "10.96.0.18", "lb-allow": "10.96.0.19", "lb-deny": "10.96.0.20",
    "dual": "10.96.0.21",
}
LB_ALLOW, LB_DENY = "192.168.70.10", "192.168.70.11"
DUAL_V6 = "fd00:96::21"
EXTERNAL_IP = "192.168.60.10"


def service(name: str, port: int = 80, protocol: str = "TCP", lb_ip: str | None = None, **spec) -> dict:
    port_spec = {"name": "p", "port": port, "protocol": protocol}
    if "nodePort" in spec:
        port_spec["nodePort"] = spec.pop("nodePort")
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": name},
           "spec": {"clusterIP": SVC[name], "ports": [port_spec], **spec}}
    if lb_ip:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}
    return obj


def slice_(name: str, ips: list[str], port: int = 8080, protocol: str = "TCP", family: str = "IPv4") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "default", "name": f"{name}-{family.lower()}",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": family,
            "endpoints": [{"addresses": [ip], "nodeName": NODE_NAME, "conditions": {"ready": True}}
                          for ip in ips],
            "ports": [{"name": "p", "port": port, "protocol": protocol}]}


class Cluster:
    def __init__(self, lab: NetnsLab, objects_path: Path) -> None:
        self.lab = lab
        self.path = objects_path
        self.services: dict[str, dict] = {}
        self.slices: dict[str, dict] = {}

    def write(self) -> None:
        docs = list(self.services.values()) + list(self.slices.values())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump_all(docs))
        tmp.replace(self.path)

    def nat(self) -> str:
        return self.lab.run(self.lab.node, "iptables-save", "-t", "nat").stdout

    def wait_nat(self, cond, what: str) -> None:
        self.lab.wait_for(lambda: cond(self.nat()), timeout=15, what=what)


@pytest.fixture(scope="module")
def cluster(netns_lab: NetnsLab) -> Cluster:
    lab = netns_lab
    if not lab.br_netfilter:
        pytest.skip("kernel lacks br_netfilter (net.bridge.bridge-nf-call-iptables): pod-to-service "
                    "replies on one bridge cannot be un-NATed")
    e1 = lab.add_pod("e1", "10.244.0.11", "fd00:10:244::11")
    e2 = lab.add_pod("e2", "10.244.0.12", "fd00:10:244::12")
    e3 = lab.add_pod("e3", "10.244.0.13", "fd00:10:244::13")
    lab.add_pod("pc", "10.244.0.20", "fd00:10:244::20")
    for pod in (e1, e2, e3):
        lab.start_server(pod)
    c = Cluster(lab, lab.workdir / "objects.yaml")
    c.services = {
        "spread": service("spread"), "hairpin": service("hairpin"), "noeps": service("noeps"),
        "np-cluster": service("np-cluster", type="NodePort", nodePort=30080, externalTrafficPolicy="Cluster"),
        "np-local": service("np-local", type="NodePort", nodePort=30081, externalTrafficPolicy="Local"),
        "extip": service("extip", externalIPs=[EXTERNAL_IP]),
        "affinity": service("affinity", sessionAffinity="ClientIP",
                            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}),
        "removal": service("removal"),
        "udp": service("udp", port=53, protocol="UDP"),
        "lb-allow": service("lb-allow", type="LoadBalancer", nodePort=30090, lb_ip=LB_ALLOW,
                            loadBalancerSourceRanges=[f"{lab.client_ip}/32"]),
        "lb-deny": service("lb-deny", type="LoadBalancer", nodePort=30091, lb_ip=LB_DENY,
                           loadBalancerSourceRanges=["203.0.113.0/24"]),
    }
    c.slices = {
        "spread": slice_("spread", [e1.ip, e2.ip]), "hairpin": slice_("hairpin", [e1.ip]),
        "np-cluster": slice_("np-cluster", [e1.ip]), "np-local": slice_("np-local", [e1.ip]),
        "extip": slice_("extip", [e1.ip, e2.ip]), "affinity": slice_("affinity", [e1.ip, e2.ip]),
        "removal": slice_("removal", [e1.ip, e2.ip]), "udp": slice_("udp", [e1.ip], 5353, "UDP"),
        "lb-allow": slice_("lb-allow", [e1.ip]), "lb-deny": slice_("lb-deny", [e1.ip]),
        "dual-v4": slice_("dual", [e1.ip, e2.ip]),
        "dual-v6": slice_("dual", [e1.ip6, e2.ip6], family="IPv6"),
    }
    c.services["dual"] = service("dual", type="NodePort", nodePort=30100, ipFamilyPolicy="RequireDualStack",
                                 ipFamilies=["IPv4", "IPv6"], clusterIPs=[SVC["dual"], DUAL_V6])
    c.write()
    healthz = free_port()
    lab.start(lab.node, sys.executable, "-m", "svcnet", "proxy", "--mode", "iptables", "-f", str(c.path),
              "--node-name", NODE_NAME, "--node-ip", lab.node_ip, "--node-ip", lab.node_ip6,
              "--cluster-cidr", lab.pod_cidr, "--cluster-cidr", lab.pod_cidr6,
              "--min-sync-period", "100ms", "--sync-period", "2s",
              "--healthz-bind-address", f"127.0.0.1:{healthz}",
              "--metrics-bind-address", "", log_name="proxy")
    c.healthz = healthz
    c.wait_nat(lambda t: "10.244.0.13" not in t and t.count("DNAT") >= 13, "first sync")
    return c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def names(replies: list[str]) -> collections.Counter:
    return collections.Counter(r.split()[0] for r in replies)


def test_cluster_ip_reaches_every_endpoint(cluster: Cluster) -> None:
    replies = cluster.lab.tcp(cluster.lab.pods["pc"].netns, SVC["spread"], 80, count=40)
    got = names(replies)
    assert set(got) == {"e1", "e2"}, replies
    assert min(got.values()) >= 5  # random with p=0.5 each: 40 draws never this lopsided in practice
    # a pod client inside the cluster CIDR is not masqueraded: the server sees its own IP
    assert all(r.split()[1] == "10.244.0.20" for r in replies)


def test_hairpin_pod_reaches_itself_masqueraded(cluster: Cluster) -> None:
    lab = cluster.lab
    (reply,) = lab.tcp(lab.pods["e1"].netns, SVC["hairpin"], 80)
    assert reply == f"e1 {lab.pod_gateway}"  # landed on itself, source NATed to the node's bridge IP


def test_no_endpoints_rejects_at_once(cluster: Cluster) -> None:
    lab = cluster.lab
    for netns in (lab.pods["pc"].netns, lab.client):
        (reply,) = lab.tcp(netns, SVC["noeps"], 80, timeout=3.0)
        assert reply.startswith("ERR:refused"), reply
        assert float(reply.split()[1]) < 1.0


def test_nodeport_from_outside_cluster_policy_masquerades(cluster: Cluster) -> None:
    lab = cluster.lab
    replies = lab.tcp(lab.client, lab.node_ip, 30080, count=3)
    assert replies == [f"e1 {lab.pod_gateway}"] * 3  # the server sees the node, not the client


def test_nodeport_local_policy_keeps_client_ip(cluster: Cluster) -> None:
    lab = cluster.lab
    replies = lab.tcp(lab.client, lab.node_ip, 30081, count=3)
    assert replies == [f"e1 {lab.client_ip}"] * 3


def test_external_ip_from_outside(cluster: Cluster) -> None:
    lab = cluster.lab
    replies = lab.tcp(lab.client, EXTERNAL_IP, 80, count=30)
    assert set(names(replies)) == {"e1", "e2"}, replies


def test_load_balancer_source_ranges(cluster: Cluster) -> None:
    lab = cluster.lab
    assert names(lab.tcp(lab.client, LB_ALLOW, 80, count=2)) == {"e1": 2}
    # not in the source ranges: not DNATed, dropped by KUBE-PROXY-FIREWALL (a timeout, no reply)
    assert lab.tcp(lab.client, LB_DENY, 80, timeout=1.0) == ["ERR:timeout"]


def test_dual_stack_node_proxies_both_families(cluster: Cluster) -> None:
    lab = cluster.lab
    if not lab.br_netfilter6:
        pytest.skip("kernel lacks bridge-nf-call-ip6tables")
    nat6 = lab.run(lab.node, "ip6tables-save", "-t", "nat").stdout
    assert f"-d {DUAL_V6}/128" in nat6 and "--to-destination [fd00:10:244::11]:8080" in nat6
    replies = lab.tcp(lab.pods["pc"].netns, DUAL_V6, 80, count=30)
    assert set(names(replies)) == {"e1", "e2"}, replies
    assert all(r.split()[1] == "fd00:10:244::20" for r in replies)  # pod source kept
    # NodePort over IPv6 from outside: masqueraded to the node's bridge address
    outside = lab.tcp(lab.client, lab.node_ip6, 30100, count=20)
    assert set(names(outside)) == {"e1", "e2"}, outside
    assert {r.split()[1] for r in outside} == {lab.pod_gateway6}
    # and the same service over IPv4
    assert set(names(lab.tcp(lab.pods["pc"].netns, SVC["dual"], 80, count=30))) == {"e1", "e2"}


def test_session_affinity_is_sticky(cluster: Cluster) -> None:
    lab = cluster.lab
    replies = lab.tcp(lab.pods["pc"].netns, SVC["affinity"], 80, count=20)
    assert len(names(replies)) == 1, replies


def test_removed_endpoint_gets_no_new_connections(cluster: Cluster) -> None:
    lab = cluster.lab
    assert set(names(lab.tcp(lab.pods["pc"].netns, SVC["removal"], 80, count=30))) == {"e1", "e2"}
    stale = endpoint_chain_name("default/removal:p", "tcp", "10.244.0.12:8080")
    assert f":{stale} " in cluster.nat()
    cluster.slices["removal"] = slice_("removal", ["10.244.0.11"])
    cluster.write()
    cluster.wait_nat(lambda t: t.count('"default/removal:p -> ') == 1, "sync after endpoint removal")
    assert stale not in cluster.nat()  # the partial sync deleted the stale endpoint chain
    replies = lab.tcp(lab.pods["pc"].netns, SVC["removal"], 80, count=30)
    assert set(names(replies)) == {"e1"}, replies


def test_udp_client_follows_replaced_endpoint(cluster: Cluster) -> None:
    """Without conntrack cleanup the client's flow would stay pinned to e1, which still answers."""
    lab = cluster.lab
    client = lab.udp_client(lab.pods["pc"].netns, SVC["udp"], 53, sport=40053, count=60, interval=0.1)
    lab.wait_for(lambda: "e1 " in client.log_path.read_text(), what="UDP replies from e1")
    cluster.slices["udp"] = slice_("udp", ["10.244.0.13"], 5353, "UDP")
    cluster.write()
    cluster.wait_nat(lambda t: "10.244.0.13:5353" in t and "10.244.0.11:5353" not in t, "sync to e3")
    lab.wait_for(lambda: "e3 " in client.log_path.read_text(), timeout=5, what="UDP replies from e3")
    lab.stop(client)
    lines = [ln for ln in client.log_path.read_text().splitlines() if ln and not ln.startswith("ERR")]
    # once e3 answered, e1 never answers again
    first_e3 = next(i for i, ln in enumerate(lines) if ln.startswith("e3"))
    assert all(ln.startswith("e3") for ln in lines[first_e3:]), lines


def test_healthz_and_flush_recovery(cluster: Cluster) -> None:
    lab = cluster.lab
    out = lab.run(lab.node, sys.executable, "-c",
                  f"import urllib.request as u; r=u.urlopen('http://127.0.0.1:{cluster.healthz}/healthz');"
                  "print(r.status, r.read().decode())").stdout
    assert out.startswith("200 ") and '"nodeEligible": true' in out
    # someone flushes the nat table and removes the canaries: the proxy notices and resyncs in full
    lab.run(lab.node, "iptables", "-t", "nat", "-F")
    lab.run(lab.node, "iptables", "-t", "nat", "-X")
    for table in ("filter", "mangle"):
        lab.run(lab.node, "iptables", "-t", table, "-X", "KUBE-PROXY-CANARY")
    assert "KUBE-SVC-" not in cluster.nat()
    cluster.wait_nat(lambda t: "KUBE-SVC-" in t and "-j KUBE-SERVICES" in t, "full resync after a flush")
    assert set(names(lab.tcp(lab.pods["pc"].netns, SVC["spread"], 80, count=10))) <= {"e1", "e2"}


def test_rules_stay_after_shutdown_and_cleanup_removes_them(cluster: Cluster) -> None:
    lab = cluster.lab
    proxy = next(p for p in lab.procs if "proxy" in str(p.log_path))
    lab.stop(proxy, signal.SIGTERM)
    assert proxy.returncode == 0, proxy.log_path.read_text()
    assert "KUBE-SVC-" in cluster.nat()
    assert set(names(lab.tcp(lab.pods["pc"].netns, SVC["spread"], 80, count=10))) <= {"e1", "e2"}
    res = lab.run(lab.node, sys.executable, "-m", "svcnet", "proxy", "--cleanup", check=False)
    assert res.returncode == 0, res.stderr
    assert "KUBE-" not in cluster.nat()
    assert "KUBE-" not in lab.run(lab.node, "iptables-save", "-t", "filter").stdout


def test_lab_teardown_removes_everything_even_after_a_failure(unbuilt_netns_lab: NetnsLab) -> None:
    lab = unbuilt_netns_lab
    try:
        lab.build()
        pod = lab.add_pod("x", "10.244.0.50")
        server = lab.start_server(pod)
        raise RuntimeError("a test failing half-way")
    except RuntimeError:
        pass
    finally:
        lab.teardown()
    assert server.poll() is not None
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.prefix not in listing
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert lab.prefix not in links


GOLDEN = Path(__file__).parent.parent / "unit" / "golden" / "iptables"


@pytest.mark.parametrize("fixture", sorted(p.stem for p in GOLDEN.glob("*.yaml")))
def test_every_golden_rendering_loads_into_the_kernel(fixture: str, root_netns: None) -> None:
    """The text each golden fixture renders to (as the daemon would write it) is accepted by
    iptables-restore / ip6tables-restore, chains, matches and targets included."""
    from svcnet.proxy.config import NodeConfig
    from svcnet.proxy.objects import load_files
    from svcnet.proxy.render import render_full

    ipv6 = fixture == "ipv6"
    node = NodeConfig(family="IPv6" if ipv6 else "IPv4", node_name="test-node",
                      node_ips=["2001:db8::1" if ipv6 else "192.168.0.2"],
                      cluster_cidrs=["fd00:10::/32" if ipv6 else "10.0.0.0/8"])
    text = render_full("iptables", load_files([str(GOLDEN / f"{fixture}.yaml")]), node)
    netns = f"svt{os.urandom(3).hex()}g"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        restore = "ip6tables-restore" if ipv6 else "iptables-restore"
        res = subprocess.run(["ip", "netns", "exec", netns, restore, "-w", "5", "--noflush"], input=text,
                             text=True, capture_output=True, check=False)
        assert res.returncode == 0, res.stderr
        save = "ip6tables-save" if ipv6 else "iptables-save"
        dump = subprocess.run(["ip", "netns", "exec", netns, save, "-t", "nat"], capture_output=True,
                              text=True, check=True).stdout
        assert dump.count("-j DNAT") == text.count("-j DNAT")
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


def test_backend_detection_follows_the_rules_already_on_the_node(root_netns: None) -> None:
    if not (shutil.which("iptables-legacy") and shutil.which("iptables-nft")):
        pytest.skip("needs both iptables-legacy and iptables-nft")
    netns = f"svt{os.urandom(3).hex()}d"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    code = "from svcnet.proxy.apply.iptables import detect_backend; print(detect_backend())"

    def detect() -> str:
        return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], capture_output=True,
                              text=True, check=True).stdout.strip()

    try:
        assert detect() == "iptables-nft"  # nothing anywhere: nft
        subprocess.run(["ip", "netns", "exec", netns, "iptables-legacy", "-A", "INPUT", "-j", "ACCEPT"],
                       check=True)
        assert detect() == "iptables-legacy"  # the node's rules live in legacy
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
