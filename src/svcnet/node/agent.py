"""The node agent (kubelet, in miniature): registers its Node, keeps a Lease in
kube-node-lease renewed, runs the pods bound to it (PodWorker each), reports their status,
finishes their graceful deletion, and after a restart adopts the pods it left running."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.informer import RETRYABLE, InformerSource
from svcnet.node import netns, runtime, sandbox
from svcnet.node.ipam import HostLocalIpam
from svcnet.node.pod import PodWorker, rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LEASE_DURATION = 40  # seconds, kubelet's default nodeLeaseDurationSeconds
LEASE_RENEW = 10.0  # kubelet renews at a quarter of the duration


@dataclass
class AgentConfig:
    kubeconfig: str | None
    node_name: str
    data_dir: Path
    node_ip: str = ""
    pod_cidr: str | None = None
    bridge: str = "cbr0"
    netns: str | None = None  # the node's network namespace (None: the agent's own)
    netns_prefix: str = ""  # prefix of pod namespace names (default: svcnet-<node>-)
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    labels: dict[str, str] = field(default_factory=dict)
    cleanup_on_exit: bool = False  # stop pods and remove their namespaces when the agent stops
    # Pods as plain local processes, no network namespace (no root needed): each pod's address
    # comes from a loopback pod range (127/8 is all local on Linux) and its processes share the
    # machine's network stack; the built-in server binds the pod's address (`svcnet up` without root).
    local_pods: bool = False


def default_node_ip(node_netns: str | None) -> str:
    """The node's first global IPv4 address (in its namespace)."""
    res = netns.ip(node_netns, "-j", "-4", "addr", "show", "scope", "global", check=False)
    try:
        for link in json.loads(res.stdout or "[]"):
            for a in link.get("addr_info") or []:
                if a.get("local"):
                    return str(a["local"])
    except ValueError:
        pass
    return "127.0.0.1"


class NodeAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node_name = config.node_name
        self.data_dir = config.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_dns = config.cluster_dns
        self.cluster_domain = config.cluster_domain
        self.node_ip = config.node_ip or default_node_ip(config.netns)
        self.prefix = config.netns_prefix or f"svcnet-{config.node_name}-"
        self.client = ApiClient.from_kubeconfig(config.kubeconfig)
        self.source = InformerSource(self.client, min_watch_timeout=60, backoff_cap=2.0)
        self.workers: dict[str, PodWorker] = {}
        self.ipam: HostLocalIpam
        self.node_network: sandbox.NodeNetwork
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    # -- helpers the workers use -----------------------------------------------------------------

    def pod_netns_name(self, namespace: str, name: str, uid: str) -> str:
        if self.config.local_pods:
            return ""  # no sandbox namespace: the pod's processes run in the agent's own
        # Readable in `ip netns`, unique per pod uid, and under the agent's prefix so cleanup
        # can find every namespace it made.
        return f"{self.prefix}{namespace}.{name}.{uid[:6]}"

    def services(self) -> list[Obj]:
        return self.source.store("services").list()

    def event(self, pod: Obj, type_: str, reason: str, message: str, container: str | None = None) -> None:
        meta = pod.get("metadata") or {}
        now = rfc3339()
        involved: Obj = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{secrets.token_hex(8)}",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": "kubelet", "host": self.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
        }
        log.info("event %s/%s %s: %s", meta.get("namespace"), meta.get("name"), reason, message)

        async def send() -> None:
            with contextlib.suppress(ApiError, *RETRYABLE):
                await self.client.create("events", ev)

        self._spawn(send())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def patch_status(self, pod: Obj, status: Obj) -> bool:
        meta = pod["metadata"]
        for attempt in range(5):
            try:
                await self.client.patch(
                    "pods",
                    meta["name"],
                    {"status": status},
                    meta.get("namespace"),
                    subresource="status",
                    patch_type="merge",
                )
                return True
            except ApiError as e:
                if e.code == 404:
                    return False
                log.warning("pod %s/%s: status update failed: %s", meta.get("namespace"), meta["name"], e)
                if e.code == 422:
                    return False
            except RETRYABLE as e:
                log.warning(
                    "pod %s/%s: status update failed (%s); retrying", meta.get("namespace"), meta["name"], e
                )
            await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
        return False

    async def finish_delete(self, pod: Obj) -> None:
        """The grace-0 delete that ends a graceful deletion (uid precondition: never a newer pod)."""
        meta = pod["metadata"]
        for attempt in range(10):
            try:
                await self.client.delete(
                    "pods",
                    meta["name"],
                    meta.get("namespace"),
                    grace_period_seconds=0,
                    preconditions={"uid": meta["uid"]},
                )
                return
            except ApiError as e:
                if e.code in (404, 409):
                    return
                log.warning("pod %s/%s: final delete failed: %s", meta.get("namespace"), meta["name"], e)
            except RETRYABLE:
                pass
            await asyncio.sleep(min(2.0, 0.2 * 2**attempt))

    # -- node registration and lease ---------------------------------------------------------------

    def _node_object(self) -> Obj:
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **self.config.labels,
        }
        node: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": labels},
            "spec": {},
        }
        if self.config.pod_cidr:
            node["spec"] = {"podCIDR": self.config.pod_cidr, "podCIDRs": [self.config.pod_cidr]}
        return node

    def _node_status(self) -> Obj:
        now = rfc3339()
        return {
            "addresses": [
                {"type": "InternalIP", "address": self.node_ip},
                {"type": "Hostname", "address": self.node_name},
            ],
            "capacity": {"cpu": str(os.cpu_count() or 1), "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": str(os.cpu_count() or 1), "memory": "8Gi", "pods": "110"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "svcnet node agent is posting ready status",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": self._ready_since,
                }
            ],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": os.uname().release,
                "osImage": "svcnet",
                "containerRuntimeVersion": "svcnet://0.1",
                "kubeletVersion": "v1.32.0-svcnet",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }

    async def register(self) -> Obj:
        self._ready_since = rfc3339()
        while True:
            try:
                try:
                    node = await self.client.create("nodes", self._node_object())
                    log.info("registered node %s", self.node_name)
                except ApiError as e:
                    if e.code != 409:
                        raise
                    node = await self.client.get("nodes", self.node_name)
                    want = self._node_object()
                    spec = node.get("spec") or {}
                    patch: Obj = {"metadata": {"labels": want["metadata"]["labels"]}}
                    if self.config.pod_cidr and not spec.get("podCIDR"):
                        patch["spec"] = want["spec"]
                    node = await self.client.patch("nodes", self.node_name, patch, patch_type="merge")
                node = await self.client.patch(
                    "nodes",
                    self.node_name,
                    {"status": self._node_status()},
                    subresource="status",
                    patch_type="merge",
                )
                return node
            except ApiError as e:
                log.error("registering node %s failed: %s; retrying", self.node_name, e)
            except RETRYABLE as e:
                log.warning("API server unreachable (%s); retrying registration", e)
            await asyncio.sleep(1.0)

    async def _pod_cidr(self, node: Obj) -> str:
        """spec.podCIDR from the Node (node IPAM sets it) or from --pod-cidr."""
        while True:
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr:
                if self.config.pod_cidr and cidr != self.config.pod_cidr:
                    log.warning(
                        "node %s has podCIDR %s; --pod-cidr %s ignored",
                        self.node_name,
                        cidr,
                        self.config.pod_cidr,
                    )
                return str(cidr)
            log.info("waiting for node %s to get spec.podCIDR (node IPAM)", self.node_name)
            await asyncio.sleep(1.0)
            with contextlib.suppress(ApiError, *RETRYABLE):
                node = await self.client.get("nodes", self.node_name)

    async def _lease_loop(self) -> None:
        lease: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION},
        }
        heartbeat_at = time.monotonic()
        while not self._stop.is_set():
            now = datetime_micro()
            try:
                try:
                    await self.client.patch(
                        "leases",
                        self.node_name,
                        {"spec": {"renewTime": now}},
                        "kube-node-lease",
                        patch_type="merge",
                    )
                except ApiError as e:
                    if e.code != 404:
                        raise
                    lease["spec"]["acquireTime"] = now
                    lease["spec"]["renewTime"] = now
                    await self.client.create("leases", lease, "kube-node-lease")
                if time.monotonic() - heartbeat_at > LEASE_DURATION:
                    heartbeat_at = time.monotonic()
                    await self.client.patch(
                        "nodes",
                        self.node_name,
                        {"status": self._node_status()},
                        subresource="status",
                        patch_type="merge",
                    )
            except (ApiError, *RETRYABLE) as e:
                log.warning("renewing lease of %s failed: %s", self.node_name, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), LEASE_RENEW)

    # -- pods ------------------------------------------------------------------------------------

    def _on_pod(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid")
        if not uid or (pod.get("spec") or {}).get("nodeName") != self.node_name:
            return
        worker = self.workers.get(uid)
        if worker is None:
            terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if terminal and uid not in self._saved and not meta.get("deletionTimestamp"):
                return  # finished before this agent's time: kubelet never runs a terminal pod again
            if meta.get("deletionTimestamp") and uid not in self._saved:
                # Nothing of it runs here: nothing to stop, just finish the deletion.
                self._spawn(self.finish_delete(pod))
                return
            worker = PodWorker(self, pod)
            saved = self._saved.pop(uid, None)
            if saved is not None:
                worker.adopt = saved
            self.workers[uid] = worker
            worker.start()
            assert worker.task is not None
            worker.task.add_done_callback(lambda _t, u=uid: self._worker_done(u))
        else:
            worker.update(pod)

    def _worker_done(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None and worker.finished:
            del self.workers[uid]

    def _on_pod_deleted(self, pod: Obj) -> None:
        """Gone from the API (a grace-0 delete by someone else): stop it and clean up."""
        uid = (pod.get("metadata") or {}).get("uid")
        worker = self.workers.pop(uid, None) if uid else None
        if worker is None:
            return

        async def finish() -> None:
            if worker.task is not None:
                worker.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker.task
            await worker.kill_now()
            await worker.teardown()

        self._spawn(finish())

    def _load_saved(self) -> dict[str, Obj]:
        saved: dict[str, Obj] = {}
        pods_dir = self.data_dir / "pods"
        if not pods_dir.is_dir():
            return saved
        for d in pods_dir.iterdir():
            with contextlib.suppress(OSError, ValueError):
                data = json.loads((d / "state.json").read_text())
                saved[data["uid"]] = data
        return saved

    async def _cleanup_orphans(self) -> None:
        """Pods this agent ran that the API no longer binds here: stop them, free their
        addresses, remove their namespaces."""
        for uid, saved in list(self._saved.items()):
            log.info("pod %s/%s (%s) is gone; cleaning up", saved.get("namespace"), saved.get("name"), uid)
            for c in (saved.get("containers") or {}).values():
                pid = c.get("pid")
                if pid and runtime.alive(int(pid), c.get("ticks")):
                    proc = runtime.Process(
                        int(pid), c.get("ticks"), self.data_dir / "pods" / uid / "x.status"
                    )
                    await proc.stop(0)
            await asyncio.to_thread(sandbox.destroy, saved.get("netns") or "")
            self.ipam.release(uid)
            shutil.rmtree(self.data_dir / "pods" / uid, ignore_errors=True)
            del self._saved[uid]
        # Addresses held by pods that have no state left at all.
        known = set(self.workers)
        for owner in self.ipam.owners() - known:
            self.ipam.release(owner)

    # -- run -------------------------------------------------------------------------------------

    async def run(self) -> None:
        node = await self.register()
        cidr = await self._pod_cidr(node)
        self.ipam = HostLocalIpam(self.data_dir, cidr)
        self.node_network = sandbox.NodeNetwork(
            self.config.netns, self.config.bridge, str(self.ipam.gateway), self.ipam.prefixlen
        )
        if not self.config.local_pods:
            await asyncio.to_thread(self.node_network.ensure_bridge)
        self._saved = self._load_saved()
        self.source.watch("pods", field_selector=f"spec.nodeName={self.node_name}")
        self.source.informer("services")
        await self.source.start()
        await self.source.wait_synced()
        self.source.add_handler(
            "pods",
            on_add=self._on_pod,
            on_update=lambda _o, n: self._on_pod(n),
            on_delete=self._on_pod_deleted,
        )
        await asyncio.sleep(0)
        await self._cleanup_orphans()
        lease = asyncio.get_running_loop().create_task(self._lease_loop())
        log.info(
            "node %s ready: pod CIDR %s on bridge %s%s",
            self.node_name,
            cidr,
            self.config.bridge,
            f" in netns {self.config.netns}" if self.config.netns else "",
        )
        try:
            await self._stop.wait()
        finally:
            lease.cancel()
            await self.shutdown()

    def stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        """Stop watching. Pods keep running (as with kubelet) unless cleanup_on_exit is set."""
        await self.source.stop()
        workers = list(self.workers.values())
        for w in workers:
            if w.task is not None:
                w.task.cancel()
        await asyncio.gather(*(w.task for w in workers if w.task), return_exceptions=True)
        if self.config.cleanup_on_exit:
            for w in workers:
                await w.kill_now()
                await w.teardown()
        if self.config.cleanup_on_exit and not self.config.local_pods:
            # Anything else under our prefix (say a sandbox whose worker failed half-way).
            for name in netns.list_names(self.prefix):
                netns.kill_processes(name)
                sandbox.destroy(name)
        for t in list(self._tasks):
            t.cancel()
        await self.client.close()


def datetime_micro() -> str:
    """MicroTime, as Lease renewTime carries it."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
