"""Validation of the kinds other than Service: metadata rules common to all kinds, Pods,
EndpointSlices, Endpoints, Namespaces, Nodes, Deployments, StatefulSets, Leases, Events."""

# ruff: noqa: E501  (expected messages are kept on one line, as kube-apiserver prints them)
from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcnet.api.defaults import apply_defaults
from svcnet.api.strategy import prepare_for_create, prepare_for_status_update, prepare_for_update
from svcnet.api.validation import validate_create, validate_status_update, validate_update


def causes(errors: list[Any]) -> list[tuple[str, str, str]]:
    return [(e.field, e.reason, e.body()) for e in errors]


def created(body: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(body)
    apply_defaults(obj)
    prepare_for_create(obj)
    return obj


def stored(body: dict[str, Any]) -> dict[str, Any]:
    obj = created(body)
    obj["metadata"].update(
        resourceVersion="3",
        uid="5f8a2c1e-0000-4000-8000-000000000001",
        creationTimestamp="2026-01-01T00:00:00Z",
    )
    assert validate_create(obj) == [], causes(validate_create(obj))
    return obj


def pod(**spec: Any) -> dict[str, Any]:
    body_spec: dict[str, Any] = {
        "containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]
    }
    body_spec.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "backend-1", "namespace": "default"},
        "spec": body_spec,
    }


# --------------------------------------------------------------------------------------------
# Metadata (common to all kinds)


def test_pod_names_are_dns_subdomains_unlike_services() -> None:
    body = pod()
    body["metadata"]["name"] = "1.backend"
    assert validate_create(created(body)) == []
    body["metadata"]["name"] = "Backend"
    assert causes(validate_create(created(body))) == [
        (
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"Backend\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )
    ]


def test_labels_keys_and_values() -> None:
    body = pod()
    body["metadata"]["labels"] = {"example.com/app": "ok", "bad key": "v", "k": "-bad-"}
    found = causes(validate_create(created(body)))
    assert (
        "metadata.labels",
        "FieldValueInvalid",
        "Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    ) in found
    assert (
        "metadata.labels",
        "FieldValueInvalid",
        "Invalid value: \"-bad-\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    ) in found
    assert len(found) == 2


def test_label_key_prefix_must_be_a_dns_subdomain() -> None:
    body = pod()
    body["metadata"]["labels"] = {"Example.com/app": "x", "/app": "y"}
    found = {c[2] for c in causes(validate_create(created(body)))}
    assert any("prefix part a lowercase RFC 1123 subdomain" in m for m in found)
    assert any("prefix part must be non-empty" in m for m in found)


def test_annotation_keys_ignore_case_but_total_size_is_bounded() -> None:
    body = pod()
    body["metadata"]["annotations"] = {"Example.COM/Note": "x"}
    assert validate_create(created(body)) == []
    body["metadata"]["annotations"] = {"a": "x" * (256 * 1024)}
    assert causes(validate_create(created(body))) == [
        ("metadata.annotations", "FieldValueTooLong", "Too long: may not be more than 262144 bytes")
    ]


def test_unqualified_finalizer_must_be_standard() -> None:
    body = pod()
    body["metadata"]["finalizers"] = ["kubernetes", "example.com/cleanup", "cleanup"]
    assert causes(validate_create(created(body))) == [
        (
            "metadata.finalizers[2]",
            "FieldValueInvalid",
            'Invalid value: "cleanup": name is neither a standard finalizer name nor is it fully qualified',
        )
    ]


def test_orphan_and_foreground_finalizers_conflict() -> None:
    body = pod()
    body["metadata"]["finalizers"] = ["orphan", "foregroundDeletion"]
    assert (
        "metadata.finalizers",
        "FieldValueInvalid",
        'Invalid value: []string{"orphan", "foregroundDeletion"}: finalizer orphan and foregroundDeletion cannot be both set',
    ) in causes(validate_create(created(body)))


def test_namespace_is_required_for_namespaced_kinds_and_a_dns_label() -> None:
    body = pod()
    del body["metadata"]["namespace"]
    assert causes(validate_create(created(body))) == [
        ("metadata.namespace", "FieldValueRequired", "Required value")
    ]
    body["metadata"]["namespace"] = "my.ns"
    assert causes(validate_create(created(body))) == [
        ("metadata.namespace", "FieldValueInvalid", 'Invalid value: "my.ns": must not contain dots')
    ]


def test_cluster_scoped_kinds_reject_a_namespace() -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "namespace": "default"}}
    assert causes(validate_create(created(node))) == [
        ("metadata.namespace", "FieldValueForbidden", "Forbidden: not allowed on this type")
    ]


def test_immutable_metadata_on_update() -> None:
    old = stored(pod())
    new = copy.deepcopy(old)
    new["metadata"].update(
        name="backend-2", namespace="other", uid="other-uid", creationTimestamp="2026-02-02T00:00:00Z"
    )
    prepare_for_update(new, old)
    found = causes(validate_update(new, old))
    assert ("metadata.name", "FieldValueInvalid", 'Invalid value: "backend-2": field is immutable') in found
    assert ("metadata.namespace", "FieldValueInvalid", 'Invalid value: "other": field is immutable') in found
    assert ("metadata.uid", "FieldValueInvalid", 'Invalid value: "other-uid": field is immutable') in found
    assert (
        "metadata.creationTimestamp",
        "FieldValueInvalid",
        "Invalid value: 2026-02-02 00:00:00 +0000 UTC: field is immutable",
    ) in found


def test_no_new_finalizers_once_deleting() -> None:
    old = stored(pod())
    old["metadata"].update(
        deletionTimestamp="2026-03-01T00:00:00Z", deletionGracePeriodSeconds=30, finalizers=["example.com/a"]
    )
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]
    prepare_for_update(new, old)
    assert causes(validate_update(new, old)) == [
        (
            "metadata.finalizers",
            "FieldValueForbidden",
            'Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/b"}',
        )
    ]
    new["metadata"]["finalizers"] = []
    assert validate_update(new, old) == []


