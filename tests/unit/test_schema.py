import json

import pytest

from svcnet.api.resources import RESOURCES
from svcnet.api.schema import (
    decode_error,
    drop_unknown_fields,
    duplicate_fields,
    model_class,
    schema_for,
    strict_decoding_errors,
    strict_decoding_message,
    unknown_fields,
)


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: f"{r.api_version}/{r.kind}")
def test_every_served_kind_has_a_model(resource):
    model = model_class(resource.api_version, resource.kind)
    assert model is not None
    assert model.__name__.endswith(f"V1{resource.kind}")  # the kind's own class, not a look-alike
    assert model.attribute_map["metadata"] == "metadata"


def test_core_event_and_group_kinds_map_to_the_right_classes():
    assert model_class("v1", "Event").__name__ == "CoreV1Event"
    assert model_class("events.k8s.io/v1", "Event").__name__ == "EventsV1Event"
    assert model_class("discovery.k8s.io/v1", "EndpointSlice").__name__ == "V1EndpointSlice"
    assert model_class("example.com/v1", "Widget") is None


def test_valid_service_has_no_unknown_fields():
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "s",
            "labels": {"any-key": "v"},
            "annotations": {"x/y": "z"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u"}],
        },
        "spec": {
            "ports": [{"port": 80, "targetPort": "http", "nodePort": 30080, "appProtocol": "h2c"}],
            "clusterIPs": ["10.0.0.1"],
            "selector": {"app": "a"},
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}},
        },
        "status": {
            "loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ports": [{"port": 80, "protocol": "TCP"}]}]}
        },
    }
    assert unknown_fields("v1", "Service", svc) == []


def test_unknown_field_paths_in_nested_objects_lists_and_maps():
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "labelz": {"a": "b"}},
        "spec": {
            "foo": 1,
            "ports": [{"port": 80}, {"port": 81, "bar": True}],
            "sessionAffinityConfig": {"clientIP": {"timeoutSecondz": 1}},
        },
        "Status": {},
    }
    assert unknown_fields("v1", "Service", svc) == [
        "metadata.labelz",
        "spec.foo",
        "spec.ports[1].bar",
        "spec.sessionAffinityConfig.clientIP.timeoutSecondz",
        "Status",  # field names are case-sensitive
    ]


def test_int_or_string_and_raw_values_accept_anything():
    svc = {"spec": {"ports": [{"port": 80, "targetPort": {"anything": ["goes"]}}]}}
    assert unknown_fields("v1", "Service", svc) == []
    dep = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}}}
    assert unknown_fields("apps/v1", "Deployment", dep) == []


def test_pod_and_deployment_template_paths():
    dep = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "a",
                            "image": "i",
                            "env": [{"name": "X", "valu": "1"}],
                            "ports": [{"containerPort": 80, "hostname": "x"}],
                        },
                    ]
                }
            }
        }
    }
    assert unknown_fields("apps/v1", "Deployment", dep) == [
        "spec.template.spec.containers[0].env[0].valu",
        "spec.template.spec.containers[0].ports[0].hostname",
    ]


def test_map_of_objects_adds_the_key_to_the_path():
    # None of svcnet's kinds has a map of objects; a CRD's schema properties is one.
    crd = {
        "spec": {
            "versions": [
                {
                    "name": "v1",
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "bogus": 1}},
                        }
                    },
                }
            ]
        }
    }
    assert unknown_fields("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd) == [
        "spec.versions[0].schema.openAPIV3Schema.properties.spec.bogus"
    ]


def test_unknown_fields_are_capped_at_100():
    obj = {"spec": {f"f{i}": i for i in range(150)}}
    assert len(unknown_fields("v1", "Service", obj)) == 100


def test_drop_unknown_fields_keeps_known_ones():
    svc = {"metadata": {"name": "s", "labelz": {}}, "spec": {"foo": 1, "ports": [{"port": 80, "bar": 2}]}}
    assert drop_unknown_fields("v1", "Service", svc) == {
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}]},
    }
    assert svc["spec"]["foo"] == 1  # input untouched


def test_duplicate_fields_with_paths():
    raw = (
        b'{"apiVersion":"v1","kind":"Service","kind":"Service",'
        b'"metadata":{"name":"a","labels":{"x":"1","x":"2"}},'
        b'"spec":{"type":"ClusterIP","ports":[{"port":1},{"port":2,"port":3}],"type":"NodePort"}}'
    )
    assert duplicate_fields(raw) == ["kind", "metadata.labels.x", "spec.ports[1].port", "spec.type"]
    assert duplicate_fields(raw, "v1", "Service") == [
        "kind",
        "metadata.labels.x",
        "spec.ports[1].port",
        "spec.type",
    ]
    assert duplicate_fields(b'{"a":1,"b":2}') == []


def test_strict_errors_mix_unknown_and_duplicate_in_document_order():
    raw = json.dumps({"spec": {"foo": 1}}).replace('{"foo": 1}', '{"foo": 1, "type": "A", "type": "B"}')
    assert strict_decoding_errors(raw, "v1", "Service") == [
        'unknown field "spec.foo"',
        'duplicate field "spec.type"',
    ]


