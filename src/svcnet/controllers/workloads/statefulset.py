"""The StatefulSet controller: pods NAME-0..NAME-(n-1) with hostname set to the pod name and
subdomain to spec.serviceName, so the headless Service's DNS gives
NAME-0.SERVICE.NAMESPACE.svc.cluster.local. OrderedReady (the default) creates one pod at a
time in ordinal order, each once the ones before it are Running and Ready, removes from the
highest ordinal down, and replaces a deleted pod under the same name once the old one is
gone. Parallel creates and deletes at once. A template change rolls the pods from the
highest ordinal down (RollingUpdate; OnDelete leaves them). The revision label is
controller-revision-hash = NAME-HASH, as upstream (which stores ControllerRevisions; svcnet
does not)."""

from __future__ import annotations

from svcnet.controllers.workloads.base import WorkloadController
from svcnet.controllers.workloads.common import Obj, is_active, is_ready, pod_from_template, template_hash

REVISION_LABEL = "controller-revision-hash"


def ordinal_of(sts_name: str, pod_name: str) -> int | None:
    prefix = sts_name + "-"
    if not pod_name.startswith(prefix):
        return None
    tail = pod_name[len(prefix) :]
    return int(tail) if tail.isdigit() else None


class StatefulSetController(WorkloadController):
    resource = "statefulsets"
    kind = "StatefulSet"

    def pod_for(self, sts: Obj, ordinal: int, revision: str) -> Obj:
        name = f"{sts['metadata']['name']}-{ordinal}"
        pod = pod_from_template(
            sts,
            name,
            {
                REVISION_LABEL: revision,
                "statefulset.kubernetes.io/pod-name": name,
                "apps.kubernetes.io/pod-index": str(ordinal),
            },
        )
        pod["spec"]["hostname"] = name
        if (sts.get("spec") or {}).get("serviceName"):
            pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
        return pod

    async def sync(self, key: str, sts: Obj) -> None:
        spec = sts.get("spec") or {}
        name = sts["metadata"]["name"]
        replicas = int(spec.get("replicas", 1))
        ordered = (spec.get("podManagementPolicy") or "OrderedReady") == "OrderedReady"
        revision = f"{name}-{template_hash(spec.get('template') or {})}"
        by_ordinal: dict[int, Obj] = {}
        for p in self.owned_pods(sts):
            o = ordinal_of(name, p["metadata"]["name"])
            if o is not None:
                by_ordinal[o] = p
        blocked = False
        for o in range(replicas):
            pod = by_ordinal.get(o)
            if pod is None:
                if not blocked:
                    await self.create_pod(key, self.pod_for(sts, o, revision))
                if ordered:
                    blocked = True
                continue
            if not is_active(pod):
                if not (pod["metadata"].get("deletionTimestamp")):
                    await self.delete_pod(key, pod)  # Failed/Succeeded: replaced under the same name
                blocked = blocked or ordered
            elif ordered and not is_ready(pod):
                blocked = True
        condemned = sorted((o for o in by_ordinal if o >= replicas), reverse=True)
        for o in condemned:
            pod = by_ordinal[o]
            if pod["metadata"].get("deletionTimestamp"):
                if ordered:
                    break
                continue
            if ordered and not all(is_ready(by_ordinal[x]) for x in by_ordinal if x < o and x < replicas):
                break
            await self.delete_pod(key, pod)
            if ordered:
                break
        strategy = (spec.get("updateStrategy") or {}).get("type") or "RollingUpdate"
        current = [by_ordinal[o] for o in range(replicas) if o in by_ordinal]
        if (
            strategy == "RollingUpdate"
            and not condemned
            and len(current) == replicas
            and all(is_active(p) and is_ready(p) for p in current)
        ):
            outdated = [
                p for p in current if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) != revision
            ]
            if outdated:
                await self.delete_pod(key, outdated[-1])
        await self.patch_status(sts, self._status(sts, by_ordinal, replicas, revision))

    @staticmethod
    def _status(sts: Obj, by_ordinal: dict[int, Obj], replicas: int, revision: str) -> Obj:
        active = [p for p in by_ordinal.values() if is_active(p)]
        ready = sum(1 for p in active if is_ready(p))
        updated = sum(
            1 for p in active if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == revision
        )
        return {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(active),
            "readyReplicas": ready,
            "currentReplicas": updated,
            "updatedReplicas": updated,
            "availableReplicas": ready,
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
