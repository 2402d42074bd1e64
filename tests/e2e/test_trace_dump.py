"""Tracing what the kernel holds gives the same answers as tracing what was rendered.

The rendered rules are loaded into a fresh network namespace (iptables-restore, with the jump
rules kube-proxy installs itself; for nftables, `nft -f`), dumped back the way a user would on a
node (`iptables-save`, `nft list ruleset`), and both texts are traced for the same packets. The
dump differs in form (option order, /32 suffixes, counters, quoting, nft's own printing), so the
parsers and the tracer have to agree on meaning, not on text.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from svcnet.netfilter.api import Node, trace_text
from svcnet.netfilter.kube_jumps import KUBE_PROXY_JUMPS
from svcnet.netfilter.trace import Packet
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.objects import Snapshot
from svcnet.proxy.render import render_full

pytestmark = pytest.mark.root

NODE_IP = "192.168.0.2"


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    for tool in ("ip", "iptables-restore", "iptables-save", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    name = f"svt{secrets.token_hex(3)}trace"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def in_ns(ns: str, *args: str, stdin: str | None = None) -> str:
    res = subprocess.run(
        ["ip", "netns", "exec", ns, *args], input=stdin, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, f"{' '.join(args)}: {res.stderr}"
    return res.stdout


def svc(name: str, ip: str, port: dict, **spec: object) -> dict:
    status = spec.pop("status", None)
    obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "ns", "name": name},
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [port],
            "ipFamilies": ["IPv4"],
            "sessionAffinity": spec.pop("sessionAffinity", "None"),
            **spec,
        },
    }
    if status:
        obj["status"] = status
    return obj


def eps(name: str, ips: list[tuple[str, bool]], port: int = 80) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"namespace": "ns", "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": True}, **({"nodeName": "n1"} if local else {})}
            for ip, local in ips
        ],
        "ports": [{"name": "p", "port": port, "protocol": "TCP"}],
    }


P = {"name": "p", "port": 80, "protocol": "TCP"}
SNAPSHOT = Snapshot(
    services=[
        svc("spread", "172.30.0.41", P),
        svc(
            "noeps", "172.30.0.42", {**P, "nodePort": 30042}, type="NodePort", externalTrafficPolicy="Cluster"
        ),
        svc("np", "172.30.0.43", {**P, "nodePort": 30043}, type="NodePort", externalTrafficPolicy="Cluster"),
        svc(
            "local",
            "172.30.0.44",
            {**P, "nodePort": 30044},
            type="LoadBalancer",
            externalTrafficPolicy="Local",
            externalIPs=["192.168.99.11"],
            healthCheckNodePort=30100,
            status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
        ),
        svc(
            "fw",
            "172.30.0.45",
            {**P, "nodePort": 30045},
            type="LoadBalancer",
            externalTrafficPolicy="Cluster",
            loadBalancerSourceRanges=["203.0.113.0/25"],
            status={"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}},
        ),
        svc(
            "sticky",
            "172.30.0.46",
            P,
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10800}},
        ),
    ],
    endpoint_slices=[
        eps("spread", [("10.180.0.1", False), ("10.180.0.2", False), ("10.180.0.3", True)], 8080),
        eps("np", [("10.180.1.1", True), ("10.180.2.1", False)]),
        eps("local", [("10.180.3.1", True), ("10.180.3.2", False)]),
        eps("fw", [("10.180.4.1", False)]),
        eps("sticky", [("10.180.5.1", False), ("10.180.5.2", False)]),
    ],
    nodes=[],
)

PACKETS = [
    Packet("10.0.0.2", "172.30.0.41", 80),
    Packet("203.0.113.2", "172.30.0.41", 80),
    Packet("10.180.0.2", "172.30.0.41", 80),
    Packet("10.0.0.2", "172.30.0.41", 81),
    Packet("10.0.0.2", "172.30.0.41", 80, "udp"),
    Packet("10.0.0.2", "172.30.0.42", 80),
    Packet("203.0.113.2", NODE_IP, 30042),
    Packet("203.0.113.2", NODE_IP, 30043),
    Packet(NODE_IP, NODE_IP, 30043, from_node=True),
    Packet("127.0.0.1", "127.0.0.1", 30043, from_node=True),
    Packet("203.0.113.2", "192.168.99.11", 80),
    Packet("10.0.0.2", "192.168.99.11", 80),
    Packet("203.0.113.2", "1.2.3.4", 80),
    Packet("203.0.113.2", NODE_IP, 30044),
    Packet("203.0.113.2", NODE_IP, 30100),
    Packet("203.0.113.2", "5.6.7.8", 80),
    Packet("203.0.113.130", "5.6.7.8", 80),
    Packet("10.0.0.2", "172.30.0.46", 80),
    Packet("10.0.0.2", "10.9.9.9", 80),
]


def answer(mode: str, text: str, packet: Packet) -> tuple:
    r = trace_text(mode, text, packet, Node([NODE_IP]))
    return r.verdict, r.endpoints, [round(p, 6) for p in r.probabilities], r.masquerade


def test_iptables_save_dump_traces_like_the_rendered_rules(netns):
    node = NodeConfig(node_name="n1", node_ips=[NODE_IP], cluster_cidrs=["10.0.0.0/8"])
    rendered = render_full("iptables", SNAPSHOT, node)
    in_ns(netns, "iptables-restore", "--noflush", "-w", stdin=rendered)
    # the jumps kube-proxy adds itself with `iptables -I`, in its order
    for table, builtin, target, prefix, comment in KUBE_PROXY_JUMPS:
        if f":{target} " not in rendered.split(f"*{table}\n", 1)[-1].split("COMMIT", 1)[0]:
            continue
        args = ["iptables", "-w", "-t", table, "-I", builtin, *prefix.split()]
        if comment:
            args += ["-m", "comment", "--comment", comment]
        in_ns(netns, *args, "-j", target)
    dump = in_ns(netns, "iptables-save")
    assert "-A KUBE-SERVICES" in dump and dump != rendered

    answers = {}
    for packet in PACKETS:
        from_dump = answer("iptables", dump, packet)
        assert from_dump == answer("iptables", rendered, packet), str(packet)
        answers[str(packet)] = from_dump
    # and the answers are the expected ones, not merely equal
    assert answers["10.0.0.2 → 172.30.0.41:80/tcp"] == (
        "DNAT",
        ["10.180.0.1:8080", "10.180.0.2:8080", "10.180.0.3:8080"],
        [0.333333] * 3,
        False,
    )
    assert answers["10.180.0.2 → 172.30.0.41:80/tcp"][3] is True
    assert answers["10.0.0.2 → 172.30.0.42:80/tcp"][0] == "REJECT"
    assert answers["203.0.113.2 → 192.168.99.11:80/tcp"] == ("DNAT", ["10.180.3.1:80"], [1.0], False)
    assert answers["203.0.113.2 → 192.168.0.2:30100/tcp"][0] == "ACCEPT"
    assert answers["203.0.113.130 → 5.6.7.8:80/tcp"][0] == "DROP"
    assert answers["127.0.0.1 → 127.0.0.1:30043/tcp"][0] == "DNAT"
    assert answers["10.0.0.2 → 10.9.9.9:80/tcp"][0] == "NONE"


def _nft_fixture() -> str:
    path = Path(__file__).parents[1] / "unit" / "test_trace_nftables.py"
    spec = importlib.util.spec_from_file_location("nft_fixture", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RULES


def test_nft_list_ruleset_traces_like_the_transaction(netns):
    transaction = _nft_fixture()
    in_ns(netns, "nft", "-f", "-", stdin=transaction)
    listed = in_ns(netns, "nft", "list", "ruleset")
    assert "table ip kube-proxy {" in listed
    packets = [
        Packet("10.0.0.2", "172.30.0.41", 80),
        Packet("10.180.0.2", "172.30.0.41", 80),
        Packet("10.0.0.2", "172.30.0.41", 81),
        Packet("10.0.0.2", "172.30.0.99", 80),
        Packet("10.0.0.2", "172.30.0.43", 80),
        Packet("203.0.113.2", NODE_IP, 3003),
        Packet("203.0.113.2", "192.168.99.22", 80),
        Packet("10.0.0.2", "192.168.99.22", 80),
        Packet(NODE_IP, NODE_IP, 3001, from_node=True),
        Packet("203.0.113.2", "5.6.7.8", 80),
        Packet("203.0.113.130", "5.6.7.8", 80),
        Packet("10.0.0.2", "172.30.0.45", 80),
    ]
    verdicts = set()
    for packet in packets:
        got = answer("nftables", listed, packet)
        assert got == answer("nftables", transaction, packet), str(packet)
        verdicts.add(got[0])
    assert verdicts == {"DNAT", "REJECT", "DROP"}


def test_large_nft_listing_is_read_lazily_with_the_same_answers(netns):
    from svcnet.netfilter.addr import LocalAddresses
    from svcnet.netfilter.nft import parse_nft
    from svcnet.netfilter.nft_lazy import load_nft
    from svcnet.netfilter.trace import trace_packet
    from svcnet.netfilter.trace_nft import NftEngine

    path = Path(__file__).parents[2] / "bench" / "trace.py"
    spec = importlib.util.spec_from_file_location("bench_trace", path)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    in_ns(netns, "nft", "-f", "-", stdin=bench.nft_rules(400, 3))
    listed = in_ns(netns, "nft", "list", "ruleset")
    assert listed.count("\n") > 5000
    local = LocalAddresses([NODE_IP])
    lazy, eager = load_nft(listed), parse_nft(listed, lazy=False)
    assert type(lazy.tables["ip kube-proxy"].chains) is not dict  # read block by block
    for packet in [
        Packet("10.0.0.2", "172.30.1.150", 80),
        Packet("10.64.0.3", "172.30.0.2", 80),
        Packet("10.0.0.2", "172.30.0.7", 81),
        Packet("10.0.0.2", "10.9.9.9", 80),
    ]:
        a = trace_packet(NftEngine(lazy, local), packet, local)
        b = trace_packet(NftEngine(eager, local), packet, local)
        assert (a.verdict, a.endpoints, a.masquerade) == (b.verdict, b.endpoints, b.masquerade), str(packet)
        assert [(s.line_no, s.rule) for s in a.path] == [(s.line_no, s.rule) for s in b.path]
    svc = trace_packet(NftEngine(lazy, local), Packet("10.0.0.2", "172.30.1.150", 80), local)
    assert len(svc.endpoints) == 3 and svc.verdict == "DNAT"
