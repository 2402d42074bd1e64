"""Shared test configuration, and a guard for the machine's own network namespace.

Tests may program netfilter, sysctls and links only inside network namespaces they create.
The guard snapshots the host namespace's rules and the sysctls kube-proxy touches before the
session and compares after it: any difference fails the run and says what changed, so a test
that leaks onto the host cannot pass unnoticed. Fixtures that start servers live next to the
tests using them (tests/integration/conftest.py, tests/e2e/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "src") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "src"))

WATCHED_SYSCTLS = (
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
)


def _run(*cmd: str) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout


def _strip_counters(text: str) -> list[str]:
    # Counters and comments change with traffic, not with configuration.
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(":"):
            line = line.split(" [", 1)[0]
        lines.append(line)
    return lines


def host_network_state() -> dict[str, object]:
    state: dict[str, object] = {}
    for tool in ("iptables-save", "ip6tables-save", "iptables-legacy-save"):
        state[tool] = _strip_counters(_run(tool))
    state["nft tables"] = sorted(_run("nft", "list", "tables").splitlines())
    state["KUBE/kube-proxy in nft"] = [
        line for line in _run("nft", "list", "ruleset").splitlines() if "kube" in line.lower()
    ]
    for name in WATCHED_SYSCTLS:
        path = Path("/proc/sys") / name
        state[name] = path.read_text().strip() if path.exists() else None
    return state


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._svcnet_host_state = host_network_state()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = getattr(session.config, "_svcnet_host_state", None)
    if before is None:
        return
    after = host_network_state()
    changed = [key for key in before if before[key] != after[key]]
    if changed:
        report = "; ".join(f"{key}: {before[key]!r} -> {after[key]!r}"[:400] for key in changed)
        sys.stderr.write(f"\nHOST NAMESPACE CHANGED BY THE TESTS (must never happen): {report}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