# --------------------------------------------------------------------------------------------
# Pods


def test_valid_pod_is_accepted() -> None:
    assert validate_create(created(pod())) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": []}, ("spec.containers", "FieldValueRequired", "Required value")),
        (
            {"containers": [{"name": "Web", "image": "x"}]},
            ("spec.containers[0].name", "FieldValueInvalid", "a lowercase RFC 1123 label"),
        ),
        (
            {"containers": [{"name": "", "image": "x"}]},
            ("spec.containers[0].name", "FieldValueRequired", "Required value"),
        ),
        (
            {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]},
            ("spec.containers[1].name", "FieldValueDuplicate", 'Duplicate value: "a"'),
        ),
        (
            {"containers": [{"name": "a"}]},
            ("spec.containers[0].image", "FieldValueRequired", "Required value"),
        ),
        (
            {"containers": [{"name": "a", "image": " x"}]},
            ("spec.containers[0].image", "FieldValueInvalid", "must not have leading or trailing whitespace"),
        ),
        (
            {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 0}]}]},
            ("spec.containers[0].ports[0].containerPort", "FieldValueRequired", "Required value"),
        ),
        (
            {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}]},
            (
                "spec.containers[0].ports[0].containerPort",
                "FieldValueInvalid",
                "Invalid value: 70000: must be between 1 and 65535, inclusive",
            ),
        ),
        (
            {
                "containers": [
                    {"name": "a", "image": "x", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}
                ]
            },
            (
                "spec.containers[0].ports[0].protocol",
                "FieldValueNotSupported",
                'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
            ),
        ),
        (
            {
                "containers": [
                    {
                        "name": "a",
                        "image": "x",
                        "ports": [
                            {"containerPort": 80, "name": "http"},
                            {"containerPort": 81, "name": "http"},
                        ],
                    }
                ]
            },
            ("spec.containers[0].ports[1].name", "FieldValueDuplicate", 'Duplicate value: "http"'),
        ),
        (
            {
                "containers": [
                    {"name": "a", "image": "x", "ports": [{"containerPort": 80, "name": "HTTP_PORT"}]}
                ]
            },
            (
                "spec.containers[0].ports[0].name",
                "FieldValueInvalid",
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            ),
        ),
        (
            {
                "containers": [
                    {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]},
                    {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]},
                ]
            },
            ("spec.containers[1].ports[0].hostPort", "FieldValueDuplicate", 'Duplicate value: "TCP//8080"'),
        ),
        (
            {"restartPolicy": "Sometimes"},
            (
                "spec.restartPolicy",
                "FieldValueNotSupported",
                'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
            ),
        ),
        (
            {"dnsPolicy": "Cluster"},
            (
                "spec.dnsPolicy",
                "FieldValueNotSupported",
                'supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"',
            ),
        ),
        (
            {"dnsPolicy": "None"},
            (
                "spec.dnsConfig",
                "FieldValueRequired",
                "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
            ),
        ),
        ({"hostname": "web.1"}, ("spec.hostname", "FieldValueInvalid", "must not contain dots")),
        ({"nodeName": "Node_1"}, ("spec.nodeName", "FieldValueInvalid", "a lowercase RFC 1123 subdomain")),
        (
            {"activeDeadlineSeconds": 0},
            (
                "spec.activeDeadlineSeconds",
                "FieldValueInvalid",
                "Invalid value: 0: must be between 1 and 2147483647, inclusive",
            ),
        ),
        (
            {
                "containers": [
                    {"name": "a", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
                ]
            },
            ("spec.containers[0].volumeMounts[0].name", "FieldValueNotFound", 'Not found: "data"'),
        ),
        (
            {"containers": [{"name": "a", "image": "x", "readinessProbe": {"periodSeconds": 1}}]},
            (
                "spec.containers[0].readinessProbe",
                "FieldValueRequired",
                "Required value: must specify a handler type",
            ),
        ),
        (
            {
                "containers": [
                    {
                        "name": "a",
                        "image": "x",
                        "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2},
                    }
                ]
            },
            (
                "spec.containers[0].livenessProbe.successThreshold",
                "FieldValueInvalid",
                "Invalid value: 2: must be 1",
            ),
        ),
        (
            {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "Sometimes"}]},
            (
                "spec.containers[0].imagePullPolicy",
                "FieldValueNotSupported",
                'supported values: "Always", "IfNotPresent", "Never"',
            ),
        ),
        (
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
            (
                "spec.tolerations[0].operator",
                "FieldValueInvalid",
                "value must be empty when `operator` is 'Exists'",
            ),
        ),
        (
            {
                "hostNetwork": True,
                "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 81}]}],
            },
            (
                "spec.containers[0].ports[0].hostPort",
                "FieldValueInvalid",
                "must match `containerPort` when `hostNetwork` is true",
            ),
        ),
    ],
)
def test_invalid_pod(spec: dict[str, Any], expected: tuple[str, str, str]) -> None:
    found = causes(validate_create(created(pod(**spec))))
    field, reason, text = expected
    assert any(f == field and r == reason and text in m for f, r, m in found), found


