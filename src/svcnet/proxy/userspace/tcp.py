"""TCP: one listener per service address, connections forwarded to a chosen endpoint.

The listening socket is driven by a reader callback that accepts in batches; beyond
`max_connections` open connections a new one is reset at once (SO_LINGER 0), so a flood
cannot exhaust file descriptors. Each connection tries endpoints in scheduler order until a
connect succeeds (refused or timed out: marked down, next endpoint, at most `connect_retries`
more); the client only notices if every try fails, and then as a reset.

Data moves with os.splice through a pipe (socket -> pipe -> socket, no copy through Python)
where the platform has it, and with recv_into/send otherwise. Each direction half-closes
independently (EOF is passed on with shutdown(SHUT_WR)); a connection with no traffic for
`idle_timeout` (or `half_close_timeout` once one side has finished) is closed.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from svcnet.proxy.userspace.balancer import Balancer, PortBackends, connect_failed, connect_ok
from svcnet.proxy.userspace.options import UserspaceOptions
from svcnet.proxy.userspace.schedulers import Backend, PickContext

log = logging.getLogger("svcnet.proxy.userspace")

HAVE_SPLICE = hasattr(os, "splice") and hasattr(os, "SPLICE_F_MOVE")
SPLICE_CHUNK = 1 << 20
COPY_CHUNK = 256 * 1024
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
ACCEPT_BATCH = 128
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass
class Frontend:
    """What a listener forwards to: one scope (internal or external) of a service port."""

    name: str  # "ns/svc:port"
    protocol: str
    balancer: Balancer
    pool: PortBackends
    dest_ip: str = ""
    dest_port: int = 0
    rejected_limit: int = 0
    rejected_no_endpoint: int = 0
    listeners: list = field(default_factory=list)


def reset_close(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    sock.close()


def _done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class TcpConnection:
    def __init__(self, loop: asyncio.AbstractEventLoop, client: socket.socket, upstream: socket.socket,
                 backend: Backend, opts: UserspaceOptions) -> None:
        self.loop = loop
        self.client = client
        self.upstream = upstream
        self.backend = backend
        self.opts = opts
        self.last_activity = loop.time()
        self.half_closed = False
        self.reason = ""
        self._tasks: list[asyncio.Task] = []
        self._timer: asyncio.TimerHandle | None = None
        self._reset = False

    async def _wait(self, fd: int, write: bool) -> None:
        fut = self.loop.create_future()
        if write:
            self.loop.add_writer(fd, _done, fut)
        else:
            self.loop.add_reader(fd, _done, fut)
        try:
            await fut
        finally:
            if write:
                self.loop.remove_writer(fd)
            else:
                self.loop.remove_reader(fd)

    def _count(self, direction: str, n: int) -> None:
        self.last_activity = self.loop.time()
        if direction == "in":
            self.backend.bytes_in += n
        else:
            self.backend.bytes_out += n

    async def _pump_splice(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            try:
                fcntl.fcntl(wfd, F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # above /proc/sys/fs/pipe-max-size: keep the default size
            sfd, dfd = src.fileno(), dst.fileno()
            flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
            pending = 0
            while True:
                if pending == 0:
                    try:
                        pending = os.splice(sfd, wfd, SPLICE_CHUNK, flags=flags)
                    except BlockingIOError:
                        await self._wait(sfd, False)
                        continue
                    if pending == 0:
                        return
                try:
                    moved = os.splice(rfd, dfd, pending, flags=flags)
                except BlockingIOError:
                    await self._wait(dfd, True)
                    continue
                pending -= moved
                self._count(direction, moved)
        finally:
            os.close(rfd)
            os.close(wfd)

    async def _pump_copy(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        buf = bytearray(COPY_CHUNK)
        view = memoryview(buf)
        while True:
            try:
                n = src.recv_into(buf)
            except BlockingIOError:
                await self._wait(src.fileno(), False)
                continue
            if n == 0:
                return
            sent = 0
            while sent < n:
                try:
                    sent += dst.send(view[sent:n])
                except BlockingIOError:
                    await self._wait(dst.fileno(), True)
            self._count(direction, n)

    async def _direction(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            if self.opts.splice and HAVE_SPLICE:
                try:
                    await self._pump_splice(src, dst, direction)
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOSYS):
                        raise
                    await self._pump_copy(src, dst, direction)  # splice unsupported here
            else:
                await self._pump_copy(src, dst, direction)
            # EOF from src: pass it on, keep the other direction flowing.
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if not self.half_closed:
                self.half_closed = True
                self.backend.active -= 1
                self.backend.inactive += 1
                self._arm_timer()
        except asyncio.CancelledError:
            raise
        except OSError as e:
            self.abort(f"{direction}: {e.strerror or e}", reset=True)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        limit = self.opts.half_close_timeout if self.half_closed else self.opts.idle_timeout
        if limit > 0:
            delay = max(self.last_activity + limit - self.loop.time(), 0.0)
            self._timer = self.loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        limit = self.opts.half_close_timeout if self.half_closed else self.opts.idle_timeout
        if self.loop.time() - self.last_activity >= limit:
            self.abort("idle timeout", reset=True)
        else:
            self._arm_timer()

    def abort(self, reason: str, reset: bool = True) -> None:
        if not self.reason:
            self.reason = reason
        self._reset = self._reset or reset
        for t in self._tasks:
            t.cancel()

    async def run(self) -> None:
        self.backend.active += 1
        self.backend.connections += 1
        self._arm_timer()
        self._tasks = [self.loop.create_task(self._direction(self.client, self.upstream, "in")),
                       self.loop.create_task(self._direction(self.upstream, self.client, "out"))]
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if self.half_closed:
                self.backend.inactive -= 1
            else:
                self.backend.active -= 1
            close = reset_close if self._reset else socket.socket.close
            close(self.client)
            close(self.upstream)


async def connect_backend(loop: asyncio.AbstractEventLoop, b: Backend, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in b.ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.wait_for(loop.sock_connect(sock, (b.ip, b.port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


class TcpListener:
    def __init__(self, sock: socket.socket, frontend: Frontend, opts: UserspaceOptions,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.sock = sock
        self.frontend = frontend
        self.opts = opts
        self.loop = asyncio.get_running_loop()
        self.open = 0
        self.tasks: set[asyncio.Task] = set()
        self.address = sock.getsockname()[:2]
        self._closed = False
        self.loop.add_reader(sock.fileno(), self._on_accept)

    @property
    def port(self) -> int:
        return self.address[1]

    def close(self) -> None:
        """Stop accepting; connections already open keep flowing (they drain)."""
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _on_accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                client, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE/ENFILE and friends: leave the connection in the backlog for later.
                log.warning("accept on %s:%d failed: %s", *self.address, e)
                return
            if self.open >= self.opts.max_connections:
                self.frontend.rejected_limit += 1
                reset_close(client)
                continue
            client.setblocking(False)
            try:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            self.open += 1
            task = self.loop.create_task(self._handle(client, addr))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _handle(self, client: socket.socket, addr: tuple) -> None:
        fe = self.frontend
        try:
            ctx = PickContext(addr[0], addr[1], fe.dest_ip or self.address[0], fe.dest_port or self.port)
            tried: list[Backend] = []
            upstream = backend = None
            for _ in range(self.opts.connect_retries + 1):
                backend = fe.balancer.choose(ctx, tried)
                if backend is None:
                    break
                tried.append(backend)
                try:
                    upstream = await connect_backend(self.loop, backend, self.opts.connect_timeout)
                except (OSError, TimeoutError) as e:
                    backoff = connect_failed(backend)
                    log.info("%s: connect to %s failed (%s): marked down for %.0fs, trying another",
                             fe.name, backend.key, getattr(e, "strerror", None) or "timeout", backoff)
                    continue
                connect_ok(backend)
                break
            if upstream is None or backend is None:
                fe.rejected_no_endpoint += 1
                reset_close(client)
                return
            conn = TcpConnection(self.loop, client, upstream, backend, self.opts)
            fe.pool.add_conn(backend, conn)
            try:
                await conn.run()
            finally:
                fe.pool.remove_conn(backend, conn)
        except asyncio.CancelledError:
            client.close()
            raise
        except Exception:
            log.exception("%s: connection from %s failed", fe.name, addr)
            client.close()
        finally:
            self.open -= 1
