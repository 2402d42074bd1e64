"""Reading the proxy's objects (Services, EndpointSlices, Nodes) from an ObjectSource."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from svcnet.client.filesource import FileSource
from svcnet.client.source import ObjectSource


@dataclass
class Snapshot:
    services: list[dict]
    endpoint_slices: list[dict]
    nodes: list[dict]


def snapshot_of(source: ObjectSource) -> Snapshot:
    return Snapshot(services=source.store("services").list(),
                    endpoint_slices=source.store("endpointslices").list(),
                    nodes=source.store("nodes").list())


async def load_files_async(paths: Sequence[str]) -> Snapshot:
    source = FileSource(paths)
    await source.start()
    try:
        return snapshot_of(source)
    finally:
        await source.stop()


def load_files(paths: Sequence[str]) -> Snapshot:
    """Objects of `-f` files with the API server's defaults applied (ObjectsFileError on bad input)."""
    return asyncio.run(load_files_async(paths))
