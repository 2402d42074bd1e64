"""IPVS mode against a real kernel, for the parts this kernel has (root, network namespaces).

Kernels without IPVS (no /proc/net/ip_vs) cannot hold virtual servers, but everything else the
IPVS proxier programs is ordinary networking: the service addresses on the kube-ipvs0 dummy
interface, the ipsets, and the iptables rules that match them. Here the proxier's own kernel
driver (IpvsKernel) applies a rendered sync and then a second one with a service removed, in a
throwaway namespace, and the test reads back what the kernel holds and sends packets through
the access filter (a ClusterIP's wrong port is rejected by KUBE-IPVS-FILTER).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from svcnet.node.netns import entered
from svcnet.proxy.apply.ipvs import DUMMY_DEVICE
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.ipvs import IpvsState, render_state
from svcnet.proxy.ipvs_proxier import IpvsKernel
from svcnet.proxy.objects import load_files
from svcnet.proxy.render import state_from_snapshot

GOLDEN = Path(__file__).parent.parent / "unit" / "golden" / "ipvs"


@pytest.fixture
def netns(root_netns: None):
    for tool in ("ipset", "iptables-restore"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: scripts/install-system-deps.sh installs it")
    name = f"svt{secrets.token_hex(3)}ipvs"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def render(snapshot, node: NodeConfig, scheduler: str) -> IpvsState:
    state = state_from_snapshot(snapshot, node)
    return render_state(state.svc_port_map, state.endpoints_map, node, scheduler, state.services)


def kernel_sets(netns: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    saved = subprocess.run(["ip", "netns", "exec", netns, "ipset", "save"], capture_output=True, text=True,
                           check=True).stdout
    for line in saved.splitlines():
        words = line.split()
        if words[:1] == ["create"]:
            out.setdefault(words[1], set())
        elif words[:1] == ["add"]:
            out.setdefault(words[1], set()).add(words[2])
    return out


def kernel_addresses(netns: str) -> set[str]:
    listed = subprocess.run(["ip", "-n", netns, "-4", "-o", "addr", "show", "dev", DUMMY_DEVICE],
                            capture_output=True, text=True, check=True).stdout.split()
    return {w.split("/")[0] for w in listed if "/" in w}


def golden_states() -> tuple[IpvsState, IpvsState]:
    """The golden services rendered, and again after the first Service (by name) is deleted."""
    header = (GOLDEN / "services.expected").read_text().splitlines()
    node = NodeConfig(**json.loads(header[0].removeprefix("# node: ")))
    scheduler = header[1].removeprefix("# scheduler: ")
    snapshot = load_files([str(GOLDEN / "services.yaml")])
    first = render(snapshot, node, scheduler)
    gone = sorted(snapshot.services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"]))[0]
    second = render(dataclasses.replace(snapshot, services=[s for s in snapshot.services if s is not gone]),
                    node, scheduler)
    assert second.bound_addresses < first.bound_addresses  # the second sync changes something
    return first, second


def has_dummy_interfaces() -> bool:
    probe = f"svt{secrets.token_hex(3)}dmy"
    subprocess.run(["ip", "netns", "add", probe], check=True)
    try:
        return subprocess.run(["ip", "-n", probe, "link", "add", "d0", "type", "dummy"],
                              capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", probe], check=False)


def test_ipsets_and_rules_are_what_the_kernel_holds_and_filter_access(netns: str) -> None:
    first, second = golden_states()
    kernel = IpvsKernel()
    with entered(netns):  # the tools run from this thread start in the namespace
        for st in (first, first, second):  # a resync of the same state changes nothing
            kernel.restore_ipsets(st.ipset_text())
            kernel.restore_iptables(st.iptables)
            held = kernel_sets(netns)
            for name, members in st.ipsets.items():
                assert held.get(name) == members, name

    rules = subprocess.run(["ip", "netns", "exec", netns, "iptables-save"], capture_output=True, text=True,
                           check=True).stdout
    jumps = [line for line in rules.splitlines() if line.startswith(("-A INPUT ", "-A OUTPUT "))]
    assert sorted(line.rsplit(" -j ", 1)[1] for line in jumps) == [  # each jump once, after resyncs
        "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER", "KUBE-NODE-PORT", "KUBE-SERVICES"], jumps
    assert "--match-set KUBE-CLUSTER-IP dst,dst -j RETURN" in rules

    # The access filter: a ClusterIP's service port passes (RETURN; IPVS would take it from
    # there, here the local stack refuses it), any other port of that address is rejected by
    # the KUBE-IPVS-IPS rule. The address goes on lo as the test's own set-up: the proxier
    # binds it to kube-ipvs0, which needs the dummy driver (the next test).
    member = next(m for m in sorted(second.ipsets["KUBE-CLUSTER-IP"]) if ",tcp:" in m)
    cluster_ip, port = member.split(",")[0], int(member.split(":")[-1])
    subprocess.run(["ip", "-n", netns, "addr", "add", f"{cluster_ip}/32", "dev", "lo"], check=True)

    def rejected() -> int:
        listing = subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", "5", "-t", "filter",
                                  "-L", "KUBE-IPVS-FILTER", "-v", "-x", "-n"],
                                 capture_output=True, text=True, check=True).stdout
        return sum(int(line.split()[0]) for line in listing.splitlines() if "REJECT" in line)

    def refused(p: int) -> None:
        with entered(netns), socket.socket() as s:
            s.settimeout(2)
            with pytest.raises(ConnectionRefusedError):
                s.connect((cluster_ip, p))

    before = rejected()
    refused(port)
    assert rejected() == before  # the service port is not the filter's
    refused(port + 1 if port < 65535 else 1)
    assert rejected() == before + 1


def test_service_addresses_on_the_dummy_interface(netns: str) -> None:
    if not has_dummy_interfaces():
        pytest.skip("this kernel has no dummy interfaces (module dummy), which kube-ipvs0 needs")
    first, second = golden_states()
    kernel = IpvsKernel()
    with entered(netns):
        for st in (first, first, second):
            kernel.bind_addresses(st.bound_addresses)
            assert kernel_addresses(netns) == {a for a in st.bound_addresses if ":" not in a}


def test_without_the_dummy_driver_the_proxier_says_what_is_missing(netns: str) -> None:
    if has_dummy_interfaces():
        pytest.skip("this kernel has dummy interfaces: nothing is missing")
    with entered(netns), pytest.raises(RuntimeError, match=r"kube-ipvs0 .*kernel module dummy"):
        IpvsKernel().bind_addresses({"172.30.0.10"})
