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

from svcnet.netfilter.errors import RuleParseError
from svcnet.netfilter.iptables import (
    BUILTIN_CHAINS,
    Chain,
    IptablesRuleset,
    LineIndex,
    Rule,
    Table,
    parse_iptables,
    parse_rule_text,
)

LAZY_MIN_LINES = 5000

# A line (after its newline) that the fast path does not accept.
_END = r"[ \t]*(?:\n|$)"
_BAD_LINE = re.compile(rf"\n(?!-A |:\S+ \S+(?: \[\d+:\d+\])?{_END}|\*\S+{_END}|COMMIT{_END}|#|{_END})")


class LazyRule:
    """A rule known by its text only, until the tracer needs its options."""

    __slots__ = ("chain", "dst_hint", "lines", "pos", "table", "text")

    def __init__(self, table: str, chain: str, text: str, pos: int, lines: LineIndex) -> None:
        self.table, self.chain, self.text, self.pos, self.lines = table, chain, text, pos, lines
        self.dst_hint = _dst_hint(text)

    @property
    def line_no(self) -> int:
        return self.lines.line_of(self.pos)

    def parse(self) -> Rule:
        return parse_rule_text(Rule(self.table, self.chain, None, self.text, pos=self.pos, lines=self.lines))


def load_iptables(text: str) -> IptablesRuleset:
    """Parse `text`; lazily when it is large and plainly structured."""
    if text.count("\n", 0, 1 << 20) < LAZY_MIN_LINES and len(text) < (1 << 20):
        return parse_iptables(text)
    ruleset = _try_lazy(text)
    return ruleset if ruleset is not None else parse_iptables(text)


def _try_lazy(t: str) -> IptablesRuleset | None:
    # Every search below looks for "\n" + something; the first line has no newline before it,
    # so it is checked on its own (offset -1 stands for the newline it lacks).
    first_eol = t.find("\n")
    if _BAD_LINE.match("\n" + t[: first_eol if first_eol >= 0 else len(t)]) or _BAD_LINE.search(t):
        return None
    lines = LineIndex(t, first=1)
    ruleset = IptablesRuleset()
    pos = 0
    while True:
        if pos == 0 and t.startswith("*"):
            start, found = -1, True
        else:
            start = t.find("\n*", pos)
            found = start >= 0
        gap = "" if start == -1 and found else "\n" + t[pos : start if found else len(t)]
        if re.search(r"\n[^#\s]", gap):
            return None  # something outside a table (or after the last COMMIT)
        if not found:
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
        ruleset.tables[name] = Table(name, _LazyChains(t, name, head_end, commit, lines))
        end = t.find("\n", commit + 1)
        pos = len(t) if end < 0 else end
    return ruleset


class _LazyChains(MutableMapping[str, Chain]):
    """The chains of one table section, each looked up (and its rules found) on first use."""

    def __init__(self, t: str, table: str, start: int, end: int, lines: LineIndex):
        self.t, self.table, self.start, self.end, self.lines = t, table, start, end, lines
        # Dumps and kube-proxy's input declare every chain before the first rule: look for
        # declarations there only. (If not, the whole section is searched.)
        first_rule = t.find("\n-A ", start, end)
        last_decl = t.rfind("\n:", start, end)
        self.decl_end = first_rule if first_rule >= 0 and last_decl < first_rule else end
        self.made: dict[str, Chain | None] = {}

    def _declared(self, name: str) -> tuple[str, int] | None:
        """(policy, offset) of the chain's declaration line."""
        pos = self.t.find(f"\n:{name} ", self.start, self.decl_end)
        if pos < 0:
            return None
        eol = self.t.find("\n", pos + 1)
        words = self.t[pos + 2 : eol if eol >= 0 else None].split()
        return words[1], pos + 1

    def _make(self, name: str) -> Chain | None:
        builtin = name in BUILTIN_CHAINS[self.table]
        decl = self._declared(name)
        if decl is None and not builtin:
            return None
        policy, pos = decl if decl else ("ACCEPT", -1)
        if (policy not in ("ACCEPT", "DROP")) if builtin else (policy != "-"):
            raise RuleParseError(
                self.lines.line_of(pos), self.t[pos : self.t.find("\n", pos)], "bad chain policy"
            )
        line_no = (lambda: self.lines.line_of(pos)) if pos >= 0 else 0
        return Chain(name, policy if builtin else None, loader=self._load, line_no=line_no)  # type: ignore[arg-type]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get(self, name: str, default: Chain | None = None) -> Chain | None:  # type: ignore[override]
        if name not in self.made:
            self.made[name] = self._make(name)
        chain = self.made[name]
        return chain if chain is not None else default

    def __getitem__(self, name: str) -> Chain:
        chain = self.get(name)
        if chain is None:
            raise KeyError(name)
        return chain

    def __setitem__(self, name: str, chain: Chain) -> None:
        self.made[name] = chain

    def __delitem__(self, name: str) -> None:
        self.made[name] = None

    def __iter__(self) -> Iterator[str]:
        """Every declared chain (a full scan: for inspection, not for tracing)."""
        names = dict.fromkeys(re.findall(r"\n:(\S+) ", self.t[self.start : self.end]))
        names.update(dict.fromkeys(BUILTIN_CHAINS[self.table]))
        return iter([n for n in names if self.get(n) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _load(self, chain: Chain) -> list[Rule]:
        t, end, table, lines = self.t, self.end, self.table, self.lines
        needle = f"\n-A {chain.name} "
        rules: list = []
        pos = t.find(needle, self.start, end)
        while pos >= 0:
            eol = t.find("\n", pos + 1)
            if eol < 0:
                eol = len(t)
            rules.append(LazyRule(table, chain.name, t[pos + 1 : eol].rstrip(), pos + 1, lines))
            pos = t.find(needle, eol, end)
        return rules


def _dst_hint(text: str) -> str | None:
    """The rule's `-d a.b.c.d` when it can be read without parsing: after every quoted comment,
    not negated, one IPv4 address (iptables-save writes /32)."""
    i = text.rfind(" -d ")
    if i < 0 or text[i - 1] == "!" or '"' in text[i:]:
        return None
    j = text.find(" ", i + 4)
    value = text[i + 4 : j] if j >= 0 else text[i + 4 :]
    if value[-3:] == "/32":
        value = value[:-3]
    return value if value.count(".") == 3 and "/" not in value and "," not in value else None
