"""Host-local IPAM: round-robin after the last reservation, persisted, never twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.node.ipam import HostLocalIpam, IpamExhaustedError


def test_first_address_skips_network_and_gateway(tmp_path: Path) -> None:
    ipam = HostLocalIpam(tmp_path, "10.244.1.0/24")
    assert str(ipam.gateway) == "10.244.1.1"
    assert ipam.allocate("a") == "10.244.1.2"
    assert ipam.allocate("a") == "10.244.1.2"  # the same owner gets its address again


def test_freed_address_is_not_reused_at_once(tmp_path: Path) -> None:
    ipam = HostLocalIpam(tmp_path, "10.244.1.0/24")
    first = ipam.allocate("a")
    ipam.allocate("b")
    ipam.release("a")
    # A replacement pod gets a new address, as with the host-local plugin.
    assert ipam.allocate("c") == "10.244.1.4"
    assert first not in ipam.allocated


def test_reservations_survive_a_restart(tmp_path: Path) -> None:
    HostLocalIpam(tmp_path, "10.244.1.0/24").allocate("a")
    again = HostLocalIpam(tmp_path, "10.244.1.0/24")
    assert again.owned_by("a") == "10.244.1.2"
    assert again.allocate("b") == "10.244.1.3"


def test_wraps_around_and_runs_out(tmp_path: Path) -> None:
    ipam = HostLocalIpam(tmp_path, "10.0.0.0/29")  # .2 .. .6 usable
    got = [ipam.allocate(str(i)) for i in range(5)]
    assert got == [f"10.0.0.{i}" for i in range(2, 7)]
    with pytest.raises(IpamExhaustedError):
        ipam.allocate("x")
    ipam.release("1")
    assert ipam.allocate("x") == "10.0.0.3"


def test_too_small_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        HostLocalIpam(tmp_path, "10.0.0.0/31")
