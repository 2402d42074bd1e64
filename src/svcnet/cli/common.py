"""Small helpers shared by several `svcnet` commands."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_level: str) -> None:
    """The logging of a long-running command: LOG_LEVEL (debug, info, warning or error) with
    timestamps, to stderr."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run MAIN to the end on uvloop (asyncio's own loop if uvloop is not installed). Only the
    import is guarded: an ImportError raised by MAIN itself propagates."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def parse_host_port(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT' or ':PORT' (all addresses) -> (host, port)."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not [IPv6]:PORT")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} is not HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is out of range 0-65535")
    return host or "0.0.0.0", port
