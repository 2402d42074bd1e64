"""Probe thresholds: when a result flips, with time taken out (sleep is replaced)."""

from __future__ import annotations

import asyncio

import pytest

from svcnet.node import probes
from svcnet.node.pod import container_command


async def drive(
    kind: str, probe: dict, results: list[bool], initial: bool
) -> tuple[list[tuple[bool, str]], int]:
    changes: list[tuple[bool, str]] = []
    failures: list[str] = []
    seq = iter(results)

    async def run() -> probes.ProbeResult:
        try:
            ok = next(seq)
        except StopIteration:
            raise asyncio.CancelledError from None
        return probes.ProbeResult(ok, "" if ok else "boom")

    async def on_change(ok: bool, message: str) -> None:
        changes.append((ok, message))

    prober = probes.Prober(kind, probe, run, on_change, initial, failures.append)
    with pytest.MonkeyPatch.context() as mp:

        async def no_sleep(_s: float) -> None:
            return None

        mp.setattr(probes.asyncio, "sleep", no_sleep)
        with pytest.raises(asyncio.CancelledError):
            await prober.loop()
    return changes, len(failures)


async def test_readiness_needs_success_threshold() -> None:
    changes, _ = await drive("readiness", {"successThreshold": 2}, [True, False, True, True], False)
    assert changes == [(True, "")]


async def test_failure_threshold_then_recovery() -> None:
    changes, failures = await drive(
        "liveness", {"failureThreshold": 3}, [False, False, True, False, False, False, True], True
    )
    assert changes == [(False, "boom"), (True, "")]
    assert failures == 5  # every failed attempt is reported (events)


def test_resolve_named_port() -> None:
    ctr = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert probes.resolve_port("http", ctr) == 8080
    assert probes.resolve_port(81, ctr) == 81
    assert probes.resolve_port("nope", ctr) is None


def test_container_command() -> None:
    argv, builtin = container_command({"command": ["sh", "-c"], "args": ["echo hi"]})
    assert argv == ["sh", "-c", "echo hi"] and not builtin
    # No command: the built-in server on the declared ports (args belong to the image's entrypoint).
    argv, builtin = container_command(
        {
            "args": ["-text=hello"],
            "ports": [
                {"containerPort": 8080},
                {"containerPort": 53, "protocol": "UDP"},
                {"containerPort": 9, "protocol": "SCTP"},
            ],
        }
    )
    assert builtin and argv[-4:] == ["--tcp", "8080", "--udp", "53"]
