"""Start etcd members for tests: loopback ports, a private data directory, stopped by PID.

``EtcdCluster.start(n)`` runs ``n`` members of one cluster (Debian's /usr/bin/etcd). Tests that
share one member use the session fixture in tests/conftest_etcd.py; the cluster tests start
their own three members. Short heartbeat and election timeouts keep failover tests quick.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills this etcd if the test process dies without
    running its teardown (a CI timeout's SIGKILL), so no member outlives its session. Linux
    ties this to the thread that started the child: start members from the main thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def etcd_missing_reason() -> str | None:
    if not os.access(ETCD, os.X_OK):
        return f"etcd is not installed ({ETCD}); scripts/install-system-deps.sh installs etcd-server"
    return None


class MemberExitedError(RuntimeError):
    """A member we started exited while starting (a port already in use, bad flags)."""


class PortTakenError(RuntimeError):
    """Another process's etcd answers on the port chosen for ours."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class MemberTLS:
    """Client-port TLS of the members (PEM files); clients must present a certificate
    signed by ``ca`` (etcd's --client-cert-auth)."""

    cert: Path
    key: Path
    ca: Path


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    tls: MemberTLS | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def _context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        ctx.load_cert_chain(str(self.tls.cert), str(self.tls.key))  # good for client auth too
        return ctx

    def healthy(self) -> bool:
        """Serving, with a leader, and really this member: with many test sessions on one
        machine another session's etcd may have taken the port between free_port() and our
        bind; then our member has exited or is about to, and that etcd is not ours."""
        try:
            ctx = self._context()
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=1, context=ctx) as resp:
                if b'"true"' not in resp.read():
                    return False
            url = f"{self.client_url}/v3/cluster/member/list"
            req = urllib.request.Request(url, data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=1, context=ctx) as resp:
                members = json.loads(resp.read()).get("members", [])
        except OSError:
            return False
        if not any(self.peer_url in m.get("peerURLs", []) for m in members):
            raise PortTakenError(f"{self.endpoint} is served by an etcd that is not {self.name}")
        return True

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop the member we started, by its PID."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class EtcdCluster:
    members: list[EtcdMember]
    root: Path
    initial_cluster: str
    token: str
    owns_root: bool = True
    extra_args: list[str] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        scheme = "etcds" if self.members[0].tls else "etcd"
        return f"{scheme}://" + ",".join(self.endpoints)

    @classmethod
    def start(
        cls, size: int = 1, root: Path | None = None, timeout: float = 30, tls: MemberTLS | None = None
    ) -> EtcdCluster:
        owns = root is None
        # tmpfs when there is one: a member's fsync then costs nothing, so a disk busy with other
        # test runs cannot stall it past the client's timeout. A process kill (what the tests
        # do to members) loses nothing either way: the page cache survives it.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        root = Path(tempfile.mkdtemp(prefix="svcnet-etcd-", dir=shm)) if root is None else root
        root.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            token = f"svt-{os.getpid()}-{time.monotonic_ns()}"
            members = [
                EtcdMember(f"m{i}", free_port(), free_port(), root / f"a{attempt}-m{i}.etcd",
                           root / f"a{attempt}-m{i}.log", tls=tls)
                for i in range(size)
            ]
            initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
            cluster = cls(members, root, initial, token, owns)
            try:
                for member in members:
                    cluster.launch(member, new=True)
                cluster.wait_healthy(timeout)
                return cluster
            except (PortTakenError, MemberExitedError):
                for member in members:
                    member.stop()
                if attempt == 2:
                    cluster.stop()
                    raise
            except BaseException:
                cluster.stop()
                raise
        raise AssertionError("unreachable")

    def launch(self, member: EtcdMember, new: bool = False) -> None:
        """Start (or restart, keeping its data) one member."""
        args = [
            ETCD,
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            # kube-apiserver sends objects up to 3 MiB; etcd's default request cap is 1.5 MiB.
            "--max-request-bytes", str(8 * 1024 * 1024),
            "--experimental-watch-progress-notify-interval", "1s",
            "--logger", "zap",
            "--log-level", "warn",
        ]
        if member.tls is not None:
            args += ["--cert-file", str(member.tls.cert), "--key-file", str(member.tls.key),
                     "--trusted-ca-file", str(member.tls.ca), "--client-cert-auth"]
        log = open(member.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            member.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()

    def wait_healthy(self, timeout: float = 30, members: list[EtcdMember] | None = None) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(members or self.members)
        while waiting:
            for member in list(waiting):
                if member.proc is not None and member.proc.poll() is not None:
                    log = member.log_path.read_text()[-3000:]
                    raise MemberExitedError(f"etcd {member.name} exited:\n{log}")
                if member.healthy():
                    waiting.remove(member)
            if waiting:
                if time.monotonic() > deadline:
                    names = [m.name for m in waiting]
                    raise RuntimeError(f"etcd did not become healthy in {timeout}s: {names}")
                time.sleep(0.05)

    def stop(self) -> None:
        for member in self.members:
            member.stop()
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


_shared: EtcdCluster | None = None


def shared_etcd() -> EtcdCluster:
    """One etcd member for the whole test session, started on first use and stopped (by PID)
    when the session's process exits. Tests sharing it use key prefixes of their own."""
    global _shared
    if _shared is None or not all(m.running() for m in _shared.members):
        _shared = EtcdCluster.start(1)
        atexit.register(_shared.stop)
    return _shared


def leader(cluster: EtcdCluster) -> EtcdMember:
    """The member that is the raft leader now (asked of each running member)."""
    deadline = time.monotonic() + 10
    while True:
        for member in cluster.members:
            if not member.running():
                continue
            try:
                req = urllib.request.Request(
                    f"http://{member.endpoint}/v3/maintenance/status", data=b"{}", method="POST"
                )
                with urllib.request.urlopen(req, timeout=1) as resp:
                    status = json.loads(resp.read())
            except OSError:
                continue
            if status.get("leader") and status["leader"] == status.get("header", {}).get("member_id"):
                return member
        if time.monotonic() > deadline:
            raise RuntimeError("no etcd leader")
        time.sleep(0.05)
