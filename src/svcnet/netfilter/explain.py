"""Words for a trace: the path rule by rule, and one closing sentence a person understands."""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape

from svcnet.netfilter.trace import Step, TraceResult

_COMMENT = re.compile(r'(?<![-\w])(?:--comment|comment)\s+(?:"((?:[^"\\]|\\.)*)"|(?!-)(\S+))')


def rule_comment(rule: str) -> str | None:
    m = _COMMENT.search(rule)
    if not m:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def percent(p: float) -> str:
    value = p * 100
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _where(step: Step | None) -> str:
    if step is None:
        return ""
    comment = rule_comment(step.rule)
    where = f" by {step.table} {step.chain}"
    return where + (f' ("{comment}")' if comment else "")


def _endpoint_list(endpoints: list[str], probs: list[float]) -> str:
    if len(endpoints) == 1:
        return endpoints[0]
    shares = [percent(p) for p in probs]
    names = ", ".join(endpoints[:-1]) + f" or {endpoints[-1]}"
    if len(set(shares)) == 1:
        return f"{names} ({shares[0]} each)"
    return ", ".join(f"{e} ({s})" for e, s in zip(endpoints[:-1], shares[:-1], strict=True)) + (
        f" or {endpoints[-1]} ({shares[-1]})"
    )


def summary(result: TraceResult) -> str:
    """e.g. `10.0.0.2 → 172.30.0.44:80/tcp: DNAT to 10.180.0.4:80 or 10.180.0.5:80 (50% each),
    not masqueraded`."""
    head = f"{result.packet}: "
    masq = "masqueraded" if result.masquerade else "not masqueraded"
    if result.verdict == "DNAT":
        flags = result.masqueraded_endpoints
        if result.masquerade and len(flags) == len(result.endpoints) and not all(flags):
            # e.g. hairpin: only the branch that lands on the client itself is masqueraded
            only = [e for e, m in zip(result.endpoints, flags, strict=True) if m]
            masq = f"masqueraded only when it lands on {' or '.join(only)}"
        text = f"DNAT to {_endpoint_list(result.endpoints, result.probabilities)}, {masq}"
        lost = sum(p for _, p, _ in result.dropped)
        if lost > 0:
            kinds = sorted({kind for kind, _, _ in result.dropped})
            text += f"; {'/'.join(k.lower() for k in kinds)}ped in {percent(lost)} of new connections"
        return head + text
    if result.verdict in ("DROP", "REJECT"):
        step = next((s for kind, _, s in result.dropped if kind == result.verdict), None)
        word = "rejected" if result.verdict == "REJECT" else "dropped"
        return head + f"{word}{_where(step)}"
    if result.verdict == "ACCEPT":
        return head + f"accepted{_where(result.accepted_by)}, not NATed, {masq}"
    return head + (
        "no rule decided its fate: it is not NATed and passes on unchanged"
        + (", masqueraded" if result.masquerade else "")
    )


def render_text(result: TraceResult, console: Console) -> None:
    """Print the path rule by rule, then the notes and the closing sentence. Colour only when
    `console` is a terminal (rich decides)."""
    for step in result.path:
        indent = "  " * step.depth
        chance = (
            f" [magenta]({percent(step.probability)} of connections)[/]" if step.probability < 0.99999 else ""
        )
        line = f" line {step.line_no}" if step.line_no else " (kube-proxy's own jump)"
        console.print(
            f"{indent}[dim]{step.hook:<11}[/] [bold cyan]{step.table} {escape(step.chain)}[/]"
            f"[dim]{line}[/]{chance}",
            highlight=False,
        )
        console.print(f"{indent}    [white]{escape(step.rule)}[/]", highlight=False, soft_wrap=True)
        colour = _action_colour(step.action)
        console.print(
            f"{indent}    [dim]matched:[/] {escape(step.matched)}  [bold {colour}]→ {escape(step.action)}[/]",
            highlight=False,
            soft_wrap=True,
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    colour = _action_colour(result.verdict)
    console.print(f"[bold {colour}]{escape(summary(result))}[/]", highlight=False, soft_wrap=True)


def _action_colour(action: str) -> str:
    if action.startswith(("DROP", "REJECT", "policy DROP")):
        return "red"
    if action.startswith(("DNAT", "ACCEPT", "MASQUERADE", "SNAT")):
        return "green"
    return "yellow"
