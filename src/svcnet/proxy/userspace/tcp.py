"""TCP: one listener per service address, connections forwarded to a chosen endpoint.

The listening socket is driven by a reader callback that accepts in batches; beyond
`max_connections` open connections a new one is reset at once (SO_LINGER 0), so a flood
cannot exhaust file descriptors. Each connection tries endpoints in scheduler order until a
connect succeeds (refused or timed out: marked down, next endpoint, at most `connect_retries`
more); the client only notices if every try fails, and then as a reset.

Data moves with recv_into/send through one shared buffer: reads start small (64 KB) and, once
a flow is bulk, grow to what the destination's send buffer can take right now (up to 1 MB), so
data that cannot be written on at once stays small however slow the reader. With `splice`
on, bulk flows move with os.splice through a pipe instead (socket -> pipe -> socket, no copy
through Python). On loopback, large copies measured faster than splice and cheaper in total
CPU (docs/userspace.md), which is why splice is off by default. Each direction half-closes
independently (EOF is passed on with shutdown(SHUT_WR)); a connection with no traffic for
`idle_timeout` (or `half_close_timeout` once one side has finished) is closed.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass

from svcnet.proxy.userspace.balancer import Balancer, PortBackends, connect_failed, connect_ok
from svcnet.proxy.userspace.options import UserspaceOptions
from svcnet.proxy.userspace.schedulers import Backend, PickContext

log = logging.getLogger("svcnet.proxy.userspace")

HAVE_SPLICE = hasattr(os, "splice") and hasattr(os, "SPLICE_F_MOVE")
SPLICE_CHUNK = 1 << 20
COPY_CHUNK = 1 << 20  # the largest read (the shared buffer's size)
MIN_READ = 64 * 1024  # the first read of a flow, and every read after a short one
SPLICE_AFTER = 256 * 1024  # with splice on: a read this big that came back full marks a bulk flow
SIOCOUTQ = getattr(termios, "TIOCOUTQ", 0x5411)  # on a TCP socket: bytes in its send queue
_INT = struct.Struct("i")
_INT_ZERO = bytes(4)
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
ACCEPT_BATCH = 128
ACCEPT_PAUSE = 0.1  # seconds without accepting after accept() ran out of descriptors
ROUNDS_PER_EVENT = 8  # reads per readiness event before other connections get a turn
SPLICE_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if HAVE_SPLICE else 0
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


def reset_close(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    sock.close()


def _done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


# One read buffer for every connection of the (single-threaded) event loop: data that cannot be
# written on at once is copied out, so small connections allocate nothing per read.
_SCRATCH = bytearray(COPY_CHUNK)
_SCRATCH_VIEW = memoryview(_SCRATCH)
_idle_pipes: list[tuple[int, int]] = []
MAX_IDLE_PIPES = 256


def _take_pipe() -> tuple[int, int]:
    if _idle_pipes:
        return _idle_pipes.pop()
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.fcntl(wfd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size: keep the default size
    return rfd, wfd


def _give_pipe(pipe: tuple[int, int], empty: bool) -> None:
    if empty and len(_idle_pipes) < MAX_IDLE_PIPES:
        _idle_pipes.append(pipe)
    else:
        os.close(pipe[0])
        os.close(pipe[1])


class _Pump:
    """One direction of a connection, driven by reader/writer callbacks (no task, no future per
    chunk): read what is there, write it on; if the destination is full, stop reading the
    source and wait until the destination is writable again.

    Reads start in copy mode through the shared buffer; once a read of at least SPLICE_AFTER
    comes back full (a bulk transfer) and splice is allowed, the direction switches to os.splice
    through a pipe (taken from a small pool), so bulk data never passes through Python while
    short exchanges stay cheap."""

    def __init__(self, conn: TcpConnection, src: socket.socket, dst: socket.socket, inbound: bool,
                 use_splice: bool) -> None:
        self.conn = conn
        self.loop = conn.loop
        self.src, self.dst = src, dst
        self.sfd, self.dfd = src.fileno(), dst.fileno()
        self.inbound = inbound
        self.can_splice = use_splice
        self.reading = self.writing = self.done = False
        self.pipe: tuple[int, int] | None = None
        self.pending = 0  # splice: bytes in the pipe
        self.leftover: memoryview | None = None  # copy: bytes read but not yet written
        self.request = MIN_READ  # copy: the size of the next read
        self.short = False  # the last read returned less than it asked for

    def start(self) -> None:
        self.reading = True
        self.loop.add_reader(self.sfd, self._readable)

    def _account(self, moved: int) -> None:
        self.conn.last_activity = self.loop.time()
        if self.inbound:
            self.conn.backend.bytes_in += moved
        else:
            self.conn.backend.bytes_out += moved

    def _move(self) -> int | None:
        """Read and write on once: bytes read (0 at EOF; None if nothing is there yet). Leaves
        `pending`/`leftover` set when the destination could not take everything."""
        if self.pipe is not None:
            try:
                n = os.splice(self.sfd, self.pipe[1], SPLICE_CHUNK, flags=SPLICE_FLAGS)
            except BlockingIOError:
                return None
            self.short = n < SPLICE_CHUNK
            if n:
                self.pending = n
                self._flush_pipe()
            return n
        size = self.request
        try:
            n = self.src.recv_into(_SCRATCH_VIEW, size)
        except BlockingIOError:
            return None
        if n == 0:
            return 0
        sent = 0
        try:
            sent = self.dst.send(_SCRATCH_VIEW[:n])
        except BlockingIOError:
            pass
        if sent:
            self._account(sent)
        self.short = n < size
        if sent < n:
            self.leftover = memoryview(bytes(_SCRATCH_VIEW[sent:n]))
            self.request = MIN_READ
        elif self.short:
            self.request = MIN_READ  # interactive traffic: no extra system calls per read
        elif self.can_splice and size >= SPLICE_AFTER:
            try:
                self.pipe = _take_pipe()  # a bulk transfer: go zero-copy from here on
            except OSError:
                self.can_splice = False
        else:
            self.request = self._room()
        return n

    def _room(self) -> int:
        """How much the destination can take now (its send buffer less what is queued in it),
        between MIN_READ and COPY_CHUNK: a bulk flow reads no more than it can pass on."""
        try:
            queued = _INT.unpack(fcntl.ioctl(self.dfd, SIOCOUTQ, _INT_ZERO))[0]
            sndbuf = self.dst.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        except OSError:
            return MIN_READ
        return max(MIN_READ, min(COPY_CHUNK, sndbuf - queued))

    def _flush_pipe(self) -> None:
        moved = 0
        try:
            while self.pending:
                m = os.splice(self.pipe[0], self.dfd, self.pending, flags=SPLICE_FLAGS)
                self.pending -= m
                moved += m
        except BlockingIOError:
            pass
        finally:
            if moved:
                self._account(moved)

    def _flush(self) -> bool:
        """Write what is still pending; True when nothing is left."""
        if self.pending:
            self._flush_pipe()
            return not self.pending
        if self.leftover is not None:
            try:
                sent = self.dst.send(self.leftover)
            except BlockingIOError:
                return False
            self._account(sent)
            self.leftover = self.leftover[sent:] if sent < len(self.leftover) else None
        return self.leftover is None

    def _blocked(self) -> bool:
        return bool(self.pending) or self.leftover is not None

    def _readable(self) -> None:
        try:
            for _ in range(ROUNDS_PER_EVENT):
                n = self._move()
                if n is None:
                    return
                if n == 0:
                    self._eof()
                    return
                if self._blocked():
                    self.loop.remove_reader(self.sfd)
                    self.reading = False
                    self.loop.add_writer(self.dfd, self._writable)
                    self.writing = True
                    return
                if self.short:
                    # A short read emptied the socket (almost surely): skip the read that would
                    # only say EAGAIN; level-triggered readiness calls again if more came.
                    return
        except OSError as e:
            self._failed(e)

    def _writable(self) -> None:
        try:
            if self._flush():
                self.loop.remove_writer(self.dfd)
                self.writing = False
                self.loop.add_reader(self.sfd, self._readable)
                self.reading = True
        except OSError as e:
            self._failed(e)

    def _failed(self, e: OSError) -> None:
        if e.errno in (errno.EINVAL, errno.ENOSYS) and self.pipe is not None and not self.pending:
            _give_pipe(self.pipe, empty=False)  # these descriptors cannot splice: copy instead
            self.pipe = None
            self.can_splice = False
            return
        self.conn.abort(f"{'to' if self.inbound else 'from'} endpoint: {e.strerror or e}")

    def _eof(self) -> None:
        self.stop()
        self.done = True
        if not self.conn.finishing():
            try:
                self.dst.shutdown(socket.SHUT_WR)  # pass the EOF on; the other direction keeps flowing
            except OSError:
                pass
        # else both directions are done: the close that follows sends the FIN itself
        self.conn.direction_finished()

    def stop(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.sfd)
            self.reading = False
        if self.writing:
            self.loop.remove_writer(self.dfd)
            self.writing = False

    def release(self) -> None:
        self.stop()
        if self.pipe is not None:
            _give_pipe(self.pipe, empty=not self.pending)
            self.pipe = None


class TcpConnection:
    """A client connection joined to its endpoint; `run()` returns when both are closed."""

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
        self._timer: asyncio.TimerHandle | None = None
        self._closed: asyncio.Future | None = None
        self._pumps: list[_Pump] = []

    def finishing(self) -> bool:
        return all(p.done for p in self._pumps)

    def direction_finished(self) -> None:
        if all(p.done for p in self._pumps):
            self._close(reset=False)
        elif not self.half_closed:
            self.half_closed = True
            self.backend.active -= 1
            self.backend.inactive += 1
            self._arm_timer()

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
            self.abort("idle timeout")
        else:
            self._arm_timer()

    def abort(self, reason: str) -> None:
        """Reset both sides now: drain timeout, idle timeout, errors."""
        if not self.reason:
            self.reason = reason
        self._close(reset=True)

    def _close(self, reset: bool) -> None:
        if self._closed is None or self._closed.done():
            return
        for p in self._pumps:
            p.release()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        close = reset_close if reset else socket.socket.close
        close(self.client)
        close(self.upstream)
        self._closed.set_result(None)

    async def run(self) -> None:
        self.backend.active += 1
        self.backend.connections += 1
        self._closed = self.loop.create_future()
        use_splice = self.opts.splice and HAVE_SPLICE
        try:
            self._pumps = [_Pump(self, self.client, self.upstream, True, use_splice),
                           _Pump(self, self.upstream, self.client, False, use_splice)]
            for p in self._pumps:
                p.start()
            self._arm_timer()
            await self._closed
        except BaseException:
            self._close(reset=True)
            raise
        finally:
            if self.half_closed:
                self.backend.inactive -= 1
            else:
                self.backend.active -= 1


def _connect_timeout(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _connected_now(sock: socket.socket) -> bool:
    """Whether a connect in progress has already finished (on loopback and to local pods the
    handshake is usually done by the time connect returns): one poll instead of a trip through
    the event loop."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return bool(poller.poll(0))


