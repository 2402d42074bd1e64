"""Golden tests: rendered iptables-restore input equals what upstream kube-proxy writes.

Each tests/unit/golden/iptables/NAME[.VARIANT].expected names its node configuration in a
`# node: {...}` header and is compared, after upstream's test-side rule sort, with the
rendering of NAME.yaml. The expected texts were written from upstream's syncProxyRules and
upstream's own test expectations (overall.expected is TestOverallIPTablesRules verbatim), not
from this renderer's output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.iptables import render, sort_restore_text
from svcnet.proxy.objects import load_files
from svcnet.proxy.state import ProxyState

GOLDEN = Path(__file__).parent / "golden" / "iptables"
CASES = sorted(p.name.removesuffix(".expected") for p in GOLDEN.glob("*.expected"))


def node_config_from_header(text: str) -> NodeConfig:
    header = text.splitlines()[0]
    assert header.startswith("# node: "), "expected files start with a '# node: {...}' header"
    cfg = json.loads(header.removeprefix("# node: "))
    production = cfg.pop("production", False)
    if not production:
        # upstream's fake proxier: mark "0x4000" and an iptables without --random-fully
        cfg.setdefault("short_masquerade_mark", True)
        cfg.setdefault("random_fully", False)
    return NodeConfig(**cfg)


def render_case(case: str) -> tuple[str, str]:
    expected = (GOLDEN / f"{case}.expected").read_text()
    node = node_config_from_header(expected)
    snapshot = load_files([str(GOLDEN / f"{case.split('.')[0]}.yaml")])
    state = ProxyState(node.family, node.node_name)
    state.replace_all(snapshot.services, snapshot.endpoint_slices, snapshot.nodes)
    state.take_changes()
    return render(state.svc_port_map, state.endpoints_map, node).text, expected


@pytest.mark.parametrize("case", CASES)
def test_rendering_matches_upstream(case: str) -> None:
    got, expected = render_case(case)
    assert sort_restore_text(got) == sort_restore_text(expected)


def test_every_fixture_has_an_expectation() -> None:
    fixtures = {p.stem for p in GOLDEN.glob("*.yaml")}
    assert fixtures == {c.split(".")[0] for c in CASES}
