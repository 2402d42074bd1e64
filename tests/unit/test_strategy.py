"""Registry strategies: status handling, generation, Namespace finalizers, Pod status on
create, and the Service update helpers (patchAllocatedValues, normalizeClusterIPs,
dropTypeDependentFields)."""

from __future__ import annotations

import copy
from typing import Any

from svcnet.api.defaults import apply_defaults
from svcnet.api.strategy import (
    drop_type_dependent_fields,
    normalize_cluster_ips,
    patch_allocated_values,
    pod_qos_class,
    prepare_for_create,
    prepare_for_status_update,
    prepare_for_update,
    tracks_generation,
)


def svc(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    apply_defaults(body)
    return body


# --------------------------------------------------------------------------------------------
# Service


def test_service_create_clears_status_and_fills_cluster_ips() -> None:
    obj = svc(
        {"clusterIP": "10.96.0.10", "ports": [{"port": 80}], "type": "LoadBalancer"},
        status={"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    )
    prepare_for_create(obj)
    assert obj["status"] == {"loadBalancer": {}}
    assert obj["spec"]["clusterIPs"] == ["10.96.0.10"]
    assert "generation" not in obj["metadata"]  # Services do not track generation


def test_service_update_keeps_stored_status() -> None:
    old = svc(
        {"type": "LoadBalancer", "ports": [{"port": 80}]},
        status={"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}},
    )
    new = svc(
        {"type": "LoadBalancer", "ports": [{"port": 80}]},
        status={"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
    )
    prepare_for_update(new, old)
    assert new["status"] == old["status"]


def test_service_status_update_keeps_stored_spec() -> None:
    old = svc({"type": "LoadBalancer", "ports": [{"port": 80}]})
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}}
    prepare_for_status_update(new, old)
    assert new["spec"] == old["spec"]
    assert new["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.1"


def test_normalize_cluster_ips_on_update() -> None:
    old = svc({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80}]})
    dropped_plural = copy.deepcopy(old)
    del dropped_plural["spec"]["clusterIPs"]
    normalize_cluster_ips(dropped_plural, old)
    assert dropped_plural["spec"]["clusterIPs"] == ["10.96.0.10"]
    cleared = copy.deepcopy(old)
    cleared["spec"]["clusterIP"] = ""
    normalize_cluster_ips(cleared, old)
    assert "clusterIPs" not in cleared["spec"]
    changed = copy.deepcopy(old)
    changed["spec"]["clusterIP"] = "10.96.0.11"
    normalize_cluster_ips(changed, old)
    assert changed["spec"]["clusterIPs"] == ["10.96.0.11"]


def test_patch_allocated_values_matches_node_ports_by_name_and_never_reuses_one() -> None:
    old = svc(
        {
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [
                {"name": "a", "port": 80, "nodePort": 30001},
                {"name": "b", "port": 81, "nodePort": 30002},
            ],
        }
    )
    new = svc(
        {
            "type": "NodePort",
            "ports": [
                {"name": "b", "port": 81, "nodePort": 30001},
                {"name": "a", "port": 80},
                {"name": "c", "port": 82},
            ],
        }
    )
    patch_allocated_values(new, old)
    # "a" had 30001, which "b" now claims: it is left for the allocator; "c" is new.
    assert [p.get("nodePort") for p in new["spec"]["ports"]] == [30001, None, None]
    assert new["spec"]["clusterIP"] == "10.96.0.10"
    assert new["spec"]["clusterIPs"] == ["10.96.0.10"]


def test_patch_allocated_values_does_not_carry_cluster_ip_into_external_name() -> None:
    old = svc({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80}]})
    new = svc({"type": "ExternalName", "externalName": "db.example.com"})
    patch_allocated_values(new, old)
    assert "clusterIP" not in new["spec"]


def test_drop_type_dependent_fields_from_local_load_balancer_to_cluster_ip() -> None:
    old = svc(
        {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 31000,
            "loadBalancerClass": "example.com/lb",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
        },
        status={"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    )
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    drop_type_dependent_fields(new, old)
    spec = new["spec"]
    for key in (
        "healthCheckNodePort",
        "allocateLoadBalancerNodePorts",
        "loadBalancerClass",
        "externalTrafficPolicy",
    ):
        assert key not in spec, key
    assert "nodePort" not in spec["ports"][0]
    assert spec["clusterIP"] == "10.96.0.10"
    assert new["status"] == {"loadBalancer": {}}


def test_drop_type_dependent_fields_keeps_values_the_user_changed() -> None:
    old = svc({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]})
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["ports"][0]["nodePort"] = 30081
    new["spec"]["externalTrafficPolicy"] = "Local"
    drop_type_dependent_fields(new, old)
    assert new["spec"]["ports"][0]["nodePort"] == 30081
    assert new["spec"]["externalTrafficPolicy"] == "Local"


# --------------------------------------------------------------------------------------------
# Pod


def pod(resources: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "x"}
    if resources is not None:
        container["resources"] = resources
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [container], **spec},
        "status": {"phase": "Running", "podIP": "10.0.0.1"},
    }
    apply_defaults(body)
    return body


