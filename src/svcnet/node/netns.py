"""Network namespaces through iproute2 and setns(2).

The agent stays in the machine's namespaces (so the pod namespaces it names are visible to
`ip netns exec` and it reaches the API server on loopback) and enters a namespace only for
the moment it needs to: to create a socket there (a socket keeps the namespace it was made
in) or through `ip -n NAME` / `ip netns exec NAME`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the block with this thread in network namespace NAME (None: stay where we are).

    Only sockets created inside the block live in NAME; keep blocks short and synchronous."""
    if not name:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def run(
    *args: str, check: bool = True, timeout: float = 20, input: str | None = None
) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input)
    except FileNotFoundError as e:
        raise NetnsError(f"{args[0]} is not installed") from e
    if check and res.returncode != 0:
        raise NetnsError(f"{' '.join(args)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def ip(netns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`ip [-n NETNS] ARGS...`"""
    return run("ip", *(("-n", netns) if netns else ()), *args, check=check)


def ip_batch(netns: str | None, lines: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Several `ip` commands in one process (`ip -batch -`): one fork instead of many."""
    return run(
        "ip", *(("-n", netns) if netns else ()), "-batch", "-", check=check, input="\n".join(lines) + "\n"
    )


def exists(name: str) -> bool:
    return bool(name) and "/" not in name and (NETNS_DIR / name).exists()


def add(name: str) -> None:
    if not exists(name):
        run("ip", "netns", "add", name)
    ip(name, "link", "set", "lo", "up")


def delete(name: str) -> None:
    if exists(name):
        run("ip", "netns", "del", name, check=False)


def list_names(prefix: str = "") -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def sysctl(netns: str | None, key: str, value: str) -> bool:
    """Write a sysctl inside NETNS; False when the kernel lacks it (say br_netfilter)."""
    path = Path("/proc/sys") / key.replace(".", "/")
    cmd = ["sh", "-c", f"test -e {path} && echo {value} > {path}"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return run(*cmd, check=False).returncode == 0


def pids_in(name: str) -> list[int]:
    res = run("ip", "netns", "pids", name, check=False)
    return [int(x) for x in res.stdout.split() if x.isdigit()]


def kill_processes(name: str) -> None:
    """SIGKILL every process in namespace NAME (before deleting it: a namespace with processes
    left in it lives on, unnamed, with its links)."""
    for pid in pids_in(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
