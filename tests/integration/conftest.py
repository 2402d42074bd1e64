"""Fixtures that run the real `svcnet server` as a subprocess (HTTPS, bearer token), the way
a user runs it, so integration tests exercise the whole process and not an in-process app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ApiServerProcess:
    data_dir: Path
    proc: subprocess.Popen
    url: str
    kubeconfig_path: Path
    token: str
    ca_path: Path
    log_path: Path

    def python_client(self):
        """An official `kubernetes` ApiClient configured from the server's kubeconfig."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig_path), client_configuration=cfg)
        return client.ApiClient(cfg)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
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


def start_api_server(data_dir: Path, port: int = 0, timeout: float = 30) -> ApiServerProcess:
    """Start `svcnet server` on a free loopback port and wait until /readyz answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url_file = data_dir / "server-url"
    url_file.unlink(missing_ok=True)
    log_path = data_dir / f"server-{int(time.time() * 1000)}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it for its lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "svcnet", "server", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"svcnet server exited with {proc.returncode}:\n{log_path.read_text()}")
        if url_file.exists() and url_file.read_text().strip():
            url = url_file.read_text().strip()
            token = (data_dir / "admin-token").read_text().strip()
            return ApiServerProcess(data_dir, proc, url, data_dir / "admin.kubeconfig", token,
                                    data_dir / "pki" / "ca.crt", log_path)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"svcnet server did not start within {timeout}s:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def api_server() -> Iterator[ApiServerProcess]:
    """One server shared by the session's integration tests: tests use their own namespaces
    or unique names so they do not see each other."""
    with tempfile.TemporaryDirectory(prefix="svcnet-it-") as tmp:
        server = start_api_server(Path(tmp) / "data")
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Start (and restart) private servers on a data directory of the test's own."""
    started: list[ApiServerProcess] = []

    def start(data_dir: Path | None = None, port: int = 0) -> ApiServerProcess:
        server = start_api_server(data_dir or tmp_path / "data", port)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop(signal.SIGKILL)
