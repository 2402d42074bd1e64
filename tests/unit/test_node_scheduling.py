"""Scheduling decisions (controllers/scheduler.py) and the workload controllers' pure parts."""

from __future__ import annotations

from svcnet.controllers.scheduler import node_ready, pick_node, recreated_with_node
from svcnet.controllers.workloads.common import template_hash
from svcnet.controllers.workloads.deployment import scale_down_order, surge_and_unavailable
from svcnet.controllers.workloads.statefulset import ordinal_of


def node(name: str, ready: bool = True, labels: dict | None = None, **spec: object) -> dict:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": dict(spec),
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def pod(name: str, node_name: str = "", labels: dict | None = None, **spec: object) -> dict:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "a"}},
        "spec": {"nodeName": node_name, **spec},
        "status": {},
    }


def test_only_ready_nodes() -> None:
    assert pick_node(pod("p"), [node("n1", ready=False), node("n2")], []) == "n2"
    assert pick_node(pod("p"), [node("n1", ready=False)], []) is None


def test_stale_lease_means_not_ready() -> None:
    lease = {"spec": {"renewTime": "2020-01-01T00:00:00.000000Z", "leaseDurationSeconds": 40}}
    assert not node_ready(node("n1"), lease, now=1_700_000_000)
    fresh = {"spec": {"renewTime": "2023-11-14T22:13:10.000000Z", "leaseDurationSeconds": 40}}
    assert node_ready(node("n1"), fresh, now=1_700_000_000)


def test_node_selector_cordon_and_taints() -> None:
    nodes = [
        node("n1", labels={"disk": "hdd"}),
        node("n2", labels={"disk": "ssd"}, unschedulable=True),
        node(
            "n3", labels={"disk": "ssd"}, taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
        ),
        node("n4", labels={"disk": "ssd"}),
    ]
    assert pick_node(pod("p", nodeSelector={"disk": "ssd"}), nodes, []) == "n4"
    tolerant = pod(
        "p",
        nodeSelector={"disk": "ssd"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
    )
    assert pick_node(tolerant, nodes[:3], []) == "n3"


def test_spreads_same_labels_first_then_total() -> None:
    nodes = [node("n1"), node("n2")]
    existing = [pod("a1", "n1"), pod("b1", "n2", labels={"app": "b"}), pod("b2", "n2", labels={"app": "b"})]
    # n2 has more pods in total, but none of this workload: spreading the workload wins.
    existing.append(pod("a2", "n1"))
    assert pick_node(pod("new"), nodes, existing) == "n2"
    assert pick_node(pod("new", labels={"app": "c"}), nodes, existing) in ("n1", "n2")
    # Terminal pods do not count.
    done = [dict(p, status={"phase": "Succeeded"}) for p in existing]
    assert pick_node(pod("new"), nodes, done) == "n1"


def test_recreated_pod_keeps_identity_not_uid() -> None:
    p = pod("p")
    p["metadata"].update(uid="u1", resourceVersion="5", ownerReferences=[{"uid": "o"}])
    again = recreated_with_node(p, "n1")
    assert again["spec"]["nodeName"] == "n1"
    assert "uid" not in again["metadata"] and "resourceVersion" not in again["metadata"]
    assert again["metadata"]["ownerReferences"] == [{"uid": "o"}]


def test_surge_and_unavailable_rounding() -> None:
    d = {"spec": {}}
    assert surge_and_unavailable(d, 4) == (1, 1)
    assert surge_and_unavailable(d, 3) == (1, 0)  # 25% of 3: surge rounds up, unavailable down
    d = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}}
    assert surge_and_unavailable(d, 3) == (0, 1)
    d = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 2}}}}
    assert surge_and_unavailable(d, 5) == (3, 2)


def test_scale_down_prefers_unscheduled_then_unready_then_newest() -> None:
    def p(name: str, node_name: str, ready: bool, created: str) -> dict:
        return {
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node_name},
            "status": {
                "phase": "Running" if node_name else "Pending",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }

    pods = [
        p("old-ready", "n1", True, "2024-01-01T00:00:00Z"),
        p("new-ready", "n1", True, "2024-01-02T00:00:00Z"),
        p("unready", "n1", False, "2024-01-01T00:00:00Z"),
        p("pending", "", False, "2024-01-01T00:00:00Z"),
    ]
    assert [x["metadata"]["name"] for x in scale_down_order(pods)] == [
        "pending",
        "unready",
        "new-ready",
        "old-ready",
    ]


def test_template_hash_and_ordinals() -> None:
    t = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert template_hash(t) == template_hash({"spec": t["spec"], "metadata": t["metadata"]})
    assert template_hash(t) != template_hash({**t, "spec": {"containers": [{"name": "c", "image": "y"}]}})
    assert ordinal_of("db", "db-12") == 12
    assert ordinal_of("db", "db-x") is None and ordinal_of("db", "dbx-1") is None
