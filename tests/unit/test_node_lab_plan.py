"""The lab's plan (names, addresses, pod ranges) and how `svcnet lab exec` finds a target."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.lab import lab as lab_module
from svcnet.lab.topology import Topology, new_prefix


def test_plan_names_every_namespace_with_the_prefix() -> None:
    topo = Topology.plan("svl1234", 3)
    assert [n.name for n in topo.nodes] == ["node-1", "node-2", "node-3"]
    assert [n.ip for n in topo.nodes] == ["172.30.0.11", "172.30.0.12", "172.30.0.13"]
    assert [n.pod_cidr for n in topo.nodes] == ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    names = [topo.net, topo.external, *(n.netns for n in topo.nodes)]
    assert all(n.startswith("svl1234-") for n in names)
    assert len(set(names)) == len(names)


def test_prefixes_are_unique_and_short() -> None:
    prefixes = {new_prefix() for _ in range(50)}
    assert len(prefixes) > 40
    assert all(p.startswith("svl") and len(p) == 7 for p in prefixes)


def test_exec_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    state = {
        "prefix": "svl1234",
        "net": "svl1234-net",
        "external": "svl1234-ext",
        "nodes": [{"name": "node-1", "netns": "svl1234-node-1"}],
    }
    names = [
        "svl1234-p1-default.frontend.abcdef",
        "svl1234-p1-shop.frontend.123456",
        "svl1234-p2-default.db-0.777777",
    ]
    monkeypatch.setattr(
        "svcnet.node.netns.list_names", lambda prefix="": [n for n in names if n.startswith(prefix)]
    )
    assert lab_module.target_netns(state, "external") == "svl1234-ext"
    assert lab_module.target_netns(state, "node-1") == "svl1234-node-1"
    assert lab_module.target_netns(state, "frontend") == "svl1234-p1-default.frontend.abcdef"
    assert lab_module.target_netns(state, "frontend", "shop") == "svl1234-p1-shop.frontend.123456"
    assert lab_module.target_netns(state, "db-0") == "svl1234-p2-default.db-0.777777"
    assert lab_module.target_netns(state, "db") is None
    assert lab_module.target_netns(state, "node-9") is None


def test_read_state_says_when_no_lab_runs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no lab is running"):
        lab_module.read_state(tmp_path)
