"""`svcnet trace` as a user runs it: objects or a dump in, JSON or a readable path out, and
clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from svcnet.cli import main

OBJECTS = [
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "ns4", "name": "svc4"},
        "spec": {"clusterIP": "172.30.0.44", "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]},
    },
    {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"namespace": "ns4", "name": "svc4-1", "labels": {"kubernetes.io/service-name": "svc4"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.180.0.4"]}, {"addresses": ["10.180.0.5"]}],
        "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}],
    },
]
NODE_FLAGS = ["--node-name", "test-node", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]


@pytest.fixture(scope="module")
def app():
    return main.build()


@pytest.fixture
def objects(tmp_path: Path) -> str:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(OBJECTS))
    return str(path)


def run(app, args: list[str], stdin: str | None = None):
    return CliRunner().invoke(app, ["trace", *args], input=stdin)


def test_json_from_objects(app, objects):
    res = run(app, ["-f", objects, *NODE_FLAGS, "--src", "10.0.0.2", "--dst", "172.30.0.44:80", "-o", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert list(out) == ["verdict", "endpoints", "masquerade", "path"]
    assert (out["verdict"], out["endpoints"], out["masquerade"]) == (
        "DNAT",
        ["10.180.0.4:80", "10.180.0.5:80"],
        False,
    )
    steps = out["path"]
    assert {"table", "chain", "rule", "matched", "action"} <= set(steps[0])
    assert any(s["chain"] == "KUBE-SERVICES" and s["table"] == "nat" for s in steps)


def test_text_ends_with_one_sentence_and_is_plain_when_piped(app, objects):
    res = run(app, ["-f", objects, *NODE_FLAGS, "--src", "10.0.0.2", "--dst", "172.30.0.44:80"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert (
        lines[-1]
        == "10.0.0.2 → 172.30.0.44:80/tcp: DNAT to 10.180.0.4:80 or 10.180.0.5:80 (50% each), not masqueraded"
    )
    assert "\x1b[" not in res.stdout
    assert any("KUBE-SVC-4SW47YFZTEDKD3PK" in line for line in lines)


def test_rules_dump_from_stdin_and_reject_sentence(app):
    dump = "*filter\n:KUBE-SERVICES - [0:0]\n" + (
        '-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 '
        "--dport 80 -j REJECT\nCOMMIT\n"
    )
    res = run(
        app,
        ["--rules", "-", "--node-ip", "192.168.0.2", "--src", "10.0.0.2", "--dst", "172.30.0.46:80"],
        dump,
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == (
        '10.0.0.2 → 172.30.0.46:80/tcp: rejected by filter KUBE-SERVICES ("ns6/svc6:p80 has no endpoints")'
    )


def test_malformed_dump_names_the_line(app, tmp_path):
    dump = tmp_path / "dump.txt"
    dump.write_text("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d 10.0.0.999 -j ACCEPT\nCOMMIT\n")
    res = run(app, ["--rules", str(dump), "--src", "10.0.0.2", "--dst", "172.30.0.46:80"])
    assert res.exit_code == 2
    assert "line 3: invalid address '10.0.0.999': -A KUBE-SERVICES -d 10.0.0.999 -j ACCEPT" in res.stderr
    assert "Traceback" not in res.output


def test_jump_cycle_is_an_error(app, tmp_path):
    dump = tmp_path / "dump.txt"
    dump.write_text("*nat\n:A - [0:0]\n-A PREROUTING -j A\n-A A -j A\nCOMMIT\n")
    res = run(app, ["--rules", str(dump), "--src", "10.0.0.2", "--dst", "172.30.0.46:80"])
    assert res.exit_code == 1
    assert "jump cycle in table nat: PREROUTING" not in res.stderr and "A -> A" in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--src", "10.0.0.2", "--dst", "172.30.0.46:80"], "exactly one of -f OBJECTS or --rules DUMP"),
        (["--rules", "-", "--src", "10.0.0.2", "--dst", "172.30.0.46"], "--dst"),
        (["--rules", "-", "--src", "nope", "--dst", "172.30.0.46:80"], "--src 'nope' is not an IP address"),
        (["--rules", "-", "--src", "10.0.0.2", "--dst", "172.30.0.46:80", "--proto", "icmp"], "--proto"),
        (["--rules", "-", "--src", "10.0.0.2", "--dst", "[::1]:80"], "same IP family"),
        (["--rules", "-", "--mode", "ipvs", "--src", "10.0.0.2", "--dst", "172.30.0.46:80"], "unknown mode"),
        (
            ["--rules", "/nonexistent/dump", "--src", "10.0.0.2", "--dst", "172.30.0.46:80"],
            "cannot read --rules",
        ),
    ],
)
def test_bad_arguments(app, args, message):
    res = run(app, args, "")
    assert res.exit_code == 2
    assert message in res.stderr


def test_bad_objects_file_is_named(app, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: [unclosed\n")
    res = run(app, ["-f", str(path), *NODE_FLAGS, "--src", "10.0.0.2", "--dst", "172.30.0.44:80"])
    assert res.exit_code == 2
    assert "bad.yaml" in res.stderr and "Traceback" not in res.output


def test_text_is_coloured_on_a_terminal():
    import io

    from rich.console import Console

    from svcnet.netfilter.api import Node, trace_text
    from svcnet.netfilter.explain import render_text
    from svcnet.netfilter.trace import Packet

    dump = "*filter\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d 172.30.0.46 -p tcp --dport 80 -j REJECT\n"
    dump += "COMMIT\n"
    result = trace_text("iptables", dump, Packet("10.0.0.2", "172.30.0.46", 80), Node([]))
    out = io.StringIO()
    render_text(result, Console(file=out, force_terminal=True, width=200))
    text = out.getvalue()
    assert "\x1b[" in text  # colours on a terminal
    assert "10.0.0.2 → 172.30.0.46:80/tcp: rejected by filter KUBE-SERVICES" in text


def test_binary_dump_is_refused_clearly(app, tmp_path):
    dump = tmp_path / "dump.bin"
    dump.write_bytes(b"*nat\n\xff\xfe\x00garbage\n")
    res = run(app, ["--rules", str(dump), "--src", "10.0.0.2", "--dst", "172.30.0.46:80"])
    assert res.exit_code == 2
    assert "is not UTF-8 text" in res.stderr and "Traceback" not in res.output
