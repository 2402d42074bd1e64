"""The Deployment controller, managing Pods directly.

Upstream a Deployment owns ReplicaSets (one per template, named DEPLOY-HASH) which own the
pods. svcnet serves no ReplicaSet, so this controller does both jobs: each pod carries the
pod-template-hash label of the template it was made from and is named DEPLOY-HASH-XXXXX as
a ReplicaSet would name it, and owned by the Deployment itself. Rolling updates follow
maxSurge/maxUnavailable (25%/25% by default) over those two groups of pods; Recreate deletes
the old pods first. Deleted pods are replaced under new names (and get new addresses).
"""

from __future__ import annotations

import math
from typing import Any

from svcnet.controllers.base import rfc3339
from svcnet.controllers.workloads.base import WorkloadController
from svcnet.controllers.workloads.common import (
    Obj,
    generated_pod_name,
    is_active,
    is_ready,
    pod_from_template,
    template_hash,
)

HASH_LABEL = "pod-template-hash"


def _resolve(value: Any, total: int, round_up: bool, default: str) -> int:
    value = default if value is None else value
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1]) * total / 100
        return math.ceil(pct) if round_up else math.floor(pct)
    return int(value)


def surge_and_unavailable(deploy: Obj, replicas: int) -> tuple[int, int]:
    """maxSurge rounds up and maxUnavailable down; both 0 means maxUnavailable 1 (upstream)."""
    ru = ((deploy.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    surge = _resolve(ru.get("maxSurge"), replicas, True, "25%")
    unavailable = _resolve(ru.get("maxUnavailable"), replicas, False, "25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def scale_down_order(pods: list[Obj]) -> list[Obj]:
    """Which pods go first when scaling down (upstream's ActivePods ordering, simplified):
    unscheduled, then pending, then not ready, then the newest."""
    newest_first = sorted(
        pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True
    )
    return sorted(
        newest_first,
        key=lambda p: (
            bool((p.get("spec") or {}).get("nodeName")),
            (p.get("status") or {}).get("phase") == "Running",
            is_ready(p),
        ),
    )


class DeploymentController(WorkloadController):
    resource = "deployments"
    kind = "Deployment"

    async def sync(self, key: str, deploy: Obj) -> None:
        spec = deploy.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec.get("template") or {})
        base = f"{deploy['metadata']['name']}-{pod_hash}"
        pods = [p for p in self.owned_pods(deploy) if is_active(p)]
        new: list[Obj] = []
        old: list[Obj] = []
        for p in pods:  # one pass: `p not in new` compared whole pod dicts, quadratic in replicas
            (new if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == pod_hash else old).append(p)
        to_create = 0
        to_delete: list[Obj] = []
        paused = bool(spec.get("paused"))
        strategy = (spec.get("strategy") or {}).get("type") or "RollingUpdate"
        if paused:
            pass
        elif not old:
            if len(new) < replicas:
                to_create = replicas - len(new)
            elif len(new) > replicas:
                to_delete = scale_down_order(new)[: len(new) - replicas]
        elif strategy == "Recreate":
            to_delete = old
        else:
            surge, unavailable = surge_and_unavailable(deploy, replicas)
            to_create = max(0, min(replicas - len(new), replicas + surge - len(pods)))
            if len(new) > replicas:
                to_delete = scale_down_order(new)[: len(new) - replicas]
            ready = sum(1 for p in pods if is_ready(p))
            budget = ready - (replicas - unavailable)
            for p in scale_down_order(old):
                if not is_ready(p):
                    to_delete.append(p)  # an unready old pod serves nobody: it goes first
                elif budget > 0:
                    to_delete.append(p)
                    budget -= 1
        for _ in range(to_create):
            await self.create_pod(
                key, pod_from_template(deploy, generated_pod_name(base), {HASH_LABEL: pod_hash})
            )
        for p in to_delete:
            await self.delete_pod(key, p)
        await self.patch_status(deploy, self._status(deploy, pods, new, replicas))

    @staticmethod
    def _status(deploy: Obj, pods: list[Obj], new: list[Obj], replicas: int) -> Obj:
        ready = sum(1 for p in pods if is_ready(p))
        available = ready >= replicas - surge_and_unavailable(deploy, replicas)[1]
        complete = len(new) == replicas and len(pods) == replicas and ready == replicas
        conditions = [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                "message": f'ReplicaSet "{deploy["metadata"]["name"]}" has successfully progressed.'
                if complete
                else f'ReplicaSet "{deploy["metadata"]["name"]}" is progressing.',
            },
        ]
        old_conds = {c.get("type"): c for c in (deploy.get("status") or {}).get("conditions") or []}
        for c in conditions:
            prev = old_conds.get(c["type"])
            if prev and prev.get("status") == c["status"] and prev.get("reason") == c["reason"]:
                c["lastUpdateTime"] = prev.get("lastUpdateTime")
                c["lastTransitionTime"] = prev.get("lastTransitionTime")
            else:
                c["lastUpdateTime"] = c["lastTransitionTime"] = rfc3339()
        status: Obj = {
            "observedGeneration": deploy["metadata"].get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": len(new),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": conditions,
        }
        unavailable = max(0, replicas - ready)
        status["unavailableReplicas"] = unavailable if unavailable else None
        return status
