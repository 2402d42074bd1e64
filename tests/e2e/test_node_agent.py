"""The node agent on a real lab node (root): crash loops, restart policies, probes, the
environment, graceful deletion, and adoption of running pods after the agent is killed with
kill -9; kube-proxy killed with kill -9 and the API server killed while traffic flows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from svcnet.lab.launcher import SRC, Cluster, start_cluster

pytestmark = pytest.mark.timeout(180)


# Processes a test started in place of the lab's own (restarted agents and proxies); stopped
# before the lab so its cleanup sees the namespaces as they were.
EXTRA: list[subprocess.Popen] = []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, iptables)")
    for tool in ("ip", "iptables-restore", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    c = start_cluster(tmp_path_factory.mktemp("node-agent"), nodes=1)
    try:
        yield c
    finally:
        for proc in EXTRA:
            _stop(proc)
        c.stop()


def apply(cluster: Cluster, manifest: str) -> None:
    res = cluster.kubectl("apply", "-f", "-", input=textwrap.dedent(manifest))
    assert res.returncode == 0, res.stderr


def get(cluster: Cluster, *args: str) -> Any:
    res = cluster.kubectl("get", *args, "-o", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def pod_status(cluster: Cluster, name: str) -> dict:
    return get(cluster, "pod", name).get("status") or {}


def container(cluster: Cluster, name: str) -> dict:
    return (pod_status(cluster, name).get("containerStatuses") or [{}])[0]


def condition(cluster: Cluster, name: str, ctype: str) -> str | None:
    for c in pod_status(cluster, name).get("conditions") or []:
        if c["type"] == ctype:
            return c["status"]
    return None


def events_for(cluster: Cluster, name: str) -> list[dict]:
    return [e for e in get(cluster, "events")["items"] if e["involvedObject"].get("name") == name]


def test_missing_command_goes_to_crash_loop_back_off(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: nocmd}
        spec: {containers: [{name: c, image: busybox, command: ["no-such-binary-anywhere"]}]}
        """,
    )
    cs = wait_for(
        "CrashLoopBackOff",
        lambda: (
            (c := container(cluster, "nocmd")).get("state", {}).get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
            and c
        ),
    )
    last = cs["lastState"]["terminated"]
    assert last["exitCode"] == 128 and last["reason"] == "StartError"
    assert 'exec: "no-such-binary-anywhere": executable file not found in $PATH' in last["message"]
    assert (
        "back-off 10s restarting failed container=c pod=nocmd_default(" in cs["state"]["waiting"]["message"]
    )
    assert any(e["reason"] == "Failed" for e in events_for(cluster, "nocmd"))
    assert get(cluster, "pod", "nocmd")["status"]["phase"] == "Running"  # restartPolicy Always: not terminal


