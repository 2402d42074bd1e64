"""One-shot rendering of a full sync from an object snapshot (`svcnet proxy render`)."""

from __future__ import annotations

from svcnet.proxy import iptables
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.objects import Snapshot
from svcnet.proxy.state import ProxyState

MODES = ("iptables", "nftables", "ipvs")
IMPLEMENTED_MODES = ("iptables",)


def state_from_snapshot(snapshot: Snapshot, node: NodeConfig) -> ProxyState:
    state = ProxyState(node.family, node.node_name)
    state.replace_all(snapshot.services, snapshot.endpoint_slices, snapshot.nodes)
    state.take_changes()
    if state.node_labels and not node.node_labels:
        node.node_labels = dict(state.node_labels)
    return state


def render_full(mode: str, snapshot: Snapshot, node: NodeConfig) -> str:
    if mode not in IMPLEMENTED_MODES:
        raise NotImplementedError(f"proxy mode {mode!r} is not implemented yet (available: "
                                  f"{', '.join(IMPLEMENTED_MODES)})")
    state = state_from_snapshot(snapshot, node)
    return iptables.render(state.svc_port_map, state.endpoints_map, node).text
