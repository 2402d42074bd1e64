"""Reading a large iptables-save / restore text lazily, so one packet can be traced through a
10,000-service rule set in well under a second.

The whole text is checked for structure at C speed (every line is a table, chain, rule, COMMIT,
comment or blank line; tables are closed; chain lines are well formed), but a chain's rules are
only looked up, and a rule's options only parsed, when the packet reaches them. A rule whose
plain `-d IP` differs from the packet's destination is skipped without being parsed at all.

Anything the fast path does not handle (restore commands other than `-A`, counters before
rules, a table given twice, any structural error) goes to the full parser, which also names the
offending line. Options of rules the packet never reaches are therefore only checked for texts
below LAZY_MIN_LINES lines, where the full parser is fast enough to read everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping

from svcnet.netfilter.iptables import (
    BUILTIN_CHAINS,
    Chain,
    IptablesRuleset,
    LineIndex,
    Rule,
    Table,
    parse_iptables,
)

LAZY_MIN_LINES = 5000

# A line (after its newline) that the fast path does not accept.
_BAD_LINE = re.compile(r"\n(?!-A \S+ |:\S+ \S+|\*\S+[ \t]*(?:\n|$)|COMMIT[ \t]*(?:\n|$)|#|[ \t]*(?:\n|$))")
_DECL = re.compile(r"\n:(\S+) (\S+)(?: \[\d+:\d+\])?[ \t]*(?=\n|$)")


def load_iptables(text: str) -> IptablesRuleset:
    """Parse `text`; lazily when it is large and plainly structured."""
    if text.count("\n", 0, 1 << 20) < LAZY_MIN_LINES and len(text) < (1 << 20):
        return parse_iptables(text)
    ruleset = _try_lazy("\n" + text)
    return ruleset if ruleset is not None else parse_iptables(text)


def _try_lazy(t: str) -> IptablesRuleset | None:
    if _BAD_LINE.search(t):
        return None
    lines = LineIndex(t, first=0)
    ruleset = IptablesRuleset()
    pos = 0
    while True:
        start = t.find("\n*", pos)
        gap = t[pos : start if start >= 0 else len(t)]
        if re.search(r"\n[^#\s]", gap):
            return None  # something outside a table (or after the last COMMIT)
        if start < 0:
            break
        head_end = t.find("\n", start + 1)
        head_end = len(t) if head_end < 0 else head_end
        name = t[start + 2 : head_end].strip()
        commit = t.find("\nCOMMIT", head_end)
        following = t.find("\n*", head_end)
        if name not in BUILTIN_CHAINS or name in ruleset.tables or commit < 0:
            return None
        if 0 <= following < commit:
            return None
        table = _lazy_table(t, name, head_end, commit, lines)
        if table is None:
            return None
        ruleset.tables[name] = table
        end = t.find("\n", commit + 1)
        pos = len(t) if end < 0 else end
    return ruleset


def _lazy_table(t: str, name: str, start: int, end: int, lines: LineIndex) -> Table | None:
    decls = dict(_DECL.findall(t, start, end))
    if len(decls) != t.count("\n:", start, end):
        return None  # a malformed or repeated chain line
    builtins = BUILTIN_CHAINS[name]
    for chain, policy in decls.items():
        if (policy not in ("ACCEPT", "DROP")) if chain in builtins else (policy != "-"):
            return None
    for builtin in builtins:
        decls.setdefault(builtin, "ACCEPT")
    return Table(name, _LazyChains(t, name, start, end, decls, lines))


class _LazyChains(MutableMapping[str, Chain]):
    """The chains of one table section, each created (and its rules found) on first use."""

    def __init__(self, t: str, table: str, start: int, end: int, decls: dict[str, str], lines: LineIndex):
        self.t, self.table, self.start, self.end = t, table, start, end
        self.decls = decls
        self.lines = lines
        self.made: dict[str, Chain] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.decls

    def __getitem__(self, name: str) -> Chain:
        chain = self.made.get(name)
        if chain is None:
            policy = self.decls[name]
            chain = Chain(
                name,
                None if policy == "-" else policy,
                loader=self._load,
                line_no=lambda: self._decl_line(name),  # type: ignore[arg-type]
            )
            self.made[name] = chain
        return chain

    def __setitem__(self, name: str, chain: Chain) -> None:
        self.decls[name] = chain.policy or "-"
        self.made[name] = chain

    def __delitem__(self, name: str) -> None:
        del self.decls[name]
        self.made.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.decls)

    def __len__(self) -> int:
        return len(self.decls)

    def _decl_line(self, name: str) -> int:
        pos = self.t.find(f"\n:{name} ", self.start, self.end)
        return self.lines.line_of(pos + 1) if pos >= 0 else 0

    def _load(self, chain: Chain) -> list[Rule]:
        t, end = self.t, self.end
        needle = f"\n-A {chain.name} "
        rules: list[Rule] = []
        pos = t.find(needle, self.start, end)
        while pos >= 0:
            eol = t.find("\n", pos + 1)
            if eol < 0:
                eol = len(t)
            text = t[pos + 1 : eol].rstrip()
            rule = Rule(self.table, chain.name, None, text, pos=pos + 1, lines=self.lines, parsed=False)
            rule.dst_hint = _dst_hint(text)
            rules.append(rule)
            pos = t.find(needle, eol, end)
        return rules


def _dst_hint(text: str) -> str | None:
    """The rule's `-d a.b.c.d` when it can be read without parsing: outside any quoted comment,
    not negated, one IPv4 address (iptables-save writes /32)."""
    quote = text.rfind('"')
    i = text.find(" -d ", quote + 1)
    if i < 0 or text[i - 1] == "!":
        return None
    j = text.find(" ", i + 4)
    value = text[i + 4 : j] if j >= 0 else text[i + 4 :]
    if value.endswith("/32"):
        value = value[:-3]
    if value.count(".") != 3 or "/" in value or "," in value:
        return None
    return value