def test_pod_create_starts_pending_with_qos_class() -> None:
    obj = pod()
    prepare_for_create(obj)
    assert obj["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_pod_qos_classes() -> None:
    assert (
        pod_qos_class(pod({"limits": {"cpu": "1", "memory": "1Gi"}})) == "Guaranteed"
    )  # requests defaulted to limits
    assert pod_qos_class(pod({"requests": {"cpu": "100m"}})) == "Burstable"
    assert pod_qos_class(pod({"limits": {"cpu": "1"}})) == "Burstable"
    assert pod_qos_class(pod()) == "BestEffort"


def test_gated_pod_gets_the_scheduling_gated_condition() -> None:
    obj = pod(schedulingGates=[{"name": "example.com/wait"}])
    prepare_for_create(obj)
    assert obj["status"]["conditions"][0]["reason"] == "SchedulingGated"


def test_pod_update_keeps_status_and_status_update_keeps_spec() -> None:
    old = pod()
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Failed"}
    prepare_for_update(new, old)
    assert new["status"] == old["status"]
    status_write = copy.deepcopy(old)
    status_write["spec"]["nodeName"] = "elsewhere"
    status_write["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "1"}]
    status_write["status"] = {"phase": "Succeeded"}
    prepare_for_status_update(status_write, old)
    assert status_write["spec"] == old["spec"]
    assert "ownerReferences" not in status_write["metadata"]
    assert status_write["status"] == {"phase": "Succeeded"}


# --------------------------------------------------------------------------------------------
# Namespace, EndpointSlice, workloads: generation


def test_namespace_create_adds_kubernetes_finalizer_and_active_phase() -> None:
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop"},
        "spec": {"finalizers": ["example.com/x"]},
        "status": {"phase": "Terminating"},
    }
    prepare_for_create(ns)
    assert ns["spec"]["finalizers"] == ["example.com/x", "kubernetes"]
    assert ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "shop"
    update = copy.deepcopy(ns)
    update["spec"]["finalizers"] = []
    update["status"] = {"phase": "Terminating"}
    prepare_for_update(update, ns)
    assert update["spec"]["finalizers"] == ["example.com/x", "kubernetes"]
    assert update["status"] == {"phase": "Active"}


def deployment() -> dict[str, Any]:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
        "status": {"replicas": 5},
    }
    apply_defaults(body)
    return body


def test_deployment_generation_and_status() -> None:
    obj = deployment()
    prepare_for_create(obj)
    assert obj["metadata"]["generation"] == 1
    assert obj["status"] == {}
    obj["status"] = {"replicas": 1, "observedGeneration": 1}
    labels_only = copy.deepcopy(obj)
    labels_only["metadata"]["labels"] = {"x": "y"}
    labels_only["status"] = {}
    prepare_for_update(labels_only, obj)
    assert labels_only["metadata"]["generation"] == 1
    assert labels_only["status"] == obj["status"]
    scaled = copy.deepcopy(obj)
    scaled["spec"]["replicas"] = 3
    scaled["metadata"]["generation"] = 99  # clients cannot set it
    prepare_for_update(scaled, obj)
    assert scaled["metadata"]["generation"] == 2
    annotated = copy.deepcopy(obj)
    annotated["metadata"]["annotations"] = {"kubernetes.io/change-cause": "x"}
    prepare_for_update(annotated, obj)
    assert annotated["metadata"]["generation"] == 2


def test_deployment_status_update_keeps_spec_and_generation() -> None:
    obj = deployment()
    prepare_for_create(obj)
    new = copy.deepcopy(obj)
    new["spec"]["replicas"] = 7
    new["status"] = {"replicas": 1, "readyReplicas": 1}
    prepare_for_status_update(new, obj)
    assert new["spec"]["replicas"] == 1
    assert new["metadata"]["generation"] == 1
    assert new["status"] == {"replicas": 1, "readyReplicas": 1}


def test_statefulset_generation_only_follows_spec() -> None:
    obj = deployment()
    obj["kind"] = "StatefulSet"
    prepare_for_create(obj)
    annotated = copy.deepcopy(obj)
    annotated["metadata"]["annotations"] = {"a": "b"}
    prepare_for_update(annotated, obj)
    assert annotated["metadata"]["generation"] == 1


def test_endpoint_slice_generation_follows_content_and_labels() -> None:
    eps = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "s", "namespace": "default"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}],
        "ports": [{"port": 80}],
    }
    apply_defaults(eps)
    prepare_for_create(eps)
    assert eps["metadata"]["generation"] == 1
    same = copy.deepcopy(eps)
    same["metadata"]["annotations"] = {"note": "x"}
    prepare_for_update(same, eps)
    assert same["metadata"]["generation"] == 1
    moved = copy.deepcopy(eps)
    moved["endpoints"][0]["addresses"] = ["10.0.0.2"]
    prepare_for_update(moved, eps)
    assert moved["metadata"]["generation"] == 2
    relabeled = copy.deepcopy(eps)
    relabeled["metadata"]["labels"] = {"kubernetes.io/service-name": "web"}
    prepare_for_update(relabeled, eps)
    assert relabeled["metadata"]["generation"] == 2


def test_generation_tracking_kinds() -> None:
    assert tracks_generation("apps/v1", "Deployment")
    assert tracks_generation("discovery.k8s.io/v1", "EndpointSlice")
    assert not tracks_generation("v1", "Service")
    assert not tracks_generation("v1", "Pod")


def test_kinds_without_generation_keep_the_stored_one() -> None:
    old = svc({"ports": [{"port": 80}]})
    new = copy.deepcopy(old)
    new["metadata"]["generation"] = 5
    prepare_for_update(new, old)
    assert "generation" not in new["metadata"]


def test_node_keeps_status_on_update_and_spec_on_status_update() -> None:
    old = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n"},
        "spec": {"podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]},
    }
    prepare_for_create(old)
    assert old["status"]["addresses"]  # nodes may be created with status
    new = copy.deepcopy(old)
    new["status"] = {}
    prepare_for_update(new, old)
    assert new["status"] == old["status"]
    status_write = copy.deepcopy(old)
    status_write["spec"]["unschedulable"] = True
    prepare_for_status_update(status_write, old)
    assert status_write["spec"] == old["spec"]
