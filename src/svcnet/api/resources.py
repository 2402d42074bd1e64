"""The resources svcnet serves: names, scope, subresources and storage prefixes.

One table that discovery, routing, the store key layout, the client and kubectl's short names
all read, so the names cannot drift apart. Storage prefixes are kube-apiserver's etcd layout
(e.g. nodes live under /registry/minions/, Endpoints under /registry/services/endpoints/).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    storage_prefix: str  # key prefix in the store, ends with "/"
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale"
    verbs: tuple[str, ...] = ALL_VERBS
    # Field-selector labels this resource supports beyond metadata.name/metadata.namespace.
    selectable_fields: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def key(self, namespace: str | None, name: str) -> str:
        """The store key of one object."""
        if self.namespaced:
            return f"{self.storage_prefix}{namespace}/{name}"
        return f"{self.storage_prefix}{name}"

    def prefix(self, namespace: str | None = None) -> str:
        """The store prefix of a collection: one namespace, or all of them when None."""
        if self.namespaced and namespace:
            return f"{self.storage_prefix}{namespace}/"
        return self.storage_prefix


RESOURCES: tuple[Resource, ...] = (
    Resource(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        False,
        "/registry/namespaces/",
        short_names=("ns",),
        subresources=("status", "finalize"),
        # Upstream serves no deletecollection on namespaces: wiping them all at once is refused.
        verbs=tuple(v for v in ALL_VERBS if v != "deletecollection"),
        selectable_fields=("status.phase",),
    ),
    Resource(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        False,
        "/registry/minions/",
        short_names=("no",),
        subresources=("status",),
        selectable_fields=("spec.unschedulable",),
    ),
    Resource(
        "",
        "v1",
        "Service",
        "services",
        "service",
        True,
        "/registry/services/specs/",
        short_names=("svc",),
        categories=("all",),
        subresources=("status",),
        selectable_fields=("spec.clusterIP", "spec.type"),
    ),
    Resource(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        True,
        "/registry/pods/",
        short_names=("po",),
        categories=("all",),
        subresources=("status", "binding"),
        selectable_fields=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ),
    ),
    Resource(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        True,
        "/registry/services/endpoints/",
        short_names=("ep",),
    ),
    Resource(
        "",
        "v1",
        "Event",
        "events",
        "event",
        True,
        "/registry/events/",
        short_names=("ev",),
        selectable_fields=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    Resource(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        True,
        "/registry/endpointslices/",
    ),
    Resource(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        True,
        "/registry/deployments/",
        short_names=("deploy",),
        categories=("all",),
        subresources=("status", "scale"),
    ),
    Resource(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        True,
        "/registry/statefulsets/",
        short_names=("sts",),
        categories=("all",),
        subresources=("status", "scale"),
    ),
    Resource("coordination.k8s.io", "v1", "Lease", "leases", "lease", True, "/registry/leases/"),
)

_BY_GVR = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}


def by_path(group: str, version: str, plural: str) -> Resource | None:
    return _BY_GVR.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> Resource | None:
    return _BY_KIND.get((api_version, kind))


def by_storage_key(key: str) -> Resource | None:
    """The resource a store key belongs to (longest prefix wins: services/endpoints vs specs)."""
    best: Resource | None = None
    for r in RESOURCES:
        longer = best is None or len(r.storage_prefix) > len(best.storage_prefix)
        if key.startswith(r.storage_prefix) and longer:
            best = r
    return best


def groups() -> dict[str, list[str]]:
    """Group name -> versions, in the order they are listed above ("" is the core group)."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out
