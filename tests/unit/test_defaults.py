"""Defaulting as kube-apiserver decodes objects (SetDefaults_* and the v1 API's +default)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcnet.api.defaults import apply_defaults, image_tag


def defaulted(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    apply_defaults(obj)
    return obj


def test_service_defaults_for_plain_cluster_ip() -> None:
    svc = defaulted(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert svc["spec"] == {
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "sessionAffinity": "None",
        "type": "ClusterIP",
        "internalTrafficPolicy": "Cluster",
    }


def test_service_target_port_name_and_number_are_kept() -> None:
    svc = defaulted(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}]},
        }
    )
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http", 8081]


def test_service_empty_target_port_becomes_port() -> None:
    svc = defaulted(
        {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 53, "targetPort": ""}]}}
    )
    assert svc["spec"]["ports"][0]["targetPort"] == 53


def test_service_none_affinity_drops_its_config() -> None:
    svc = defaulted(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}, "ports": [{"port": 1}]},
        }
    )
    assert "sessionAffinityConfig" not in svc["spec"]


@pytest.mark.parametrize(
    "config",
    [None, {}, {"clientIP": None}, {"clientIP": {}}],
    ids=["absent", "empty", "null-client", "no-timeout"],
)
def test_service_client_ip_affinity_timeout_defaults_to_10800(config: Any) -> None:
    spec: dict[str, Any] = {"sessionAffinity": "ClientIP", "ports": [{"port": 1}]}
    if config is not None:
        spec["sessionAffinityConfig"] = config
    svc = defaulted({"apiVersion": "v1", "kind": "Service", "spec": spec})
    assert svc["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_service_client_ip_affinity_timeout_is_kept() -> None:
    svc = defaulted(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            },
        }
    )
    assert svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 60


@pytest.mark.parametrize(
    ("spec", "policy"),
    [
        ({"type": "NodePort"}, "Cluster"),
        ({"type": "LoadBalancer"}, "Cluster"),
        ({"type": "ClusterIP", "externalIPs": ["192.0.2.1"]}, "Cluster"),
        ({"type": "ClusterIP"}, None),
        ({"type": "ExternalName", "externalName": "x.example"}, None),
        ({"type": "NodePort", "externalTrafficPolicy": "Local"}, "Local"),
    ],
)
def test_service_external_traffic_policy_only_when_externally_accessible(
    spec: dict[str, Any], policy: Any
) -> None:
    svc = defaulted({"apiVersion": "v1", "kind": "Service", "spec": spec})
    assert svc["spec"].get("externalTrafficPolicy") == policy


def test_external_name_service_gets_no_internal_traffic_policy() -> None:
    svc = defaulted({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ExternalName"}})
    assert "internalTrafficPolicy" not in svc["spec"]
    assert svc["spec"]["sessionAffinity"] == "None"


def test_load_balancer_defaults_node_port_allocation_and_ip_mode() -> None:
    svc = defaulted(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.5"}, {"hostname": "lb.example.com"}]}},
        }
    )
    assert svc["spec"]["allocateLoadBalancerNodePorts"] is True
    assert svc["status"]["loadBalancer"]["ingress"] == [
        {"ip": "192.0.2.5", "ipMode": "VIP"},
        {"hostname": "lb.example.com"},
    ]


def test_explicit_false_allocate_node_ports_is_kept() -> None:
    svc = defaulted(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False},
        }
    )
    assert svc["spec"]["allocateLoadBalancerNodePorts"] is False


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "backend", "namespace": "default"},
    "spec": {
        "containers": [
            {
                "name": "web",
                "image": "registry.example.com:5000/team/web:1.2",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"port": "http"}},
                "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "resources": {"limits": {"cpu": "500m"}},
            }
        ],
        "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "cfg"}}],
    },
}


def test_pod_defaults_whole_object() -> None:
    pod = defaulted(POD)
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "backend", "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example.com:5000/team/web:1.2",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "readinessProbe": {
                        "httpGet": {"port": "http", "path": "/", "scheme": "HTTP"},
                        "timeoutSeconds": 1,
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "failureThreshold": 3,
                    },
                    "livenessProbe": {
                        "tcpSocket": {"port": 8080},
                        "periodSeconds": 5,
                        "timeoutSeconds": 1,
                        "successThreshold": 1,
                        "failureThreshold": 3,
                    },
                    "env": [
                        {
                            "name": "POD_IP",
                            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP", "apiVersion": "v1"}},
                        }
                    ],
                    "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "500m"}},
                    "imagePullPolicy": "IfNotPresent",
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }
            ],
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}},
            ],
            "enableServiceLinks": True,
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
            "schedulerName": "default-scheduler",
        },
    }


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("docker.io/library/nginx:latest", "Always"),
        ("localhost:5000/nginx", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("localhost:5000/nginx:1.27", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:latest@sha256:" + "a" * 64, "Always"),
        ("", "IfNotPresent"),
    ],
)
def test_image_pull_policy_follows_the_tag(image: str, policy: str) -> None:
    pod = defaulted(
        {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c", "image": image}]}}
    )
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_image_tag_parsing() -> None:
    assert image_tag("busybox") == "latest"
    assert image_tag("ghcr.io/org/app:v2") == "v2"
    assert image_tag("app@sha256:abc") == ""


def test_explicit_pod_values_are_kept() -> None:
    pod = defaulted(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "spec": {
                "restartPolicy": "Never",
                "dnsPolicy": "Default",
                "terminationGracePeriodSeconds": 0,
                "enableServiceLinks": False,
                "containers": [{"name": "c", "image": "x", "imagePullPolicy": "Never"}],
            },
        }
    )
    spec = pod["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"]) == (
        "Never",
        "Default",
        0,
    )
    assert spec["enableServiceLinks"] is False
    assert spec["containers"][0]["imagePullPolicy"] == "Never"


def test_host_network_pod_ports_get_host_ports() -> None:
    pod = defaulted(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "spec": {
                "hostNetwork": True,
                "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 53}]}],
            },
        }
    )
    assert pod["spec"]["containers"][0]["ports"][0]["hostPort"] == 53


def test_endpoints_and_endpoint_slice_port_defaults() -> None:
    ep = defaulted({"apiVersion": "v1", "kind": "Endpoints", "subsets": [{"ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]
    eps = defaulted(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "addressType": "IPv4",
            "ports": [{"port": 80}],
        }
    )
    assert eps["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]


def test_namespace_gets_its_name_label_and_active_phase() -> None:
    ns = defaulted({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "shop"}
    assert ns["status"] == {"phase": "Active"}


def test_node_allocatable_defaults_to_capacity() -> None:
    node = defaulted(
        {"apiVersion": "v1", "kind": "Node", "status": {"capacity": {"cpu": "2", "pods": "110"}}}
    )
    assert node["status"]["allocatable"] == {"cpu": "2", "pods": "110"}


TEMPLATE = {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def test_deployment_defaults() -> None:
    dep = defaulted(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "spec": {"selector": {"matchLabels": {"app": "b"}}, "template": TEMPLATE},
        }
    )
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "enableServiceLinks" not in pod_spec  # a Pod-only default, not a template one


def test_recreate_deployment_gets_no_rolling_update() -> None:
    dep = defaulted(
        {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"strategy": {"type": "Recreate"}}}
    )
    assert dep["spec"]["strategy"] == {"type": "Recreate"}


def test_statefulset_defaults() -> None:
    sts = defaulted(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "b"}}, "template": TEMPLATE},
        }
    )
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert (spec["replicas"], spec["revisionHistoryLimit"]) == (1, 10)
    assert spec["template"]["spec"]["schedulerName"] == "default-scheduler"


def test_statefulset_on_delete_strategy_is_left_alone() -> None:
    sts = defaulted(
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"updateStrategy": {"type": "OnDelete"}}}
    )
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_kinds_without_defaults_are_untouched() -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": "a"}}
    event = {"apiVersion": "v1", "kind": "Event", "reason": "Started"}
    assert defaulted(lease) == lease
    assert defaulted(event) == event


def test_defaulting_is_idempotent() -> None:
    once = defaulted(POD)
    assert defaulted(once) == once


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
kinds = st.sampled_from(
    [
        ("v1", "Service"),
        ("v1", "Pod"),
        ("v1", "Endpoints"),
        ("v1", "Namespace"),
        ("v1", "Node"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
    ]
)
field_names = st.sampled_from(["spec", "status", "metadata", "subsets", "ports", "endpoints"])


@settings(max_examples=300, deadline=None)
@given(kind=kinds, body=st.dictionaries(field_names, json_values, max_size=4))
def test_defaulting_never_raises_on_odd_shapes(kind: tuple[str, str], body: dict[str, Any]) -> None:
    obj = {"apiVersion": kind[0], "kind": kind[1], **body}
    apply_defaults(obj)
