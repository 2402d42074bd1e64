"""Range sizes and the static/dynamic split, as kube-apiserver computes them."""

from __future__ import annotations

import random

import pytest

from svcnet.apiserver.allocator.ranges import IPRange, PortRange, ip_range_offset, port_range_offset


@pytest.mark.parametrize(
    ("cidr", "size", "offset", "first"),
    [
        ("10.96.0.0/12", 2**20 - 2, 256, "10.96.0.1"),  # kubeadm's default: 10.96.0.1-10.96.1.0 static
        ("10.0.0.0/24", 254, 16, "10.0.0.1"),  # kube-apiserver's built-in default
        ("10.43.0.0/16", 65534, 256, "10.43.0.1"),  # k3s
        ("192.168.1.0/28", 14, 0, "192.168.1.1"),  # 16 addresses: no static band
        ("fd00:10:96::/112", 65535, 256, "fd00:10:96::1"),
        ("fd00::/64", 65535, 256, "fd00::1"),  # IPv6 ranges are capped at 65536 entries
    ],
)
def test_ip_range_size_offset_and_first_address(cidr: str, size: int, offset: int, first: str) -> None:
    r = IPRange.parse(cidr)
    assert (r.size, r.offset, r.first()) == (size, offset, first)


def test_network_and_broadcast_are_never_allocatable() -> None:
    r = IPRange.parse("10.0.0.0/24")
    assert r.index_of("10.0.0.0") is None
    assert r.index_of("10.0.0.255") is None
    assert r.index_of("10.0.0.254") == 253
    assert r.index_of("10.0.1.1") is None
    assert r.index_of("fd00::1") is None
    assert r.index_of("not-an-ip") is None


def test_dynamic_allocation_uses_the_upper_band_before_the_static_band() -> None:
    r = IPRange.parse("10.0.0.0/24")  # offset 16: 10.0.0.1-10.0.0.16 preferred for static use
    order = list(r.dynamic_order(random.Random(7)))
    assert len(order) == len(set(order)) == 254
    first_upper = order[: 254 - 16]
    assert all(r.index_of(ip) >= 16 for ip in first_upper)
    assert {r.index_of(ip) for ip in order[254 - 16:]} == set(range(16))


def test_offsets_follow_the_keps() -> None:
    assert [ip_range_offset(n) for n in (16, 17, 256, 4096, 2**20)] == [0, 16, 16, 256, 256]
    assert [port_range_offset(n) for n in (16, 100, 2768, 10000)] == [0, 16, 86, 128]


def test_default_node_port_range_prefers_30086_and_up_for_dynamic_ports() -> None:
    r = PortRange.parse("30000-32767")
    assert (r.base, r.size, r.last, r.offset) == (30000, 2768, 32767, 86)
    order = list(r.dynamic_order(random.Random(1)))
    assert sorted(order) == list(range(30000, 32768))
    assert min(order[: 2768 - 86]) == 30086


@pytest.mark.parametrize("text", ["", "abc", "30000-", "40000-30000", "0-10", "1-70000"])
def test_bad_port_ranges_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        PortRange.parse(text)