def test_pod_update_may_change_only_images_and_a_few_fields() -> None:
    old = stored(pod(activeDeadlineSeconds=600, tolerations=[{"key": "a", "operator": "Exists"}]))
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.28"
    new["spec"]["activeDeadlineSeconds"] = 300
    new["spec"]["tolerations"].append(
        {"key": "b", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    )
    new["metadata"]["labels"] = {"tier": "web"}
    prepare_for_update(new, old)
    assert validate_update(new, old) == []


def test_pod_update_of_other_spec_fields_is_forbidden() -> None:
    old = stored(pod())
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = 8080
    prepare_for_update(new, old)
    [error] = validate_update(new, old)
    assert (error.field, error.reason) == ("spec", "FieldValueForbidden")
    assert error.body().startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
        "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
    )
    assert "containers" in error.body()


def test_pod_update_may_not_add_containers_or_raise_the_deadline() -> None:
    old = stored(pod(activeDeadlineSeconds=60))
    new = copy.deepcopy(old)
    new["spec"]["activeDeadlineSeconds"] = 120
    assert (
        "spec.activeDeadlineSeconds",
        "FieldValueInvalid",
        "Invalid value: 120: must be less than or equal to previous value",
    ) in causes(validate_update(new, old))
    new = copy.deepcopy(old)
    new["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    apply_defaults(new)
    assert (
        "spec.containers",
        "FieldValueForbidden",
        "Forbidden: pod updates may not add or remove containers",
    ) in causes(validate_update(new, old))


def test_pod_status_update_keeps_spec_and_checks_ips() -> None:
    old = stored(pod())
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "evil"
    new["status"] = {
        "phase": "Running",
        "podIP": "10.244.1.5",
        "podIPs": [{"ip": "10.244.1.5"}, {"ip": "10.244.1.500"}],
    }
    prepare_for_status_update(new, old)
    assert new["spec"] == old["spec"]
    assert causes(validate_status_update(new, old)) == [
        (
            "status.podIPs[1]",
            "FieldValueInvalid",
            'Invalid value: "10.244.1.500": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
        )
    ]


# --------------------------------------------------------------------------------------------
# EndpointSlice and Endpoints


def endpoint_slice(
    address_type: str = "IPv4", endpoints: list[Any] | None = None, ports: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abc12",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": address_type,
        "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}}]
        if endpoints is None
        else endpoints,
        "ports": [{"name": "http", "port": 8080}] if ports is None else ports,
    }


def test_valid_endpoint_slices() -> None:
    assert validate_create(created(endpoint_slice())) == []
    assert validate_create(created(endpoint_slice("IPv6", [{"addresses": ["fd00::5"]}]))) == []
    assert validate_create(created(endpoint_slice("FQDN", [{"addresses": ["db.example.com"]}]))) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            endpoint_slice("IP"),
            (
                "addressType",
                "FieldValueNotSupported",
                'Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6"',
            ),
        ),
        (endpoint_slice(""), ("addressType", "FieldValueRequired", "Required value")),
        (
            endpoint_slice(endpoints=[{"addresses": []}]),
            (
                "endpoints[0].addresses",
                "FieldValueRequired",
                "Required value: must contain at least 1 address",
            ),
        ),
        (
            endpoint_slice(endpoints=[{"addresses": [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(101)]}]),
            ("endpoints[0].addresses", "FieldValueTooMany", "Too many: 101: must have at most 100 items"),
        ),
        (
            endpoint_slice(endpoints=[{"addresses": ["10.0.0.1"]}] * 1001),
            ("endpoints", "FieldValueTooMany", "Too many: 1001: must have at most 1000 items"),
        ),
        (
            endpoint_slice(endpoints=[{"addresses": ["fd00::1"]}]),
            (
                "endpoints[0].addresses[0]",
                "FieldValueInvalid",
                'Invalid value: "fd00::1": must be a valid IPv4 address',
            ),
        ),
        (
            endpoint_slice("IPv6", [{"addresses": ["10.0.0.1"]}]),
            ("endpoints[0].addresses[0]", "FieldValueInvalid", "must be a valid IPv6 address"),
        ),
        (
            endpoint_slice(endpoints=[{"addresses": ["127.0.0.1"]}]),
            ("endpoints[0].addresses[0]", "FieldValueInvalid", "may not be in the loopback range"),
        ),
        (
            endpoint_slice("FQDN", [{"addresses": ["localhost"]}]),
            (
                "endpoints[0].addresses[0]",
                "FieldValueInvalid",
                "should be a domain with at least two segments separated by dots",
            ),
        ),
        (
            endpoint_slice(endpoints=[{"addresses": ["10.0.0.1"], "hostname": "web.0"}]),
            ("endpoints[0].hostname", "FieldValueInvalid", "must not contain dots"),
        ),
        (
            endpoint_slice(endpoints=[{"addresses": ["10.0.0.1"], "conditions": {"ready": "yes"}}]),
            ("endpoints[0].conditions.ready", "FieldValueInvalid", "must be a boolean"),
        ),
        (
            endpoint_slice(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 81}]),
            ("ports[1].name", "FieldValueDuplicate", 'Duplicate value: "http"'),
        ),
        (
            endpoint_slice(ports=[{"name": "http", "port": 80, "protocol": "ICMP"}]),
            ("ports[0].protocol", "FieldValueNotSupported", 'Unsupported value: "ICMP"'),
        ),
        (
            endpoint_slice(ports=[{"name": "p", "port": 1}] * 20001),
            ("ports", "FieldValueTooMany", "Too many: 20001: must have at most 20000 items"),
        ),
    ],
    ids=lambda v: v[0] if isinstance(v, tuple) else None,
)
def test_invalid_endpoint_slice(body: dict[str, Any], expected: tuple[str, str, str]) -> None:
    found = causes(validate_create(created(body)))
    field, reason, text = expected
    assert any(f == field and r == reason and text in m for f, r, m in found), found


