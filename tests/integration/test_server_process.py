"""The server as a user runs it: HTTPS verified against the cluster CA, the admin token,
the kubeconfig that kubectl and the Python client load, health and metrics endpoints."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
from kubernetes import client

from svcnet.apiserver.launcher import ApiServerProcess


def _request(server: ApiServerProcess, path: str, token: str | None = None, method: str = "GET",
             body: bytes | None = None) -> tuple[int, bytes, dict]:
    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    req = urllib.request.Request(server.url + path, method=method, data=body)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def test_tls_certificate_verifies_against_the_cluster_ca(api_server: ApiServerProcess) -> None:
    status, body, _ = _request(api_server, "/healthz")
    assert status == 200 and body == b"ok"
    # An unrelated trust store must reject the certificate: the CA is really ours.
    ctx = ssl.create_default_context()
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(api_server.url + "/healthz", context=ctx, timeout=10)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


def test_requests_without_a_valid_token_get_401_status(api_server: ApiServerProcess) -> None:
    for token in (None, "not-the-token", api_server.token + "x"):
        status, body, _ = _request(api_server, "/api/v1/namespaces/default/services", token)
        assert status == 401
        doc = json.loads(body)
        assert doc["kind"] == "Status" and doc["reason"] == "Unauthorized" and doc["code"] == 401
    status, _, _ = _request(api_server, "/api/v1/namespaces/default/services", api_server.token)
    assert status == 200


def test_health_endpoints_answer_without_a_token(api_server: ApiServerProcess) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        status, body, _ = _request(api_server, path)
        assert (status, body) == (200, b"ok"), path
    status, body, _ = _request(api_server, "/readyz?verbose")
    assert status == 200 and b"readyz check passed" in body


def test_python_client_loads_the_kubeconfig_unchanged(api_server: ApiServerProcess) -> None:
    api = client.CoreV1Api(api_server.python_client())
    names = {ns.metadata.name for ns in api.list_namespace().items}
    assert {"default", "kube-system", "kube-public"} <= names


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")
def test_kubectl_uses_the_printed_kubeconfig(api_server: ApiServerProcess, tmp_path) -> None:
    out = subprocess.run(
        [_python(), "-m", "svcnet", "kubeconfig", "--data-dir", str(api_server.data_dir),
         "--write", str(tmp_path / "kc")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    got = subprocess.run(
        ["kubectl", "--kubeconfig", str(tmp_path / "kc"), "get", "--raw", "/api/v1/namespaces/default"],
        capture_output=True, text=True, timeout=60,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["metadata"]["name"] == "default"


def test_kubeconfig_command_fails_clearly_without_a_server(tmp_path) -> None:
    out = subprocess.run([_python(), "-m", "svcnet", "kubeconfig", "--data-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "start the server first" in out.stderr


def test_metrics_count_requests_by_verb_resource_and_code(api_server: ApiServerProcess) -> None:
    ns = "metrics-test"
    body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).encode()
    assert _request(api_server, "/api/v1/namespaces", api_server.token, "POST", body)[0] == 201
    _request(api_server, f"/api/v1/namespaces/{ns}/services/missing", api_server.token)
    status, text, headers = _request(api_server, "/metrics", api_server.token)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    lines = text.decode().splitlines()
    assert _sample(lines, "apiserver_request_total", verb="create", resource="namespaces", code="201") >= 1
    assert _sample(lines, "apiserver_request_total", verb="get", resource="services", code="404") >= 1
    assert _sample(lines, "apiserver_request_duration_seconds_count", verb="get", resource="services") >= 1


def _sample(lines: list[str], name: str, **labels: str) -> float:
    for line in lines:
        if not line.startswith(name + "{"):
            continue
        label_text, _, value = line[len(name) + 1:].rpartition("} ")
        got = dict(part.split("=", 1) for part in label_text.split(","))
        if all(got.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return 0.0


def _python() -> str:
    import sys

    return sys.executable


def test_python_client_sees_401_as_api_exception(api_server: ApiServerProcess) -> None:
    cfg = client.Configuration()
    cfg.host = api_server.url
    cfg.ssl_ca_cert = str(api_server.ca_path)
    cfg.api_key = {"authorization": "Bearer wrong"}
    api = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(client.ApiException) as info:
        api.list_namespace()
    assert info.value.status == 401
