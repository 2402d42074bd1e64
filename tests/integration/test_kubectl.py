"""kubectl v1.32 against `svcnet server`: the chapter's manifests end to end, validation errors
as kubectl users know them, watch, and output compared line by line with what kubectl prints
against kube-apiserver for the same objects.

Every kubectl call must leave stderr free of discovery, OpenAPI and version-skew warnings."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubectl_util import WARNING_RE, Kubectl, match_table, namespace_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def kubectl(api_server, tmp_path_factory) -> Iterator[Kubectl]:
    client = Kubectl(api_server.kubeconfig_path, tmp_path_factory.mktemp("kubectl-home"))
    yield client
    # The server is shared with other test modules: give back the node ports and IPs.
    leftovers = [f"namespace/{ns}" for ns in CREATED] + [f"node/{n}" for n in NODES]
    client.run("delete", "--ignore-not-found", "--wait=false", *leftovers, check=False, allow_warnings=True)


CREATED: list[str] = []
NODES = ("kt-node-1", "kt-node-2", "kt-node-3", "kt-node-d")


def make_namespace(kubectl: Kubectl, name: str) -> str:
    kubectl.run("apply", "-f", "-", stdin=namespace_manifest(name))
    CREATED.append(name)
    return name


def free_node_ports(kubectl: Kubectl, count: int) -> list[int]:
    """Node ports in 31000-31999 that no Service of the shared server holds (same width, so
    the expected tables keep their layout)."""
    used = kubectl.out("get", "svc", "-A", "-o", "jsonpath={.items[*].spec.ports[*].nodePort}").split()
    free = [p for p in range(31000, 32000) if str(p) not in used]
    return free[:count]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# ---- discovery, version ---------------------------------------------------------------------


def test_version_and_api_resources_without_warnings(kubectl: Kubectl) -> None:
    version = json.loads(kubectl.out("version", "-o", "json"))
    assert (version["serverVersion"]["major"], version["serverVersion"]["minor"]) == ("1", "32")
    proc = kubectl.run("api-resources")
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert rows["services"] == ["services", "svc", "v1", "true", "Service"]
    assert rows["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert rows["endpoints"] == ["endpoints", "ep", "v1", "true", "Endpoints"]
    assert rows["nodes"] == ["nodes", "no", "v1", "false", "Node"]
    assert rows["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert rows["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert rows["statefulsets"] == ["statefulsets", "sts", "apps/v1", "true", "StatefulSet"]
    assert rows["endpointslices"] == ["endpointslices", "discovery.k8s.io/v1", "true", "EndpointSlice"]
    assert rows["leases"] == ["leases", "coordination.k8s.io/v1", "true", "Lease"]
    raw = json.loads(kubectl.out("get", "--raw", "/api/v1"))
    assert {"name": "services/status", "verbs": ["get", "patch", "update"]}.items() <= {
        k: v for r in raw["resources"] if r["name"] == "services/status" for k, v in r.items()
    }.items()


def test_aggregated_discovery_is_used(kubectl: Kubectl, tmp_path: Path) -> None:
    """kubectl reads both /api and /apis in the aggregated form (two requests, no per
    group-version fetches), and finds the same resources as through the legacy documents."""
    fresh = Kubectl(kubectl.kubeconfig, tmp_path)
    proc = fresh.run("api-resources", "-v=6")
    requests = [
        line.split("GET ", 1)[1].split("?")[0] for line in proc.stderr.splitlines() if " GET " in line
    ]
    assert [r.rsplit("/", 1)[-1] for r in requests] == ["api", "apis"]
    listed = {(line.split()[0], line.split()[-3]) for line in proc.stdout.splitlines()[1:]}
    legacy = set()
    group_versions = ["v1"] + [
        g["preferredVersion"]["groupVersion"]
        for g in json.loads(kubectl.out("get", "--raw", "/apis"))["groups"]
    ]
    for gv in group_versions:
        path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        for r in json.loads(kubectl.out("get", "--raw", path))["resources"]:
            if "/" not in r["name"]:
                legacy.add((r["name"], gv))
    assert listed == legacy


def test_explain_service_ports(kubectl: Kubectl) -> None:
    out = kubectl.out("explain", "service.spec.ports")
    assert "FIELD: ports <[]ServicePort>" in out
    assert "port\t<integer> -required-" in out
    assert "\n  targetPort\t<" in out
    assert "ServicePort contains information on service's port." in out


# ---- the chapter's manifests ------------------------------------------------------------------


def test_chapter_manifests_end_to_end(kubectl: Kubectl, tmp_path: Path) -> None:
    ns = make_namespace(kubectl, "kt-chapter")
    applied = kubectl.out("apply", "-n", ns, "-f", str(EXAMPLES))
    assert sorted(applied.splitlines()) == [
        "deployment.apps/backend created",
        "deployment.apps/web created",
        "service/backend-svc created",
        "service/db-headless created",
        "service/my-database created",
        "service/web-svc created",
        "service/web-svc-lb created",
        "statefulset.apps/db created",
    ]

    services = {
        line.split()[0]: line.split() for line in kubectl.out("get", "svc", "-n", ns).splitlines()[1:]
    }
    assert services["backend-svc"][1] == "ClusterIP" and services["backend-svc"][4] == "80/TCP"
    assert services["web-svc"][1:2] + services["web-svc"][3:5] == ["NodePort", "<none>", "80:30080/TCP"]
    assert services["web-svc-lb"][1] == "LoadBalancer" and services["web-svc-lb"][3] == "<pending>"
    assert services["my-database"][1:5] == ["ExternalName", "<none>", "db.example.com", "<none>"]
    assert services["db-headless"][1:5] == ["ClusterIP", "None", "<none>", "5432/TCP"]

    wide = kubectl.out("get", "svc", "backend-svc", "-n", ns, "-o", "wide").splitlines()
    assert wide[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert wide[1].split()[-1] == "app=backend,tier=api"

    live = yaml.safe_load(kubectl.out("get", "svc", "backend-svc", "-n", ns, "-o", "yaml"))
    cluster_ip = live["spec"]["clusterIP"]
    assert live["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert live["spec"]["sessionAffinity"] == "None"
    assert "kubectl.kubernetes.io/last-applied-configuration" in live["metadata"]["annotations"]

    described = kubectl.out("describe", "svc", "backend-svc", "-n", ns)
    assert "Selector:                 app=backend,tier=api" in described
    assert f"IP:                       {cluster_ip}" in described
    assert "TargetPort:               8080/TCP" in described

    # Re-applying the unchanged manifests changes nothing, not even the resourceVersion.
    again = kubectl.out("apply", "-n", ns, "-f", str(EXAMPLES / "backend-svc.yaml"))
    assert again.strip() == "service/backend-svc unchanged"
    assert (
        kubectl.out("get", "svc", "backend-svc", "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}")
        == (live["metadata"]["resourceVersion"])
    )

    # kubectl edit with an editor script: the change lands, the ClusterIP stays.
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/sessionAffinity: None/sessionAffinity: ClientIP/' \"$1\"\n")
    editor.chmod(0o755)
    edited = kubectl.run("edit", "svc", "backend-svc", "-n", ns, EDITOR=str(editor), KUBE_EDITOR=str(editor))
    assert edited.stdout.strip() == "service/backend-svc edited"
    after_edit = json.loads(kubectl.out("get", "svc", "backend-svc", "-n", ns, "-o", "json"))
    assert after_edit["spec"]["sessionAffinity"] == "ClientIP"
    assert after_edit["spec"]["clusterIP"] == cluster_ip

    # Apply a changed manifest (no clusterIP in it): the change lands, the allocation is kept,
    # and the field the edit changed (not in the manifest) is left alone.
    changed = tmp_path / "backend-svc.yaml"
    changed.write_text((EXAMPLES / "backend-svc.yaml").read_text().replace("8080", "9090"))
    assert kubectl.out("apply", "-n", ns, "-f", str(changed)).strip() == "service/backend-svc configured"
    after_apply = json.loads(kubectl.out("get", "svc", "backend-svc", "-n", ns, "-o", "json"))
    assert after_apply["spec"]["clusterIP"] == cluster_ip
    assert after_apply["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 9090}]
    assert after_apply["spec"]["sessionAffinity"] == "ClientIP"
    assert kubectl.out("diff", "-n", ns, "-f", str(changed)) == ""
    # ... and the NodePort Service keeps its nodePort when re-applied.
    node_port = kubectl.out("get", "svc", "web-svc", "-n", ns, "-o", "jsonpath={.spec.ports[0].nodePort}")
    assert node_port == "30080"

    assert (
        kubectl.out("label", "svc", "backend-svc", "-n", ns, "team=blue").strip()
        == "service/backend-svc labeled"
    )
    shown = kubectl.out("get", "svc", "-n", ns, "-l", "team=blue", "-o", "name")
    assert shown.strip() == "service/backend-svc"
    assert kubectl.out("annotate", "svc", "backend-svc", "-n", ns, "owner=net").strip() == (
        "service/backend-svc annotated"
    )

    assert kubectl.out("scale", "deploy", "backend", "-n", ns, "--replicas=5").strip() == (
        "deployment.apps/backend scaled"
    )
    assert kubectl.out("get", "deploy", "backend", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "5"
    everything = kubectl.out("get", "all", "-n", ns)
    for name in (
        "service/backend-svc",
        "service/my-database",
        "deployment.apps/backend",
        "statefulset.apps/db",
    ):
        assert name in everything
    columns = kubectl.out("get", "svc", "-n", ns, "-o", "custom-columns=NAME:.metadata.name,TYPE:.spec.type")
    assert "my-database   ExternalName" in columns

    deleted = kubectl.out("delete", "-n", ns, "-f", str(EXAMPLES / "my-database.yaml"))
    assert deleted.strip() == 'service "my-database" deleted'
    gone = kubectl.run("get", "svc", "my-database", "-n", ns, check=False)
    assert gone.returncode == 1
    assert gone.stderr.strip() == 'Error from server (NotFound): services "my-database" not found'


def test_server_side_apply_conflict_and_force(kubectl: Kubectl, tmp_path: Path) -> None:
    ns = make_namespace(kubectl, "kt-ssa")
    manifest = (EXAMPLES / "backend-svc.yaml").read_text()
    kubectl.run("apply", "-n", ns, "-f", "-", stdin=manifest)  # client-side apply owns targetPort
    changed = manifest.replace("8080", "9999")
    proc = kubectl.run("apply", "--server-side", "-n", ns, "-f", "-", stdin=changed, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        'error: Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: '
        '.spec.ports[port=80,protocol="TCP"].targetPort\n'
    )
    forced = kubectl.out("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-", stdin=changed)
    assert forced.strip() == "service/backend-svc serverside-applied"
    live = json.loads(
        kubectl.out("get", "svc", "backend-svc", "-n", ns, "-o", "json", "--show-managed-fields")
    )
    assert live["spec"]["ports"][0]["targetPort"] == 9999
    managers = {(e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers and ("kubectl-client-side-apply", "Update") in managers
    rv = live["metadata"]["resourceVersion"]
    kubectl.out("apply", "--server-side", "-n", ns, "-f", "-", stdin=changed)
    assert (
        kubectl.out("get", "svc", "backend-svc", "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}") == rv
    )


# ---- errors as kubectl users know them --------------------------------------------------------


def test_invalid_node_port_is_rejected_with_upstream_message(kubectl: Kubectl) -> None:
    ns = make_namespace(kubectl, "kt-invalid")
    proc = kubectl.run(
        "apply", "-n", ns, "-f", str(EXAMPLES / "invalid" / "web-svc-nodeport-80.yaml"), check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'The Service "web-svc" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not '
        "in the valid range. The range of valid ports is 30000-32767"
    )


UNKNOWN_FIELD = """apiVersion: v1
kind: Service
metadata:
  name: strict-svc
