"""What both workload controllers share: pod ownership, template hashing, expectations and
the status of a pod as the controllers judge it."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any

from svcnet.api.names import random_suffix
from svcnet.controllers.endpointslice.desired import pod_is_ready

Obj = dict[str, Any]

TERMINAL = ("Succeeded", "Failed")


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A short, stable hash of the pod template (upstream: FNV-32a of the template, printed
    with the safe-encoding alphabet); stands in for pod-template-hash/controller-revision-hash."""
    data = (
        json.dumps(template, sort_keys=True, separators=(",", ":")).encode() + str(collision_count).encode()
    )
    digest = int.from_bytes(hashlib.blake2b(data, digest_size=4).digest(), "big")
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    out = ""
    while digest:
        digest, r = divmod(digest, len(alphabet))
        out += alphabet[r]
    return out or "0"


def owner_ref(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(pod: Obj) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def is_active(pod: Obj) -> bool:
    return (
        not (pod.get("metadata") or {}).get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") not in TERMINAL
    )


# A pod counts as ready for a workload exactly as for its endpoints: its Ready condition.
is_ready = pod_is_ready


def pod_from_template(owner: Obj, name: str, extra_labels: dict[str, str]) -> Obj:
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    meta = template.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    labels.update(extra_labels)
    pod_meta: Obj = {
        "name": name,
        "namespace": owner["metadata"].get("namespace") or "default",
        "labels": labels,
        "ownerReferences": [owner_ref(owner)],
    }
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec") or {}}


def generated_pod_name(base: str) -> str:
    return f"{base}-{random_suffix()}"


class Expectations:
    """Pods an owner created or deleted that the informer has not shown yet (client-go's
    ControllerExpectations): while any are outstanding the owner is not synced again, so a
    lagging cache never makes it create or delete twice. Entries expire after ``ttl``."""

    def __init__(self, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self._adds: dict[str, dict[str, float]] = {}
        self._dels: dict[str, dict[str, float]] = {}

    def expect_add(self, owner: str, name: str) -> None:
        self._adds.setdefault(owner, {})[name] = time.monotonic()

    def expect_delete(self, owner: str, name: str) -> None:
        self._dels.setdefault(owner, {})[name] = time.monotonic()

    def observed_add(self, owner: str, name: str) -> None:
        self._adds.get(owner, {}).pop(name, None)

    def observed_delete(self, owner: str, name: str) -> None:
        self._dels.get(owner, {}).pop(name, None)

    def satisfied(self, owner: str) -> bool:
        now = time.monotonic()
        for table in (self._adds, self._dels):
            pending = table.get(owner, {})
            for name, at in list(pending.items()):
                if now - at > self.ttl:
                    del pending[name]
            if pending:
                return False
        return True

    def forget(self, owner: str) -> None:
        self._adds.pop(owner, None)
        self._dels.pop(owner, None)
