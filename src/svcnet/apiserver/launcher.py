"""Start `svcnet server` as a child process and wait until it serves: used by the integration
tests, the benchmarks and the lab, so they all run the server exactly as a user does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]


@dataclass
class ApiServerProcess:
    data_dir: Path
    proc: subprocess.Popen
    url: str
    kubeconfig_path: Path
    token: str
    ca_path: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def python_client(self):  # -> kubernetes.client.ApiClient
        """An official `kubernetes` ApiClient configured from the server's kubeconfig."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig_path), client_configuration=cfg)
        return client.ApiClient(cfg)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Stop the child we started (by its PID) and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_api_server(data_dir: Path, port: int = 0, timeout: float = 30,
                     extra_args: list[str] | None = None) -> ApiServerProcess:
    """Start `svcnet server` on loopback (port 0 = a free port) and wait until it listens."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url_file = data_dir / "server-url"
    url_file.unlink(missing_ok=True)
    log_path = data_dir / f"server-{int(time.time() * 1000)}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "svcnet", "server", "--data-dir", str(data_dir),
             "--listen", f"127.0.0.1:{port}", "--log-level", "warning", *(extra_args or [])],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"svcnet server exited with {proc.returncode}:\n{log_path.read_text()}")
        url = url_file.read_text().strip() if url_file.exists() else ""
        if url:
            token = (data_dir / "admin-token").read_text().strip()
            return ApiServerProcess(data_dir, proc, url, data_dir / "admin.kubeconfig", token,
                                    data_dir / "pki" / "ca.crt", log_path)
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"svcnet server did not start within {timeout}s:\n{log_path.read_text()}")
