"""The controller manager: leader election, then shared informers and every enabled
controller, all talking to the API server through the API (an ApiClient), whether they run
in `svcnet controllers` or inside `svcnet server`.

Only the leader runs controllers. When leadership is lost the informers and controllers are
stopped at once and the process competes again, so two managers never act together.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field

from svcnet.client.api import ApiClient
from svcnet.client.informer import InformerSource
from svcnet.controllers.base import Controller
from svcnet.controllers.endpoints.controller import EndpointsController
from svcnet.controllers.endpointslice.controller import EndpointSliceController
from svcnet.controllers.endpointslice.desired import CONTROLLER_NAME, LABEL_MANAGED_BY
from svcnet.controllers.lbcontroller import LoadBalancerController
from svcnet.controllers.lbipam import LBPools
from svcnet.controllers.leaderelection import LeaderElectionConfig, LeaderElector
from svcnet.controllers.nodeipam_controller import NodeIpamController

log = logging.getLogger("svcnet.controllers")

ALL_CONTROLLERS = ("endpointslice", "endpoints", "lb-ipam", "node-ipam")


def default_identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@dataclass
class ControllerOptions:
    controllers: tuple[str, ...] = ALL_CONTROLLERS
    lb_pools: tuple[str, ...] = ()
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int | None = None
    max_endpoints_per_slice: int = 100
    leader_elect: bool = True
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.controllers) - set(ALL_CONTROLLERS))
        if unknown:
            raise ValueError(f"unknown controllers {unknown}; known: {', '.join(ALL_CONTROLLERS)}")
        if not 1 <= self.max_endpoints_per_slice <= 1000:
            raise ValueError("--max-endpoints-per-slice must be between 1 and 1000")
        LBPools.parse(self.lb_pools)  # a bad CIDR fails here, before anything starts
        if not self.leader_election.identity:
            self.leader_election.identity = default_identity()


class ControllerManager:
    def __init__(self, client: ApiClient, options: ControllerOptions) -> None:
        self.client = client
        self.options = options
        self.elector = LeaderElector(client, options.leader_election)
        self.controllers: list[Controller] = []
        self.source: InformerSource | None = None
        self.leading = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Compete for leadership and run the controllers while leading, until ``stop``."""
        while not stop.is_set():
            if self.options.leader_elect and not await self.elector.acquire(stop):
                return
            await self._start_controllers()
            self.leading.set()
            try:
                if self.options.leader_elect:
                    await self.elector.hold(stop)
                else:
                    await stop.wait()
            finally:
                self.leading.clear()
                await self._stop_controllers()

    def _build(self, source: InformerSource) -> list[Controller]:
        wanted = set(self.options.controllers)
        built: list[Controller] = []
        if "endpointslice" in wanted:
            built.append(EndpointSliceController(self.client, source, self.options.max_endpoints_per_slice))
        if "endpoints" in wanted:
            built.append(EndpointsController(self.client, source))
        if "lb-ipam" in wanted and self.options.lb_pools:
            built.append(LoadBalancerController(self.client, source, LBPools.parse(self.options.lb_pools)))
        if "node-ipam" in wanted and self.options.cluster_cidr:
            built.append(NodeIpamController(self.client, source, self.options.cluster_cidr,
                                            self.options.node_cidr_mask_size))
        return built

    async def _start_controllers(self) -> None:
        source = InformerSource(self.client)
        if "endpointslice" in self.options.controllers:
            # Only the slices this controller manages (user slices are never its business).
            source.watch("endpointslices", label_selector=f"{LABEL_MANAGED_BY}={CONTROLLER_NAME}")
        self.controllers = self._build(source)
        self.source = source
        await source.start()
        await source.wait_synced()
        for controller in self.controllers:
            controller.start()
        log.info("controllers running: %s", ", ".join(c.name for c in self.controllers) or "none")

    async def _stop_controllers(self) -> None:
        for controller in self.controllers:
            await controller.stop()
        self.controllers = []
        if self.source is not None:
            await self.source.stop()
            self.source = None
