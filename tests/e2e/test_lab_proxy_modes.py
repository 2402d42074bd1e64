"""The lab with the other proxy modes (`svcnet up --proxy-mode nftables|userspace`): a pod
reaches a Service by name and the outside reaches its NodePort through every node."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from svcnet.lab.demo import Demo
from svcnet.lab.launcher import start_cluster

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("mode", ["nftables", "userspace"])
def test_service_by_name_and_nodeport(mode: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    for tool in ("ip", "nft", "iptables-restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    cluster = start_cluster(tmp_path / "data", extra=["--proxy-mode", mode])
    try:

        async def story() -> None:
            demo = Demo(cluster.lab_dir)
            try:
                assert (await demo.setup()).ok
                replies = demo.curl("frontend", "http://backend-svc/", 6)
                assert all(replies), replies
                assert {r.pod for r in replies if r} <= {
                    p["metadata"]["name"] for p in await demo.ready_pods("app=backend")
                }
                result = await demo.step_nodeport()
                assert result.ok, result.lines
            finally:
                await demo.close()

        asyncio.run(story())
    finally:
        assert cluster.stop() == 0
