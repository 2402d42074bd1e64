"""Load-balancer IP pools and node pod-CIDR assignment (issue #4)."""

from __future__ import annotations

import pytest

from svcnet.controllers.lbipam import LBPools, PoolExhaustedError, RequestedIPError, handles
from svcnet.controllers.nodeipam import CIDRExhaustedError, next_free


def lb(
    name: str,
    *,
    ip: str | None = None,
    annotation: str | None = None,
    current: str | None = None,
    cls: str | None = None,
) -> dict:
    svc: dict = {
        "metadata": {"name": name, "namespace": "default", "annotations": {}},
        "spec": {"type": "LoadBalancer"},
        "status": {},
    }
    if ip:
        svc["spec"]["loadBalancerIP"] = ip
    if annotation:
        svc["metadata"]["annotations"]["svcnet.io/lb-ip"] = annotation
    if current:
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": current, "ipMode": "VIP"}]}}
    if cls:
        svc["spec"]["loadBalancerClass"] = cls
    return svc


def test_lowest_free_address_is_assigned_and_kept() -> None:
    pools = LBPools.parse(["192.0.2.0/30"])
    assert pools.assign(lb("a"), {}) == "192.0.2.1"
    assert pools.assign(lb("b"), {"192.0.2.1": "default/a"}) == "192.0.2.2"
    # an address already held stays, even when a lower one frees up
    assert pools.assign(lb("b", current="192.0.2.2"), {"192.0.2.2": "default/b"}) == "192.0.2.2"


def test_requested_address_by_field_or_annotation() -> None:
    pools = LBPools.parse(["192.0.2.0/28"])
    assert pools.assign(lb("a", ip="192.0.2.9"), {}) == "192.0.2.9"
    assert pools.assign(lb("a", annotation="192.0.2.7", ip="192.0.2.9"), {}) == "192.0.2.7"
    with pytest.raises(RequestedIPError, match="already assigned to default/x"):
        pools.assign(lb("a", ip="192.0.2.9"), {"192.0.2.9": "default/x"})
    with pytest.raises(RequestedIPError, match="not in any configured pool"):
        pools.assign(lb("a", ip="198.51.100.1"), {})


def test_exhausted_pool_is_reported() -> None:
    pools = LBPools.parse(["192.0.2.0/30"])
    with pytest.raises(PoolExhaustedError):
        pools.assign(lb("c"), {"192.0.2.1": "default/a", "192.0.2.2": "default/b"})


def test_only_classless_load_balancers_are_handled() -> None:
    assert handles(lb("a"))
    assert not handles(lb("a", cls="example.com/other"))
    assert not handles({"metadata": {"name": "x"}, "spec": {"type": "NodePort"}})


def test_node_cidrs_are_handed_out_lowest_first_and_reused() -> None:
    assert next_free("10.244.0.0/16", None, []) == "10.244.0.0/24"
    assert next_free("10.244.0.0/16", None, ["10.244.0.0/24", "10.244.2.0/24"]) == "10.244.1.0/24"
    assert next_free("fd00:10:244::/56", None, []) == "fd00:10:244::/64"
    with pytest.raises(CIDRExhaustedError):
        next_free("10.244.0.0/24", 25, ["10.244.0.0/25", "10.244.0.128/25"])