def test_nothing_is_checked_inside_unknown_fields_or_int_or_string():
    raw = b'{"spec":{"foo":{"a":1,"a":2},"ports":[{"port":1,"targetPort":{"x":1,"x":2}}]}}'
    assert strict_decoding_errors(raw, "v1", "Service") == ['unknown field "spec.foo"']
    # Without a schema every object is checked.
    assert duplicate_fields(raw) == ["spec.foo.a", "spec.ports[0].targetPort.x"]


def test_repeated_unknown_field_is_reported_once():
    raw = b'{"spec":{"foo":1,"foo":2}}'
    assert strict_decoding_errors(raw, "v1", "Service") == ['unknown field "spec.foo"']


def test_strict_decoding_message_text():
    assert strict_decoding_message(["spec.foo", "spec.bar"]) == (
        'strict decoding error: unknown field "spec.foo", unknown field "spec.bar"'
    )
    assert strict_decoding_message(["a"], ["b"]) == (
        'strict decoding error: unknown field "a", duplicate field "b"'
    )


def test_invalid_json_raises_value_error():
    with pytest.raises(ValueError):
        duplicate_fields(b"{not json")


def test_schema_tree_shapes():
    schema = schema_for("v1", "Service")
    assert schema["type"] == "object"
    assert schema["description"].startswith("Service is a named abstraction")
    spec = schema["properties"]["spec"]["properties"]
    ports = spec["ports"]
    assert ports["type"] == "array"
    port = ports["items"]["properties"]
    assert port["port"]["type"] == "integer"
    assert port["targetPort"]["x-kubernetes-int-or-string"] is True
    assert spec["selector"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": spec["selector"]["description"],
    }
    meta = schema["properties"]["metadata"]["properties"]
    assert meta["creationTimestamp"]["format"] == "date-time"
    assert "clusterIP is the IP address of the service" in spec["clusterIP"]["description"]
    # Every served kind has a tree, and callers may change theirs without affecting others.
    for r in RESOURCES:
        assert schema_for(r.api_version, r.kind)["properties"]["metadata"]["type"] == "object"
    schema["properties"].clear()
    assert schema_for("v1", "Service")["properties"]
    assert schema_for("example.com/v1", "Widget") is None


@pytest.mark.parametrize(
    ("api_version", "kind", "obj", "message"),
    [
        (
            "v1",
            "Service",
            {"spec": {"ports": [{"port": "80"}]}},
            "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32",
        ),
        (
            "v1",
            "Service",
            {"spec": {"ports": [{"port": 3000000000}]}},
            "json: cannot unmarshal number 3000000000"
            " into Go struct field ServicePort.spec.ports.port of type int32",
        ),
        (
            "v1",
            "Service",
            {"spec": "x"},
            "json: cannot unmarshal string into Go struct field Service.spec of type v1.ServiceSpec",
        ),
        (
            "v1",
            "Service",
            {"spec": {"ports": {}}},
            "json: cannot unmarshal object"
            " into Go struct field ServiceSpec.spec.ports of type []v1.ServicePort",
        ),
        (
            "v1",
            "Service",
            {"spec": {"ports": ["x"]}},
            "json: cannot unmarshal string"
            " into Go struct field ServiceSpec.spec.ports of type v1.ServicePort",
        ),
        (
            "v1",
            "Service",
            {"kind": 1},
            "json: cannot unmarshal number into Go struct field Service.kind of type string",
        ),
        (
            "v1",
            "Service",
            {"spec": {"publishNotReadyAddresses": "true"}},
            "json: cannot unmarshal string"
            " into Go struct field ServiceSpec.spec.publishNotReadyAddresses of type bool",
        ),
        (
            "v1",
            "Pod",
            {"metadata": {"labels": {"a": 1}}},
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
        ),
        (
            "v1",
            "Pod",
            {"metadata": {"generation": 1.5}},
            "json: cannot unmarshal number 1.5"
            " into Go struct field ObjectMeta.metadata.generation of type int64",
        ),
        (
            "apps/v1",
            "Deployment",
            {"spec": {"replicas": "3"}},
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            "discovery.k8s.io/v1",
            "EndpointSlice",
            {"ports": [{"port": "x"}]},
            "json: cannot unmarshal string into Go struct field EndpointPort.ports.port of type int32",
        ),
        (
            "v1",
            "Service",
            {"spec": {"ports": [{"port": 80, "targetPort": {"x": 1}}]}},
            "json: cannot unmarshal object into Go value of type int32",
        ),
        (
            "v1",
            "Service",
            {"metadata": {"creationTimestamp": 5}},
            "json: cannot unmarshal number into Go value of type string",
        ),
    ],
)
def test_decode_error_messages(api_version, kind, obj, message):
    assert decode_error(api_version, kind, obj) == message


def test_decode_error_reports_the_first_in_document_order_and_accepts_valid_objects():
    pod = {
        "spec": {
            "containers": [{"name": "a", "ports": [{"containerPort": "80"}]}],
            "terminationGracePeriodSeconds": "x",
        }
    }
    assert decode_error("v1", "Pod", pod).endswith(
        "ContainerPort.spec.containers.ports.containerPort of type int32"
    )
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "creationTimestamp": None},
        "spec": {
            "ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}],
            "selector": None,
        },
    }
    assert decode_error("v1", "Service", svc) is None