def test_endpoint_slice_address_type_is_immutable() -> None:
    old = stored(endpoint_slice())
    new = copy.deepcopy(old)
    new["addressType"] = "IPv6"
    new["endpoints"] = [{"addresses": ["fd00::1"]}]
    assert causes(validate_update(new, old)) == [
        ("addressType", "FieldValueInvalid", 'Invalid value: "IPv6": field is immutable')
    ]


def test_endpoints_subsets() -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [
            {
                "addresses": [{"ip": "10.244.1.5", "hostname": "web-0"}],
                "ports": [{"name": "http", "port": 80}, {"port": 81}],
            },
            {"ports": [{"port": 80}]},
            {"addresses": [{"ip": "169.254.169.254"}]},
        ],
    }
    assert causes(validate_create(created(body))) == [
        ("subsets[0].ports[1].name", "FieldValueRequired", "Required value"),
        (
            "subsets[1]",
            "FieldValueRequired",
            "Required value: must specify `addresses` or `notReadyAddresses`",
        ),
        (
            "subsets[2].addresses[0].ip",
            "FieldValueInvalid",
            'Invalid value: "169.254.169.254": may not be in the link-local range (169.254.0.0/16, fe80::/10)',
        ),
    ]


# --------------------------------------------------------------------------------------------
# Namespace, Node, Lease, Event


