"""The user-space proxy in a node network namespace, serving real ClusterIPs (10.96.0.0/12,
not local addresses) through REDIRECT rules: iptables and nftables variants.

Clients outside the node, in a pod, and on the node itself reach the ClusterIP; a NodePort is
served by a listener the proxy binds directly. Stopping the proxy removes its rules. Needs
root; every namespace carries the lab's unique prefix and is removed in teardown.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import NetnsLab

pytestmark = pytest.mark.root

CLUSTER_IP = "10.96.0.10"
EXTERNAL_IP = "192.168.60.10"  # not on any interface: served through a REDIRECT rule too
NODE_PORT = 30080


def objects(pods: list[tuple[str, str]]) -> list[dict]:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default", "annotations": {"svcnet.io/scheduler": "rr"}},
           "spec": {"type": "NodePort", "clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP],
                    "ipFamilies": ["IPv4"], "externalIPs": [EXTERNAL_IP],
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP",
                               "nodePort": NODE_PORT},
                              {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}]}}
    eps = [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node",
            "targetRef": {"kind": "Pod", "namespace": "default", "name": name}} for name, ip in pods]
    sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
          "metadata": {"name": "web-1", "namespace": "default",
                       "labels": {"kubernetes.io/service-name": "web"}},
          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                    {"name": "dns", "port": 5353, "protocol": "UDP"}],
          "endpoints": eps}
    return [svc, sl]


UDP_ONCE = r'''
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
u.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
data, src = u.recvfrom(200)
print(data.decode(), src[0], src[1])
'''


@pytest.fixture(scope="module")
def lab_with_pods(netns_lab: NetnsLab) -> NetnsLab:
    for name, ip in (("pa", "10.244.0.11"), ("pb", "10.244.0.12")):
        pod = netns_lab.add_pod(name, ip)
        netns_lab.start_server(pod)
    return netns_lab


def _rules(lab: NetnsLab, backend: str) -> str:
    if backend == "iptables":
        return lab.run(lab.node, "iptables-save", "-t", "nat", check=False).stdout
    return lab.run(lab.node, "nft", "list", "ruleset", check=False).stdout


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_redirect_rules_serve_real_cluster_ips(lab_with_pods: NetnsLab, backend: str):
    lab = lab_with_pods
    if backend == "nftables" and lab.run(lab.node, "nft", "list", "tables", check=False).returncode != 0:
        pytest.skip("nftables is not usable in this kernel")
    objs = lab.workdir / f"objs-{backend}.yaml"
    objs.write_text(yaml.safe_dump_all(objects([(p.name, p.ip) for p in lab.pods.values()])))
    proxy = lab.start(lab.node, sys.executable, "-m", "svcnet", "proxy", "userspace", "-f", str(objs),
                      "--node-name", "node", "--redirect", backend,
                      "--healthz-bind-address", "127.0.0.1:10256",
                      "--metrics-bind-address", "127.0.0.1:10249",
                      log_name=f"proxy-{backend}")
    try:
        lab.wait_for(lambda: f"{CLUSTER_IP}" in _rules(lab, backend) and "53" in _rules(lab, backend),
                     timeout=20, what=f"{backend} REDIRECT rules")
        rules = _rules(lab, backend)
        assert "REDIRECT" in rules or "redirect to" in rules
        pod_names = {p.name for p in lab.pods.values()}

        # from outside the node: PREROUTING
        outside = lab.tcp(lab.client, CLUSTER_IP, 80, count=10)
        assert Counter(line.split()[0] for line in outside) == {"pa": 5, "pb": 5}, outside
        # from a pod (routed through the node's bridge) and from the node itself: OUTPUT
        from_pod = lab.tcp(lab.pods["pa"].netns, CLUSTER_IP, 80, count=4)
        from_node = lab.tcp(lab.node, CLUSTER_IP, 80, count=4)
        assert {line.split()[0] for line in from_pod + from_node} == pod_names, (from_pod, from_node)
        # an external IP that is not local: REDIRECT as well
        via_external_ip = lab.tcp(lab.client, EXTERNAL_IP, 80, count=2)
        assert {line.split()[0] for line in via_external_ip} <= pod_names and len(via_external_ip) == 2
        # the NodePort listener is bound directly, no rule needed
        via_node_port = lab.tcp(lab.client, lab.node_ip, NODE_PORT, count=2)
        assert {line.split()[0] for line in via_node_port} <= pod_names and len(via_node_port) == 2
        # UDP: the reply comes back from the ClusterIP the client asked
        script = lab.workdir / "udp_once.py"
        script.write_text(UDP_ONCE)
        res = lab.run(lab.client, sys.executable, str(script), CLUSTER_IP, "53")
        name, _peer, src_ip, src_port = res.stdout.split()
        assert name in pod_names and (src_ip, src_port) == (CLUSTER_IP, "53")
        metrics = lab.run(lab.node, sys.executable, "-c",
                          "import urllib.request;print(urllib.request.urlopen("
                          "'http://127.0.0.1:10249/metrics').read().decode())").stdout
        total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("svcnet_userspace_connections_total") and 'protocol="TCP"' in line)
        assert total == 22
    finally:
        lab.stop(proxy)
    print(proxy.log_path.read_text(), file=sys.stderr)  # type: ignore[attr-defined]
    rules = _rules(lab, backend)
    assert CLUSTER_IP not in rules, "REDIRECT rules left behind after the proxy stopped"
    assert proxy.returncode == 0


def test_rules_are_only_in_the_lab_namespace(lab_with_pods: NetnsLab):
    """Nothing of ours in the machine's own namespace."""
    res = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=False)
    assert "KUBE-PORTALS" not in res.stdout
    res = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True, check=False)
    if res.returncode == 0 and res.stdout.strip():
        names = [t["table"]["name"] for t in json.loads(res.stdout)["nftables"] if "table" in t]
        assert "svcnet-userspace" not in names


