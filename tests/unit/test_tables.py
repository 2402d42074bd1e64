"""Table rows as kube-apiserver's printers produce them (pkg/printers/internalversion)."""

from __future__ import annotations

import datetime

import orjson
import pytest

from svcnet.api import resources
from svcnet.apiserver import tables

KUBECTL_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
    "application/json"
)


def res(kind: str) -> resources.Resource:
    return next(r for r in resources.RESOURCES if r.kind == kind)


def cells(kind: str, obj: dict) -> list:
    return tables.row(res(kind), obj, "None")["cells"]


def ago(seconds: int) -> str:
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 300, "3h5m"),
        (8 * 3600 + 300, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (49 * 3600, "2d1h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (740 * 86400, "2y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def svc(spec: dict, status: dict | None = None, **meta) -> dict:
    return {
        "metadata": {"name": "s", "creationTimestamp": ago(5), **meta},
        "spec": spec,
        "status": status or {},
    }


def test_service_cells() -> None:
    cluster = svc(
        {
            "type": "ClusterIP",
            "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"tier": "api", "app": "backend"},
        }
    )
    assert cells("Service", cluster) == [
        "s", "ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP", "5s", "app=backend,tier=api",
    ]  # fmt: skip
    node_port = svc(
        {
            "type": "NodePort",
            "clusterIPs": ["10.96.0.11"],
            "externalIPs": ["1.2.3.4", "5.6.7.8"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
        }
    )
    assert cells("Service", node_port)[2:5] == ["10.96.0.11", "1.2.3.4,5.6.7.8", "80:30080/TCP"]
    assert cells("Service", node_port)[6] == "<none>"
    lb = svc({"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "ports": []})
    assert cells("Service", lb)[3:5] == ["<pending>", "<none>"]
    lb_ready = svc(
        {"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "externalIPs": ["9.9.9.9"]},
        {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}, {"hostname": "lb.example"}, {"ip": "192.0.2.1"}]}},
    )
    assert cells("Service", lb_ready)[3] == "192.0.2.1,192.0.2.7,lb.example,9.9.9.9"
    external = svc({"type": "ExternalName", "externalName": "db.example.com"})
    assert cells("Service", external)[1:5] == ["ExternalName", "<none>", "db.example.com", "<none>"]
    headless = svc(
        {
            "type": "ClusterIP",
            "clusterIP": "None",
            "clusterIPs": ["None"],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        }
    )
    assert cells("Service", headless)[2] == "None"


def pod(spec: dict | None = None, status: dict | None = None, **meta) -> dict:
    return {
        "metadata": {"name": "p", "creationTimestamp": ago(70), **meta},
        "spec": {"containers": [{"name": "a"}], **(spec or {})},
        "status": status or {},
    }


def running(name: str, ready: bool = True, restarts: int = 0) -> dict:
    return {"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {}}}


def test_pod_cells() -> None:
    ok = pod(
        {"nodeName": "n1"},
        {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [running("a")]},
    )
    assert cells("Pod", ok) == ["p", "1/1", "Running", "0", "70s", "10.0.0.5", "n1", "<none>", "<none>"]
    pending = pod(status={"phase": "Pending"})
    assert cells("Pod", pending) == [
        "p",
        "0/1",
        "Pending",
        "0",
        "70s",
        "<none>",
        "<none>",
        "<none>",
        "<none>",
    ]
    crash = pod(
        status={
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "a",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"finishedAt": ago(30), "exitCode": 1}},
                }
            ],
        }
    )
    assert cells("Pod", crash)[1:4] == ["0/1", "CrashLoopBackOff", "4 (30s ago)"]
    init = pod(
        {"initContainers": [{"name": "i"}]},
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "i", "ready": False, "restartCount": 0, "state": {"running": {}}}
            ],
        },
    )
    assert cells("Pod", init)[2] == "Init:0/1"
    terminating = pod(
        status={"phase": "Running", "containerStatuses": [running("a")]}, deletionTimestamp=ago(1)
    )
    assert cells("Pod", terminating)[2] == "Terminating"
    done = tables.row(
        res("Pod"),
        pod(
            status={
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "a",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"reason": "Completed"}},
                    }
                ],
            }
        ),
        "None",
    )
    assert done["cells"][2] == "Completed"
    assert done["conditions"][0]["type"] == "Completed"
    gates = pod(
        {"readinessGates": [{"conditionType": "x/a"}, {"conditionType": "x/b"}]},
        {"phase": "Running", "conditions": [{"type": "x/a", "status": "True"}]},
    )
    assert cells("Pod", gates)[8] == "1/2"
    nominated = pod(status={"phase": "Pending", "nominatedNodeName": "n2"})
    assert cells("Pod", nominated)[7] == "n2"