def test_namespace_names_are_dns_labels() -> None:
    assert (
        validate_create(created({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        == []
    )
    found = causes(
        validate_create(created({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop.prod"}}))
    )
    assert found == [
        ("metadata.name", "FieldValueInvalid", 'Invalid value: "shop.prod": must not contain dots')
    ]


def test_namespace_spec_finalizers_are_standard_or_qualified() -> None:
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop"},
        "spec": {"finalizers": ["kubernetes", "cleanup", "example.com/cleanup"]},
    }
    # Upstream reports these on spec.finalizers without an index.
    assert causes(validate_create(created(namespace))) == [
        (
            "spec.finalizers",
            "FieldValueInvalid",
            'Invalid value: "cleanup": name is neither a standard finalizer name nor is it fully qualified',
        )
    ]
    namespace["spec"]["finalizers"] = ["kubernetes", "orphan", "foregroundDeletion", "example.com/cleanup"]
    assert validate_create(created(namespace)) == []


def test_node_pod_cidrs_and_taints() -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-1"},
        "spec": {"podCIDRs": ["10.244.1.0/24", "10.244.2.0/24"], "taints": [{"key": "k", "effect": "Never"}]},
    }
    found = causes(validate_create(created(node)))
    assert (
        "spec.podCIDRs",
        "FieldValueInvalid",
        'Invalid value: []string{"10.244.1.0/24", "10.244.2.0/24"}: may specify no more than one CIDR for each IP family',
    ) in found
    assert (
        "metadata.taints[0].effect",
        "FieldValueNotSupported",
        'Unsupported value: "Never": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"',
    ) in found


def test_node_pod_cidr_may_only_be_set_once() -> None:
    old = stored(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-1"},
            "spec": {"podCIDRs": ["10.244.1.0/24"]},
        }
    )
    new = copy.deepcopy(old)
    new["spec"]["podCIDRs"] = ["10.244.9.0/24"]
    prepare_for_update(new, old)
    assert causes(validate_update(new, old)) == [
        (
            "spec.podCIDRs",
            "FieldValueForbidden",
            'Forbidden: node updates may not change podCIDR except from "" to valid',
        )
    ]


def test_lease_spec() -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 0},
    }
    assert causes(validate_create(created(lease))) == [
        ("spec.leaseDurationSeconds", "FieldValueInvalid", "Invalid value: 0: must be greater than 0")
    ]
    lease["spec"]["leaseDurationSeconds"] = 40
    assert validate_create(created(lease)) == []


def test_event_namespace_must_match_involved_object() -> None:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "shop"},
        "reason": "Started",
    }
    assert causes(validate_create(created(event))) == [
        (
            "involvedObject.namespace",
            "FieldValueInvalid",
            'Invalid value: "shop": does not match event.namespace',
        )
    ]
    event["involvedObject"]["namespace"] = "default"
    assert validate_create(created(event)) == []
    del event["involvedObject"]["namespace"]
    assert validate_create(created(event)) == []  # old clients' events may leave it empty in default
    event["metadata"]["namespace"] = "shop"
    assert causes(validate_create(created(event))) == [
        ("involvedObject.namespace", "FieldValueInvalid", 'Invalid value: "": does not match event.namespace')
    ]


