"""EndpointSlice contents and the reconcile algorithm, as upstream's controller behaves."""

from __future__ import annotations

import copy
import itertools

from svcnet.controllers.endpointslice.desired import CONTROLLER_NAME, desired_state, pod_to_endpoint
from svcnet.controllers.endpointslice.reconciler import Plan, reconcile

_names = itertools.count()


def service(name: str = "backend", **spec) -> dict:
    base = {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                                     "protocol": "TCP"}],
            "clusterIP": "10.96.0.10", "ipFamilies": ["IPv4"]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": base}


def pod(i: int, ready: bool = True, node: str = "node-1", **extra) -> dict:
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"p{i}", "namespace": "default", "uid": f"uid-{i}",
                      "labels": {"app": "backend"}},
         "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
             {"name": "web", "containerPort": 8080 + (i % 2), "protocol": "TCP"}]}]},
         "status": {"phase": "Running", "podIP": f"10.244.{i // 250}.{i % 250 + 1}",
                    "podIPs": [{"ip": f"10.244.{i // 250}.{i % 250 + 1}"}],
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    for key, value in extra.items():
        p[key].update(value)
    return p


NODES = {"node-1": {"metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "zone-a"}}},
         "node-2": {"metadata": {"name": "node-2"}}}


def apply(plan: Plan, existing: list[dict]) -> list[dict]:
    """What the API would hold after the plan: creates get names as generateName would."""
    by_name = {s["metadata"]["name"]: s for s in existing}
    for s in plan.delete:
        by_name.pop(s["metadata"]["name"])
    for s in plan.update:
        assert s["metadata"]["name"] in by_name, "an update must target an existing slice"
        by_name[s["metadata"]["name"]] = copy.deepcopy(s)
    for s in plan.create:
        s = copy.deepcopy(s)
        s["metadata"]["name"] = s["metadata"]["generateName"] + str(next(_names))
        by_name[s["metadata"]["name"]] = s
    return list(by_name.values())


def sync(svc: dict, pods: list[dict], existing: list[dict], limit: int = 100) -> tuple[Plan, list[dict]]:
    plan = reconcile(svc, desired_state(svc, pods, NODES), existing, limit)
    return plan, apply(plan, existing)


def test_250_ready_pods_make_three_slices_of_100_100_50() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}])
    pods = [pod(i) for i in range(250)]
    _, slices = sync(svc, pods, [])
    assert sorted(len(s["endpoints"]) for s in slices) == [50, 100, 100]
    for s in slices:
        assert s["metadata"]["labels"] == {"team": "a", "kubernetes.io/service-name": "backend",
                                           "endpointslice.kubernetes.io/managed-by":
                                               "endpointslice-controller.k8s.io"}
        assert s["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
        assert s["metadata"]["generateName"] == "backend-"
        assert s["addressType"] == "IPv4"
        assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_flipping_one_pods_readiness_rewrites_exactly_one_slice() -> None:
    svc = service()
    pods = [pod(i) for i in range(250)]
    _, slices = sync(svc, pods, [])
    pods[137] = pod(137, ready=False)
    plan, after = sync(svc, pods, slices)
    assert (len(plan.create), len(plan.update), len(plan.delete)) == (0, 1, 0)
    flipped = [e for s in after for e in s["endpoints"] if e["targetRef"]["name"] == "p137"]
    assert flipped[0]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    # and nothing more to do afterwards
    assert sync(svc, pods, after)[0].empty


def test_one_new_pod_goes_into_the_slice_it_fits_best() -> None:
    svc = service()
    pods = [pod(i) for i in range(250)]
    _, slices = sync(svc, pods, [])
    plan, _ = sync(svc, [*pods, pod(250)], slices)
    assert (len(plan.create), len(plan.update), len(plan.delete)) == (0, 1, 0)
    assert len(plan.update[0]["endpoints"]) == 51


def test_terminating_pod_stays_with_terminating_true_and_ready_false() -> None:
    svc = service()
    p = pod(1, metadata={"deletionTimestamp": "2026-01-01T00:00:00Z"})
    ep = pod_to_endpoint(p, NODES["node-1"], svc, "IPv4")
    assert ep["conditions"] == {"ready": False, "serving": True, "terminating": True}
    unready = pod(2, ready=False, metadata={"deletionTimestamp": "2026-01-01T00:00:00Z"})
    assert pod_to_endpoint(unready, None, svc, "IPv4")["conditions"] == {
        "ready": False, "serving": False, "terminating": True}


def test_publish_not_ready_addresses_marks_unready_pods_ready() -> None:
    svc = service(publishNotReadyAddresses=True)
    ep = pod_to_endpoint(pod(3, ready=False), NODES["node-1"], svc, "IPv4")
    assert ep["conditions"]["ready"] is True and ep["conditions"]["serving"] is False


def test_named_target_port_resolves_per_pod_and_splits_slices() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    _, slices = sync(svc, [pod(i) for i in range(4)], [])  # even pods expose 8080, odd 8081
    by_port = {s["ports"][0]["port"]: sorted(e["targetRef"]["name"] for e in s["endpoints"]) for s in slices}
    assert by_port == {8080: ["p0", "p2"], 8081: ["p1", "p3"]}


def test_endpoint_carries_node_zone_hostname_and_target_ref() -> None:
    svc = service(name="mysql-headless", clusterIP="None")
    p = pod(0, spec={"hostname": "mysql-0", "subdomain": "mysql-headless"})
    ep = pod_to_endpoint(p, NODES["node-1"], svc, "IPv4")
    assert ep == {"addresses": ["10.244.0.1"],
                  "conditions": {"ready": True, "serving": True, "terminating": False},
                  "hostname": "mysql-0", "nodeName": "node-1", "zone": "zone-a",
                  "targetRef": {"kind": "Pod", "namespace": "default", "name": "p0", "uid": "uid-0"}}


def test_headless_service_slices_are_labelled_headless() -> None:
    svc = service(clusterIP="None")
    _, slices = sync(svc, [pod(0)], [])
    assert slices[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""


def test_no_pods_gives_one_placeholder_and_it_is_kept() -> None:
    svc = service()
    plan, slices = sync(svc, [], [])
    assert len(plan.create) == 1 and slices[0]["endpoints"] == [] and slices[0]["ports"] == []
    assert sync(svc, [], slices)[0].empty


def test_terminal_pods_and_pods_without_ip_are_left_out() -> None:
    svc = service()
    done = pod(1, status={"phase": "Succeeded"})
    no_ip = pod(2)
    no_ip["status"].pop("podIP")
    no_ip["status"].pop("podIPs")
    _, slices = sync(svc, [pod(0), done, no_ip], [])
    assert [e["targetRef"]["name"] for s in slices for e in s["endpoints"]] == ["p0"]


def test_pod_on_unknown_node_is_skipped_and_reported() -> None:
    svc = service()
    desired = desired_state(svc, [pod(0, node="gone")], NODES)
    assert desired.skipped and "gone" in desired.skipped[0]
    assert all(not g.endpoints for g in desired.groups.values())


def test_removing_all_pods_reuses_a_slice_as_the_placeholder() -> None:
    svc = service()
    _, slices = sync(svc, [pod(i) for i in range(3)], [])
    plan, after = sync(svc, [], slices)
    # the create of the placeholder becomes an update of the slice that would be deleted
    assert (len(plan.create), len(plan.update), len(plan.delete)) == (0, 1, 0)
    assert after[0]["endpoints"] == [] and after[0]["metadata"]["name"] == slices[0]["metadata"]["name"]


def test_dual_stack_service_gets_a_slice_per_family() -> None:
    svc = service(ipFamilies=["IPv4", "IPv6"])
    p = pod(0)
    p["status"]["podIPs"] = [{"ip": "10.244.0.1"}, {"ip": "fd00::1"}]
    _, slices = sync(svc, [p], [])
    assert {s["addressType"]: s["endpoints"][0]["addresses"] for s in slices} == {
        "IPv4": ["10.244.0.1"], "IPv6": ["fd00::1"]}


def test_service_label_change_updates_slices() -> None:
    svc = service()
    _, slices = sync(svc, [pod(0)], [])
    svc["metadata"]["labels"] = {"team": "b"}
    plan, after = sync(svc, [pod(0)], slices)
    assert len(plan.update) == 1 and after[0]["metadata"]["labels"]["team"] == "b"
    # Relabelled in place: the same slice, its endpoints and the controller's own labels kept.
    assert not plan.create and not plan.delete
    assert after[0]["metadata"]["name"] == slices[0]["metadata"]["name"]
    assert after[0]["endpoints"] == slices[0]["endpoints"]
    assert after[0]["metadata"]["labels"]["kubernetes.io/service-name"] == svc["metadata"]["name"]
    assert after[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == CONTROLLER_NAME
