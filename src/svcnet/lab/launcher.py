"""Start and stop a whole `svcnet up` cluster as a child process (for e2e tests and
bench/e2e.py), the way a user runs it: on a loopback port of its own, with a data directory
of its own; stopped with SIGINT (Ctrl-C) so its own cleanup runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from svcnet.node.runtime import child_env

SRC = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    data_dir: Path
    proc: subprocess.Popen
    log_path: Path

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    @property
    def lab_dir(self) -> Path:
        return self.data_dir / "lab"

    def state(self) -> dict:
        return json.loads((self.lab_dir / "lab.json").read_text())

    @property
    def prefix(self) -> str:
        return self.state()["prefix"]

    def netns(self, target: str, namespace: str = "default") -> str:
        from svcnet.lab.lab import target_netns

        ns = target_netns(self.state(), target, namespace)
        if ns is None:
            raise LookupError(f"no lab namespace for {target!r}")
        return ns

    def exec(
        self, target: str, *cmd: str, timeout: float = 30, namespace: str = "default"
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns(target, namespace), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        """kubectl ARGS against this cluster (INPUT on its stdin, for `apply -f -`)."""
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        return subprocess.run(
            ["kubectl", *args], input=input, capture_output=True, text=True, timeout=timeout, env=env
        )

    def child_pid(self, name: str) -> int:
        for c in self.state()["children"]:
            if c["name"] == name:
                return int(c["pid"])
        raise LookupError(name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 40) -> int:
        """Ctrl-C, then wait for the cleanup; SIGKILL only if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_cluster(
    data_dir: Path, nodes: int = 2, extra: list[str] | None = None, timeout: float = 60
) -> Cluster:
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "up.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "svcnet",
                "up",
                "--data-dir",
                str(data_dir),
                "--listen",
                "127.0.0.1:0",
                "--nodes",
                str(nodes),
                *(extra or []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        )
    cluster = Cluster(data_dir, proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "svcnet is up" in cluster.log():
            return cluster
        if proc.poll() is not None:
            raise RuntimeError(f"svcnet up exited with {proc.returncode}:\n{cluster.log()[-3000:]}")
        time.sleep(0.1)
    cluster.stop()
    raise RuntimeError(f"svcnet up did not come up within {timeout}s:\n{cluster.log()[-3000:]}")
