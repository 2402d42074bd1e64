"""`svcnet dns` as a user runs it: flags, errors, files and the API server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
import typer
from test_dns_records import OBJECTS
from typer.testing import CliRunner

SVCNET = [sys.executable, "-m", "svcnet", "dns"]


@contextmanager
def running(args: list[str]) -> Iterator[tuple[int, str]]:
    """Start `svcnet dns ARGS`, yield (port, first line), stop it by its PID."""
    proc = subprocess.Popen(
        [*SVCNET, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "serving on" not in line:
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"svcnet dns did not start: {line}{err}")
        yield int(line.split()[4].rsplit(":", 1)[1]), line
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def ask(port: int, name: str, qtype: str = "A", tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, qtype)
    return (dns.query.tcp if tcp else dns.query.udp)(q, "127.0.0.1", port=port, timeout=5)


BAD_FLAGS = [
    (["--listen", "127.0.0.1:0"], "give exactly one of -f OBJECTS or --kubeconfig K"),
    (["-f", "x.yaml", "--ttl", "3601"], "ttl must be in range [0, 3600]"),
    (["-f", "x.yaml", "--ttl", "-1"], "ttl must be in range [0, 3600]"),
    (["-f", "x.yaml", "--pods", "maybe"], "wrong value for pods: maybe"),
    (["-f", "x.yaml", "--zone", "0.10.in-addr.arpa"], "non-reverse zone name must be used"),
    (["-f", "x.yaml", "--listen", "nowhere"], "--listen"),
    (["-f", "x.yaml", "--zone", "a..b"], "--zone"),
]


def _cli() -> typer.Typer:
    from svcnet.cli import dns as dns_cli

    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a group, so the command is invoked by its name as users do
        pass

    dns_cli.register(app)
    return app


@pytest.mark.parametrize(("args", "message"), BAD_FLAGS)
def test_bad_flags_are_refused_clearly(args: list[str], message: str) -> None:
    result = CliRunner().invoke(_cli(), ["dns", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_bad_flag_from_the_real_command() -> None:
    proc = subprocess.run(
        [*SVCNET, "-f", "x.yaml", "--ttl", "3601"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "svcnet dns: ttl must be in range [0, 3600]"


def test_malformed_objects_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nmetadata: [\n")
    proc = subprocess.run(
        [*SVCNET, "-f", str(bad), "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert "bad.yaml" in proc.stderr


def test_serves_files_on_udp_and_tcp_with_metrics(tmp_path: Path) -> None:
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": OBJECTS}))
    with running(
        [
            "-f",
            str(objects),
            "--listen",
            "127.0.0.1:0",
            "--zone",
            "cluster.local",
            "--zone",
            "0.10.in-addr.arpa",
            "--ttl",
            "7",
            "--metrics-listen",
            "127.0.0.1:0",
        ]
    ) as (port, line):
        for tcp in (False, True):
            reply = ask(port, "svc1.testns.svc.cluster.local.", tcp=tcp)
            assert [(r.ttl, str(r[0])) for r in reply.answer] == [(7, "10.0.0.1")]
        assert (
            str(ask(port, "1.0.0.10.in-addr.arpa.", "PTR").answer[0][0]) == "svc1.testns.svc.cluster.local."
        )
        assert ask(port, "www.example.com.").rcode() == dns.rcode.REFUSED
        http_port = int(line.rsplit("metrics on port", 1)[1])
        text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
        assert "coredns_dns_requests_total" in text


def test_kubeconfig_mode_follows_the_api(api_server: Any) -> None:
    from kubernetes import client

    api = client.CoreV1Api(api_server.python_client())
    ns = f"dnscli-{uuid.uuid4().hex[:6]}"
    api.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        with running(["--kubeconfig", str(api_server.kubeconfig_path), "--listen", "127.0.0.1:0"]) as (
            port,
            _,
        ):
            name = f"api.{ns}.svc.cluster.local."
            deadline = time.monotonic() + 10
            while ask(port, f"{ns}.svc.cluster.local.").rcode() != dns.rcode.NOERROR:
                assert time.monotonic() < deadline, "the namespace never appeared"
                time.sleep(0.02)
            assert ask(port, name).rcode() == dns.rcode.NXDOMAIN
            api.create_namespaced_service(
                ns,
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "api"},
                    "spec": {"clusterIP": "10.96.99.99", "ports": [{"port": 80}]},
                },
            )
            while not ask(port, name).answer:
                assert time.monotonic() < deadline, "the service never resolved"
                time.sleep(0.02)
            assert str(ask(port, name).answer[0][0]) == "10.96.99.99"
    finally:
        api.delete_namespace(ns)
