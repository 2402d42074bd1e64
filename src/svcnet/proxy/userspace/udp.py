"""UDP: one socket per service address; a flow per client address.

The first datagram from a client address picks an endpoint and opens a connected socket to
it; later datagrams of that client go the same way, and replies come back through the
service socket, so the client sees them from the address it sent to. A flow with no traffic
for `udp_idle_timeout` is closed; at most `max_connections` flows per listener exist at once
(datagrams that would open more are dropped). A connected socket that reports the endpoint
unreachable (ICMP port unreachable) marks it down and closes the flow; the next datagram of
that client opens a flow to another endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from svcnet.proxy.userspace.balancer import connect_failed
from svcnet.proxy.userspace.options import UserspaceOptions
from svcnet.proxy.userspace.schedulers import Backend, PickContext
from svcnet.proxy.userspace.tcp import Frontend

log = logging.getLogger("svcnet.proxy.userspace")

MAX_DATAGRAM = 65535
READ_BATCH = 64


class UdpFlow:
    def __init__(self, listener: UdpListener, client_addr: tuple, backend: Backend,
                 sock: socket.socket) -> None:
        self.listener = listener
        self.client_addr = client_addr
        self.backend = backend
        self.sock = sock
        self.loop = listener.loop
        self.last_activity = self.loop.time()
        self.closed = False
        backend.active += 1
        backend.connections += 1
        self.loop.add_reader(sock.fileno(), self._on_reply)
        self._timer = self.loop.call_later(listener.opts.udp_idle_timeout, self._check_idle)

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return  # dropped, as the kernel would on a full buffer
        except OSError as e:
            self._unreachable(e)
            return
        self.last_activity = self.loop.time()
        self.backend.bytes_in += len(data)

    def _on_reply(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._unreachable(e)
                return
            self.last_activity = self.loop.time()
            self.backend.bytes_out += len(data)
            try:
                self.listener.sock.sendto(data, self.client_addr)
            except OSError:
                pass

    def _unreachable(self, e: OSError) -> None:
        connect_failed(self.backend)
        log.info("%s: UDP endpoint %s unreachable (%s): marked down", self.listener.frontend.name,
                 self.backend.key, e.strerror or e)
        self.abort("unreachable")

    def _check_idle(self) -> None:
        idle = self.loop.time() - self.last_activity
        limit = self.listener.opts.udp_idle_timeout
        if idle >= limit:
            self.abort("idle timeout")
        else:
            self._timer = self.loop.call_later(limit - idle, self._check_idle)

    def abort(self, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self._timer.cancel()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.backend.active -= 1
        self.listener.flow_closed(self)


class UdpListener:
    def __init__(self, sock: socket.socket, frontend: Frontend, opts: UserspaceOptions) -> None:
        self.sock = sock
        self.frontend = frontend
        self.opts = opts
        self.loop = asyncio.get_running_loop()
        self.flows: dict[tuple, UdpFlow] = {}
        self.address = sock.getsockname()[:2]
        self._closed = False
        self.loop.add_reader(sock.fileno(), self._on_datagram)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def open(self) -> int:
        return len(self.flows)

    def close(self) -> None:
        """Stop serving: flows end with the socket their replies are sent from."""
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.sock.fileno())
        for flow in list(self.flows.values()):
            flow.abort("listener closed")
        self.sock.close()

    def flow_closed(self, flow: UdpFlow) -> None:
        if self.flows.get(flow.client_addr) is flow:
            del self.flows[flow.client_addr]
        self.frontend.pool.remove_conn(flow.backend, flow)

    def _on_datagram(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. ECONNREFUSED queued from an earlier ICMP error
            flow = self.flows.get(addr)
            if flow is None:
                flow = self._new_flow(addr)
                if flow is None:
                    continue
            flow.send(data)

    def _new_flow(self, addr: tuple) -> UdpFlow | None:
        fe = self.frontend
        if len(self.flows) >= self.opts.max_connections:
            fe.rejected_limit += 1
            return None
        ctx = PickContext(addr[0], addr[1], fe.dest_ip or self.address[0], fe.dest_port or self.port)
        backend = fe.balancer.choose(ctx)
        if backend is None:
            fe.rejected_no_endpoint += 1
            return None
        family = socket.AF_INET6 if ":" in backend.ip else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as e:  # EMFILE, ENFILE, ENOBUFS: this process's limit, not the endpoint's fault
            log.warning("%s: cannot open a socket: %s", fe.name, e.strerror)
            fe.rejected_no_endpoint += 1  # as TCP counts a connection it cannot open a socket for
            return None
        try:
            sock.setblocking(False)
            sock.connect((backend.ip, backend.port))
        except OSError as e:
            sock.close()
            connect_failed(backend)
            log.info("%s: UDP endpoint %s: %s", fe.name, backend.key, e)
            return None
        flow = UdpFlow(self, addr, backend, sock)
        self.flows[addr] = flow
        fe.pool.add_conn(backend, flow)
        return flow
