"""`svcnet lab`: the topology of topology.py brought to life against an API server.

Per node: the node agent (in the host namespace, its pods attached to the node namespace's
bridge) and kube-proxy (`svcnet proxy`, inside the node namespace). For the whole lab: the
cluster DNS in the underlay namespace behind the kube-dns Service (10.96.0.10), the network
controller of routes.py, and TCP relays so that processes inside the namespaces reach the API
server on the host's loopback at the address their kubeconfig names.

Everything it starts is recorded (PIDs, namespaces) and removed by ``stop()``: processes by
the PID it started, then every namespace with the lab's prefix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.informer import RETRYABLE, InformerSource
from svcnet.client.kubeconfig import load_kubeconfig
from svcnet.lab import topology
from svcnet.lab.relay import Relay
from svcnet.lab.routes import LabNetwork, node_ready
from svcnet.lab.topology import CLUSTER_CIDR, CLUSTER_DNS_IP, GATEWAY_IP, Topology
from svcnet.node.runtime import alive, start_svcnet, start_ticks, stop_group

log = logging.getLogger(__name__)

STATE_FILE = "lab.json"
DNS_MANAGED_BY = "svcnet-lab"


@dataclass
class LabOptions:
    kubeconfig: Path
    data_dir: Path
    nodes: int = 2
    proxy_mode: str = "iptables"
    dns: bool = True
    prefix: str | None = None
    log_level: str = "info"
    min_sync_period: str = "0s"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path


@dataclass
class Lab:
    opts: LabOptions
    topo: Topology = field(init=False)
    children: list[Child] = field(default_factory=list)
    relays: list[Relay] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefix = self.opts.prefix or topology.new_prefix()
        self.topo = Topology.plan(self.prefix, self.opts.nodes)
        self.data_dir = self.opts.data_dir
        self.log_dir = self.data_dir / "logs"
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.source: InformerSource | None = None
        self.client: ApiClient | None = None

    # -- processes -------------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], netns_name: str | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        child = Child(name, start_svcnet(args, log_path, netns_name), log_path)
        self.children.append(child)
        self.save_state()
        return child

    def save_state(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "prefix": self.prefix,
            "kubeconfig": str(self.opts.kubeconfig),
            "net": self.topo.net,
            "external": self.topo.external,
            "pid": os.getpid(),
            "nodes": [
                {"name": n.name, "netns": n.netns, "ip": n.ip, "podCIDR": n.pod_cidr} for n in self.topo.nodes
            ],
            "children": [
                {
                    "name": c.name,
                    "pid": c.proc.pid,
                    "ticks": start_ticks(c.proc.pid),
                    "cmd": list(c.proc.args),
                }
                for c in self.children
            ],
        }
        tmp = self.data_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.data_dir / STATE_FILE)

    # -- start -----------------------------------------------------------------------------------

    def node_args(self, i: int, node: topology.LabNode, cluster_dns: str) -> list[str]:
        return [
            "node",
            "--kubeconfig",
            str(self.opts.kubeconfig),
            "--node-name",
            node.name,
            "--netns",
            node.netns,
            "--netns-prefix",
            f"{self.prefix}-p{i}-",
            "--pod-cidr",
            node.pod_cidr,
            "--node-ip",
            node.ip,
            "--cluster-dns",
            cluster_dns,
            "--data-dir",
            str(self.data_dir / node.name),
            "--cleanup-on-exit",
            "--log-level",
            self.opts.log_level,
        ]

    def proxy_args(self, node: topology.LabNode) -> list[str]:
        common = ["--kubeconfig", str(self.opts.kubeconfig), "--node-name", node.name, "--node-ip", node.ip]
        if self.opts.proxy_mode == "userspace":
            return ["proxy", "userspace", *common, "--redirect", "iptables"]
        return [
            "proxy",
            "--mode",
            self.opts.proxy_mode,
            *common,
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--min-sync-period",
            self.opts.min_sync_period,
        ]

    def clean_previous_run(self) -> None:
        """A lab that died without cleaning up (kill -9, power loss) left its state file: stop
        its processes and remove its namespaces before starting again."""
        try:
            old = read_state(self.data_dir)
        except (FileNotFoundError, ValueError):
            return
        if old.get("pid") and alive(int(old["pid"]), None) and int(old["pid"]) != os.getpid():
            raise RuntimeError(
                f"a lab (pid {old['pid']}) is already running with data directory {self.data_dir}"
            )
        log.warning("removing what the lab %s left behind", old.get("prefix"))
        kill_recorded_children(old)
        if str(old.get("prefix", "")).startswith("svl"):
            topology.sweep(old["prefix"] + "-")
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    async def start(self) -> None:
        await asyncio.to_thread(self.clean_previous_run)
        cfg = load_kubeconfig(str(self.opts.kubeconfig))
        url = urlparse(cfg.server)
        api_addr = (url.hostname or "127.0.0.1", url.port or 443)
        if url.hostname not in ("127.0.0.1", "localhost"):
            raise RuntimeError(f"the lab relays the API server on loopback; {cfg.server} is not on loopback")
        self.client = ApiClient(cfg)
        self.save_state()
        await asyncio.to_thread(self.topo.build)
        self.save_state()
        for ns in [self.topo.net, *(n.netns for n in self.topo.nodes)]:
            relay = Relay(ns, ("127.0.0.1", api_addr[1]), api_addr)
            await relay.start()
            self.relays.append(relay)
        cluster_dns = GATEWAY_IP
        if self.opts.dns:
            self.spawn(
                "dns",
                ["dns", "--kubeconfig", str(self.opts.kubeconfig), "--listen", f"{GATEWAY_IP}:53"],
                self.topo.net,
            )
            if await self.publish_dns_service():
                cluster_dns = CLUSTER_DNS_IP
        for i, node in enumerate(self.topo.nodes, 1):
            self.spawn(f"agent-{node.name}", self.node_args(i, node, cluster_dns))
            self.spawn(f"proxy-{node.name}", self.proxy_args(node), node.netns)
        self.source = InformerSource(self.client, min_watch_timeout=60, backoff_cap=2.0)
        network = LabNetwork(self.topo, self.source)
        await self.source.start()
        self._tasks.append(asyncio.ensure_future(network.run(self.stop_event)))
        await self.wait_nodes_ready()

    async def publish_dns_service(self) -> bool:
        """kube-system/kube-dns at 10.96.0.10 with the lab's DNS server as its endpoint, so pods
        reach DNS through a Service as in a real cluster."""
        assert self.client is not None
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
            },
            "spec": {
                "clusterIP": CLUSTER_DNS_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        }
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns-lab",
                "namespace": "kube-system",
                "labels": {
                    "kubernetes.io/service-name": "kube-dns",
                    "endpointslice.kubernetes.io/managed-by": DNS_MANAGED_BY,
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [GATEWAY_IP], "conditions": {"ready": True}}],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        }
        for resource, obj in (("services", svc), ("endpointslices", slice_)):
            try:
                await self.client.create(resource, obj)
            except ApiError as e:
                if e.code != 409:
                    log.warning("cannot publish kube-dns (%s); pods will use %s directly", e, GATEWAY_IP)
                    return False
        return True

    async def wait_nodes_ready(self, timeout: float = 30.0) -> None:
        assert self.client is not None
        deadline = time.monotonic() + timeout
        names = {n.name for n in self.topo.nodes}
        while time.monotonic() < deadline:
            for c in self.children:
                if c.proc.poll() is not None:
                    raise RuntimeError(
                        f"{c.name} exited with {c.proc.returncode}; see {c.log_path}:\n"
                        + c.log_path.read_text(errors="replace")[-2000:]
                    )
            with contextlib.suppress(ApiError, *RETRYABLE):
                nodes = (await self.client.list("nodes")).get("items") or []
                ready = {n["metadata"]["name"] for n in nodes if node_ready(n)}
                if names <= ready:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"lab nodes not Ready within {timeout:g}s")

    # -- stop ------------------------------------------------------------------------------------

    async def stop(self) -> None:
        self.stop_event.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Agents first (they stop their pods and remove the pod namespaces), then the rest.
        agents = [c for c in self.children if c.name.startswith("agent-")]
        others = [c for c in self.children if c not in agents]
        await asyncio.gather(*(asyncio.to_thread(stop_group, c.proc, 8.0) for c in agents))
        await asyncio.gather(*(asyncio.to_thread(stop_group, c.proc, 5.0) for c in others))
        for relay in self.relays:
            await relay.stop()
        if self.source is not None:
            await self.source.stop()
        if self.client is not None:
            # Best effort, all at once: with the API server gone, 2 s in all rather than per node.
            await asyncio.gather(
                *(asyncio.wait_for(self.client.delete("nodes", n.name), 2) for n in self.topo.nodes),
                return_exceptions=True,
            )
            await self.client.close()
        await asyncio.to_thread(self.cleanup_namespaces)
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    def cleanup_namespaces(self) -> None:
        self.topo.destroy()
        topology.sweep(self.prefix + "-")


def kill_recorded_children(state: dict) -> None:
    """SIGKILL the process groups a lab recorded, only while the PID still names the process
    the lab started (same start time), so a reused PID is never hit."""
    for child in state.get("children") or []:
        pid, ticks = int(child["pid"]), child.get("ticks")
        if ticks is None or not alive(pid, ticks):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def read_state(data_dir: Path) -> dict:
    path = data_dir / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no lab is running with data directory {data_dir} ({path} not found)"
        ) from None


def pod_netns(state: dict, namespace: str, pod: str) -> str | None:
    """The namespace of a pod of this lab (named PREFIX-pN-NAMESPACE.POD.UID6 by the agents)."""
    from svcnet.node import netns

    marker = f"-{namespace}.{pod}."
    found = [n for n in netns.list_names(state["prefix"] + "-p") if marker in n]
    return found[0] if found else None


def target_netns(state: dict, target: str, namespace: str = "default") -> str | None:
    if target == "external":
        return state["external"]
    if target == "net":
        return state["net"]
    for n in state["nodes"]:
        if n["name"] == target:
            return n["netns"]
    return pod_netns(state, namespace, target)
