"""Network programming latency on a real lab (`svcnet up`, root): the time from a new pod's
Ready condition to the first successful connection to it through its Service's ClusterIP.

The deployment is scaled 0 -> 1 fifty times, so the new pod is the Service's only endpoint and
any successful connection through the ClusterIP reached it. A client in a node namespace
(the other node than the pod's when there are two) connects every 2 ms to the ClusterIP and,
as the reference in the same run, to the pod's own IP. Ready is the moment the bench's watch
sees the condition turn True. Printed: p50/p99 through the ClusterIP, the same for the direct
connection, and their ratio. Targets: p50 <= 300 ms, p99 <= 1 s.

    sudo .venv/bin/python bench/e2e.py [--runs 50] [--nodes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from svcnet.client.api import ApiClient
from svcnet.lab.launcher import Cluster, start_cluster

CLIENT = r"""
import socket, sys, time
target_port = int(sys.argv[1])
while True:
    line = sys.stdin.readline()
    if not line:
        break
    name, cluster_ip, pod_ip = line.split()
    found = {"cluster": None, "direct": None}
    deadline = time.time() + 10
    while (found["cluster"] is None or found["direct"] is None) and time.time() < deadline:
        for kind, addr in (("cluster", (cluster_ip, 80)), ("direct", (pod_ip, target_port))):
            if found[kind] is not None:
                continue
            try:
                s = socket.create_connection(addr, timeout=0.05)
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                reply = s.recv(300).decode(errors="replace")
                s.close()
                if f"pod={name} " in reply:
                    found[kind] = time.time()
            except OSError:
                pass
        time.sleep(0.002)
    print(name, found["cluster"] or -1, found["direct"] or -1, flush=True)
"""

DEPLOY = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "latency"},
    "spec": {
        "replicas": 0,
        "selector": {"matchLabels": {"app": "latency"}},
        "template": {
            "metadata": {"labels": {"app": "latency"}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "web",
                        "image": "svcnet/echo",
                        "env": [{"name": "SVCNET_ECHO_DRAIN_SECONDS", "value": "0"}],
                        "ports": [{"containerPort": 8080}],
                    }
                ],
            },
        },
    },
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "latency"},
    "spec": {"selector": {"app": "latency"}, "ports": [{"port": 80, "targetPort": 8080}]},
}


def ready(pod: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


async def measure(cluster: Cluster, runs: int) -> tuple[list[float], list[float]]:
    api = ApiClient.from_kubeconfig(str(cluster.kubeconfig))
    await api.create("deployments", DEPLOY, "default")
    svc = await api.create("services", SERVICE, "default")
    cluster_ip = svc["spec"]["clusterIP"]
    nodes = [n["name"] for n in cluster.state()["nodes"]]
    via_cluster: list[float] = []
    direct: list[float] = []
    clients: dict[str, subprocess.Popen] = {}
    script = cluster.data_dir / "latency-client.py"
    script.write_text(CLIENT)
    for n in nodes:
        clients[n] = subprocess.Popen(
            ["ip", "netns", "exec", cluster.netns(n), sys.executable, str(script), "8080"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
    try:
        for i in range(runs):
            await api.patch(
                "deployments", "latency", {"spec": {"replicas": 1}}, "default", subresource="scale"
            )
            ready_at = None
            pod = None
            while ready_at is None:
                pods = (await api.list("pods", "default", label_selector="app=latency")).get("items") or []
                live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
                if live and ready(live[0]):
                    ready_at = time.time()
                    pod = live[0]
                else:
                    await asyncio.sleep(0.005)
            assert pod is not None
            name, pod_ip, node = pod["metadata"]["name"], pod["status"]["podIP"], pod["spec"]["nodeName"]
            client = clients[next((n for n in nodes if n != node), node)]
            assert client.stdin is not None and client.stdout is not None
            client.stdin.write(f"{name} {cluster_ip} {pod_ip}\n")
            client.stdin.flush()
            line = await asyncio.to_thread(client.stdout.readline)
            _, t_cluster, t_direct = line.split()
            if float(t_cluster) > 0:
                via_cluster.append(max(0.0, float(t_cluster) - ready_at))
            if float(t_direct) > 0:
                direct.append(max(0.0, float(t_direct) - ready_at))
            print(
                f"run {i + 1:2}/{runs}: {name} on {node}: "
                f"ClusterIP {1000 * (float(t_cluster) - ready_at):7.1f} ms"
                f"   direct {1000 * (float(t_direct) - ready_at):7.1f} ms",
                flush=True,
            )
            await api.patch(
                "deployments", "latency", {"spec": {"replicas": 0}}, "default", subresource="scale"
            )
            while True:
                pods = (await api.list("pods", "default", label_selector="app=latency")).get("items") or []
                if not pods:
                    break
                await asyncio.sleep(0.02)
    finally:
        for c in clients.values():
            c.kill()
            c.wait()
        await api.close()
    return via_cluster, direct


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/e2e.py needs root (network namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="svcnet-bench-e2e-") as tmp:
        cluster = start_cluster(Path(tmp) / "data", nodes=args.nodes)
        try:
            via_cluster, direct = asyncio.run(measure(cluster, args.runs))
        finally:
            cluster.stop()
    result = {
        "runs": args.runs,
        "clusterip_ok": len(via_cluster),
        "direct_ok": len(direct),
        "clusterip_p50_ms": 1000 * statistics.median(via_cluster),
        "clusterip_p99_ms": 1000 * pct(via_cluster, 99),
        "direct_p50_ms": 1000 * statistics.median(direct),
        "direct_p99_ms": 1000 * pct(direct, 99),
    }
    print()
    print(
        f"Ready -> first connection through the ClusterIP: p50 {result['clusterip_p50_ms']:.1f} ms, "
        f"p99 {result['clusterip_p99_ms']:.1f} ms  (targets: p50 <= 300 ms, p99 <= 1000 ms)"
    )
    print(
        f"Ready -> first direct connection to the pod IP:  p50 {result['direct_p50_ms']:.1f} ms, "
        f"p99 {result['direct_p99_ms']:.1f} ms  (reference)"
    )
    print(
        f"ratio ClusterIP/direct: p50 {result['clusterip_p50_ms'] / max(result['direct_p50_ms'], 0.001):.2f}x"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