QUICK = """apiVersion: v1
kind: Service
metadata: {{name: quick, namespace: default, annotations: {{svcnet.io/scheduler: rr}}}}
spec:
  ports: [{{name: web, port: 18080, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: quick-manual, namespace: default, labels: {{kubernetes.io/service-name: quick}}}}
addressType: IPv4
ports: [{{name: web, port: 8080, protocol: TCP}}]
endpoints: [{endpoints}]
"""


def test_loopback_service_range_through_the_api_needs_no_rules(lab_with_pods: NetnsLab):
    """The non-root quick start, inside the node namespace: `svcnet server
    --service-cluster-ip-range 127.96.0.0/16` allocates a ClusterIP the proxy binds directly
    (`svcnet proxy userspace --kubeconfig`); no REDIRECT rule is written. (Endpoint addresses
    may not be loopback, as upstream validates, so the pods' addresses need the lab.)"""
    lab = lab_with_pods
    data = lab.workdir / "api-data"
    server = lab.start(lab.node, sys.executable, "-m", "svcnet", "server", "--data-dir", str(data),
                       "--listen", "127.0.0.1:0", "--service-cluster-ip-range", "127.96.0.0/16",
                       "--log-level", "warning", log_name="apiserver")
    proxy = None
    try:
        lab.wait_for(lambda: (data / "server-url").exists() and (data / "admin.kubeconfig").exists(),
                     timeout=30, what="API server")
        kubeconfig = str(data / "admin.kubeconfig")
        manifest = lab.workdir / "quick.yaml"

        def apply(pods: list[str]) -> None:
            eps = ", ".join(f"{{addresses: [{lab.pods[p].ip}], conditions: {{ready: true}}}}" for p in pods)
            manifest.write_text(QUICK.format(endpoints=eps))
            lab.run(lab.node, "kubectl", "--kubeconfig", kubeconfig, "apply", "-f", str(manifest))

        apply(["pa", "pb"])
        cip = lab.run(lab.node, "kubectl", "--kubeconfig", kubeconfig, "get", "svc", "quick",
                      "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
        assert cip.startswith("127.96."), cip
        proxy = lab.start(lab.node, sys.executable, "-m", "svcnet", "proxy", "userspace",
                          "--kubeconfig", kubeconfig, "--node-name", "node",
                          "--healthz-bind-address", "127.0.0.1:10266", "--metrics-bind-address", "",
                          log_name="proxy-api")
        lab.wait_for(lambda: lab.tcp(lab.node, cip, 18080, count=1, timeout=1)[0].split()[0] in ("pa", "pb"),
                     timeout=20, what="the ClusterIP served")
        got = Counter(line.split()[0] for line in lab.tcp(lab.node, cip, 18080, count=4))
        assert got == {"pa": 2, "pb": 2}
        apply(["pb"])
        deadline = time.monotonic() + 10
        while {line.split()[0] for line in lab.tcp(lab.node, cip, 18080, count=3)} != {"pb"}:
            assert time.monotonic() < deadline, "the proxy did not follow the EndpointSlice update"
            time.sleep(0.2)
        assert "KUBE-PORTALS" not in _rules(lab, "iptables")
        assert "svcnet-userspace" not in _rules(lab, "nftables")
    finally:
        if proxy is not None:
            lab.stop(proxy)
        lab.stop(server)
