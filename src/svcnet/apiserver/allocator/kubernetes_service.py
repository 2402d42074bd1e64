"""The API server's own objects: the `default/kubernetes` Service holding the first address of
the service range (upstream's kubernetesservice controller), with its Endpoints and
EndpointSlice pointing at the server itself, and Events the allocation repair loop records."""

from __future__ import annotations

import logging
import os
from typing import Any

from svcnet.api import resources
from svcnet.api.errors import StatusError
from svcnet.apiserver.objectmeta import now_rfc3339

log = logging.getLogger("svcnet.apiserver.allocator")

SERVICES = resources.by_path("", "v1", "services")
ENDPOINTS = resources.by_path("", "v1", "endpoints")
SLICES = resources.by_path("discovery.k8s.io", "v1", "endpointslices")
EVENTS = resources.by_path("", "v1", "events")
assert SERVICES and ENDPOINTS and SLICES and EVENTS

NAME = "kubernetes"
NAMESPACE = "default"
LABELS = {"component": "apiserver", "provider": "kubernetes"}

Obj = dict[str, Any]


def kubernetes_service(cluster_ip: str, port: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    }


async def ensure_kubernetes_service(registry: Any, cluster_ip: str, host: str, port: int) -> None:
    """Create (or bring up to date) default/kubernetes and its endpoints. Failures are logged:
    the API server serves without them."""
    try:
        await _ensure_service(registry, cluster_ip, port)
    except StatusError as exc:
        log.warning("cannot reconcile the default/kubernetes Service: %s", exc.message)
    try:
        await _ensure_endpoints(registry, host, port)
    except StatusError as exc:
        # Upstream's validation refuses loopback endpoint addresses: a server on 127.0.0.1
        # has a kubernetes Service without endpoints, as kube-apiserver would.
        log.info("no endpoints for default/kubernetes: %s", exc.message)


async def _ensure_service(registry: Any, cluster_ip: str, port: int) -> None:
    try:
        current = await registry.get(SERVICES, NAMESPACE, NAME)
    except StatusError as exc:
        if exc.code != 404:
            raise
        await registry.create(SERVICES, NAMESPACE, kubernetes_service(cluster_ip, port))
        return
    ports = current.get("spec", {}).get("ports") or []
    if [(p.get("name"), p.get("port"), p.get("targetPort")) for p in ports] != [("https", 443, port)]:
        updated = dict(current)
        updated["spec"] = {
            **current.get("spec", {}),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        }
        await registry.update(SERVICES, NAMESPACE, NAME, updated)


async def _ensure_endpoints(registry: Any, host: str, port: int) -> None:
    ip = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    family = "IPv6" if ":" in ip else "IPv4"
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
        ],
    }
    await registry.update(ENDPOINTS, NAMESPACE, NAME, endpoints)
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": family,
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    try:
        await registry.update(SLICES, NAMESPACE, NAME, slice_)
    except StatusError as exc:
        if exc.code != 404:
            raise
        await registry.create(SLICES, NAMESPACE, slice_)


async def record_service_event(registry: Any, svc: Obj, reason: str, message: str, component: str) -> None:
    """A Warning Event about ``svc`` (what upstream's repair controllers' recorders write)."""
    md = svc.get("metadata", {})
    now = now_rfc3339()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{md.get('name', 'service')}.{os.urandom(8).hex()}",
            "namespace": md.get("namespace"),
        },
        "involvedObject": {
            "kind": "Service",
            "apiVersion": "v1",
            "namespace": md.get("namespace", ""),
            "name": md.get("name", ""),
            "uid": md.get("uid", ""),
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": "Warning",
        "reportingComponent": component,
        "reportingInstance": "",
    }
    await registry.create(EVENTS, md.get("namespace"), event)
