"""`svcnet up` without root (issue #10, item 5), run as a real non-root user.

The suite runs as root, so `svcnet up` runs under `setpriv --reuid=nobody` (as the current user
when the suite itself is not root), with HOME and the data directory in a world-writable
temporary directory. It must bring up the API server, one node whose pods are local processes
on 127.244.0.0/16, the user-space proxy on the ClusterIPs of 127.96.0.0/16 and the DNS on a high
loopback port; a Deployment of 2 pods behind a Service answers through the ClusterIP from both
pods; Ctrl-C leaves no process behind. Nothing here touches netfilter, routes or links.

The interpreter: the venv's python links to one under /root (mode 0700 here), which nobody
cannot execute; the test then uses the system python3 of the same minor version with the
worktree's src and the venv's site-packages on PYTHONPATH, and skips (with the reason) only if
no interpreter nobody can run imports svcnet."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
POD_NET = ipaddress.ip_network("127.244.0.0/16")
SERVICE_NET = ipaddress.ip_network("127.96.0.0/16")

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: echo
        image: echo
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 8080}]
"""

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_user() -> list[str]:
    if os.geteuid() != 0:
        return []  # already not root
    tool = shutil.which("setpriv")
    if tool is None:
        pytest.skip("setpriv is not installed: cannot run svcnet up as a non-root user")
    return [tool, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def user_env(home: Path) -> dict[str, str]:
    paths = [str(SRC), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
    }


def usable_python(prefix: list[str], env: dict[str, str], cwd: Path) -> str:
    """An interpreter the non-root user can run that imports svcnet and its dependencies."""
    tried = []
    system = "/usr/bin/python{}.{}".format(*sys.version_info[:2])
    for candidate in dict.fromkeys([sys.executable, system]):
        # Through a shell: setpriv itself may still resolve the path with root's capabilities
        # (it drops them at exec), but svcnet's own children are started by the user.
        res = subprocess.run(
            [*prefix, "/bin/sh", "-c", 'exec "$0" -c "import svcnet.cli.main, aiohttp, orjson, typer, dns"',
             candidate],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if res.returncode == 0:
            return candidate
        tried.append(f"{candidate}: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    pytest.skip("no interpreter the non-root user can run imports svcnet: " + "; ".join(tried))


def ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def descendants(root: int) -> dict[int, int | None]:
    """PID -> start time of every process under ROOT (by parent PID), ROOT included."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[-1].split()[1])
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return {pid: ticks(pid) for pid in found}


def still_alive(procs: dict[int, int | None]) -> list[int]:
    alive = []
    for pid, t in procs.items():
        now = ticks(pid)
        if now is not None and now == t:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
                    alive.append(pid)
    return alive


def ready(pod: dict) -> bool:
    conditions = pod["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def http_get(ip: str, port: int) -> str:
    with socket.create_connection((ip, port), timeout=3) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def test_up_without_root() -> None:
    prefix = as_user()
    tmp = Path(tempfile.mkdtemp(prefix="svcnet-noroot-"))
    tmp.chmod(0o777)
    env = user_env(tmp)
    python = usable_python(prefix, env, tmp)
    data_dir = tmp / "data"
    api_port, dns_port = free_port(), free_port()
    log_path = tmp / "up.out"
    kube_env = dict(os.environ, KUBECONFIG=str(data_dir / "admin.kubeconfig"))

    def kubectl(*args: str, stdin: str | None = None) -> str:
        res = subprocess.run(
            ["kubectl", *args], input=stdin, env=kube_env, capture_output=True, text=True, timeout=30
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [*prefix, python, "-m", "svcnet", "up", "--data-dir", str(data_dir),
             "--listen", f"127.0.0.1:{api_port}", "--dns-listen", f"127.0.0.1:{dns_port}"],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    seen: dict[int, int | None] = {}
    try:
        deadline = time.monotonic() + 90
        while "svcnet is up" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, f"svcnet up exited with {proc.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"svcnet up did not come up:\n{log_path.read_text()}"
            time.sleep(0.2)
        if prefix:  # really not root: the processes belong to nobody
            assert Path(f"/proc/{proc.pid}").stat().st_uid == 65534
        kubectl("apply", "-f", "-", stdin=MANIFEST)

        deadline = time.monotonic() + 60
        while True:
            pods = json.loads(kubectl("get", "pods", "-l", "app=web", "-o", "json"))["items"]
            running = [p for p in pods if p["status"].get("phase") == "Running" and ready(p)]
            if len(running) == 2:
                break
            assert time.monotonic() < deadline, f"pods not Running and Ready: {json.dumps(pods)[:3000]}"
            time.sleep(0.5)
        ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in running}
        assert all(ipaddress.ip_address(ip) in POD_NET for ip in ips.values()), ips
        assert len(set(ips.values())) == 2, ips
        assert all(p["spec"]["nodeName"] == "local" for p in running)

        cluster_ip = json.loads(kubectl("get", "svc", "web", "-o", "json"))["spec"]["clusterIP"]
        assert ipaddress.ip_address(cluster_ip) in SERVICE_NET, cluster_ip

        # Through the ClusterIP (the user-space proxy binds it), replies from both pods.
        answered: set[str] = set()
        deadline = time.monotonic() + 30
        while answered != set(ips) and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                reply = http_get(cluster_ip, 8080)
                assert reply.startswith("HTTP/1.1 200"), reply
                for name, ip in ips.items():
                    if f"pod={name} ip={ip} node=local" in reply:
                        answered.add(name)
            time.sleep(0.05)
        assert answered == set(ips), f"answered by {answered}, pods {ips}"

        # The cluster DNS on the high loopback port answers the Service's name.
        query = dns.message.make_query("web.default.svc.cluster.local", "A")
        reply = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=3)
        addrs = {r.address for rr in reply.answer if rr.rdtype == dns.rdatatype.A for r in rr}
        assert addrs == {cluster_ip}, reply.to_text()

        seen = descendants(proc.pid)
        assert len(seen) >= 7, seen  # up, server, agent, proxy, dns, 2 x (shim + echo)
    finally:
        if not seen and proc.poll() is None:
            seen = descendants(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        left = still_alive(seen)
        for pid in left:  # never leave anything behind, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        output = log_path.read_text(errors="replace")
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, output
    assert not left, f"processes left after Ctrl-C: {left}\n{output}"
    assert "nothing left behind" in output
    for ip in [cluster_ip, *ips.values()]:
        with pytest.raises(OSError), socket.create_connection((ip, 8080), timeout=2):
            pass


@pytest.mark.parametrize("allow", [False, True])
def test_allow_loopback_endpoints_flag(server_factory, tmp_path: Path, allow: bool) -> None:
    """Upstream refuses loopback endpoint addresses (the default); `--allow-loopback-endpoints`
    accepts them in EndpointSlices and Endpoints and nothing else changes."""
    server = server_factory(tmp_path / "data", extra_args=["--allow-loopback-endpoints"] if allow else [])
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig_path))
    objects = [
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "lo", "namespace": "default"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.244.0.2"]}],
            "ports": [{"port": 8080}],
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "lo", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.244.0.2"}], "ports": [{"port": 8080}]}],
        },
        {   # still refused: only the loopback check is lifted, not the unspecified one
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "zero", "namespace": "default"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["0.0.0.0"]}],
            "ports": [{"port": 8080}],
        },
    ]
    results = []
    for obj in objects:
        res = subprocess.run(["kubectl", "create", "-f", "-"], input=json.dumps(obj), env=env,
                             capture_output=True, text=True, timeout=30)
        results.append(res)
    for res in results[:2]:
        if allow:
            assert res.returncode == 0, res.stderr
        else:
            assert res.returncode != 0 and "may not be in the loopback range" in res.stderr, res.stderr
    assert results[2].returncode != 0 and "may not be unspecified" in results[2].stderr, results[2].stderr
