"""Container probes (httpGet, tcpSocket, exec) as kubelet runs them: from the node's network
namespace to the pod's IP, with initialDelaySeconds, periodSeconds, timeoutSeconds and the
success/failure thresholds deciding when the result flips (pkg/kubelet/prober)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from svcnet.node import netns

Obj = dict[str, Any]


@dataclass
class ProbeResult:
    ok: bool
    message: str = ""


def resolve_port(port: Any, container: Obj) -> int | None:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p.get("containerPort"))
    return None


async def _connect(node_netns: str | None, host: str, port: int, timeout: float) -> socket.socket:
    with netns.entered(node_netns):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
    except OSError as e:
        sock.close()
        # Go's net.Dial wording, which kubelet's probe messages carry.
        refused = isinstance(e, ConnectionRefusedError)
        what = "connection refused" if refused else (e.strerror or str(e)).lower()
        raise OSError(e.errno, f"dial tcp {host}:{port}: connect: {what}") from None
    except BaseException:
        sock.close()
        raise
    return sock


async def http_get(
    node_netns: str | None, host: str, port: int, path: str, scheme: str, headers: list[Obj], timeout: float
) -> ProbeResult:
    sock = await _connect(node_netns, host, port, timeout)
    ctx = None
    if scheme.upper() == "HTTPS":  # kubelet does not verify the certificate
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(sock=sock, ssl=ctx, server_hostname=host if ctx else None), timeout
    )
    try:
        head = {
            "Host": f"{host}:{port}",
            "User-Agent": "kube-probe/1.32",
            "Accept": "*/*",
            "Connection": "close",
        }
        for h in headers:
            head[h.get("name", "")] = h.get("value", "")
        req = f"GET {path or '/'} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
        writer.write(req.encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if 200 <= code < 400:
            return ProbeResult(True)
        return ProbeResult(False, f"HTTP probe failed with statuscode: {code}")
    finally:
        writer.close()


async def tcp_socket(node_netns: str | None, host: str, port: int, timeout: float) -> ProbeResult:
    sock = await _connect(node_netns, host, port, timeout)
    sock.close()
    return ProbeResult(True)


async def exec_probe(
    pod_netns: str | None, command: list[str], env: dict[str, str], timeout: float
) -> ProbeResult:
    prefix = ["ip", "netns", "exec", pod_netns] if pod_netns else []
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        *command,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ProbeResult(False, f"command timed out after {timeout:g}s")
    if proc.returncode == 0:
        return ProbeResult(True)
    return ProbeResult(False, out.decode(errors="replace").strip()[:1024])


async def run_once(
    probe: Obj,
    container: Obj,
    pod_ip: str,
    node_netns: str | None,
    pod_netns: str | None,
    env: dict[str, str],
) -> ProbeResult:
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            h = probe["httpGet"] or {}
            port = resolve_port(h.get("port"), container)
            if port is None:
                return ProbeResult(False, f"unknown port {h.get('port')!r}")
            return await http_get(
                node_netns,
                h.get("host") or pod_ip,
                port,
                h.get("path") or "/",
                h.get("scheme") or "HTTP",
                h.get("httpHeaders") or [],
                timeout,
            )
        if "tcpSocket" in probe:
            t = probe["tcpSocket"] or {}
            port = resolve_port(t.get("port"), container)
            if port is None:
                return ProbeResult(False, f"unknown port {t.get('port')!r}")
            return await tcp_socket(node_netns, t.get("host") or pod_ip, port, timeout)
        if "exec" in probe:
            return await exec_probe(pod_netns, list((probe["exec"] or {}).get("command") or []), env, timeout)
        return ProbeResult(True, "probe type not supported by svcnet; treated as success")
    except TimeoutError:
        return ProbeResult(False, f"timeout after {timeout:g}s")
    except OSError as e:
        return ProbeResult(False, str(e.strerror or e))


class Prober:
    """One probe of one container: calls ``on_change(ok, message)`` when its result flips
    (after successThreshold successes or failureThreshold failures in a row), and
    ``on_failure(message)`` after every failed attempt."""

    def __init__(
        self,
        kind: str,
        probe: Obj,
        run: Callable[[], Awaitable[ProbeResult]],
        on_change: Callable[[bool, str], Awaitable[None]],
        initial: bool,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.kind = kind
        self.probe = probe
        self.run = run
        self.on_change = on_change
        self.on_failure = on_failure
        self.result = initial
        self.successes = 0
        self.failures = 0

    async def loop(self) -> None:
        delay = float(self.probe.get("initialDelaySeconds") or 0)
        period = max(1.0, float(self.probe.get("periodSeconds") or 10))
        success_threshold = int(self.probe.get("successThreshold") or 1)
        failure_threshold = int(self.probe.get("failureThreshold") or 3)
        if delay:
            await asyncio.sleep(delay)
        while True:
            res = await self.run()
            if res.ok:
                self.successes += 1
                self.failures = 0
                if not self.result and self.successes >= success_threshold:
                    self.result = True
                    await self.on_change(True, "")
            else:
                self.failures += 1
                self.successes = 0
                if self.on_failure is not None:
                    self.on_failure(res.message)
                if self.failures >= failure_threshold and (self.result or self.failures == failure_threshold):
                    self.result = False
                    await self.on_change(False, res.message)
            # Until it succeeds a readiness probe polls quickly, so a new pod
            # turns Ready as soon as it serves instead of a whole period later (kubelet runs
            # the first probe at once too).
            fast = self.kind == "readiness" and not self.result
            wait = min(period, 0.1 + 0.05 * min(self.failures, 18)) if fast else period
            await asyncio.sleep(wait)
