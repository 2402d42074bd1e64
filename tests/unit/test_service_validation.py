"""Service validation as kube-apiserver does it: a table of invalid Services taken from
upstream's ValidateService rules (field path, cause reason and detail text), valid Services
of every type with their defaults filled in, and the update and /status rules."""

# ruff: noqa: E501  (the case table keeps each upstream message on one line, as kube-apiserver prints it)
from __future__ import annotations

import copy
from typing import Any

import pytest

from svcnet.api.defaults import apply_defaults
from svcnet.api.errors import invalid
from svcnet.api.strategy import (
    init_ip_family_fields,
    prepare_for_create,
    prepare_for_status_update,
    prepare_for_update,
)
from svcnet.api.validation import validate_create, validate_status_update, validate_update

DNS1035_DETAIL = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
IP_DETAIL = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
PORT_RANGE = "must be between 1 and 65535, inclusive"
LB_ONLY = "may only be used when `type` is 'LoadBalancer'"


def service(spec: dict[str, Any] | None = None, name: str | None = "web", **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": "default", **meta}
    if name is not None:
        metadata["name"] = name
    body = {"apiVersion": "v1", "kind": "Service", "metadata": metadata}
    body["spec"] = {"selector": {"app": "web"}, "ports": [{"port": 80}]} if spec is None else spec
    return body


def created(body: dict[str, Any]) -> dict[str, Any]:
    """What the API server validates on create: defaulted, then prepared by the strategy."""
    obj = copy.deepcopy(body)
    apply_defaults(obj)
    prepare_for_create(obj)
    return obj


def causes(errors: list[Any]) -> list[tuple[str, str, str]]:
    return [(e.field, e.reason, e.body()) for e in errors]


def ports(*numbers: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": f"p{i}", "port": n, **extra} for i, n in enumerate(numbers)]


# (id, body, field, reason, text the cause message must contain)
INVALID: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("name-uppercase", service(name="Web"), "metadata.name", "FieldValueInvalid", DNS1035_DETAIL),
    ("name-starts-with-digit", service(name="1web"), "metadata.name", "FieldValueInvalid", "start with an alphabetic"),
    ("name-too-long", service(name="a" * 64), "metadata.name", "FieldValueInvalid", "must be no more than 63 characters"),
    ("name-missing", service(name=None), "metadata.name", "FieldValueRequired", "name or generateName is required"),
    ("generate-name-bad", service(name=None, generateName="Web-"), "metadata.generateName", "FieldValueInvalid",
     "a DNS-1035 label"),
    ("namespace-missing", {**service(), "metadata": {"name": "web"}}, "metadata.namespace", "FieldValueRequired",
     "Required value"),
    ("label-value-too-long", service(labels={"app": "x" * 64}), "metadata.labels", "FieldValueInvalid",
     "must be no more than 63 characters"),
    ("annotation-key-bad", service(annotations={"a/b/c": "x"}), "metadata.annotations", "FieldValueInvalid",
     "a qualified name must consist of alphanumeric characters"),
    ("annotations-too-large", service(annotations={"big": "x" * (256 * 1024)}), "metadata.annotations",
     "FieldValueTooLong", "Too long: may not be more than 262144 bytes"),
    ("topology-annotations-disagree",
     service(annotations={"service.kubernetes.io/topology-mode": "Auto",
                          "service.kubernetes.io/topology-aware-hints": "Disabled"}),
     "metadata.annotations[service.kubernetes.io/topology-mode]", "FieldValueInvalid",
     'Invalid value: "Auto": must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified'),
    ("ports-missing", service({"selector": {"app": "web"}}), "spec.ports", "FieldValueRequired", "Required value"),
    ("port-zero", service({"ports": [{"port": 0, "targetPort": 80}]}), "spec.ports[0].port", "FieldValueInvalid",
     f"Invalid value: 0: {PORT_RANGE}"),
    ("port-too-big", service({"ports": [{"port": 70000, "targetPort": 80}]}), "spec.ports[0].port",
     "FieldValueInvalid", f"Invalid value: 70000: {PORT_RANGE}"),
    ("port-name-required-when-several", service({"ports": [{"name": "a", "port": 80}, {"port": 81}]}),
     "spec.ports[1].name", "FieldValueRequired", "Required value"),
    ("port-name-not-dns-label", service({"ports": [{"name": "HTTP", "port": 80}]}), "spec.ports[0].name",
     "FieldValueInvalid", "a lowercase RFC 1123 label must consist of"),
    ("port-name-duplicate", service({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
     "spec.ports[1].name", "FieldValueDuplicate", 'Duplicate value: "a"'),
    ("port-protocol-unsupported", service({"ports": [{"port": 80, "protocol": "ICMP"}]}), "spec.ports[0].protocol",
     "FieldValueNotSupported", 'Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"'),
    ("target-port-out-of-range", service({"ports": [{"port": 80, "targetPort": 70000}]}),
     "spec.ports[0].targetPort", "FieldValueInvalid", PORT_RANGE),
    ("target-port-name-double-hyphen", service({"ports": [{"port": 80, "targetPort": "web--http"}]}),
     "spec.ports[0].targetPort", "FieldValueInvalid", "must not contain consecutive hyphens"),
    ("target-port-name-too-long", service({"ports": [{"port": 80, "targetPort": "averyveryverylongname"}]}),
     "spec.ports[0].targetPort", "FieldValueInvalid", "must be no more than 15 characters"),
    ("target-port-name-no-letter", service({"ports": [{"port": 80, "targetPort": "8080"}]}),
     "spec.ports[0].targetPort", "FieldValueInvalid", "must contain at least one letter (a-z)"),
    ("app-protocol-bad", service({"ports": [{"port": 80, "appProtocol": "a/b/c"}]}), "spec.ports[0].appProtocol",
     "FieldValueInvalid", "a qualified name"),
    ("duplicate-port-protocol", service({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}),
     "spec.ports[1]", "FieldValueDuplicate",
     'Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), Port:80, '
     'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'),
    ("duplicate-node-port", service({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080},
                                                                   {"name": "b", "port": 81, "nodePort": 30080}]}),
     "spec.ports[1].nodePort", "FieldValueDuplicate", "Duplicate value: 30080"),
    ("node-port-on-cluster-ip", service({"ports": [{"port": 80, "nodePort": 30080}]}), "spec.ports[0].nodePort",
     "FieldValueForbidden", "Forbidden: may not be used when `type` is 'ClusterIP'"),
    ("type-unsupported", service({"type": "Balanced", "ports": [{"port": 80}]}), "spec.type",
     "FieldValueNotSupported",
     'Unsupported value: "Balanced": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'),
    ("external-name-missing", service({"type": "ExternalName"}), "spec.externalName", "FieldValueRequired",
     "Required value"),
    ("external-name-not-dns", service({"type": "ExternalName", "externalName": "my_db.example.com"}),
     "spec.externalName", "FieldValueInvalid", "a lowercase RFC 1123 subdomain must consist of"),
    ("external-name-with-cluster-ip", service({"type": "ExternalName", "externalName": "db.example.com",
                                               "clusterIP": "10.96.0.10"}),
     "spec.clusterIPs", "FieldValueForbidden", "Forbidden: may not be set for ExternalName services"),
    ("external-name-with-families", service({"type": "ExternalName", "externalName": "db.example.com",
                                             "ipFamilies": ["IPv4"]}),
     "spec.ipFamilies", "FieldValueForbidden", "may not be set for ExternalName services"),
    ("external-name-with-policy", service({"type": "ExternalName", "externalName": "db.example.com",
                                           "ipFamilyPolicy": "SingleStack"}),
     "spec.ipFamilyPolicy", "FieldValueForbidden", "may not be set for ExternalName services"),
    ("headless-node-port", service({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}),
     "spec.clusterIPs[0]", "FieldValueInvalid", "may not be set to 'None' for NodePort services"),
    ("headless-load-balancer", service({"type": "LoadBalancer", "clusterIP": "None", "ports": [{"port": 80}]}),
     "spec.clusterIPs[0]", "FieldValueInvalid", "may not be set to 'None' for LoadBalancer services"),
    ("session-affinity-unsupported", service({"sessionAffinity": "Sticky", "ports": [{"port": 80}]}),
     "spec.sessionAffinity", "FieldValueNotSupported", 'supported values: "ClientIP", "None"'),
    ("affinity-timeout-zero", service({"sessionAffinity": "ClientIP", "ports": [{"port": 80}],
                                       "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "FieldValueInvalid",
     "Invalid value: 0: must be greater than 0 and less than 86400"),
    ("affinity-timeout-too-long", service({"sessionAffinity": "ClientIP", "ports": [{"port": 80}],
                                           "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "FieldValueInvalid",
     "must be greater than 0 and less than 86400"),
    ("selector-key-bad", service({"selector": {"app name": "web"}, "ports": [{"port": 80}]}), "spec.selector",
     "FieldValueInvalid", "name part must consist of alphanumeric characters"),
    ("etp-on-internal-service", service({"externalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
     "spec.externalTrafficPolicy", "FieldValueInvalid",
     'Invalid value: "Local": may only be set for externally-accessible services'),
    ("etp-unsupported", service({"type": "NodePort", "externalTrafficPolicy": "Global", "ports": [{"port": 80}]}),
     "spec.externalTrafficPolicy", "FieldValueNotSupported", 'supported values: "Cluster", "Local"'),
    ("health-check-port-not-needed", service({"type": "NodePort", "healthCheckNodePort": 30100,
                                              "ports": [{"port": 80}]}),
     "spec.healthCheckNodePort", "FieldValueInvalid",
     "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"),
    ("health-check-port-out-of-range", service({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                                "healthCheckNodePort": 70000, "ports": [{"port": 80}]}),
     "spec.healthCheckNodePort", "FieldValueInvalid", f"Invalid value: 70000: {PORT_RANGE}"),
    ("itp-unsupported", service({"internalTrafficPolicy": "Nearby", "ports": [{"port": 80}]}),
     "spec.internalTrafficPolicy", "FieldValueNotSupported", 'Unsupported value: "Nearby"'),
    ("traffic-distribution-unsupported", service({"trafficDistribution": "Anywhere", "ports": [{"port": 80}]}),
     "spec.trafficDistribution", "FieldValueNotSupported", 'supported values: "PreferClose"'),
    ("cluster-ips-first-must-match", service({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.11"],
                                              "ports": [{"port": 80}]}),
     "spec.clusterIPs", "FieldValueInvalid",
     'Invalid value: []string{"10.96.0.11"}: first value must match `clusterIP`'),
    ("cluster-ips-without-cluster-ip", service({"clusterIPs": ["10.96.0.11"], "ports": [{"port": 80}]}),
     "spec.clusterIPs", "FieldValueInvalid", "must be empty when `clusterIP` is not specified"),
    ("cluster-ip-not-an-ip", service({"clusterIP": "10.96.0.300", "ports": [{"port": 80}]}), "spec.clusterIPs[0]",
     "FieldValueInvalid", f'Invalid value: "10.96.0.300": {IP_DETAIL}'),
    ("cluster-ips-same-family", service({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "10.96.0.11"],
                                         "ports": [{"port": 80}]}),
     "spec.clusterIPs", "FieldValueInvalid", "may specify no more than one IP for each IP family"),
    ("cluster-ips-none-not-alone", service({"clusterIP": "None", "clusterIPs": ["None", "10.96.0.11"],
                                            "ports": [{"port": 80}]}),
     "spec.clusterIPs", "FieldValueInvalid", "'None' must be the first and only value"),
    ("cluster-ips-three", service({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10", "10.96.0.12"],
                                   "ports": [{"port": 80}]}),
     "spec.clusterIPs", "FieldValueInvalid", "may only hold up to 2 values"),
    ("ip-family-unsupported", service({"ipFamilies": ["IPv5"], "ports": [{"port": 80}]}), "spec.ipFamilies[0]",
     "FieldValueNotSupported", 'Unsupported value: "IPv5": supported values: "IPv4", "IPv6"'),
    ("ip-family-duplicate", service({"ipFamilies": ["IPv4", "IPv4"], "ports": [{"port": 80}]}),
     "spec.ipFamilies[1]", "FieldValueDuplicate", 'Duplicate value: "IPv4"'),
    ("ip-family-policy-unsupported", service({"ipFamilyPolicy": "DualStack", "ports": [{"port": 80}]}),
     "spec.ipFamilyPolicy", "FieldValueNotSupported",
     'supported values: "PreferDualStack", "RequireDualStack", "SingleStack"'),
    ("cluster-ip-family-mismatch", service({"clusterIP": "fd00::10", "ipFamilies": ["IPv4"],
                                            "ports": [{"port": 80}]}),
     "spec.clusterIPs[0]", "FieldValueInvalid", "expected an IPv4 value as indicated by `ipFamilies[0]`"),
    ("external-ip-not-an-ip", service({"externalIPs": ["example.com"], "ports": [{"port": 80}]}),
     "spec.externalIPs[0]", "FieldValueInvalid", IP_DETAIL),
    ("external-ip-loopback", service({"externalIPs": ["127.0.0.1"], "ports": [{"port": 80}]}),
     "spec.externalIPs[0]", "FieldValueInvalid", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
    ("external-ip-unspecified", service({"externalIPs": ["0.0.0.0"], "ports": [{"port": 80}]}),
     "spec.externalIPs[0]", "FieldValueInvalid", "may not be unspecified (0.0.0.0)"),
    ("external-ip-link-local", service({"externalIPs": ["169.254.1.1"], "ports": [{"port": 80}]}),
     "spec.externalIPs[0]", "FieldValueInvalid", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
    ("source-ranges-not-lb", service({"loadBalancerSourceRanges": ["10.0.0.0/8"], "ports": [{"port": 80}]}),
     "spec.LoadBalancerSourceRanges", "FieldValueForbidden", LB_ONLY),
    ("source-range-bad-cidr", service({"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"],
                                       "ports": [{"port": 80}]}),
     "spec.LoadBalancerSourceRanges[0]", "FieldValueInvalid",
     "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
    ("source-ranges-annotation-not-lb",
     service(annotations={"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8"}),
     "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]", "FieldValueForbidden", LB_ONLY),
    ("allocate-node-ports-not-lb", service({"allocateLoadBalancerNodePorts": False, "ports": [{"port": 80}]}),
     "spec.allocateLoadBalancerNodePorts", "FieldValueForbidden", LB_ONLY),
    ("lb-class-not-lb", service({"type": "NodePort", "loadBalancerClass": "example.com/lb",
                                 "ports": [{"port": 80}]}),
     "spec.loadBalancerClass", "FieldValueForbidden", LB_ONLY),
    ("lb-class-bad-name", service({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb/v2",
                                   "ports": [{"port": 80}]}),
     "spec.loadBalancerClass", "FieldValueInvalid", "a qualified name"),
]  # fmt: skip


def test_table_has_at_least_thirty_cases() -> None:
    assert len(INVALID) >= 30


@pytest.mark.parametrize(
    ("body", "field", "reason", "text"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_service_is_rejected_with_upstream_cause(
    body: dict[str, Any], field: str, reason: str, text: str
) -> None:
    errors = validate_create(created(body))
    matching = [e for e in errors if e.field == field and e.reason == reason]
    assert matching, f"no {reason} on {field}; got {causes(errors)}"
    assert any(text in e.body() for e in matching), causes(matching)


def test_exact_message_of_a_port_error_matches_kube_apiserver() -> None:
    errors = validate_create(created(service({"ports": [{"port": 0, "targetPort": 80}]})))
    status = invalid("Service", "web", errors).status()
    assert status["code"] == 422
    assert status["reason"] == "Invalid"
    assert (
        status["message"]
        == 'Service "web" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive'
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0: must be between 1 and 65535, inclusive",
            "field": "spec.ports[0].port",
        }
    ]


def test_load_balancer_without_allocate_node_ports_reports_upstreams_path() -> None:
    body = created(service({"type": "LoadBalancer", "ports": [{"port": 80}]}))
    del body["spec"]["allocateLoadBalancerNodePorts"]  # defaulting normally fills it in
    assert ("allocateLoadBalancerNodePorts", "FieldValueRequired", "Required value") in causes(
        validate_create(body)
    )


def test_client_ip_affinity_needs_its_config_when_not_defaulted() -> None:
    body = created(service({"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}))
    body["spec"].pop("sessionAffinityConfig")
    assert causes(validate_create(body)) == [
        (
            "spec.sessionAffinityConfig",
            "FieldValueRequired",
            "Required value: when session affinity type is ClientIP",
        )
    ]


def test_affinity_config_with_none_is_forbidden_when_not_defaulted() -> None:
    body = created(service())
    body["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10}}
    assert causes(validate_create(body)) == [
        (
            "spec.sessionAffinityConfig",
            "FieldValueForbidden",
            "Forbidden: must not be set when session affinity is None",
        )
    ]


def test_health_check_node_port_is_required_for_local_load_balancers() -> None:
    body = created(
        service({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]})
    )
    assert ("spec.healthCheckNodePort", "FieldValueRequired", "Required value") in causes(
        validate_create(body)
    )


def test_several_errors_are_all_reported_in_upstreams_order() -> None:
    body = created(
        service(
            {"type": "ClusterIP", "ports": [{"port": 0, "targetPort": 80, "nodePort": 30000}]}, name="Bad"
        )
    )
    fields = [e.field for e in validate_create(body)]
    assert fields == ["metadata.name", "spec.ports[0].port", "spec.ports[0].nodePort"]


# --------------------------------------------------------------------------------------------
# Valid services of every type, with upstream's defaults


def allocated(body: dict[str, Any], families: list[str] | None = None) -> dict[str, Any]:
    obj = created(body)
    assert init_ip_family_fields(obj, None, families or ["IPv4"]) == []
    assert validate_create(obj) == []
    return obj


def test_cluster_ip_service_defaults() -> None:
    obj = allocated(service({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}))
    assert obj == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ipFamilyPolicy": "SingleStack",
            "ipFamilies": ["IPv4"],
        },
        "status": {"loadBalancer": {}},
    }


def test_node_port_service_defaults() -> None:
    obj = allocated(
        service(
            {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
            }
        )
    )
    assert obj["spec"] == {
        "type": "NodePort",
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP", "targetPort": 80}],
        "sessionAffinity": "None",
        "externalTrafficPolicy": "Cluster",
        "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
    }


def test_load_balancer_service_defaults() -> None:
    obj = allocated(
        service(
            {
                "type": "LoadBalancer",
                "selector": {"app": "web"},
                "ports": [{"port": 443, "protocol": "UDP"}],
                "loadBalancerSourceRanges": [" 10.0.0.0/8 "],
            }
        )
    )
    assert obj["spec"] == {
        "type": "LoadBalancer",
        "selector": {"app": "web"},
        "ports": [{"port": 443, "protocol": "UDP", "targetPort": 443}],
        "loadBalancerSourceRanges": [" 10.0.0.0/8 "],
        "sessionAffinity": "None",
        "externalTrafficPolicy": "Cluster",
        "internalTrafficPolicy": "Cluster",
        "allocateLoadBalancerNodePorts": True,
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
    }
    assert obj["status"] == {"loadBalancer": {}}


def test_local_load_balancer_with_health_check_port_is_valid() -> None:
    allocated(
        service(
            {
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Local",
                "healthCheckNodePort": 32000,
                "ports": [{"port": 80}],
            }
        )
    )


def test_external_name_service_defaults() -> None:
    obj = created(service({"type": "ExternalName", "externalName": "db.example.com."}, name="my-database"))
    assert init_ip_family_fields(obj, None, ["IPv4"]) == []
    assert validate_create(obj) == []
    assert obj["spec"] == {
        "type": "ExternalName",
        "externalName": "db.example.com.",
        "sessionAffinity": "None",
    }


def test_headless_service_with_selector_and_without_ports() -> None:
    obj = allocated(service({"clusterIP": "None", "selector": {"app": "db"}}, name="db"))
    assert obj["spec"] == {
        "clusterIP": "None",
        "clusterIPs": ["None"],
        "selector": {"app": "db"},
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
    }


def test_headless_service_target_port_mismatch_is_tolerated() -> None:
    allocated(
        service({"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 80, "targetPort": 8080}]})
    )


def test_client_ip_affinity_gets_the_default_timeout() -> None:
    obj = allocated(service({"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}))
    assert obj["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_cluster_ip_with_external_ips_gets_a_traffic_policy() -> None:
    obj = allocated(service({"externalIPs": ["192.0.2.10"], "ports": [{"port": 80}]}))
    assert obj["spec"]["externalTrafficPolicy"] == "Cluster"


def test_requested_cluster_ip_fills_cluster_ips_and_family() -> None:
    obj = allocated(
        service(
            {
                "clusterIP": "10.96.0.20",
                "ports": [
                    {"port": 53, "protocol": "UDP", "name": "dns"},
                    {"port": 53, "protocol": "TCP", "name": "dns-tcp"},
                ],
            }
        )
    )
    assert obj["spec"]["clusterIPs"] == ["10.96.0.20"]
    assert obj["spec"]["ipFamilies"] == ["IPv4"]


def test_dual_stack_cluster_ips_are_valid() -> None:
    obj = allocated(
        service(
            {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"], "ports": [{"port": 80}]}
        ),
        families=["IPv4", "IPv6"],
    )
    assert obj["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert obj["spec"]["ipFamilyPolicy"] == "RequireDualStack"


def test_generate_name_with_trailing_dash_is_valid() -> None:
    obj = created(service(name=None, generateName="web-"))
    obj["metadata"]["name"] = "web-x7k2p"
    assert validate_create(obj) == []


# --------------------------------------------------------------------------------------------
# Update rules


def stored(
    body: dict[str, Any], cluster_ip: str = "10.96.0.10", families: list[str] | None = None
) -> dict[str, Any]:
    obj = created(body)
    spec = obj["spec"]
    if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
    assert init_ip_family_fields(obj, None, families or ["IPv4"]) == []
    obj["metadata"].update(
        resourceVersion="7",
        uid="0b7c6e0e-8f1e-4c42-b8c9-8d5e3c1f2a11",
        creationTimestamp="2026-01-02T03:04:05Z",
    )
    assert validate_create(obj) == []
    return obj


def updated(new_body: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(new_body)
    apply_defaults(new)
    new["metadata"].setdefault("resourceVersion", old["metadata"]["resourceVersion"])
    new["metadata"].setdefault("uid", old["metadata"]["uid"])
    new["metadata"].setdefault("creationTimestamp", old["metadata"]["creationTimestamp"])
    prepare_for_update(new, old)
    return new


def test_cluster_ip_is_immutable() -> None:
    old = stored(service())
    new = updated(
        service(
            {
                "clusterIP": "10.96.0.11",
                "clusterIPs": ["10.96.0.11"],
                "selector": {"app": "web"},
                "ports": [{"port": 80}],
            }
        ),
        old,
    )
    assert causes(validate_update(new, old)) == [
        (
            "spec.clusterIPs[0]",
            "FieldValueInvalid",
            'Invalid value: []string{"10.96.0.11"}: may not change once set',
        )
    ]


def test_changing_only_cluster_ip_is_rejected_on_cluster_ips() -> None:
    old = stored(service())
    body = copy.deepcopy(old)
    body["spec"]["clusterIP"] = "10.96.0.11"
    new = updated(body, old)
    assert new["spec"]["clusterIPs"] == ["10.96.0.11"]  # normalizeClusterIPs followed the singular field
    assert ("spec.clusterIPs[0]", "FieldValueInvalid") in [
        (f, r) for f, r, _ in causes(validate_update(new, old))
    ]


def test_reapplying_a_manifest_without_allocated_values_is_valid() -> None:
    old = stored(
        service(
            {
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Local",
                "healthCheckNodePort": 31999,
                "ports": [
                    {"name": "http", "port": 80, "nodePort": 30080},
                    {"name": "https", "port": 443, "nodePort": 30443},
                ],
            }
        )
    )
    manifest = service(
        {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "ports": [{"name": "https", "port": 443}, {"name": "http", "port": 80}],
        }
    )
    new = updated(manifest, old)
    assert new["spec"]["clusterIP"] == "10.96.0.10"
    assert new["spec"]["clusterIPs"] == ["10.96.0.10"]
    assert [p["nodePort"] for p in new["spec"]["ports"]] == [30443, 30080]  # matched by port name
    assert new["spec"]["healthCheckNodePort"] == 31999
    assert validate_update(new, old) == []


def test_health_check_node_port_is_immutable_while_needed() -> None:
    old = stored(
        service(
            {
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Local",
                "healthCheckNodePort": 31999,
                "ports": [{"port": 80}],
            }
        )
    )
    body = copy.deepcopy(old)
    body["spec"]["healthCheckNodePort"] = 31998
    new = updated(body, old)
    assert ("spec.healthCheckNodePort", "FieldValueForbidden", "Forbidden: field is immutable") in causes(
        validate_update(new, old)
    )


def test_load_balancer_class_is_immutable() -> None:
    old = stored(
        service({"type": "LoadBalancer", "loadBalancerClass": "example.com/a", "ports": [{"port": 80}]})
    )
    body = copy.deepcopy(old)
    body["spec"]["loadBalancerClass"] = "example.com/b"
    new = updated(body, old)
    assert causes(validate_update(new, old)) == [
        (
            "spec.loadBalancerClass",
            "FieldValueInvalid",
            'Invalid value: "example.com/b": may not change once set',
        )
    ]


def test_releasing_secondary_cluster_ip_needs_single_stack() -> None:
    old = stored(
        service(
            {
                "ipFamilyPolicy": "PreferDualStack",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10", "fd00::10"],
                "ports": [{"port": 80}],
            }
        ),
        families=["IPv4", "IPv6"],
    )
    body = copy.deepcopy(old)
    body["spec"]["clusterIPs"] = ["10.96.0.10"]
    body["spec"]["ipFamilies"] = ["IPv4"]
    new = updated(body, old)
    found = causes(validate_update(new, old))
    assert (
        "spec.ipFamilyPolicy",
        "FieldValueInvalid",
        "Invalid value: \"PreferDualStack\": must be set to 'SingleStack' when releasing the secondary clusterIP",
    ) in found
    body["spec"]["ipFamilyPolicy"] = "SingleStack"
    assert validate_update(updated(body, old), old) == []


def test_ip_families_may_not_change() -> None:
    old = stored(service())
    body = copy.deepcopy(old)
    body["spec"]["ipFamilies"] = ["IPv6"]
    new = updated(body, old)
    assert (
        "spec.ipFamilies[0]",
        "FieldValueInvalid",
        'Invalid value: []core.IPFamily{"IPv6"}: may not change once set',
    ) in causes(validate_update(new, old))


def test_switching_node_port_to_cluster_ip_drops_type_dependent_fields() -> None:
    old = stored(service({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}))
    body = copy.deepcopy(old)
    body["spec"]["type"] = "ClusterIP"
    new = updated(body, old)
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert validate_update(new, old) == []


def test_switching_to_external_name_drops_cluster_ips_and_families() -> None:
    old = stored(service())
    body = copy.deepcopy(old)
    body["spec"].update(type="ExternalName", externalName="db.example.com")
    new = updated(body, old)
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        assert key not in new["spec"]
    assert validate_update(new, old) == []


def test_changed_node_port_with_type_switch_is_kept_for_validation() -> None:
    old = stored(service({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}))
    body = copy.deepcopy(old)
    body["spec"]["type"] = "ClusterIP"
    body["spec"]["ports"][0]["nodePort"] = 30081
    new = updated(body, old)
    assert (
        "spec.ports[0].nodePort",
        "FieldValueForbidden",
        "Forbidden: may not be used when `type` is 'ClusterIP'",
    ) in causes(validate_update(new, old))


def test_name_is_immutable_on_update() -> None:
    old = stored(service())
    body = copy.deepcopy(old)
    body["metadata"]["name"] = "web2"
    new = updated(body, old)
    assert ("metadata.name", "FieldValueInvalid", 'Invalid value: "web2": field is immutable') in causes(
        validate_update(new, old)
    )


# --------------------------------------------------------------------------------------------
# /status


def test_status_update_validates_load_balancer_ingress() -> None:
    old = stored(service({"type": "LoadBalancer", "ports": [{"port": 80}]}))
    new = copy.deepcopy(old)
    new["status"] = {
        "loadBalancer": {
            "ingress": [
                {"ip": "192.0.2.300"},
                {"hostname": "192.0.2.1"},
                {"ip": "192.0.2.7", "ipMode": "Tunnel"},
                {"ipMode": "VIP"},
            ]
        }
    }
    prepare_for_status_update(new, old)
    found = causes(validate_status_update(new, old))
    assert (
        "status.loadBalancer.ingress[0].ip",
        "FieldValueInvalid",
        f'Invalid value: "192.0.2.300": {IP_DETAIL}',
    ) in found
    assert (
        "status.loadBalancer.ingress[0].ipMode",
        "FieldValueRequired",
        "Required value: must be specified when `ip` is set",
    ) in found
    assert (
        "status.loadBalancer.ingress[1].hostname",
        "FieldValueInvalid",
        'Invalid value: "192.0.2.1": must be a DNS name, not an IP address',
    ) in found
    assert (
        "status.loadBalancer.ingress[2].ipMode",
        "FieldValueNotSupported",
        'Unsupported value: "Tunnel": supported values: "Proxy", "VIP"',
    ) in found
    assert (
        "status.loadBalancer.ingress[3].ipMode",
        "FieldValueForbidden",
        "Forbidden: may not be specified when `ip` is not set",
    ) in found


def test_status_ingress_defaults_ip_mode_and_is_valid() -> None:
    old = stored(service({"type": "LoadBalancer", "ports": [{"port": 80}]}))
    new = copy.deepcopy(old)
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}
    apply_defaults(new)
    prepare_for_status_update(new, old)
    assert new["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.7", "ipMode": "VIP"}]
    assert validate_status_update(new, old) == []


def test_status_ingress_is_only_for_load_balancers() -> None:
    old = stored(service())
    new = copy.deepcopy(old)
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7", "ipMode": "VIP"}]}}
    prepare_for_status_update(new, old)
    assert causes(validate_status_update(new, old)) == [
        (
            "status.loadBalancer.ingress",
            "FieldValueForbidden",
            "Forbidden: may only be used when `spec.type` is 'LoadBalancer'",
        )
    ]


# --------------------------------------------------------------------------------------------
# IP family defaulting at allocation time


def family_errors(
    body: dict[str, Any], families: list[str], old: dict[str, Any] | None = None
) -> list[tuple[str, str, str]]:
    obj = created(body) if old is None else updated(body, old)
    return causes(init_ip_family_fields(obj, old, families))


def test_require_dual_stack_on_single_stack_cluster_is_rejected() -> None:
    assert family_errors(
        service({"ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]}), ["IPv4"]
    ) == [
        (
            "spec.ipFamilyPolicy",
            "FieldValueInvalid",
            'Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services',
        )
    ]


def test_family_not_configured_is_rejected() -> None:
    assert family_errors(service({"ipFamilies": ["IPv6"], "ports": [{"port": 80}]}), ["IPv4"]) == [
        ("spec.ipFamilies[0]", "FieldValueInvalid", 'Invalid value: "IPv6": not configured on this cluster')
    ]
    assert family_errors(service({"clusterIP": "fd00::5", "ports": [{"port": 80}]}), ["IPv4"]) == [
        (
            "spec.clusterIPs[0]",
            "FieldValueInvalid",
            'Invalid value: []string{"fd00::5"}: IPv6 is not configured on this cluster',
        )
    ]


def test_prefer_dual_stack_gets_both_families_on_dual_stack_cluster_only() -> None:
    body = service({"ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]})
    dual = created(body)
    assert init_ip_family_fields(dual, None, ["IPv6", "IPv4"]) == []
    assert dual["spec"]["ipFamilies"] == ["IPv6", "IPv4"]
    single = created(body)
    assert init_ip_family_fields(single, None, ["IPv4"]) == []
    assert single["spec"]["ipFamilies"] == ["IPv4"]


def test_headless_selectorless_defaults_to_require_dual_stack() -> None:
    obj = created(service({"clusterIP": "None", "ports": [{"port": 80}]}))
    assert init_ip_family_fields(obj, None, ["IPv4"]) == []
    assert obj["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert obj["spec"]["ipFamilies"] == ["IPv4", "IPv6"]


def test_update_inherits_policy_and_single_stack_downgrade_trims() -> None:
    old = stored(
        service(
            {
                "ipFamilyPolicy": "PreferDualStack",
                "ports": [{"port": 80}],
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10", "fd00::10"],
            }
        ),
        families=["IPv4", "IPv6"],
    )
    kept = updated(service({"ports": [{"port": 80}]}), old)
    assert init_ip_family_fields(kept, old, ["IPv4", "IPv6"]) == []
    assert kept["spec"]["ipFamilyPolicy"] == "PreferDualStack"
    assert kept["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    downgraded = copy.deepcopy(old)
    downgraded["spec"]["ipFamilyPolicy"] = "SingleStack"
    new = updated(downgraded, old)
    assert init_ip_family_fields(new, old, ["IPv4", "IPv6"]) == []
    assert new["spec"]["clusterIPs"] == ["10.96.0.10"]
    assert new["spec"]["ipFamilies"] == ["IPv4"]
    assert validate_update(new, old) == []


# --------------------------------------------------------------------------------------------
# Through the REST layer: every table case is a 422 Status naming the same cause


async def test_invalid_services_are_422_statuses_over_http(tmp_path: Any) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from svcnet.apiserver.app import build_app
    from svcnet.apiserver.options import ApiServerOptions
    from svcnet.store.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path / "state.db"))
    await store.start()
    client = TestClient(TestServer(build_app(store, ApiServerOptions())))
    await client.start_server()
    try:
        for case_id, body, field, reason, text in INVALID:
            if case_id == "namespace-missing":
                continue  # over HTTP the namespace comes from the URL
            reply = await client.post("/api/v1/namespaces/default/services", json=body)
            status = await reply.json()
            assert reply.status == 422, (case_id, status)
            assert (status["kind"], status["reason"], status["code"]) == ("Status", "Invalid", 422)
            assert status["details"]["kind"] == "Service"
            matching = [
                c for c in status["details"]["causes"] if c["field"] == field and c["reason"] == reason
            ]
            assert any(text in c["message"] for c in matching), (case_id, status["details"]["causes"])
        reply = await client.post("/api/v1/namespaces/default/services", json=service())
        assert reply.status == 201, await reply.text()
    finally:
        await client.close()
        await store.close()


def test_same_node_port_for_tcp_and_udp_of_one_port_is_valid() -> None:
    allocated(service({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053},
    ]}))  # fmt: skip


def test_bad_values_are_quoted_as_go_prints_them() -> None:
    """Go's %q keeps printable non-ASCII characters and escapes control characters by name."""
    assert causes(validate_create(created(service(name="café"))))[0][2].startswith(
        'Invalid value: "café": a DNS-1035 label'
    )
    body = service({"type": "Load\rBalancer\x00", "ports": [{"port": 80}]})
    assert causes(validate_create(created(body))) == [
        (
            "spec.type",
            "FieldValueNotSupported",
            'Unsupported value: "Load\\rBalancer\\x00": supported values: '
            '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
        )
    ]
    body = service({"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.2\r"], "ports": [{"port": 80}]})
    assert causes(validate_create(created(body)))[0] == (
        "spec.clusterIPs",
        "FieldValueInvalid",
        'Invalid value: []string{"10.96.0.2\\r"}: first value must match `clusterIP`',
    )
