"""A small scheduler: binds pods that have no spec.nodeName to a Ready node, spreading them.

Filtering: the node is Ready (condition True and, when it keeps a Lease in kube-node-lease,
renewed within the lease's duration), not cordoned (spec.unschedulable), carries every
label of the pod's nodeSelector and has no NoSchedule/NoExecute taint the pod does not
tolerate. Scoring: fewest pods with the same labels (spreading a workload), then fewest pods.

Binding: POST pods/NAME/binding as kube-scheduler does. svcnet's API server has no binding
subresource yet and forbids changing spec.nodeName by update (as upstream does), so when the
binding is refused the scheduler falls back to re-creating the pod with spec.nodeName set
(same name, labels and spec; a new uid). docs/lab.md explains the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.informer import RETRYABLE, InformerSource

log = logging.getLogger(__name__)

Obj = dict[str, Any]

TERMINAL = ("Succeeded", "Failed")


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def node_ready(node: Obj, lease: Obj | None = None, now: float | None = None) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
        return False
    if lease is not None:
        spec = lease.get("spec") or {}
        renewed = _parse_time(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or 40)
        if renewed is not None and (now or time.time()) - renewed > duration:
            return False
    return True


def _tolerates(pod: Obj, taint: Obj) -> bool:
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t.get("key") == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def feasible(pod: Obj, node: Obj) -> bool:
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in ((pod.get("spec") or {}).get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    for taint in spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(pod, taint):
            return False
    return True


def pick_node(
    pod: Obj,
    nodes: Iterable[Obj],
    pods: Iterable[Obj],
    leases: dict[str, Obj] | None = None,
    now: float | None = None,
) -> str | None:
    """The node to bind POD to, or None when no node fits."""
    leases = leases or {}
    candidates = [
        n for n in nodes if node_ready(n, leases.get(n["metadata"]["name"]), now) and feasible(pod, n)
    ]
    if not candidates:
        return None
    labels = (pod.get("metadata") or {}).get("labels") or {}
    namespace = (pod.get("metadata") or {}).get("namespace")
    total: dict[str, int] = {}
    same: dict[str, int] = {}
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName")
        if not node or (p.get("status") or {}).get("phase") in TERMINAL:
            continue
        total[node] = total.get(node, 0) + 1
        plabels = (p.get("metadata") or {}).get("labels") or {}
        if (
            labels
            and (p.get("metadata") or {}).get("namespace") == namespace
            and all(plabels.get(k) == v for k, v in labels.items())
        ):
            same[node] = same.get(node, 0) + 1
    best = min(
        candidates,
        key=lambda n: (
            same.get(n["metadata"]["name"], 0),
            total.get(n["metadata"]["name"], 0),
            n["metadata"]["name"],
        ),
    )
    return str(best["metadata"]["name"])


def recreated_with_node(pod: Obj, node_name: str) -> Obj:
    """The pod as a new object bound to NODE_NAME (for servers without pods/binding)."""
    meta = {
        k: v
        for k, v in (pod.get("metadata") or {}).items()
        if k in ("name", "namespace", "labels", "annotations", "ownerReferences", "finalizers")
    }
    spec = dict(pod.get("spec") or {})
    spec["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


class Scheduler:
    def __init__(
        self, client: ApiClient, source: InformerSource, scheduler_name: str = "default-scheduler"
    ) -> None:
        self.client = client
        self.source = source
        self.scheduler_name = scheduler_name
        self.binding_supported: bool | None = None
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._pending: set[tuple[str, str]] = set()
        # Nodes picked but not yet visible in the informer: counted so a burst spreads too.
        self._assumed: dict[tuple[str, str], str] = {}
        for r in ("pods", "nodes", "leases"):
            source.informer(r)
        source.add_handler("pods", on_add=self._on_pod, on_update=lambda _o, n: self._on_pod(n))
        source.add_handler("nodes", on_add=self._retry_all, on_update=lambda _o, n: self._retry_all(n))

    def _wants(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        meta = pod.get("metadata") or {}
        return (
            not spec.get("nodeName")
            and not meta.get("deletionTimestamp")
            and (spec.get("schedulerName") or "default-scheduler") == self.scheduler_name
            and (pod.get("status") or {}).get("phase") not in TERMINAL
        )

    def _on_pod(self, pod: Obj) -> None:
        if self._wants(pod):
            key = (pod["metadata"].get("namespace") or "default", pod["metadata"]["name"])
            if key not in self._pending:
                self._pending.add(key)
                self._queue.put_nowait(key)

    def _retry_all(self, _node: Obj) -> None:
        for pod in self.source.store("pods").list():
            self._on_pod(pod)

    def pods_view(self) -> list[Obj]:
        pods = list(self.source.store("pods").list())
        for (ns, name), node in self._assumed.items():
            pods.append(
                {"metadata": {"namespace": ns, "name": name, "labels": {}}, "spec": {"nodeName": node}}
            )
        return pods

    def leases(self) -> dict[str, Obj]:
        return {
            lease["metadata"]["name"]: lease for lease in self.source.store("leases").list("kube-node-lease")
        }

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                stopper.cancel()
                return
            stopper.cancel()
            key = getter.result()
            self._pending.discard(key)
            pod = self.source.store("pods").get(*key)
            if pod is None or not self._wants(pod):
                continue
            node = pick_node(pod, self.source.store("nodes").list(), self.pods_view(), self.leases())
            if node is None:
                log.info("pod %s/%s: no node fits; waiting for nodes to change", *key)
                continue
            try:
                await self.bind(pod, node)
            except (ApiError, *RETRYABLE) as e:
                log.warning("binding %s/%s to %s failed: %s; retrying", *key, node, e)
                await asyncio.sleep(0.5)
                self._on_pod(pod)

    async def bind(self, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        ns, name = meta.get("namespace") or "default", meta["name"]
        if self.binding_supported is not False:
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": meta.get("uid")},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }
            try:
                await self.client.request(
                    "POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body=binding
                )
                self.binding_supported = True
                log.info("bound %s/%s to %s", ns, name, node)
                return
            except ApiError as e:
                if e.code not in (404, 405) or self.binding_supported:
                    raise
                log.warning("the API server has no pods/binding (%s); re-creating pods with spec.nodeName", e)
                self.binding_supported = False
        self._assumed[(ns, name)] = node
        try:
            with contextlib.suppress(ApiError):
                await self.client.delete(
                    "pods", name, ns, grace_period_seconds=0, preconditions={"uid": meta["uid"]}
                )
            await self.client.create("pods", recreated_with_node(pod, node), ns)
            log.info("re-created %s/%s on %s", ns, name, node)
        finally:
            self._assumed.pop((ns, name), None)
