"""IPVS backend: the rendered state, parsed back, is what upstream's IPVS proxier configures.

golden/ipvs/services.expected lists (by hand, from upstream's proxier) the virtual servers with
their schedulers and persistence, the real servers, the kube-ipvs0 addresses and the non-empty
ipsets' members for golden/ipvs/services.yaml; the rendering is parsed back (ipvsadm-restore,
ipset restore) and compared as sets. The iptables goldens' fixtures are checked against facts
read straight from their objects: a virtual server per service address and port, real servers
per ready endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcnet.cli.main import build
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.ipvs import (
    DUMMY_DEVICE,
    IPSETS,
    parse_ipset,
    parse_ipvsadm,
    render_snapshot,
    split_sections,
)
from svcnet.proxy.objects import load_files

HERE = Path(__file__).parent / "golden"


def expected_case(name: str) -> tuple[NodeConfig, str, str]:
    text = (HERE / "ipvs" / f"{name}.expected").read_text()
    lines = text.splitlines()
    node = NodeConfig(**json.loads(lines[0].removeprefix("# node: ")))
    scheduler = lines[1].removeprefix("# scheduler: ")
    return node, scheduler, text


def parsed(text: str) -> tuple[dict, dict, set[str], dict[str, set[str]]]:
    sections = split_sections(text)
    vss, rss = parse_ipvsadm(sections["ipvsadm-restore"])
    addresses = {a for a in sections[f"addresses on {DUMMY_DEVICE}"].split() if a}
    sets = {k: v for k, v in parse_ipset(sections["ipset restore"]).items() if v}
    return vss, rss, addresses, sets


def test_services_golden() -> None:
    node, scheduler, expected = expected_case("services")
    got = render_snapshot(load_files([str(HERE / "ipvs" / "services.yaml")]), node, scheduler)
    g_vss, g_rss, g_addr, g_sets = parsed(got)
    e_vss, e_rss, e_addr, e_sets = parsed(expected)
    assert g_vss == e_vss  # address, port, protocol, scheduler, persistence
    assert g_rss == e_rss
    assert g_addr == e_addr
    assert g_sets == e_sets


def test_every_ipset_is_created_and_every_matched_set_exists() -> None:
    node, scheduler, _ = expected_case("services")
    text = render_snapshot(load_files([str(HERE / "ipvs" / "services.yaml")]), node, scheduler)
    sections = split_sections(text)
    created = set(parse_ipset(sections["ipset restore"]))
    assert created == {name for name, _t, _c in IPSETS}
    rules = sections["iptables-restore --noflush"]
    matched = {line.split("--match-set ")[1].split()[0]
               for line in rules.splitlines() if "--match-set" in line}
    assert matched and matched <= created
    assert "-A KUBE-SERVICES -m comment --comment" in rules and "! -s 10.0.0.0/8 -j KUBE-MARK-MASQ" in rules
    assert "--match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL" in rules


def test_ipv6_sets_are_renamed() -> None:
    node = NodeConfig(family="IPv6", node_name="test-node", node_ips=["2001:db8::1"])
    text = render_snapshot(load_files([str(HERE / "iptables" / "ipv6.yaml")]), node)
    vss, rss, addresses, sets = parsed(text)
    assert ("TCP", "fd00:172:30::41", 80) in vss and ("TCP", "2001:db8::1", 3001) in vss
    assert rss[("TCP", "fd00:172:30::41", 80)] == {"[fd00:10:180::1]:80": 1}
    assert "KUBE-6-CLUSTER-IP" in sets and "KUBE-CLUSTER-IP" not in sets
    assert "172.30.0.42" not in addresses  # the dual-stack service's IPv4 half belongs to the IPv4 proxier


def _ready_endpoints(objs: list[dict], name: tuple[str, str]) -> set[str]:
    out = set()
    for obj in objs:
        meta = obj.get("metadata") or {}
        if obj.get("kind") != "EndpointSlice" or (meta.get("namespace"), meta["labels"][
                "kubernetes.io/service-name"]) != name:
            continue
        port = obj["ports"][0]["port"]
        for ep in obj["endpoints"]:
            if (ep.get("conditions") or {}).get("ready", True):
                out.add(f"{ep['addresses'][0]}:{port}")
    return out


@pytest.mark.parametrize("fixture", ["overall", "three", "reject"])
def test_a_virtual_server_per_service_address_and_real_servers_per_ready_endpoint(fixture: str) -> None:
    import yaml

    path = HERE / "iptables" / f"{fixture}.yaml"
    objs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    node = NodeConfig(node_name="test-node", node_ips=["192.168.0.2"])
    vss, rss, addresses, sets = parsed(render_snapshot(load_files([str(path)]), node, "lc"))
    for svc in (o for o in objs if o["kind"] == "Service"):
        spec, meta = svc["spec"], svc["metadata"]
        key = (meta["namespace"], meta["name"])
        port = spec["ports"][0]
        proto = port.get("protocol", "TCP")
        vs = vss[(proto, spec["clusterIP"], port["port"])]
        assert vs.scheduler == "lc"
        assert spec["clusterIP"] in addresses
        assert f"{spec['clusterIP']},{proto.lower()}:{port['port']}" in sets["KUBE-CLUSTER-IP"]
        addrs = list(spec.get("externalIPs", [])) + [
            i["ip"] for i in (svc.get("status") or {}).get("loadBalancer", {}).get("ingress", [])]
        for addr in addrs:
            assert (proto, addr, port["port"]) in vss
        if port.get("nodePort"):
            assert (proto, "192.168.0.2", port["nodePort"]) in vss
        if spec.get("internalTrafficPolicy") != "Local":
            assert set(rss.get((proto, spec["clusterIP"], port["port"]), {})) == _ready_endpoints(objs, key)
        if spec.get("sessionAffinity") == "ClientIP":
            assert vs.persistent_timeout == spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]


def test_render_cli_ipvs() -> None:
    res = CliRunner().invoke(build(), ["proxy", "render", "--mode", "ipvs", "--ipvs-scheduler", "sh", "-f",
                                       str(HERE / "iptables" / "three.yaml")])
    assert res.exit_code == 0, res.output
    vss, rss, _a, _s = parsed(res.stdout)
    assert vss[("TCP", "172.30.0.41", 80)].scheduler == "sh"
    assert set(rss[("TCP", "172.30.0.41", 80)]) == {"10.180.0.1:80", "10.180.0.2:80", "10.180.0.3:80"}
    bad = CliRunner().invoke(build(), ["proxy", "render", "--mode", "ipvs", "--ipvs-scheduler", "fastest",
                                       "-f", str(HERE / "iptables" / "three.yaml")])
    assert bad.exit_code == 2 and "--ipvs-scheduler must be one of rr" in bad.stderr
