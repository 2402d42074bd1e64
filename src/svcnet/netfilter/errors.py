"""Errors of the rule-set parsers and the tracer."""

from __future__ import annotations


class RuleParseError(ValueError):
    """A rule set that cannot be read. Names the line so a user can find it in a dump."""

    def __init__(self, line_no: int, line: str, reason: str) -> None:
        self.line_no = line_no
        self.line = line
        self.reason = reason
        super().__init__(f"line {line_no}: {reason}: {line.strip()}" if line else f"line {line_no}: {reason}")


class TraceError(RuntimeError):
    """The rules cannot be followed for this packet (a jump cycle, too deep a jump stack)."""
