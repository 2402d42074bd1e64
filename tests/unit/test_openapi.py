"""The OpenAPI documents kubectl reads: the checks below are the ones kubectl makes."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from svcnet.api import resources
from svcnet.apiserver import openapi


def doc(group: str, version: str) -> dict[str, Any]:
    data = openapi.document(group, version)
    assert data is not None
    return orjson.loads(data)


GROUP_VERSIONS = sorted({(r.group, r.version) for r in resources.RESOURCES})


def test_index_points_at_each_document_with_its_hash() -> None:
    paths = openapi.index()["paths"]
    assert set(paths) == {f"api/{v}" if not g else f"apis/{g}/{v}" for g, v in GROUP_VERSIONS}
    for key, entry in paths.items():
        url = entry["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{key}?hash=")
        where = openapi.parse_doc_path(key)
        assert where is not None
        assert url.endswith(openapi.document_hash(*where))
    assert openapi.parse_doc_path("apis/apps") is None
    assert openapi.document("nope", "v1") is None


@pytest.mark.parametrize("resource", resources.RESOURCES, ids=lambda r: r.kind)
def test_every_kind_has_a_patch_operation_with_field_validation(resource: resources.Resource) -> None:
    """kubectl's query-param verifier: a PATCH op whose x-kubernetes-group-version-kind is the
    kind and which lists the fieldValidation query parameter; else it falls back to OpenAPI v2."""
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    document = doc(resource.group, resource.version)
    patch_ops = [
        item["patch"]
        for item in document["paths"].values()
        if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == gvk
    ]
    assert patch_ops
    for op in patch_ops:  # kubectl stops at the first one it meets, in map order
        assert {"name": "fieldValidation", "in": "query"}.items() <= next(
            p for p in op["parameters"] if p["name"] == "fieldValidation"
        ).items()
        assert "application/strategic-merge-patch+json" in op["requestBody"]["content"]
    kinds = [
        schema
        for schema in document["components"]["schemas"].values()
        if gvk in schema.get("x-kubernetes-group-version-kind", [])
    ]
    assert len(kinds) == 1


def test_every_reference_resolves() -> None:
    for group, version in GROUP_VERSIONS:
        document = doc(group, version)
        names = set(document["components"]["schemas"])
        refs = set(re.findall(r'"\$ref":"#/components/schemas/([^"]+)"', orjson.dumps(document).decode()))
        assert refs <= names, refs - names


def test_service_schema_carries_patch_and_list_semantics() -> None:
    schemas = doc("", "v1")["components"]["schemas"]
    service = schemas["io.k8s.api.core.v1.Service"]
    assert service["x-kubernetes-group-version-kind"] == [{"group": "", "version": "v1", "kind": "Service"}]
    assert service["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.api.core.v1.ServiceSpec"}
    ]
    ports = schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-strategy"] == "merge"
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    assert ports["items"] == {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ServicePort"}]}
    port = schemas["io.k8s.api.core.v1.ServicePort"]
    assert port["required"] == ["port"]
    assert port["properties"]["targetPort"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}
    ]
    assert port["properties"]["port"]["type"] == "integer"
    assert "ServicePort contains information" in port["description"]
    meta = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["finalizers"]["x-kubernetes-patch-strategy"] == "merge"
    assert meta["finalizers"]["x-kubernetes-list-type"] == "set"
    assert meta["ownerReferences"]["x-kubernetes-patch-merge-key"] == "uid"
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert (containers["x-kubernetes-patch-merge-key"], containers["x-kubernetes-list-map-keys"]) == (
        "name",
        ["name"],
    )
    assert schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["clusterIPs"][
        "x-kubernetes-list-type"
    ] == ("atomic")


def test_apps_document_names_core_and_scale_types_by_their_packages() -> None:
    document = doc("apps", "v1")
    names = set(document["components"]["schemas"])
    assert {
        "io.k8s.api.apps.v1.Deployment",
        "io.k8s.api.core.v1.PodTemplateSpec",
        "io.k8s.api.autoscaling.v1.Scale",
    } <= (names)
    scale_ops = [
        item["patch"]
        for path, item in document["paths"].items()
        if path.endswith("/scale") and "patch" in item
    ]
    assert scale_ops and all(
        op["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
        for op in scale_ops
    )


def test_v2_protobuf_is_a_valid_empty_document() -> None:
    data = openapi.v2_protobuf()
    # Field 1 (swagger) = "2.0", field 2 (info) = {title, version}: what gnostic's Document decodes.
    assert data.startswith(b"\x0a\x032.0\x12")
    assert b"Kubernetes" in data and b"v1.32.0" in data
    assert openapi.v2_json()["swagger"] == "2.0"
