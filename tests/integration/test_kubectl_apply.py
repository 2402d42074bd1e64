"""Server-side apply and managedFields rules (api/apply.py) without a server: the field sets
kubectl users see in `kubectl get -o yaml --show-managed-fields`, ownership moves, conflicts."""

from __future__ import annotations

import copy

import pytest

from svcnet.api import apply
from svcnet.api.errors import StatusError


def service(ports: list[dict], selector: dict | None = None, **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": ports, "selector": selector or {"app": "web"}, **spec},
    }


def fields_of(obj: dict, manager: str) -> dict:
    entry = next(e for e in obj["metadata"]["managedFields"] if e["manager"] == manager)
    return entry["fieldsV1"]


def test_apply_creates_with_upstream_field_set() -> None:
    applied = service([{"port": 80, "targetPort": 8080}])
    obj = apply.apply(None, applied, "kubectl", "v1", "Service", force=False)
    entry = obj["metadata"]["managedFields"][0]
    assert (entry["manager"], entry["operation"], entry["apiVersion"], entry["fieldsType"]) == (
        "kubectl",
        "Apply",
        "v1",
        "FieldsV1",
    )
    # The omitted protocol is the list-map key's default, as the schema default makes it upstream.
    assert entry["fieldsV1"] == {
        "f:spec": {
            "f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:targetPort": {}}},
            "f:selector": {},
        }
    }


def test_update_owns_what_it_changed_and_takes_it_from_others() -> None:
    old = service([{"port": 80, "protocol": "TCP", "targetPort": 8080}])
    apply.record_update(None, old, old, "creator", "v1", "Service")
    assert fields_of(old, "creator")["f:spec"]["f:ports"]["."] == {}
    new = copy.deepcopy(old)
    new["spec"]["ports"][0]["targetPort"] = 9090
    new["metadata"]["labels"] = {"team": "blue"}
    apply.record_update(old, new, new, "editor", "v1", "Service")
    assert fields_of(new, "editor") == {
        "f:metadata": {"f:labels": {".": {}, "f:team": {}}},
        "f:spec": {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {"f:targetPort": {}}}},
    }
    creator_port = fields_of(new, "creator")["f:spec"]["f:ports"]['k:{"port":80,"protocol":"TCP"}']
    assert "f:targetPort" not in creator_port and "f:port" in creator_port
    # An update that changes nothing keeps the entries as they were, timestamps included.
    same = copy.deepcopy(new)
    apply.record_update(new, same, same, "editor", "v1", "Service")
    assert same["metadata"]["managedFields"] == new["metadata"]["managedFields"]


def test_conflicts_name_every_manager_and_force_moves_ownership() -> None:
    live = service([{"port": 80, "protocol": "TCP", "targetPort": 8080}], sessionAffinity="None")
    apply.record_update(None, live, live, "kubectl-client-side-apply", "v1", "Service")
    other = copy.deepcopy(live)
    other["spec"]["sessionAffinity"] = "ClientIP"
    apply.record_update(live, other, other, "kubectl-edit", "v1", "Service")
    wanted = service([{"port": 80, "targetPort": 9090}], sessionAffinity="None")
    with pytest.raises(StatusError) as info:
        apply.apply(other, wanted, "kubectl", "v1", "Service", force=False, resource="services")
    err = info.value
    assert err.code == 409 and err.reason == "Conflict"
    assert err.message == (
        "Apply failed with 2 conflicts: "
        'conflicts with "kubectl-client-side-apply" using v1:\n'
        '- .spec.ports[port=80,protocol="TCP"].targetPort\n'
        'conflicts with "kubectl-edit" using v1:\n'
        "- .spec.sessionAffinity"
    )
    assert {c["type"] for c in err.details["causes"]} == {"FieldManagerConflict"}
    forced = apply.apply(other, wanted, "kubectl", "v1", "Service", force=True)
    assert forced["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 9090}]
    assert forced["spec"]["sessionAffinity"] == "None"
    # kubectl-edit owned nothing else, so its entry is gone.
    assert [e["manager"] for e in forced["metadata"]["managedFields"]] == [
        "kubectl-client-side-apply",
        "kubectl",
    ]
    # Same value: shared, no conflict.
    shared = apply.apply(
        other, service([{"port": 80, "targetPort": 8080}]), "mgr2", "v1", "Service", force=False
    )
    assert "f:selector" in fields_of(shared, "mgr2")["f:spec"]
    assert "f:selector" in fields_of(shared, "kubectl-client-side-apply")["f:spec"]


def test_fields_dropped_from_the_applied_configuration_are_removed_unless_owned_elsewhere() -> None:
    first = service(
        [{"port": 80, "targetPort": 8080}, {"name": "metrics", "port": 9100}], externalIPs=["192.0.2.1"]
    )
    obj = apply.apply(None, first, "kubectl", "v1", "Service", force=False)
    obj["metadata"]["labels"] = {"kept": "yes"}
    second = service([{"port": 80, "targetPort": 8080}])
    after = apply.apply(obj, second, "kubectl", "v1", "Service", force=False)
    assert after["spec"]["ports"] == [{"port": 80, "targetPort": 8080}]
    assert "externalIPs" not in after["spec"]
    assert after["metadata"]["labels"] == {"kept": "yes"}  # nobody's field: left alone


def test_field_paths_and_fieldsv1_round_trip() -> None:
    paths = {("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}'), ("f:metadata", "f:finalizers", 'v:"x"')}
    assert apply.from_fields_v1(apply.to_fields_v1(paths)) == paths
    assert apply.path_string(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:targetPort")) == (
        '.spec.ports[port=80,protocol="TCP"].targetPort'
    )
    assert apply.path_string(("f:metadata", "f:finalizers", 'v:"x"')) == '.metadata.finalizers[="x"]'
    assert apply.default_manager("kubectl/v1.32.4 (linux/amd64) kubernetes/abc") == "kubectl"
    assert apply.default_manager("OpenAPI-Generator/37.0.2/python") == "OpenAPI-Generator"
