"""Golden tests: the nftables first-sync transaction equals what upstream kube-proxy writes.

Each tests/unit/golden/nftables/NAME[.VARIANT].expected names its node configuration in a
`# node: {...}` header and renders tests/unit/golden/iptables/NAME.yaml (the iptables goldens'
fixtures). `# include: FILE` pulls in upstream's baseRules. As upstream's tests do with
knftables' fake, both the expected text and the rendered transaction are applied to an
in-memory table and the resulting tables are compared. overall.expected is upstream's
TestOverallNFTablesRules expectation; the others were written from upstream's syncProxyRules.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from svcnet.proxy.apply.nft import FakeNft
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.nftables import render_full
from svcnet.proxy.objects import load_files
from svcnet.proxy.state import ProxyState

GOLDEN = Path(__file__).parent / "golden" / "nftables"
FIXTURES = Path(__file__).parent / "golden" / "iptables"
CASES = sorted(p.name.removesuffix(".expected") for p in GOLDEN.glob("*.expected"))


def load_expected(case: str) -> tuple[NodeConfig, str]:
    lines = (GOLDEN / f"{case}.expected").read_text().splitlines()
    assert lines[0].startswith("# node: "), "expected files start with a '# node: {...}' header"
    cfg = json.loads(lines[0].removeprefix("# node: "))
    if not cfg.pop("production", False):
        cfg.setdefault("short_masquerade_mark", True)  # upstream's fake proxier: mark "0x4000"
    out: list[str] = []
    for line in lines[1:]:
        if line.startswith("# include: "):
            out += (GOLDEN / line.removeprefix("# include: ").strip()).read_text().splitlines()
        else:
            out.append(line)
    return NodeConfig(**cfg), "\n".join(out) + "\n"


def rendered(case: str, node: NodeConfig) -> str:
    snapshot = load_files([str(FIXTURES / f"{case.split('.')[0]}.yaml")])
    state = ProxyState(node.family, node.node_name)
    state.replace_all(snapshot.services, snapshot.endpoint_slices, snapshot.nodes)
    state.take_changes()
    return render_full(state.svc_port_map, state.endpoints_map, node)


def table_after(text: str, family: str, strict: bool) -> str:
    fake = FakeNft(family, check_refs=strict)
    fake.run(text)
    return fake.dump()


@pytest.mark.parametrize("case", CASES)
def test_first_sync_matches_upstream(case: str) -> None:
    node, expected = load_expected(case)
    family = "ip6" if node.is_ipv6 else "ip"
    # strict: the rendered transaction must also be valid in order (nothing named before it exists)
    got = table_after(rendered(case, node), family, strict=True)
    assert got == table_after(expected, family, strict=False)


def test_every_fixture_has_an_nftables_expectation() -> None:
    fixtures = {p.stem for p in FIXTURES.glob("*.yaml")}
    assert fixtures == {c.split(".")[0] for c in CASES}
