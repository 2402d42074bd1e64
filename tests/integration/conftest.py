"""Fixtures that run the real `svcnet server` as a subprocess (HTTPS, bearer token), the way
a user runs it, so integration tests exercise the whole process and not an in-process app."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from svcnet.apiserver.launcher import ApiServerProcess, start_api_server

__all__ = ["ApiServerProcess"]


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
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ApiServerProcess]]:
    """Start (and restart) private servers on a data directory of the test's own."""
    started: list[ApiServerProcess] = []

    def start(data_dir: Path | None = None, port: int = 0,
              extra_args: list[str] | None = None) -> ApiServerProcess:
        server = start_api_server(data_dir or tmp_path / "data", port, extra_args=extra_args)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop(signal.SIGKILL)