spec:
  foo: bar
  ports:
  - port: 80
    bogus: 1
"""


def test_unknown_fields_strict_and_warn(kubectl: Kubectl) -> None:
    ns = make_namespace(kubectl, "kt-strict")
    proc = kubectl.run("create", "-n", ns, "-f", "-", stdin=UNKNOWN_FIELD, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Service in version "v1" cannot be '
        'handled as a Service: strict decoding error: unknown field "spec.foo", unknown field '
        '"spec.ports[0].bogus"'
    )
    warned = kubectl.run(
        "create", "-n", ns, "--validate=warn", "-f", "-", stdin=UNKNOWN_FIELD, allow_warnings=True
    )
    assert warned.stdout.strip() == "service/strict-svc created"
    assert warned.stderr.splitlines() == [
        'Warning: unknown field "spec.foo"',
        'Warning: unknown field "spec.ports[0].bogus"',
    ]


# ---- watch ------------------------------------------------------------------------------------


class LineReader:
    """Lines from a child's pipe with a deadline (select on the raw fd, own buffer: a buffered
    text stream would hide lines it has already read from select)."""

    def __init__(self, stream) -> None:
        self.fd = stream.fileno()
        self.buffer = b""

    def line(self, deadline: float) -> str:
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(self.fd, 65536) if ready else b""
            if not chunk:
                return ""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode() + "\n"


def test_get_watch_sees_events_in_order(kubectl: Kubectl) -> None:
    ns = make_namespace(kubectl, "kt-watch")
    watcher = kubectl.popen("get", "svc", "-n", ns, "-w", "--output-watch-events", "-v=6")
    assert watcher.stdout is not None and watcher.stderr is not None
    deadline = time.monotonic() + 30
    output, errors = LineReader(watcher.stdout), LineReader(watcher.stderr)
    log: list[str] = []
    lines: list[str] = []
    try:
        # -v=6 logs each request once its reply headers arrive: the watch is then established.
        while not any("watch=true" in entry for entry in log):
            entry = errors.line(deadline)
            assert entry, f"the watch did not start: {log}"
            log.append(entry)
        kubectl.run("apply", "-n", ns, "-f", str(EXAMPLES / "backend-svc.yaml"))
        kubectl.run("label", "svc", "backend-svc", "-n", ns, "stage=two")
        kubectl.run("delete", "svc", "backend-svc", "-n", ns)
        while not any(line.startswith("DELETED") for line in lines):
            line = output.line(deadline)
            assert line, f"no DELETED event in time: {lines}"
            lines.append(line.rstrip("\n"))
    finally:
        watcher.kill()
        _, err = watcher.communicate(timeout=10)
    assert lines[0].split() == ["EVENT", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    events = [line.split()[:2] for line in lines[1:]]
    assert events[0] == ["ADDED", "backend-svc"]
    assert events[-1] == ["DELETED", "backend-svc"]
    assert all(e == ["MODIFIED", "backend-svc"] for e in events[1:-1]) and len(events) >= 3
    assert not WARNING_RE.findall("".join(log) + err)


# ---- output compared with kube-apiserver + kubectl ----------------------------------------------

FIXED_SERVICES = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: fixed-clusterip}
  spec:
    clusterIP: 10.111.222.10
    selector: {app: web, tier: front}
    ports:
    - {name: http, port: 80, targetPort: 8080}
    - {name: https, port: 443, targetPort: 8443}
- apiVersion: v1
  kind: Service
  metadata: {name: fixed-nodeport}
  spec:
    type: NodePort
    clusterIP: 10.111.222.11
    selector: {app: web}
    ports:
    - {port: 80, targetPort: 8080, nodePort: NODE_PORT_A}
- apiVersion: v1
  kind: Service
  metadata: {name: fixed-lb}
  spec:
    type: LoadBalancer
    clusterIP: 10.111.222.12
    selector: {app: web}
    ports:
    - {port: 80, targetPort: 8080, nodePort: NODE_PORT_B}
- apiVersion: v1
  kind: Service
  metadata: {name: fixed-external}
  spec:
    type: ExternalName
    externalName: db.example.com
- apiVersion: v1
  kind: Service
  metadata: {name: fixed-headless}
  spec:
    clusterIP: None
    selector: {app: db}
    ports:
    - {port: 5432}
- apiVersion: v1
  kind: Service
  metadata: {name: fixed-udp}
  spec:
    clusterIP: 10.111.222.13
    externalIPs: [192.0.2.10]
    ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
"""