def test_events_with_event_time_need_reporting_fields() -> None:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web.17b", "namespace": "shop"},
        "involvedObject": {"kind": "Pod", "name": "web"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingComponent": "",
        "reportingInstance": "node-1",
        "action": "x" * 129,
        "message": "m" * 1025,
    }
    assert causes(validate_create(created(event))) == [
        (
            "involvedObject.namespace",
            "FieldValueInvalid",
            'Invalid value: "": does not match event.namespace',
        ),
        ("reportingComponent", "FieldValueRequired", "Required value"),
        ("reportingComponent", "FieldValueInvalid", 'Invalid value: "": name part must be non-empty'),
        (
            "reportingComponent",
            "FieldValueInvalid",
            "Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        ("action", "FieldValueInvalid", 'Invalid value: "": can have at most 128 characters'),
        ("reason", "FieldValueRequired", "Required value"),
        ("message", "FieldValueInvalid", 'Invalid value: "": can have at most 1024 characters'),
    ]
    event["metadata"]["namespace"] = "kube-system"  # new-style events of cluster-scoped objects
    event.update(reportingComponent="kubelet", reportingInstance="i" * 129, action="Pulling", message="m")
    assert causes(validate_create(created(event))) == [
        ("reportingInstance", "FieldValueInvalid", 'Invalid value: "": can have at most 128 characters'),
        ("reason", "FieldValueRequired", "Required value"),
    ]
    event.update(reportingInstance="node-1", reason="Pulling")
    assert validate_create(created(event)) == []


# --------------------------------------------------------------------------------------------
# Deployment and StatefulSet


def deployment(**spec: Any) -> dict[str, Any]:
    body = {
        "selector": {"matchLabels": {"app": "backend"}},
        "template": {
            "metadata": {"labels": {"app": "backend"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        },
    }
    body.update(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "backend", "namespace": "default"},
        "spec": body,
    }


def statefulset(**spec: Any) -> dict[str, Any]:
    body = deployment(**spec)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = "backend"
    return body


def test_valid_workloads() -> None:
    assert validate_create(created(deployment())) == []
    assert validate_create(created(statefulset())) == []


@pytest.mark.parametrize("make", [deployment, statefulset], ids=["deployment", "statefulset"])
def test_workload_selector_rules(make: Any) -> None:
    no_selector = make()
    del no_selector["spec"]["selector"]
    assert ("spec.selector", "FieldValueRequired", "Required value") in causes(
        validate_create(created(no_selector))
    )
    mismatch = make(selector={"matchLabels": {"app": "frontend"}})
    assert (
        "spec.template.metadata.labels",
        "FieldValueInvalid",
        'Invalid value: map[string]string{"app":"backend"}: `selector` does not match template `labels`',
    ) in causes(validate_create(created(mismatch)))
    negative = make(replicas=-1)
    assert (
        "spec.replicas",
        "FieldValueInvalid",
        "Invalid value: -1: must be greater than or equal to 0",
    ) in causes(validate_create(created(negative)))
    never = make()
    never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert (
        "spec.template.spec.restartPolicy",
        "FieldValueNotSupported",
        'Unsupported value: "Never": supported values: "Always"',
    ) in causes(validate_create(created(never)))


@pytest.mark.parametrize(
    ("make", "controller"),
    [(deployment, "ReplicaSet"), (statefulset, "StatefulSet")],
    ids=["deployment", "statefulset"],
)
def test_workload_pods_may_not_have_a_deadline(make: Any, controller: str) -> None:
    body = make()
    body["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 30
    assert causes(validate_create(created(body))) == [
        (
            "spec.template.spec.activeDeadlineSeconds",
            "FieldValueForbidden",
            f"Forbidden: activeDeadlineSeconds in {controller} is not Supported",
        )
    ]


@pytest.mark.parametrize("make", [deployment, statefulset], ids=["deployment", "statefulset"])
def test_workload_status_counts_are_bounded(make: Any) -> None:
    old = stored(make())
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 2, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": -1}
    prepare_for_status_update(new, old)
    assert causes(validate_status_update(new, old)) == [
        (
            "status.observedGeneration",
            "FieldValueInvalid",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "status.readyReplicas",
            "FieldValueInvalid",
            "Invalid value: 3: cannot be greater than status.replicas",
        ),
        (
            "status.availableReplicas",
            "FieldValueInvalid",
            "Invalid value: 3: cannot be greater than status.replicas",
        ),
    ]
    new["status"] = {"replicas": 3, "readyReplicas": 1, "availableReplicas": 2, "updatedReplicas": 4}
    assert causes(validate_status_update(new, old)) == [
        (
            "status.updatedReplicas",
            "FieldValueInvalid",
            "Invalid value: 4: cannot be greater than status.replicas",
        ),
        (
            "status.availableReplicas",
            "FieldValueInvalid",
            "Invalid value: 2: cannot be greater than readyReplicas",
        ),
    ]
    new["status"] = {"replicas": 3, "readyReplicas": 3, "availableReplicas": 2, "updatedReplicas": 3}
    assert validate_status_update(new, old) == []


def test_empty_selector_is_invalid_for_deployments() -> None:
    found = causes(validate_create(created(deployment(selector={}))))
    assert any(
        f == "spec.selector" and "empty selector is invalid for deployment" in m for f, _, m in found
    ), found


def test_selector_expressions_are_checked() -> None:
    found = causes(
        validate_create(
            created(deployment(selector={"matchExpressions": [{"key": "app", "operator": "In"}]}))
        )
    )
    assert (
        "spec.selector.matchExpressions[0].values",
        "FieldValueRequired",
        "Required value: must be specified when `operator` is 'In' or 'NotIn'",
    ) in found


def test_deployment_selector_is_immutable_and_rolling_update_bounds() -> None:
    old = stored(deployment())
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "backend", "v": "2"}}
    new["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    prepare_for_update(new, old)
    assert [f for f, _, m in causes(validate_update(new, old)) if "field is immutable" in m] == [
        "spec.selector"
    ]
    bad = deployment(
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}}
    )
    assert (
        "spec.strategy.rollingUpdate.maxUnavailable",
        "FieldValueInvalid",
        "Invalid value: 0: may not be 0 when `maxSurge` is 0",
    ) in causes(validate_create(created(bad)))


