"""One-shot rendering of a full sync from an object snapshot (`svcnet proxy render`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from svcnet.proxy import iptables
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.objects import Snapshot
from svcnet.proxy.state import ProxyState

MODES = ("iptables", "nftables", "ipvs")


def _iptables(svc_port_map, endpoints_map, node: NodeConfig) -> str:
    return iptables.render(svc_port_map, endpoints_map, node).text


def renderer(mode: str) -> Callable | None:
    """The full-sync renderer of a mode: (svc_port_map, endpoints_map, node) -> text, or None
    while the mode's backend is not in the tree (nftables and ipvs come with issue #7)."""
    if mode == "iptables":
        return _iptables
    try:
        module = importlib.import_module(f"svcnet.proxy.{mode}")
    except ImportError:
        return None
    return getattr(module, "render_full", None)


def implemented_modes() -> list[str]:
    return [m for m in MODES if renderer(m) is not None]


def state_from_snapshot(snapshot: Snapshot, node: NodeConfig) -> ProxyState:
    state = ProxyState(node.family, node.node_name)
    state.replace_all(snapshot.services, snapshot.endpoint_slices, snapshot.nodes)
    state.take_changes()
    if state.node_labels and not node.node_labels:
        node.node_labels = dict(state.node_labels)
    return state


def render_full(mode: str, snapshot: Snapshot, node: NodeConfig) -> str:
    render = renderer(mode)
    if render is None:
        raise NotImplementedError(f"proxy mode {mode!r} is not implemented yet (available: "
                                  f"{', '.join(implemented_modes())})")
    state = state_from_snapshot(snapshot, node)
    return render(state.svc_port_map, state.endpoints_map, node)
