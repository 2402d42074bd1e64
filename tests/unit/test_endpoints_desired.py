"""The legacy Endpoints object as upstream's endpoints controller builds it."""

from __future__ import annotations

from svcnet.controllers.endpoints.desired import desired_endpoints, needs_update, truncate


def service(**spec) -> dict:
    base = {"selector": {"app": "web"}, "clusterIP": "10.96.0.20", "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}, "spec": base}


def pod(i: int, ready: bool = True, terminating: bool = False) -> dict:
    meta = {"name": f"w{i}", "namespace": "default", "uid": f"u{i}"}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": f"10.244.{i // 200}.{i % 200 + 1}",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_ready_and_not_ready_pods_split_and_terminating_pods_excluded() -> None:
    ep = desired_endpoints(service(), [pod(0), pod(1, ready=False), pod(2, terminating=True)])
    (subset,) = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.244.0.1"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.0.2"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert subset["addresses"][0]["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "w0",
                                                  "uid": "u0"}
    assert ep["metadata"]["labels"] == {"app": "web"}


def test_publish_not_ready_addresses_includes_everyone_as_ready() -> None:
    ep = desired_endpoints(service(publishNotReadyAddresses=True),
                           [pod(0), pod(1, ready=False), pod(2, terminating=True)])
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.0.1", "10.244.0.2", "10.244.0.3"]
    assert "notReadyAddresses" not in ep["subsets"][0]


def test_over_1000_addresses_are_truncated_with_the_annotation() -> None:
    pods = [pod(i) for i in range(900)] + [pod(1000 + i, ready=False) for i in range(300)]
    ep = desired_endpoints(service(), pods)
    (subset,) = ep["subsets"]
    assert len(subset["addresses"]) == 900  # ready addresses are kept first
    assert len(subset["notReadyAddresses"]) == 100
    assert ep["metadata"]["annotations"] == {"endpoints.kubernetes.io/over-capacity": "truncated"}


def test_truncation_trims_ready_addresses_proportionally_when_they_alone_exceed() -> None:
    subsets = [{"addresses": [{"ip": f"a{i}"} for i in range(1500)], "notReadyAddresses": [{"ip": "x"}]},
               {"addresses": [{"ip": f"b{i}"} for i in range(500)]}]
    out = truncate(subsets)
    assert [len(s["addresses"]) for s in out] == [750, 250]
    assert all("notReadyAddresses" not in s for s in out)


def test_under_capacity_has_no_annotation_and_unchanged_objects_need_no_write() -> None:
    ep = desired_endpoints(service(), [pod(i) for i in range(10)])
    assert "annotations" not in ep["metadata"]
    assert not needs_update(ep, desired_endpoints(service(), [pod(i) for i in range(10)]))
    assert needs_update(ep, desired_endpoints(service(), [pod(i) for i in range(11)]))


def test_headless_service_without_ports_gets_subsets_without_ports() -> None:
    ep = desired_endpoints(service(clusterIP="None", ports=[]), [pod(0)])
    assert ep["subsets"] == [{"addresses": [{"ip": "10.244.0.1", "nodeName": "n1", "targetRef": {
        "kind": "Pod", "namespace": "default", "name": "w0", "uid": "u0"}}]}]
    assert ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
