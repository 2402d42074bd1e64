"""A TCP relay from a listening socket inside a network namespace to an address in the
machine's own namespace: how processes in the lab's namespaces (kube-proxy, DNS) reach the
API server on the host's loopback without any address or route being added to the host.

A socket keeps the namespace it was created in, so the lab creates the listener inside the
namespace (setns for a moment) and serves it from its own event loop; the upstream
connection is made from the host namespace. TLS passes through untouched."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from svcnet.node import netns


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Relay:
    def __init__(self, namespace: str, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.namespace = namespace
        self.listen = listen
        self.target = target
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        with netns.entered(self.namespace):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(self.listen)
        sock.listen(256)
        sock.setblocking(False)
        self.server = await asyncio.start_server(self._handle, sock=sock)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