def test_statefulset_spec_is_mostly_immutable() -> None:
    old = stored(statefulset())
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 3
    prepare_for_update(new, old)
    assert validate_update(new, old) == []
    new["spec"]["serviceName"] = "other"
    assert causes(validate_update(new, old)) == [
        (
            "spec",
            "FieldValueForbidden",
            "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )
    ]


# --------------------------------------------------------------------------------------------
# Robustness


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**40), max_value=2**40) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
kinds = st.sampled_from(
    [
        ("v1", "Service"), ("v1", "Pod"), ("v1", "Endpoints"), ("v1", "Namespace"), ("v1", "Node"),
        ("v1", "Event"), ("coordination.k8s.io/v1", "Lease"), ("discovery.k8s.io/v1", "EndpointSlice"),
        ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
    ]
)  # fmt: skip
keys = st.sampled_from(
    ["metadata", "spec", "status", "subsets", "endpoints", "ports", "addressType", "involvedObject"]
)


@settings(max_examples=400, deadline=None)
@given(
    kind=kinds,
    body=st.dictionaries(keys, json_values, max_size=5),
    old=st.dictionaries(keys, json_values, max_size=3),
)
def test_validation_never_raises_on_odd_shapes(
    kind: tuple[str, str], body: dict[str, Any], old: dict[str, Any]
) -> None:
    obj = {"apiVersion": kind[0], "kind": kind[1], **body}
    previous = {"apiVersion": kind[0], "kind": kind[1], **old}
    apply_defaults(obj)
    for run in (
        lambda: validate_create(obj),
        lambda: validate_update(obj, previous),
        lambda: validate_status_update(obj, previous),
    ):
        errors = run()
        assert all(e.body() and isinstance(e.field, str) for e in errors)


