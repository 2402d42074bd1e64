"""Container processes: start one (through the shim, inside the pod's network and UTS
namespaces, in a session of its own), wait for it (as its parent, or by polling when it was
adopted after an agent restart), and stop it (SIGTERM, the grace period, SIGKILL).

Also the few process helpers the lab and `svcnet up` share with the agent: the environment of a
`python -m svcnet...` child, telling a recorded PID from a reused one, stopping a child's group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SRC_DIR = str(Path(__file__).resolve().parents[2])


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """BASE (default: our own environment) with this source tree first on PYTHONPATH, so a
    `python -m svcnet...` child imports the same svcnet as its parent."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = SRC_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def start_svcnet(args: list[str], log_path: Path, netns_name: str | None = None) -> subprocess.Popen:
    """`python -m svcnet ARGS` (under `ip netns exec NETNS_NAME` if given) in a session of its
    own, so that stop_group stops it with everything it started; output appended to LOG_PATH."""
    cmd = [sys.executable, "-m", "svcnet", *args]
    if netns_name:
        cmd = ["ip", "netns", "exec", netns_name, *cmd]
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            start_new_session=True,
        )


def stop_group(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM to the process group of PROC (a child started in a session of its own), up to
    TIMEOUT seconds for it to exit, then SIGKILL to the group."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): with the
    PID it identifies a process across an agent restart even if the PID was reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def alive(pid: int, ticks: int | None) -> bool:
    now = start_ticks(pid)
    if now is None or (ticks is not None and now != ticks):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def find_executable(argv0: str, env: dict[str, str], cwd: str) -> str | None:
    if "/" in argv0:
        path = argv0 if os.path.isabs(argv0) else os.path.join(cwd, argv0)
        return path if os.access(path, os.X_OK) and not os.path.isdir(path) else None
    return shutil.which(argv0, path=env.get("PATH") or os.defpath)


@dataclass
class Exit:
    code: int
    signal: int
    message: str
    finished_at: float


@dataclass
class Process:
    """A running container: the shim's PID (also its process group and session)."""

    pid: int
    ticks: int | None
    status_file: Path
    child: asyncio.subprocess.Process | None = None  # None when adopted

    async def wait(self, poll: float = 0.25) -> Exit:
        if self.child is not None:
            rc = await self.child.wait()
        else:
            while alive(self.pid, self.ticks):
                await asyncio.sleep(poll)
            rc = None
        return self._exit(rc)

    def _exit(self, rc: int | None) -> Exit:
        try:
            data = json.loads(self.status_file.read_text())
            return Exit(
                int(data["exitCode"]),
                int(data.get("signal") or 0),
                str(data.get("message") or ""),
                float(data.get("finishedAt") or time.time()),
            )
        except (OSError, ValueError, KeyError):
            pass
        if rc is None:
            # Adopted and gone without a status file: the shim itself was killed.
            return Exit(137, signal.SIGKILL, "", time.time())
        if rc < 0:
            return Exit(128 - rc, -rc, "", time.time())
        return Exit(rc, 0, "", time.time())

    def signal(self, sig: int, group: bool = False) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)

    async def stop(self, grace: float) -> Exit:
        """SIGTERM, up to GRACE seconds, then SIGKILL to the whole process group."""
        waiter = asyncio.ensure_future(self.wait(poll=0.05))
        self.signal(signal.SIGTERM)
        try:
            done = await asyncio.wait_for(asyncio.shield(waiter), max(grace, 0.0)) if grace > 0 else None
        except TimeoutError:
            done = None
        if done is None:
            self.signal(signal.SIGKILL, group=True)
            done = await waiter
        # Whatever the container left behind in its group goes too.
        self.signal(signal.SIGKILL, group=True)
        return done


async def spawn(
    pod_netns: str | None,
    hostname: str | None,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    status_file: Path,
    log_file: Path,
) -> Process:
    status_file.unlink(missing_ok=True)
    shim_env = child_env(env)
    # The pod's network namespace and a UTS namespace of its own (its hostname); a
    # hostNetwork pod (hostname None) shares the node's network namespace and hostname.
    cmd = [sys.executable, "-m", "svcnet.node.shim"]
    if hostname is not None:
        cmd = ["unshare", "--uts", *cmd, "--hostname", hostname]
    if pod_netns:
        cmd = ["ip", "netns", "exec", pod_netns, *cmd]
    cmd += [str(status_file), "--", *argv]
    with open(log_file, "ab") as log:
        child = await asyncio.create_subprocess_exec(
            *cmd,
            env=shim_env,
            cwd=cwd if os.path.isdir(cwd) else "/",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return Process(child.pid, start_ticks(child.pid), status_file, child)
