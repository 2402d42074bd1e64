"""Running the real kubectl binary against the session's `svcnet server`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
# What kubectl prints when discovery, OpenAPI or the version check goes wrong.
WARNING_RE = re.compile(
    r"(?im)^(?:warning:.*|.*couldn't get.*|.*memcache\.go.*|.*version difference.*|.*openapi.*)$"
)


@dataclass
class Kubectl:
    kubeconfig: Path
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            KUBECACHEDIR=str(self.home / "cache"),
            HOME=str(self.home),
            **extra,
        )
        return env

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        allow_warnings: bool = False,
        timeout: float = 60,
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        """kubectl ARGS; by default it must succeed and print no warning on stderr."""
        proc = subprocess.run(
            [KUBECTL, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**env),
        )
        if check:
            assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        if not allow_warnings:
            found = WARNING_RE.findall(proc.stderr)
            assert not found, f"kubectl {' '.join(args)} printed warnings: {found}"
        return proc

    def out(self, *args: str, stdin: str | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [KUBECTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env()
        )


def namespace_manifest(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def match_table(actual: str, expected: list[str]) -> None:
    """Compare kubectl table output line by line; ``{AGE}`` in an expected line matches any
    age (``12s``, ``3m4s``) and the padding after it, since ages depend on the clock."""
    lines = actual.rstrip("\n").split("\n")
    assert len(lines) == len(expected), f"got:\n{actual}\nexpected:\n" + "\n".join(expected)
    for got, want in zip(lines, expected, strict=True):
        if "{AGE}" not in want:
            assert got == want, f"\ngot:      {got!r}\nexpected: {want!r}"
            continue
        before, after = want.split("{AGE}", 1)
        pattern = re.escape(before) + r"\d+[smhdy][0-9smhdy]*"
        pattern += (r" +" + re.escape(after.lstrip(" "))) if after.strip() else r"$"
        assert re.fullmatch(pattern, got), f"\ngot:      {got!r}\nexpected: {want!r}"