def test_pod_status_keeps_qos_class_and_terminated_containers_of_never_pods() -> None:
    old = stored(pod(restartPolicy="Never"))
    old["status"]["containerStatuses"] = [{"name": "web", "state": {"terminated": {"exitCode": 0}}}]
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Running", "containerStatuses": [{"name": "web", "state": {"running": {}}}]}
    prepare_for_status_update(new, old)
    assert new["status"]["qosClass"] == "BestEffort"  # backfilled from the stored pod
    assert causes(validate_status_update(new, old)) == [
        (
            "status.containerStatuses[0].state",
            "FieldValueForbidden",
            "Forbidden: may not be transitioned to non-terminated state",
        )
    ]
    new["status"] = {"qosClass": "Guaranteed"}
    assert causes(validate_status_update(new, old)) == [
        ("status.qosClass", "FieldValueInvalid", 'Invalid value: "Guaranteed": field is immutable')
    ]


def test_pod_status_ips_one_per_family() -> None:
    old = stored(pod())
    new = copy.deepcopy(old)
    new["status"]["podIPs"] = [{"ip": "10.244.1.5"}, {"ip": "10.244.1.6"}]
    prepare_for_status_update(new, old)
    assert causes(validate_status_update(new, old)) == [
        (
            "status.podIPs",
            "FieldValueInvalid",
            'Invalid value: []string{"10.244.1.5", "10.244.1.6"}: may specify no more than one IP for each IP family',
        )
    ]
    new["status"]["podIPs"] = [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}]
    assert validate_status_update(new, old) == []


def test_container_resources() -> None:
    ok = pod(
        containers=[
            {
                "name": "a",
                "image": "x",
                "resources": {
                    "requests": {"cpu": "0.5", "memory": "1Gi"},
                    "limits": {"cpu": "1", "memory": "1024Mi"},
                },
            }
        ]
    )
    assert validate_create(created(ok)) == []
    bad = pod(
        containers=[
            {
                "name": "a",
                "image": "x",
                "resources": {
                    "requests": {"cpu": "2", "gpu": "1"},
                    "limits": {"cpu": "1500m", "memory": "lots"},
                },
            }
        ]
    )
    found = causes(validate_create(created(bad)))
    assert (
        "spec.containers[0].resources.requests",
        "FieldValueInvalid",
        'Invalid value: "2": must be less than or equal to cpu limit of 1500m',
    ) in found
    assert (
        "spec.containers[0].resources.requests[gpu]",
        "FieldValueInvalid",
        'Invalid value: "gpu": must be a standard resource for containers',
    ) in found
    assert any(
        f == "spec.containers[0].resources.limits[memory]" and "quantities must match" in m
        for f, _, m in found
    )
    negative = pod(containers=[{"name": "a", "image": "x", "resources": {"limits": {"memory": "-1Mi"}}}])
    assert (
        "spec.containers[0].resources.limits[memory]",
        "FieldValueInvalid",
        'Invalid value: "-1Mi": must be greater than or equal to 0',
    ) in causes(validate_create(created(negative)))
    extended = pod(
        containers=[{"name": "a", "image": "x", "resources": {"requests": {"example.com/gpu": "1"}}}]
    )
    assert (
        "spec.containers[0].resources.limits",
        "FieldValueRequired",
        "Required value: Limit must be set for non overcommitable resources",
    ) in causes(validate_create(created(extended)))


def test_quantities_print_in_canonical_form() -> None:
    from svcnet.api.validation.quantity import parse_quantity

    cases = {
        "0.5": "500m",
        "2000m": "2",
        "1000": "1k",
        "1024Mi": "1Gi",
        "1.5Gi": "1536Mi",
        "1e3": "1e3",
        "129M": "129M",
    }
    assert {text: str(parse_quantity(text)) for text in cases} == cases
    assert parse_quantity("1.5.5") is None
    assert parse_quantity("12 cores") is None
