"""Runs the scheduler and the workload controllers against an API server (what
`svcnet workloads` and `svcnet up` start)."""

from __future__ import annotations

import asyncio
import logging

from svcnet.client.api import ApiClient
from svcnet.client.informer import InformerSource
from svcnet.controllers.scheduler import Scheduler
from svcnet.controllers.workloads.deployment import DeploymentController
from svcnet.controllers.workloads.statefulset import StatefulSetController

log = logging.getLogger(__name__)


async def run_workloads(kubeconfig: str | None, stop: asyncio.Event, scheduler: bool = True) -> None:
    client = ApiClient.from_kubeconfig(kubeconfig)
    source = InformerSource(client, min_watch_timeout=60, backoff_cap=2.0)
    controllers = [DeploymentController(client, source), StatefulSetController(client, source)]
    sched = Scheduler(client, source) if scheduler else None
    await source.start()
    await source.wait_synced()
    log.info("workload controllers running%s", " with the scheduler" if sched else "")
    tasks = [asyncio.ensure_future(c.run(stop)) for c in controllers]
    if sched is not None:
        tasks.append(asyncio.ensure_future(sched.run(stop)))
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await source.stop()
        await client.close()