def test_exiting_command_restart_policies(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: exits3}
        spec: {containers: [{name: c, image: busybox, command: [sh, -c, "exit 3"]}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: never}
        spec: {restartPolicy: Never, containers: [{name: c, image: busybox, command: [sh, -c, "exit 1"]}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: onfailure-ok}
        spec: {restartPolicy: OnFailure, containers: [{name: c, image: busybox, command: ["true"]}]}
        """,
    )
    cs = wait_for(
        "back-off",
        lambda: (
            (c := container(cluster, "exits3")).get("state", {}).get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
            and c
        ),
    )
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] >= 1
    assert wait_for("Failed", lambda: pod_status(cluster, "never").get("phase") == "Failed")
    assert container(cluster, "never")["state"]["terminated"]["exitCode"] == 1
    assert container(cluster, "never")["restartCount"] == 0
    assert wait_for("Succeeded", lambda: pod_status(cluster, "onfailure-ok").get("phase") == "Succeeded")


def test_failing_probes_show_in_conditions_and_events(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: unready, labels: {app: unready}}
        spec:
          containers:
          - name: web
            image: nginx
            ports: [{containerPort: 80}]
            readinessProbe: {httpGet: {path: /status/503, port: 80}, periodSeconds: 1, failureThreshold: 1}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: unready}
        spec: {selector: {app: unready}, ports: [{port: 80}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: unlive}
        spec:
          containers:
          - name: web
            image: nginx
            ports: [{containerPort: 80}]
            livenessProbe: {tcpSocket: {port: 81}, periodSeconds: 1, failureThreshold: 2}
        """,
    )
    wait_for("running", lambda: "running" in container(cluster, "unready").get("state", {}))
    time.sleep(1.5)
    assert condition(cluster, "unready", "Ready") == "False"
    assert condition(cluster, "unready", "ContainersReady") == "False"
    want = "Readiness probe failed: HTTP probe failed with statuscode: 503"
    unhealthy = wait_for(
        "Unhealthy event",
        lambda: [
            e for e in events_for(cluster, "unready") if e["reason"] == "Unhealthy" and e["message"] == want
        ],
    )
    assert unhealthy[0]["type"] == "Warning"
    # The failing readiness probe keeps the pod's endpoint in its Service's slice, not ready.
    def endpoints() -> list[dict]:
        slices = get(cluster, "endpointslices", "-l", "kubernetes.io/service-name=unready")["items"]
        return [e for s in slices for e in s.get("endpoints") or []]

    eps = wait_for("the unready pod's endpoint", endpoints)
    assert [e["addresses"] for e in eps] == [[pod_status(cluster, "unready")["podIP"]]], eps
    assert not any((e.get("conditions") or {}).get("ready") for e in eps), eps
    # Liveness: the container is killed and restarted.
    wait_for("liveness restart", lambda: container(cluster, "unlive").get("restartCount", 0) >= 1, timeout=30)
    reasons = {e["reason"] for e in events_for(cluster, "unlive")}
    assert {"Unhealthy", "Killing"} <= reasons
    msgs = [e["message"] for e in events_for(cluster, "unlive") if e["reason"] == "Unhealthy"]
    assert any(m.startswith("Liveness probe failed: dial tcp ") and "connection refused" in m for m in msgs)


def test_environment_and_service_links(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Service
        metadata: {name: backend-svc}
        spec: {selector: {app: nothing}, ports: [{name: http, port: 80, targetPort: 8080}]}
        """,
    )
    time.sleep(0.5)  # the agent's service informer sees it before the pod starts
    env_file = cluster.data_dir / "envpod.env"
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: envpod}
        spec:
          containers:
          - name: c
            image: busybox
            command:
            - sh
            - -c
            - env | sort > $(OUT).tmp; hostname >> $(OUT).tmp; mv $(OUT).tmp $(OUT); sleep 600
            env:
            - {name: MY_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
            - {name: GREETING, value: "hi $(MY_NS)"}
            - {name: OUT, value: "OUTFILE"}
        """.replace("OUTFILE", str(env_file)),
    )
    try:
        wait_for("env written", env_file.exists)
        lines = env_file.read_text().splitlines()
        env = dict(line.split("=", 1) for line in lines if "=" in line)
        svc_ip = get(cluster, "svc", "backend-svc")["spec"]["clusterIP"]
        status = pod_status(cluster, "envpod")
        assert env["POD_NAME"] == "envpod" and env["NODE_NAME"] == "node-1"
        assert env["POD_IP"] == status["podIP"]
        assert env["BACKEND_SVC_SERVICE_HOST"] == svc_ip
        assert env["BACKEND_SVC_SERVICE_PORT"] == "80" and env["BACKEND_SVC_SERVICE_PORT_HTTP"] == "80"
        assert env["BACKEND_SVC_PORT_80_TCP"] == f"tcp://{svc_ip}:80"
        assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
        assert env["MY_NS"] == "default" and env["GREETING"] == "hi default"
        assert lines[-1] == "envpod"  # the pod's own UTS namespace
    finally:
        env_file.unlink(missing_ok=True)


def test_graceful_deletion_sigterm_then_sigkill(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: polite}
        spec:
          terminationGracePeriodSeconds: 10
          containers:
          - name: c
            image: busybox
            command: [sh, -c, "trap 'sleep 1.5; exit 0' TERM; while true; do sleep 0.1; done"]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: stubborn}
        spec:
          terminationGracePeriodSeconds: 2
          containers:
          - {name: c, image: busybox, command: [sh, -c, "trap '' TERM; while true; do sleep 0.1; done"]}
        """,
    )
    for name in ("polite", "stubborn"):
        wait_for(f"{name} running", lambda n=name: pod_status(cluster, n).get("phase") == "Running")
    t0 = time.monotonic()
    assert cluster.kubectl("delete", "pod", "polite", "stubborn", "--wait=false").returncode == 0
    # Meanwhile both are Terminating: deletionTimestamp set, still there.
    pods = get(cluster, "pods", "polite", "stubborn")["items"]
    assert len(pods) == 2 and all(p["metadata"].get("deletionTimestamp") for p in pods)
    gone = {}
    while len(gone) < 2 and time.monotonic() - t0 < 20:
        names = {p["metadata"]["name"] for p in get(cluster, "pods")["items"]}
        for name in ("polite", "stubborn"):
            if name not in names and name not in gone:
                gone[name] = time.monotonic() - t0
        time.sleep(0.1)
    assert 1.2 <= gone["polite"] < 6, gone  # left after its own 1.5 s cleanup, not the 10 s grace
    assert 1.8 <= gone["stubborn"] < 6, gone  # ignored SIGTERM: SIGKILL after the 2 s grace


def _agent_state_pids(cluster: Cluster) -> dict[str, int]:
    out = {}
    for state in (cluster.lab_dir / "node-1" / "pods").glob("*/state.json"):
        data = json.loads(state.read_text())
        for c in data["containers"].values():
            if c.get("pid"):
                out[data["name"]] = c["pid"]
    return out


def _child_cmd(cluster: Cluster, name: str) -> list[str]:
    """The command the lab started NAME with; for a process of a node it begins with
    `ip netns exec NODE` (a restart must never land in the machine's own namespace)."""
    for c in cluster.state()["children"]:
        if c["name"] == name:
            cmd = list(c["cmd"])
            if name.startswith("proxy-"):
                assert cmd[:3] == ["ip", "netns", "exec"] and cmd[3].startswith(cluster.prefix), cmd
            return cmd
    raise LookupError(name)


def _restart(cluster: Cluster, name: str, sig: int = signal.SIGKILL) -> subprocess.Popen:
    """Kill a lab process (kill -9) and start it again with the same command (ours to stop)."""
    pid = cluster.child_pid(name)
    cmd = _child_cmd(cluster, name)
    os.killpg(pid, sig)
    deadline = time.monotonic() + 5
    while (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_agent_kill9_adopts_running_pods(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: survivor}
        spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}
        """,
    )
    wait_for("ready", lambda: condition(cluster, "survivor", "Ready") == "True")
    before = _agent_state_pids(cluster)["survivor"]
    ip = pod_status(cluster, "survivor")["podIP"]
    agent = _restart(cluster, "agent-node-1")
    EXTRA.append(agent)
    time.sleep(3)
    assert agent.poll() is None
    assert _agent_state_pids(cluster)["survivor"] == before  # the same process, adopted
    assert Path(f"/proc/{before}").exists()
    cs = container(cluster, "survivor")
    assert cs["restartCount"] == 0 and "running" in cs["state"]
    assert pod_status(cluster, "survivor")["podIP"] == ip
    shims = [p for p in Path("/proc").iterdir() if p.name.isdigit() and b"survivor" in _cmdline(p)]
    assert len(shims) == 1, "the pod's container was started twice"
    # And the new agent still runs new pods and finishes deletions.
    assert cluster.kubectl("delete", "pod", "survivor", "--wait=false").returncode == 0
    wait_for("deleted", lambda: "survivor" not in cluster.kubectl("get", "pods", "-o", "name").stdout)
    assert not _alive(before)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes() if b"svcnet.node.shim" in (p / "cmdline").read_bytes() else b""
    except OSError:
        return b""


CLIENT = r"""
import socket, sys, time
ip, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((ip, 80), timeout=3)
for i in range(n):
    s.sendall(b"ping %d\n" % i)
    print(s.recv(100).decode().strip(), flush=True)
    time.sleep(pause)
"""


def test_proxy_kill9_keeps_rules_and_reconciles(cluster: Cluster, tmp_path: Path) -> None:
    apply(
        cluster,
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: px}
        spec:
          replicas: 2
          selector: {matchLabels: {app: px}}
          template:
            metadata: {labels: {app: px}}
            spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: px}
        spec: {selector: {app: px}, ports: [{port: 80}]}
        """,
    )
    wait_for("2 ready", lambda: get(cluster, "deploy", "px").get("status", {}).get("readyReplicas") == 2)
    ip = get(cluster, "svc", "px")["spec"]["clusterIP"]
    wait_for(
        "served", lambda: "pod=px-" in cluster.exec("node-1", "curl", "-s", "-m", "2", f"http://{ip}/").stdout
    )
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    # A long-lived connection through the ClusterIP, open across the kill and the restart.
    longlived = subprocess.Popen(
        ["ip", "netns", "exec", cluster.netns("node-1"), sys.executable, str(script), ip, "30", "0.2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = cluster.child_pid("proxy-node-1")
    cmd = _child_cmd(cluster, "proxy-node-1")
    os.killpg(pid, signal.SIGKILL)
    try:
        time.sleep(0.3)
        # New connections keep working on the rules the dead proxy left.
        replies = [cluster.exec("node-1", "curl", "-s", "-m", "2", f"http://{ip}/").stdout for _ in range(5)]
        assert all("pod=px-" in r for r in replies), replies
        # A change while it is down, then the restart: the proxy reconciles.
        assert cluster.kubectl("scale", "deploy", "px", "--replicas=3").returncode == 0
        wait_for("3 ready", lambda: get(cluster, "deploy", "px").get("status", {}).get("readyReplicas") == 3)
        env = dict(os.environ, PYTHONPATH=str(SRC))
        proxy = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        EXTRA.append(proxy)
        pods = {p["metadata"]["name"] for p in get(cluster, "pods", "-l", "app=px")["items"]}

        def all_seen() -> bool:
            seen = set()
            for _ in range(15):
                out = cluster.exec("node-1", "curl", "-s", "-m", "2", f"http://{ip}/").stdout
                seen.add(out.split()[0].removeprefix("pod=") if out else "")
            return pods <= seen

        wait_for("the new pod served through the ClusterIP", all_seen, timeout=20)
        out, _ = longlived.communicate(timeout=30)
        lines = out.splitlines()
        assert len(lines) == 30 and all(line.startswith("ping ") for line in lines), lines
    finally:
        if longlived.poll() is None:
            longlived.kill()


# Processes to stop only after the lab itself (a restarted API server: the lab needs it to
# clean up quickly).
AFTER: list[subprocess.Popen] = []


@pytest.fixture(scope="module", autouse=True)
def _stop_after_cluster() -> Iterator[None]:
    yield
    for proc in AFTER:
        _stop(proc)


def test_api_server_down_traffic_flows_and_components_reconnect(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: apidown}
        spec:
          replicas: 1
          selector: {matchLabels: {app: apidown}}
          template:
            metadata: {labels: {app: apidown}}
            spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: apidown}
        spec: {selector: {app: apidown}, ports: [{port: 80}]}
        """,
    )
    wait_for("ready", lambda: get(cluster, "deploy", "apidown").get("status", {}).get("readyReplicas") == 1)
    ip = get(cluster, "svc", "apidown")["spec"]["clusterIP"]

    def served() -> set[str]:
        out = set()
        for _ in range(12):
            reply = cluster.exec("node-1", "curl", "-s", "-m", "2", f"http://{ip}/").stdout
            out.add(reply.split()[0].removeprefix("pod=") if reply else "ERR")
        return out

    wait_for("served", lambda: "ERR" not in served())
    up = json.loads((cluster.data_dir / "up.json").read_text())
    pid = up["server_pid"]
    cmd = [c.decode() for c in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]
    port = up["url"].rsplit(":", 1)[1]
    cmd[cmd.index("--listen") + 1] = f"127.0.0.1:{port}"  # the port every kubeconfig names
    os.killpg(pid, signal.SIGKILL)
    time.sleep(1.0)
    # No API server: the kernel rules and the pods keep serving.
    assert "ERR" not in served()
    server = subprocess.Popen(
        cmd,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    AFTER.append(server)
    wait_for("API back", lambda: cluster.kubectl("get", "--raw", "/readyz").returncode == 0)
    # Controllers, scheduler, agents and proxies reconnect: a scale-up is served end to end.
    assert cluster.kubectl("scale", "deploy", "apidown", "--replicas=2").returncode == 0
    wait_for(
        "2 ready",
        lambda: get(cluster, "deploy", "apidown").get("status", {}).get("readyReplicas") == 2,
        timeout=45,
    )
    names = {p["metadata"]["name"] for p in get(cluster, "pods", "-l", "app=apidown")["items"]}
    wait_for("both served through the ClusterIP", lambda: names <= served(), timeout=30)


def test_init_containers_run_in_order_before_the_app(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: initok}
        spec:
          initContainers:
          - {name: first, image: busybox, command: [sh, -c, "sleep 1"]}
          - {name: second, image: busybox, command: ["true"]}
          containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: initfail}
        spec:
          restartPolicy: Never
          initContainers: [{name: check, image: busybox, command: [sh, -c, "exit 2"]}]
          containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
        """,
    )
    wait_for("initializing", lambda: condition(cluster, "initok", "Initialized") == "False")
    status = pod_status(cluster, "initok")
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    wait_for("ready", lambda: condition(cluster, "initok", "Ready") == "True")
    inits = pod_status(cluster, "initok")["initContainerStatuses"]
    assert [i["name"] for i in inits] == ["first", "second"]
    assert all(i["state"]["terminated"]["reason"] == "Completed" and i["ready"] for i in inits)
    assert inits[0]["state"]["terminated"]["finishedAt"] <= inits[1]["state"]["terminated"]["startedAt"]
    wait_for("failed", lambda: pod_status(cluster, "initfail").get("phase") == "Failed")
    fail = pod_status(cluster, "initfail")
    assert fail["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 2
    assert fail["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert condition(cluster, "initfail", "Initialized") == "False"


def test_host_network_pod_shares_the_node_namespace(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: hostnet}
        spec:
          hostNetwork: true
          containers: [{name: web, image: nginx, ports: [{containerPort: 18080}]}]
        """,
    )
    wait_for("ready", lambda: condition(cluster, "hostnet", "Ready") == "True")
    status = pod_status(cluster, "hostnet")
    assert status["podIP"] == status["hostIP"] == "172.30.0.11"
    # Served from the node's own namespace, on the node's address.
    reply = cluster.exec("external", "curl", "-s", "-m", "2", "http://172.30.0.11:18080/").stdout
    assert "pod=hostnet ip=172.30.0.11 node=node-1" in reply
    assert not [
        n
        for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        if ".hostnet." in n
    ]
    assert cluster.kubectl("delete", "pod", "hostnet", "--wait=false").returncode == 0
    wait_for("deleted", lambda: "hostnet" not in cluster.kubectl("get", "pods", "-o", "name").stdout)
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(
        cluster.netns("node-1")
    )


def test_lab_logs_prints_a_containers_output(cluster: Cluster) -> None:
    apply(
        cluster,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: talker}
        spec:
          initContainers: [{name: setup, image: busybox, command: [sh, -c, "echo from-init"]}]
          containers:
          - {name: main, image: busybox, command: [sh, -c, "echo hello from $(POD_NAME); sleep 600"]}
        """,
    )
    wait_for("running", lambda: condition(cluster, "talker", "Ready") == "True")

    def logs(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "svcnet",
                "lab",
                "logs",
                "talker",
                "--data-dir",
                str(cluster.lab_dir),
                *extra,
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(SRC)),
            timeout=30,
        )

    assert wait_for("output", lambda: "hello from talker" in logs().stdout)
    assert logs("-c", "setup").stdout.strip() == "from-init"
    missing = logs("-c", "nope")
    assert missing.returncode == 1 and "have: setup, main" in missing.stderr