# The EndpointSlice controller (as upstream's) leaves out pods whose Node does not exist.
FIXED_NODES = "".join(f"---\napiVersion: v1\nkind: Node\nmetadata:\n  name: kt-node-{i}\n" for i in (1, 2, 3))

FIXED_PODS = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: web-1, labels: {app: web, tier: front}}
  spec:
    nodeName: kt-node-1
    containers: [{name: web, image: svcnet/echo}]
- apiVersion: v1
  kind: Pod
  metadata: {name: web-2, labels: {app: web}}
  spec:
    nodeName: kt-node-2
    containers: [{name: web, image: svcnet/echo}]
- apiVersion: v1
  kind: Pod
  metadata: {name: web-3, labels: {app: web}}
  spec:
    nodeName: kt-node-3
    containers: [{name: web, image: svcnet/echo}]
- apiVersion: v1
  kind: Pod
  metadata: {name: web-4, labels: {app: other}}
  spec:
    nodeName: kt-node-1
    readinessGates: [{conditionType: example.com/lb}]
    containers: [{name: web, image: svcnet/echo}, {name: sidecar, image: svcnet/echo}]
"""


def _running(name: str, ready: bool = True, **state: object) -> dict[str, object]:
    return {
        "name": name,
        "ready": ready,
        "restartCount": state.pop("restartCount", 0),
        "image": "svcnet/echo",
        "imageID": "",
        "state": state or {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
    }


POD_STATUS = {
    "web-1": {
        "phase": "Running",
        "podIP": "10.244.1.5",
        "podIPs": [{"ip": "10.244.1.5"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [_running("web")],
    },
    "web-2": {
        "phase": "Running",
        "podIP": "10.244.2.7",
        "podIPs": [{"ip": "10.244.2.7"}],
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [_running("web", False, restartCount=3, waiting={"reason": "CrashLoopBackOff"})],
    },
    "web-4": {
        "phase": "Running",
        "podIP": "10.244.1.9",
        "podIPs": [{"ip": "10.244.1.9"}],
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/lb", "status": "True"}],
        "containerStatuses": [_running("sidecar"), _running("web")],
    },
}

# What kubectl 1.32 prints for these objects against kube-apiserver (pkg/printers/internalversion
# printService/printPod; tabwriter padding 3), AGE excepted.
EXPECTED_GET_SVC = [
    "NAME              TYPE           CLUSTER-IP      EXTERNAL-IP      PORT(S)          AGE",
    "fixed-clusterip   ClusterIP      10.111.222.10   <none>           80/TCP,443/TCP   {AGE}",
    "fixed-external    ExternalName   <none>          db.example.com   <none>           {AGE}",
    "fixed-headless    ClusterIP      None            <none>           5432/TCP         {AGE}",
    "fixed-lb          LoadBalancer   10.111.222.12   <pending>        80:NODE_PORT_B/TCP     {AGE}",
    "fixed-nodeport    NodePort       10.111.222.11   <none>           80:NODE_PORT_A/TCP     {AGE}",
    "fixed-udp         ClusterIP      10.111.222.13   192.0.2.10       53/UDP,53/TCP    {AGE}",
]
EXPECTED_GET_PODS_WIDE = [
    "NAME    READY   STATUS             RESTARTS   AGE   IP           NODE        NOMINATED NODE   READINESS GATES",  # noqa: E501
    "web-1   1/1     Running            0          {AGE}   10.244.1.5   kt-node-1   <none>           <none>",
    "web-2   0/1     CrashLoopBackOff   3          {AGE}   10.244.2.7   kt-node-2   <none>           <none>",
    "web-3   0/1     Pending            0          {AGE}   <none>       kt-node-3   <none>           <none>",
    "web-4   2/2     Running            0          {AGE}   10.244.1.9   kt-node-1   <none>           1/1",
]
EXPECTED_DESCRIBE_SVC = """Name:                     fixed-clusterip
Namespace:                kt-fixed
Labels:                   <none>
Annotations:              <none>
Selector:                 app=web,tier=front
Type:                     ClusterIP
IP Family Policy:         SingleStack
IP Families:              IPv4
IP:                       10.111.222.10
IPs:                      10.111.222.10
Port:                     http  80/TCP
TargetPort:               8080/TCP
Endpoints:                10.244.1.5:8080
Port:                     https  443/TCP
TargetPort:               8443/TCP
Endpoints:                10.244.1.5:8443
Session Affinity:         None
Internal Traffic Policy:  Cluster
Events:                   <none>
"""


def test_output_matches_kube_apiserver_for_fixed_objects(kubectl: Kubectl) -> None:
    ns = make_namespace(kubectl, "kt-fixed")
    kubectl.run("apply", "-f", "-", stdin=FIXED_NODES)
    port_a, port_b = (str(p) for p in free_node_ports(kubectl, 2))
    fixed = FIXED_SERVICES.replace("NODE_PORT_A", port_a).replace("NODE_PORT_B", port_b)
    kubectl.run("create", "-n", ns, "-f", "-", stdin=fixed)
    kubectl.run("create", "-n", ns, "-f", "-", stdin=FIXED_PODS)
    for name, status in POD_STATUS.items():
        kubectl.run(
            "patch",
            "pod",
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )

    expected = [
        line.replace("NODE_PORT_A", port_a).replace("NODE_PORT_B", port_b) for line in EXPECTED_GET_SVC
    ]
    match_table(kubectl.out("get", "svc", "-n", ns), expected)
    match_table(kubectl.out("get", "pods", "-n", ns, "-o", "wide"), EXPECTED_GET_PODS_WIDE)

    # describe lists endpoints from the EndpointSlices the controller derives from web-1.
    def described() -> str | None:
        text = kubectl.out("describe", "svc", "fixed-clusterip", "-n", ns)
        return text if "10.244.1.5:8080" in text else None

    text = wait_for(described) or kubectl.out("describe", "svc", "fixed-clusterip", "-n", ns)
    assert text.splitlines() == EXPECTED_DESCRIBE_SVC.splitlines()


def test_generator_commands_sent_as_protobuf(kubectl: Kubectl) -> None:
    """`kubectl create namespace|service|deployment` use the typed client, which sends protobuf."""
    assert kubectl.out("create", "namespace", "kt-proto").strip() == "namespace/kt-proto created"
    CREATED.append("kt-proto")
    ns = "kt-proto"
    (node_port,) = free_node_ports(kubectl, 1)
    out = kubectl.out(
        "create", "service", "nodeport", "np", "-n", ns, "--tcp=80:8080", f"--node-port={node_port}"
    )
    assert out.strip() == "service/np created"
    svc = json.loads(kubectl.out("get", "svc", "np", "-n", ns, "-o", "json"))
    assert svc["spec"]["selector"] == {"app": "np"}
    assert svc["spec"]["ports"] == [
        {"name": "80-8080", "nodePort": node_port, "port": 80, "protocol": "TCP", "targetPort": 8080}
    ]
    out = kubectl.out(
        "create", "deployment", "web", "-n", ns, "--image=svcnet/echo", "--replicas=2", "--port=80"
    )
    assert out.strip() == "deployment.apps/web created"
    dep = json.loads(kubectl.out("get", "deploy", "web", "-n", ns, "-o", "json"))
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert (container["name"], container["image"]) == ("echo", "svcnet/echo")
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert kubectl.out("expose", "deploy", "web", "-n", ns, "--port=8080", "--target-port=80").strip() == (
        "service/web exposed"
    )


def test_describe_wait_and_raw(kubectl: Kubectl) -> None:
    ns = make_namespace(kubectl, "kt-describe")
    kubectl.run("apply", "-f", "-", stdin="apiVersion: v1\nkind: Node\nmetadata:\n  name: kt-node-d\n")
    kubectl.run("apply", "-n", ns, "-f", str(EXAMPLES / "backend-svc.yaml"))
    kubectl.run("apply", "-n", ns, "-f", str(EXAMPLES / "backend-deployment.yaml"))
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: api-1\n  labels: {app: backend, tier: api}\n"
        "spec:\n  nodeName: kt-node-d\n  containers: [{name: api, image: svcnet/echo}]\n"
    )
    kubectl.run("apply", "-n", ns, "-f", "-", stdin=pod)
    waiter = kubectl.popen("wait", "-n", ns, "--for=condition=Ready", "pod/api-1", "--timeout=40s")
    time.sleep(0.3)
    status = {
        "phase": "Running",
        "podIP": "10.244.9.9",
        "podIPs": [{"ip": "10.244.9.9"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [_running("api")],
    }
    kubectl.run(
        "patch",
        "pod",
        "api-1",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert out.strip() == "pod/api-1 condition met"

    described = kubectl.out("describe", "pod", "api-1", "-n", ns)
    assert re.search(r"(?m)^Status:\s+Running$", described)
    assert re.search(r"(?m)^IP:\s+10\.244\.9\.9$", described)
    assert re.search(r"(?m)^Node:\s+kt-node-d/$", described)

    def slice_ready() -> str | None:
        text = kubectl.out(
            "describe", "endpointslice", "-n", ns, "-l", "kubernetes.io/service-name=backend-svc"
        )
        return text if "10.244.9.9" in text else None

    assert wait_for(slice_ready), kubectl.out("get", "endpointslices", "-n", ns, "-o", "yaml")
    endpoints = kubectl.out("describe", "endpoints", "backend-svc", "-n", ns)
    assert re.search(r"(?m)^\s+Addresses:\s+10\.244\.9\.9$", endpoints)
    assert kubectl.out("get", "ep", "backend-svc", "-n", ns).splitlines()[1].split()[1] == "10.244.9.9:8080"
    deployment = kubectl.out("describe", "deployment", "backend", "-n", ns)
    assert re.search(r"(?m)^Selector:\s+app=backend,tier=api$", deployment)
    assert re.search(r"(?m)^Replicas:\s+3 desired", deployment)
    node = kubectl.out("describe", "node", "kt-node-d")
    assert re.search(r"(?m)^Name:\s+kt-node-d$", node) and "api-1" in node

    raw = json.loads(kubectl.out("get", "--raw", f"/api/v1/namespaces/{ns}/services/backend-svc"))
    assert raw["kind"] == "Service" and raw["metadata"]["namespace"] == ns
    assert kubectl.out("get", "svc", "backend-svc", "-n", ns, "-o", "jsonpath={.spec.selector.tier}") == "api"


def test_documented_kubeconfig_flow(api_server, tmp_path: Path) -> None:
    """docs/kubectl.md: `svcnet kubeconfig --write PATH`, then `export KUBECONFIG=PATH`."""
    path = tmp_path / "svcnet.kubeconfig"
    written = subprocess.run(
        [
            sys.executable,
            "-m",
            "svcnet",
            "kubeconfig",
            "--data-dir",
            str(api_server.data_dir),
            "--write",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,  # a Python start-up; generous, for a loaded machine
    )
    assert written.returncode == 0, written.stderr
    assert f"export KUBECONFIG={path}" in written.stdout
    user = Kubectl(path, tmp_path)
    namespaces = user.out("get", "namespaces", "-o", "name").split()
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public"} <= set(namespaces)
