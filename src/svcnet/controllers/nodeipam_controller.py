"""The node IPAM controller: every Node without a pod CIDR gets the lowest free block of
--cluster-cidr (nodeipam.py), written as spec.podCIDR and spec.podCIDRs, as
kube-controller-manager's range allocator does. An exhausted range gives a CIDRNotAvailable
Event on the Node, as upstream."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.cache import object_key
from svcnet.client.informer import InformerSource
from svcnet.controllers.base import Controller
from svcnet.controllers.nodeipam import CIDRExhaustedError, next_free, node_cidrs

Obj = dict[str, Any]
COMPONENT = "cidrAllocator"


class NodeIpamController(Controller):
    name = "node-ipam"

    def __init__(self, client: ApiClient, source: InformerSource, cluster_cidr: str,
                 node_mask: int | None = None) -> None:
        super().__init__(client, workers=1)  # one worker: blocks are handed out in order
        self.cluster_cidr = cluster_cidr
        self.node_mask = node_mask
        self.nodes = source.store("nodes")
        self._written: dict[str, str] = {}  # node name -> block we wrote, until the cache shows it
        source.add_handler("nodes", self._enqueue, lambda _o, n: self._enqueue(n), self._deleted)

    def _enqueue(self, node: Obj) -> None:
        if not node_cidrs(node):
            self.queue.add(object_key(node))

    def _deleted(self, node: Obj) -> None:
        self._written.pop(object_key(node), None)

    async def sync(self, key: Hashable) -> None:
        assert isinstance(key, str)
        node = self.nodes.get(None, key)
        if node is None or node_cidrs(node):
            self._written.pop(key, None)
            return
        if key in self._written:
            return  # written; the cache has not caught up yet
        taken = [c for n in self.nodes.list() for c in node_cidrs(n)] + list(self._written.values())
        try:
            block = next_free(self.cluster_cidr, self.node_mask, taken)
        except CIDRExhaustedError as exc:
            await self.record_event(node, "Normal", "CIDRNotAvailable",
                                    f"Node {key} status is now: CIDRNotAvailable ({exc})", COMPONENT)
            return
        patch = {"spec": {"podCIDR": block, "podCIDRs": [block]}}
        try:
            await self.client.patch("nodes", key, patch, patch_type="merge")
        except ApiError as exc:
            if exc.code == 404:
                return
            raise
        self._written[key] = block
        self.log.info("assigned pod CIDR %s to node %s", block, key)
