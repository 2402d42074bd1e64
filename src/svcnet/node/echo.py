"""The built-in server a container without a command runs, so upstream example manifests work
unchanged: HTTP on each declared TCP containerPort (the reply names the pod, its IP, its node
and the client address it saw), and for anything that is not an HTTP request on a TCP port,
or any datagram on a UDP port, a plain echo. On SIGTERM it keeps serving for
SVCNET_ECHO_DRAIN_SECONDS (2 by default) before it exits.

Usage: python -m svcnet.node.echo [--tcp PORT]... [--udp PORT]...  (identity from POD_NAME,
POD_IP, NODE_NAME in the environment). Only the standard library, so it starts fast.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

REQUEST_LINE = re.compile(rb"^[A-Z]{3,10} \S+ HTTP/1\.[01]\r?\n$")


def identity(client: str) -> str:
    return (
        f"pod={os.environ.get('POD_NAME', '')} ip={os.environ.get('POD_IP', '')} "
        f"node={os.environ.get('NODE_NAME', '')} client={client}\n"
    )


async def handle_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername") or ("?", 0)
    client = f"{peer[0]}:{peer[1]}"
    try:
        first = await reader.readline()
        if REQUEST_LINE.match(first):
            while True:  # the headers; the body, if any, is not needed
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
            path = first.split(b" ")[1].decode("latin-1")
            body = identity(client).encode()
            if path.startswith("/status/"):  # /status/503 answers 503: handy for probe demos
                code = path.rsplit("/", 1)[-1]
                status = f"{code} Status" if code.isdigit() else "200 OK"
            else:
                status = "200 OK"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            return
        data = first
        while data:
            writer.write(data)
            await writer.drain()
            data = await reader.read(65536)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


def parse(argv: list[str]) -> tuple[list[int], list[int]]:
    tcp: list[int] = []
    udp: list[int] = []
    it = iter(argv)
    for arg in it:
        if arg in ("--tcp", "--udp"):
            (tcp if arg == "--tcp" else udp).append(int(next(it)))
        else:
            raise SystemExit(f"echo: unknown argument {arg!r}")
    return tcp, udp


async def main(argv: list[str]) -> None:
    tcp, udp = parse(argv)
    if not tcp and not udp:
        tcp = [80]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SVCNET_ECHO_HOST: the node agent sets it to the pod's address when pods are local processes
    # sharing one network stack (`svcnet node --local-pods`); in a pod namespace, every address.
    host = os.environ.get("SVCNET_ECHO_HOST") or "0.0.0.0"
    servers = [
        await asyncio.start_server(handle_tcp, host, p, reuse_address=True, backlog=1024) for p in tcp
    ]
    for p in udp:
        await loop.create_datagram_endpoint(UdpEcho, local_addr=(host, p))
    print(f"echo server: tcp {tcp} udp {udp}", flush=True)
    await stop.wait()
    # Keep serving for a moment after SIGTERM, as a well-behaved server (or a preStop sleep)
    # does: kube-proxies need a moment to drop this endpoint, and until they have, new
    # connections still arrive here.
    await asyncio.sleep(float(os.environ.get("SVCNET_ECHO_DRAIN_SECONDS", "2")))
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
