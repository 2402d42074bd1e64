"""kube-proxy nftables mode in a real kernel, inside throwaway network namespaces.

The lab of tests/e2e/conftest.py (its own `svt<hex>` prefix, removed in teardown even on
failure): `svcnet proxy --mode nftables -f` runs in the node namespace with the same traffic
scenarios as the iptables mode's kernel tests, plus nftables' own answers (REJECT for a port a
ClusterIP does not have, DROP for an unallocated ClusterIP). The last tests stop the daemon
and drive the syncer directly against the node's kernel: one endpoint added among 1,000
services is a transaction of a few lines and an open connection keeps flowing.
"""

from __future__ import annotations

import collections
import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from svcnet.node.netns import entered
from svcnet.proxy.apply.nft import LibNft
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.nftables import NftablesSyncer
from svcnet.proxy.state import ProxyState

if TYPE_CHECKING:
    from conftest import NetnsLab

pytestmark = pytest.mark.root

NODE_NAME = "node1"
SERVICE_CIDR = "10.96.0.0/16"
DUAL_V6 = "fd00:96::21"
SERVICE_CIDR6 = "fd00:96::/112"
SVC = {"dual": "10.96.0.21", "spread": "10.96.0.10", "hairpin": "10.96.0.11", "noeps": "10.96.0.12",
       "np-cluster": "10.96.0.13", "np-local": "10.96.0.14", "affinity": "10.96.0.16"}
UNALLOCATED = "10.96.0.99"

ECHO = r'''
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
def serve(c):
    while True:
        data = c.recv(100)
        if not data: return
        c.sendall(data)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

PINGER = r'''
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
c.settimeout(2)
n = 0
while True:
    try:
        c.sendall(b"ping%d\n" % n); got = c.recv(100)
        print("ok" if got == b"ping%d\n" % n else "bad %r" % got, flush=True)
    except OSError as e:
        print("ERR %s" % e, flush=True); break
    n += 1; time.sleep(0.02)