class LocalResourceError(OSError):
    """This process cannot open a socket (EMFILE, ENFILE, ENOBUFS): not the endpoint's fault."""


async def connect_backend(loop: asyncio.AbstractEventLoop, b: Backend, timeout: float) -> socket.socket:
    """A non-blocking connect with a timeout, without a task or wait_for per connection."""
    family = socket.AF_INET6 if ":" in b.ip else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise LocalResourceError(e.errno, e.strerror) from e
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex((b.ip, b.port))
        if err in (errno.EINPROGRESS, errno.EAGAIN) and _connected_now(sock):
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        elif err in (errno.EINPROGRESS, errno.EAGAIN):
            fut = loop.create_future()
            fd = sock.fileno()
            loop.add_writer(fd, _done, fut)
            timer = loop.call_later(timeout, _connect_timeout, fut)
            try:
                await fut
            finally:
                loop.remove_writer(fd)
                timer.cancel()
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
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
        self.tasks: set[asyncio.Task] = set()  # one per open connection (and a strong reference)
        self.address = sock.getsockname()[:2]
        self._closed = False
        self._last_accept_warning = float("-inf")
        self.loop.add_reader(sock.fileno(), self._on_accept)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def open(self) -> int:
        return len(self.tasks)

    def close(self) -> None:
        """Stop accepting; connections already open keep flowing (they drain)."""
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _resume(self) -> None:
        if not self._closed:
            self.loop.add_reader(self.sock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                client, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE/ENFILE and friends: leave connections in the backlog and stop
                # accepting for a moment (the listening socket stays readable: retrying at
                # once would spin).
                now = self.loop.time()
                if now - self._last_accept_warning > 10:
                    self._last_accept_warning = now
                    log.warning("accept on %s:%d failed: %s; pausing accepts for %.1fs at a time",
                                *self.address, e.strerror or e, ACCEPT_PAUSE)
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(ACCEPT_PAUSE, self._resume)
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
                except LocalResourceError as e:
                    log.warning("%s: cannot open a socket: %s", fe.name, e.strerror)
                    break
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