def test_endpoints_more_rule() -> None:
    ep = {
        "metadata": {"name": "e"},
        "subsets": [
            {"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]},
        ],
    }
    assert cells("Endpoints", ep)[1] == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
    assert cells("Endpoints", {"metadata": {"name": "e"}})[1] == "<none>"
    v6 = {"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]}
    assert cells("Endpoints", v6)[1] == "[fd00::1]:80"
    not_ready = {
        "metadata": {"name": "e"},
        "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}],
    }
    assert cells("Endpoints", not_ready)[1] == ""
    headless = {"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}
    assert cells("Endpoints", headless)[1] == "10.0.0.1"


def test_endpointslice_cells() -> None:
    es = {
        "metadata": {"name": "s-abc"},
        "addressType": "IPv4",
        "ports": [{"port": 80}, {"name": "x"}, {}, {"port": 8}],
        "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 5)],
    }
    assert cells("EndpointSlice", es)[:4] == [
        "s-abc", "IPv4", "80,x,* + 1 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...",
    ]  # fmt: skip
    empty = {"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": []}
    assert cells("EndpointSlice", empty)[2:4] == ["<unset>", "<unset>"]


def test_node_namespace_event_workload_lease_cells() -> None:
    node = {
        "metadata": {
            "name": "n1",
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "x"},
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0"},
        },
    }
    assert cells("Node", node) == [
        "n1", "Ready,SchedulingDisabled", "control-plane,x", "<unknown>", "v1.32.0", "192.168.1.2", "<none>",
        "<unknown>", "<unknown>", "<unknown>",
    ]  # fmt: skip
    assert cells("Node", {"metadata": {"name": "n"}})[1] == "Unknown"
    assert cells("Namespace", {"metadata": {"name": "ns"}, "status": {"phase": "Active"}})[:2] == [
        "ns",
        "Active",
    ]
    event = {
        "metadata": {"name": "e1"},
        "type": "Normal",
        "reason": "Created",
        "message": " hi \n",
        "involvedObject": {"kind": "Service", "name": "web"},
        "source": {"component": "ctrl"},
        "firstTimestamp": ago(10),
    }
    assert cells("Event", event) == [
        "10s",
        "Normal",
        "Created",
        "service/web",
        "",
        "ctrl",
        "hi",
        "10s",
        1,
        "e1",
    ]
    deployment = {
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [{"key": "c", "operator": "Exists"}],
            },
            "template": {
                "spec": {"containers": [{"name": "x", "image": "i1"}, {"name": "y", "image": "i2"}]}
            },
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells("Deployment", deployment) == ["d", "2/3", 3, 2, "<unknown>", "x,y", "i1,i2", "a=1,b=2,c"]
    sts = {"metadata": {"name": "db"}, "spec": {"replicas": 2, "template": {"spec": {"containers": []}}}}
    assert cells("StatefulSet", sts)[:2] == ["db", "0/2"]
    lease = {"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-1"}}
    assert cells("Lease", lease)[:2] == ["l", "node-1"]


def test_table_negotiation_and_objects() -> None:
    assert tables.wants_table(KUBECTL_ACCEPT) == "v1"
    assert tables.wants_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "v1beta1"
    assert tables.wants_table("application/json") is None
    assert tables.wants_table("application/json, application/json;as=Table;v=v1;g=meta.k8s.io") is None
    assert tables.wants_table("") is None
    assert tables.include_object({}) == "Metadata"
    with pytest.raises(Exception, match="includeObject"):
        tables.include_object({"includeObject": "Everything"})
    obj = svc({"type": "ClusterIP", "clusterIPs": ["10.96.0.1"]}, namespace="default", labels={"a": "b"})
    table = tables.table(res("Service"), [obj], "Metadata", "v1", {"resourceVersion": "7", "continue": "c"})
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "7", "continue": "c"}
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector",
    ]  # fmt: skip
    assert [c["priority"] for c in table["columnDefinitions"]] == [0, 0, 0, 0, 0, 0, 1]
    partial = table["rows"][0]["object"]
    assert partial == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }
    assert tables.row(res("Service"), obj, "Object")["object"] is obj
    assert tables.row(res("Service"), obj, "None")["object"] is None


def test_watch_encoder_sends_columns_once() -> None:
    encode = tables.watch_encoder(KUBECTL_ACCEPT, {}, res("Service"))
    assert encode is not None
    obj = svc({"type": "ClusterIP", "clusterIPs": ["10.96.0.1"]}, resourceVersion="5")
    first = orjson.loads(encode(orjson.dumps({"type": "ADDED", "object": obj}) + b"\n"))
    second = orjson.loads(encode(orjson.dumps({"type": "MODIFIED", "object": obj}) + b"\n"))
    assert first["object"]["columnDefinitions"] and second["object"]["columnDefinitions"] == []
    assert second["object"]["metadata"] == {"resourceVersion": "5"}
    assert len(second["object"]["rows"]) == 1
    error = orjson.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410}}) + b"\n"
    assert encode(error) == error
    assert tables.watch_encoder("application/json", {}, res("Service")) is None