'''


def service(name: str, port: int = 80, **spec) -> dict:
    port_spec = {"name": "p", "port": port, "protocol": "TCP"}
    if "nodePort" in spec:
        port_spec["nodePort"] = spec.pop("nodePort")
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": SVC[name], "ports": [port_spec], **spec}}


def slice_(name: str, ips: list[str], port: int = 8080, family: str = "IPv4") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "default", "name": f"{name}-1" if family == "IPv4" else f"{name}-v6",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": family,
            "endpoints": [{"addresses": [ip], "nodeName": NODE_NAME} for ip in ips],
            "ports": [{"name": "p", "port": port, "protocol": "TCP"}]}


def names(replies: list[str]) -> collections.Counter:
    return collections.Counter(r.split()[0] for r in replies)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, lab: NetnsLab) -> None:
        self.lab = lab
        self.path = lab.workdir / "nft-objects.yaml"
        self.proxy: subprocess.Popen | None = None

    def ruleset(self) -> str:
        return self.lab.run(self.lab.node, "nft", "list", "table", "ip", "kube-proxy", check=False).stdout


@pytest.fixture(scope="module")
def cluster(netns_lab: NetnsLab) -> Cluster:
    lab = netns_lab
    if not lab.br_netfilter:
        pytest.skip("kernel lacks br_netfilter (net.bridge.bridge-nf-call-iptables): pod-to-service "
                    "replies on one bridge cannot be un-NATed")
    e1 = lab.add_pod("e1", "10.244.0.11", "fd00:10:244::11")
    e2 = lab.add_pod("e2", "10.244.0.12", "fd00:10:244::12")
    lab.add_pod("pc", "10.244.0.20", "fd00:10:244::20")
    for pod in (e1, e2):
        lab.start_server(pod)
    c = Cluster(lab)
    docs = [
        service("spread"), service("hairpin"), service("noeps"),
        service("np-cluster", type="NodePort", nodePort=30080, externalTrafficPolicy="Cluster"),
        service("np-local", type="NodePort", nodePort=30081, externalTrafficPolicy="Local"),
        service("affinity", sessionAffinity="ClientIP",
                sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}),
        slice_("spread", [e1.ip, e2.ip]), slice_("hairpin", [e1.ip]), slice_("np-cluster", [e1.ip]),
        slice_("np-local", [e1.ip]), slice_("affinity", [e1.ip, e2.ip]),
        service("dual", type="NodePort", nodePort=30100, ipFamilyPolicy="RequireDualStack",
                ipFamilies=["IPv4", "IPv6"], clusterIPs=[SVC["dual"], DUAL_V6]),
        slice_("dual", [e1.ip, e2.ip]), slice_("dual", [e1.ip6, e2.ip6], family="IPv6"),
    ]
    c.path.write_text(yaml.safe_dump_all(docs))
    c.proxy = lab.start(lab.node, sys.executable, "-m", "svcnet", "proxy", "--mode", "nftables",
                        "-f", str(c.path),
                        "--node-name", NODE_NAME, "--node-ip", lab.node_ip, "--node-ip", lab.node_ip6,
                        "--cluster-cidr", lab.pod_cidr, "--cluster-cidr", lab.pod_cidr6,
                        "--service-cidr", SERVICE_CIDR, "--service-cidr", SERVICE_CIDR6,
                        "--min-sync-period", "100ms", "--sync-period", "5s",
                        "--healthz-bind-address", f"127.0.0.1:{free_port()}", "--metrics-bind-address", "",
                        log_name="nft-proxy")

    def synced() -> bool:
        if c.proxy.poll() is not None:
            raise AssertionError(c.proxy.log_path.read_text())
        return c.ruleset().count("dnat to") >= 6

    lab.wait_for(synced, timeout=15, what="first nftables sync")
    return c


def test_cluster_ip_reaches_every_endpoint(cluster: Cluster) -> None:
    lab = cluster.lab
    replies = lab.tcp(lab.pods["pc"].netns, SVC["spread"], 80, count=40)
    got = names(replies)
    assert set(got) == {"e1", "e2"}, replies
    assert min(got.values()) >= 5  # numgen random mod 2: 40 draws never this lopsided in practice
    assert all(r.split()[1] == "10.244.0.20" for r in replies)  # pod clients keep their source


def test_hairpin_pod_reaches_itself_masqueraded(cluster: Cluster) -> None:
    lab = cluster.lab
    assert lab.tcp(lab.pods["e1"].netns, SVC["hairpin"], 80) == [f"e1 {lab.pod_gateway}"]


def test_no_endpoints_rejects_at_once(cluster: Cluster) -> None:
    lab = cluster.lab
    for netns in (lab.pods["pc"].netns, lab.client):
        (reply,) = lab.tcp(netns, SVC["noeps"], 80, timeout=3.0)
        assert reply.startswith("ERR:refused"), reply
        assert float(reply.split()[1]) < 1.0


def test_wrong_port_of_a_cluster_ip_rejects_and_unallocated_cluster_ip_drops(cluster: Cluster) -> None:
    lab = cluster.lab
    (reply,) = lab.tcp(lab.pods["pc"].netns, SVC["spread"], 81, timeout=3.0)
    assert reply.startswith("ERR:refused"), reply  # cluster-ips-check: reject
    assert lab.tcp(lab.pods["pc"].netns, UNALLOCATED, 80, timeout=1.0) == ["ERR:timeout"]  # drop


def test_nodeport_from_outside_cluster_policy_masquerades(cluster: Cluster) -> None:
    lab = cluster.lab
    assert lab.tcp(lab.client, lab.node_ip, 30080, count=3) == [f"e1 {lab.pod_gateway}"] * 3


def test_nodeport_local_policy_keeps_client_ip(cluster: Cluster) -> None:
    lab = cluster.lab
    assert lab.tcp(lab.client, lab.node_ip, 30081, count=3) == [f"e1 {lab.client_ip}"] * 3


def test_dual_stack_node_proxies_both_families(cluster: Cluster) -> None:
    lab = cluster.lab
    if not lab.br_netfilter6:
        pytest.skip("kernel lacks bridge-nf-call-ip6tables")
    table6 = lab.run(lab.node, "nft", "list", "table", "ip6", "kube-proxy").stdout
    assert f"{DUAL_V6} . tcp . 80" in table6 and "dnat to [fd00:10:244::11]:8080" in table6
    replies = lab.tcp(lab.pods["pc"].netns, DUAL_V6, 80, count=30)
    assert set(names(replies)) == {"e1", "e2"}, replies
    assert all(r.split()[1] == "fd00:10:244::20" for r in replies)  # pod source kept
    outside = lab.tcp(lab.client, lab.node_ip6, 30100, count=20)  # NodePort on the IPv6 node IP
    assert set(names(outside)) == {"e1", "e2"}, outside
    assert {r.split()[1] for r in outside} == {lab.pod_gateway6}  # masqueraded
    assert set(names(lab.tcp(lab.pods["pc"].netns, SVC["dual"], 80, count=30))) == {"e1", "e2"}


def test_session_affinity_is_sticky(cluster: Cluster) -> None:
    lab = cluster.lab
    replies = lab.tcp(lab.pods["pc"].netns, SVC["affinity"], 80, count=20)
    assert len(names(replies)) == 1, replies
    assert "affinity-" in cluster.ruleset()


def test_table_deleted_behind_its_back_is_rebuilt_after_a_refused_transaction(cluster: Cluster) -> None:
    lab = cluster.lab
    lab.run(lab.node, "nft", "delete", "table", "ip", "kube-proxy")
    # a change right away: its partial transaction names a table that is gone, nft refuses it
    docs = [d for d in yaml.safe_load_all(cluster.path.read_text()) if d]
    for d in docs:
        if d["kind"] == "EndpointSlice" and d["metadata"]["name"] == "hairpin-1":
            d["endpoints"].append({"addresses": [lab.pods["e2"].ip], "nodeName": NODE_NAME})
    cluster.path.write_text(yaml.safe_dump_all(docs))
    lab.wait_for(lambda: cluster.ruleset().count("dnat to") >= 7, timeout=20, what="full resync")
    log = cluster.proxy.log_path.read_text()
    assert "No such file or directory" in log and "a full resync follows" in log, log[-2000:]
    assert set(names(lab.tcp(lab.pods["pc"].netns, SVC["hairpin"], 80, count=30))) == {"e1", "e2"}


def test_daemon_stops_leaving_rules_and_cleanup_removes_them(cluster: Cluster) -> None:
    lab = cluster.lab
    lab.stop(cluster.proxy, signal.SIGTERM)
    assert cluster.proxy.returncode == 0, cluster.proxy.log_path.read_text()
    assert "service-ips" in cluster.ruleset()
    assert set(names(lab.tcp(lab.pods["pc"].netns, SVC["spread"], 80, count=6))) <= {"e1", "e2"}
    res = lab.run(lab.node, sys.executable, "-m", "svcnet", "proxy", "--cleanup", check=False)
    assert res.returncode == 0, res.stderr
    assert lab.run(lab.node, "nft", "list", "tables").stdout.strip() == ""


class NetnsLibNft(LibNft):
    """libnftables in the node namespace, as the proxy running there uses it: this thread
    enters the namespace around each transaction (the library's socket is made in the first)."""

    def __init__(self, netns: str) -> None:
        super().__init__("ip")
        self.netns = netns

    def run(self, text: str) -> None:
        with entered(self.netns):
            super().run(text)

    def _nft(self, args: list[str], text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.netns, self.binary, *args], input=text,
                              capture_output=True, text=True, check=False, timeout=60)


def kernel_table(netns: str) -> dict:
    """The kube-proxy table as nft lists it (JSON), without handles and with set elements in
    a fixed order: two tables holding the same chains, rules and elements compare equal."""
    res = subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "ip", "kube-proxy"],
                         capture_output=True, text=True, check=True)
    chains: dict[str, list] = {}
    sets: dict[str, list] = {}
    for item in json.loads(res.stdout)["nftables"]:
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            rule = item["rule"]
            chains.setdefault(rule["chain"], []).append(json.dumps(rule["expr"], sort_keys=True))
        for kind in ("set", "map"):
            if kind in item:
                obj = item[kind]
                sets[obj["name"]] = sorted(json.dumps(e, sort_keys=True) for e in obj.get("elem", []))
    return {"chains": chains, "sets": sets}


def test_one_endpoint_added_among_1000_services_is_a_few_lines_and_keeps_connections(
        cluster: Cluster) -> None:
    lab = cluster.lab
    e1, e2 = lab.pods["e1"], lab.pods["e2"]
    (lab.workdir / "echo.py").write_text(ECHO)
    (lab.workdir / "pinger.py").write_text(PINGER)
    lab.start(e1.netns, sys.executable, str(lab.workdir / "echo.py"), "9090", log_name="echo")
    lab.wait_for(lambda: ":9090 " in lab.run(e1.netns, "ss", "-ltn").stdout, what="echo server")
    node = NodeConfig(node_name=NODE_NAME, node_ips=[lab.node_ip], cluster_cidrs=[lab.pod_cidr],
                      service_cidrs=[SERVICE_CIDR])
    state = ProxyState(node.family, NODE_NAME)
    state.services_synced = state.slices_synced = True
    syncer = NftablesSyncer(node)
    nft = NetnsLibNft(lab.node)

    def svc(i: int) -> dict:
        return {"kind": "Service", "metadata": {"namespace": "bulk", "name": f"s{i}"},
                "spec": {"clusterIP": f"10.96.{10 + i // 250}.{i % 250 + 1}",
                         "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}}

    def eps(i: int, ips: list[str], port: int) -> dict:
        return {"kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"namespace": "bulk", "name": f"s{i}-1",
                             "labels": {"kubernetes.io/service-name": f"s{i}"}},
                "endpoints": [{"addresses": [ip]} for ip in ips],
                "ports": [{"name": "p", "port": port, "protocol": "TCP"}]}

    for i in range(1000):
        state.on_service(svc(i))
        state.on_endpoint_slice(eps(i, [e1.ip], 9090 if i == 0 else 8080))

    def sync() -> str:
        changes = state.take_changes()
        plan = syncer.plan(state.svc_port_map, state.endpoints_map, changed=changes.updated_services,
                           changed_ports=changes.updated_ports)
        nft.run(plan.text)
        syncer.commit(plan)
        return plan.text

    t0 = time.monotonic()
    first = sync()
    full_seconds = time.monotonic() - t0
    assert first.count("\n") > 8000 and full_seconds < 30
    pinger = lab.start(lab.pods["pc"].netns, sys.executable, str(lab.workdir / "pinger.py"),
                       "10.96.10.1", "80", log_name="pinger")
    log = pinger.log_path
    lab.wait_for(lambda: log.read_text().count("ok") >= 10, what="pings through the service")
    state.on_endpoint_slice(eps(0, [e1.ip, e2.ip], 9090))
    tx = sync()
    lines = tx.splitlines()
    assert 0 < len(lines) <= 10, tx
    assert all("bulk/s0/" in line for line in lines), tx
    assert "numgen random mod 2" in tx and f"dnat to {e2.ip}:9090" in tx
    before = log.read_text().count("ok")
    lab.wait_for(lambda: log.read_text().count("ok") >= before + 20, what="pings after the change")
    lab.stop(pinger)
    out = log.read_text()
    assert "ERR" not in out and "bad" not in out, out[-500:]
    # the kernel holds what a fresh full sync would write: the new endpoint is in the service chain
    listing = lab.run(lab.node, "nft", "list", "table", "ip", "kube-proxy").stdout
    assert f"dnat to {e2.ip}:9090" in listing
    # New services (elements added as `add map NAME { ... elements = { ... } }`) and a deleted
    # one (`delete element`): the kernel ends up with exactly what a full sync writes.
    for i in (1000, 1001):
        state.on_service(svc(i))
        state.on_endpoint_slice(eps(i, [e1.ip, e2.ip], 8080))
    tx = sync()
    assert "add element" not in tx and "add rule" not in tx and "elements = {" in tx, tx
    state.on_service(svc(5), deleted=True)
    assert "delete element" in sync()
    fresh = f"{lab.prefix}fresh"
    subprocess.run(["ip", "netns", "add", fresh], check=True)
    try:
        full = NftablesSyncer(node).plan(state.svc_port_map, state.endpoints_map)
        subprocess.run(["ip", "netns", "exec", fresh, "nft", "-f", "-"], input=full.text, text=True,
                       check=True)
        want, got = kernel_table(fresh), kernel_table(lab.node)
        for chain in syncer.stale_chains:  # flushed now, deleted after STALE_CHAIN_DELAY
            assert got["chains"].pop(chain) == []
        assert got == want
    finally:
        subprocess.run(["ip", "netns", "del", fresh], check=False)
    nft.close()
    lab.run(lab.node, "nft", "delete", "table", "ip", "kube-proxy")


GOLDEN = Path(__file__).parent.parent / "unit" / "golden" / "iptables"


@pytest.mark.parametrize("fixture", sorted(p.stem for p in GOLDEN.glob("*.yaml")))
def test_every_golden_rendering_loads_into_the_kernel(fixture: str, root_netns: None) -> None:
    """The first-sync transaction of each golden fixture is accepted by nft, twice in a row
    (a full resync over an existing table), and what the kernel lists back holds every DNAT."""
    from svcnet.proxy.objects import load_files
    from svcnet.proxy.render import render_full

    ipv6 = fixture == "ipv6"
    node = NodeConfig(family="IPv6" if ipv6 else "IPv4", node_name="test-node",
                      node_ips=["2001:db8::1" if ipv6 else "192.168.0.2"],
                      cluster_cidrs=["fd00:10::/32" if ipv6 else "10.0.0.0/8"],
                      service_cidrs=["fd00:172:30::/64" if ipv6 else "172.30.0.0/16"])
    text = render_full("nftables", load_files([str(GOLDEN / f"{fixture}.yaml")]), node)
    netns = f"svt{secrets.token_hex(3)}n"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        for _ in range(2):
            res = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=text, text=True,
                                 capture_output=True, check=False)
            assert res.returncode == 0, res.stderr
        listing = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "table",
                                  "ip6" if ipv6 else "ip", "kube-proxy"],
                                 capture_output=True, text=True, check=True).stdout
        assert listing.count("dnat to") == text.count("dnat to")
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
