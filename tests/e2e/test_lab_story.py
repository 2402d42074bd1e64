"""The chapter's story on a real two-node lab started with `svcnet up` (root, network
namespaces, iptables): every demo step asserts on what the clients saw; kubectl drives the
lab's API server; Ctrl-C leaves no namespace or process behind."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from svcnet.lab.demo import Demo
from svcnet.lab.launcher import Cluster, start_cluster
from svcnet.lab.topology import EXTERNAL_IP

pytestmark = pytest.mark.timeout(180)
T = TypeVar("T")


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, iptables)")
    for tool in ("ip", "iptables-restore", "curl", "dig"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _require_root()
    c = start_cluster(tmp_path_factory.mktemp("lab-story"))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def demo(cluster: Cluster) -> Iterator[Demo]:
    loop = asyncio.new_event_loop()
    d = Demo(cluster.lab_dir)
    d.loop = loop  # type: ignore[attr-defined]
    result = loop.run_until_complete(d.setup())
    assert result.ok, result.lines
    try:
        yield d
    finally:
        loop.run_until_complete(d.close())
        loop.close()


def run(demo: Demo, coro: Coroutine[Any, Any, T]) -> T:
    return demo.loop.run_until_complete(coro)  # type: ignore[attr-defined]


def test_clusterip_spreads_across_backends(demo: Demo) -> None:
    result = run(demo, demo.step_clusterip(10))
    replies = result.data["replies"]
    assert all(replies), f"failed requests: {replies}"
    assert len(result.data["spread"]) >= 2, result.data["spread"]
    # Each answer comes from a backend pod (by name and IP) whose IP is in the pod range of
    # the node it names.
    nodes = run(demo, demo.api.list("nodes"))["items"]
    pod_cidrs = {n["metadata"]["name"]: ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes}
    backends = {p["metadata"]["name"]: p for p in run(demo, demo.ready_pods("app=backend"))}
    for r in replies:
        assert r.pod in backends and backends[r.pod]["status"]["podIP"] == r.ip, r
        assert backends[r.pod]["spec"]["nodeName"] == r.node, r
        assert ipaddress.ip_address(r.ip) in pod_cidrs[r.node], (r, pod_cidrs)


def test_deleted_pod_is_replaced_and_traffic_continues(demo: Demo) -> None:
    result = run(demo, demo.step_delete_pod())
    assert result.data["failed"] == 0, result.lines
    assert result.data["new"], "no replacement pod"
    assert result.data["victim"] not in result.data["new"]
    assert result.data["seen_new"], "the replacement never answered through the ClusterIP"


def test_scale_to_five_all_answer(demo: Demo) -> None:
    result = run(demo, demo.step_scale(5))
    assert len(result.data["spread"]) >= 5, result.lines


def test_dns_names_from_a_pod(demo: Demo, cluster: Cluster) -> None:
    resolv = cluster.exec("frontend", "cat", "/etc/resolv.conf").stdout
    assert resolv.splitlines() == ["nameserver 10.96.0.10",
                                   "search default.svc.cluster.local svc.cluster.local cluster.local",
                                   "options ndots:5"]
    result = run(demo, demo.step_dns())
    answers = result.data["answers"]
    ip = run(demo, demo.cluster_ip("backend-svc"))
    assert answers["backend-svc"] == ip
    assert answers["backend-svc.default"] == ip
    assert answers["backend-svc.default.svc.cluster.local"] == ip
    assert answers["my-database.default.svc.cluster.local"] == "db.example.com."
    # A StatefulSet pod's own name behind its headless Service is the pod's IP.
    db0 = run(demo, demo.api.get("pods", "db-0", "default"))["status"]["podIP"]
    assert answers["db-0.db-headless.default.svc.cluster.local"] == db0, answers
    assert result.ok, result.lines


def test_statefulset_pod_has_stable_dns_name(cluster: Cluster) -> None:
    manifest = textwrap.dedent("""\
        apiVersion: v1
        kind: Service
        metadata: {name: mysql-headless}
        spec: {clusterIP: None, selector: {app: mysql}, ports: [{port: 3306}]}
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: mysql}
        spec:
          serviceName: mysql-headless
          replicas: 2
          selector: {matchLabels: {app: mysql}}
          template:
            metadata: {labels: {app: mysql}}
            spec:
              containers: [{name: mysql, image: mysql, ports: [{containerPort: 3306}]}]
        """)
    res = cluster.kubectl("apply", "-f", "-", input=manifest)
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 30
    answer = ""
    while time.monotonic() < deadline:
        answer = cluster.exec("frontend", "dig", "+short", "mysql-1.mysql-headless.default.svc.cluster.local")
        answer = answer.stdout
        if answer.strip():
            break
        time.sleep(0.3)
    ip = cluster.kubectl("get", "pod", "mysql-1", "-o", "jsonpath={.status.podIP}").stdout
    assert answer.strip() == ip
    # The pod's own hostname and FQDN, as kubelet writes them.
    names = cluster.kubectl("get", "pod", "mysql-0", "-o", "jsonpath={.spec.hostname}/{.spec.subdomain}")
    assert names.stdout == "mysql-0/mysql-headless"
    hosts = cluster.exec("mysql-0", "cat", "/etc/hosts").stdout
    assert "mysql-0.mysql-headless.default.svc.cluster.local\tmysql-0" in hosts


def test_nodeport_from_outside_through_every_node(demo: Demo) -> None:
    result = run(demo, demo.step_nodeport())
    for node, replies in result.data["results"].items():
        assert len(replies) == 3, (node, result.lines)


def test_external_traffic_policy_cluster_vs_local(demo: Demo) -> None:
    result = run(demo, demo.step_traffic_policy())
    seen = result.data["seen"]
    assert seen["Cluster"] and EXTERNAL_IP not in seen["Cluster"], seen
    assert seen["Local"] == {EXTERNAL_IP}, seen


def test_kubectl_apply_scale_delete(cluster: Cluster) -> None:
    manifest = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: kc}
        spec:
          replicas: 1
          selector: {matchLabels: {app: kc}}
          template:
            metadata: {labels: {app: kc}}
            spec:
              containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
        """)
    res = cluster.kubectl("apply", "-f", "-", input=manifest)
    assert res.returncode == 0 and "deployment.apps/kc created" in res.stdout, res.stderr
    res = cluster.kubectl("scale", "deployment", "kc", "--replicas=3")
    assert res.returncode == 0, res.stderr

    def ready() -> int:
        out = cluster.kubectl("get", "deploy", "kc", "-o", "jsonpath={.status.readyReplicas}").stdout
        return int(out or 0)

    deadline = time.monotonic() + 30
    while ready() < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready() == 3
    pods = cluster.kubectl("get", "pods", "-l", "app=kc", "-o", "wide").stdout
    assert pods.count("Running") == 3, pods
    res = cluster.kubectl("delete", "deployment", "kc", "--wait=false")
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 30
    def left() -> str:
        return cluster.kubectl("get", "pods", "-l", "app=kc", "-o", "name").stdout.strip()

    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left() == ""


def test_ctrl_c_removes_every_namespace_and_process(cluster: Cluster) -> None:
    prefix = cluster.prefix
    pids = [c["pid"] for c in cluster.state()["children"]]
    assert cluster.stop() == 0, cluster.log()[-2000:]
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not [p for p in Path("/etc/netns").glob(f"{prefix}*")] if Path("/etc/netns").exists() else True
