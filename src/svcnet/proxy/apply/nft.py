"""Running `nft -f` transactions for the nftables backend, and an in-memory stand-in for tests.

`Nft` hands a transaction to `nft -f -` (atomic: the kernel applies all of it or none) and
reports nft's own message when it refuses. `FakeNft` applies the same text to a model of one
table with nft's rules for what must exist first (upstream tests use knftables' Fake the same
way) and can dump it in a canonical order for comparisons.
"""

from __future__ import annotations

import copy
import ctypes
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field

from svcnet.proxy.nftables import TABLE

_NAMES = re.compile(r"^\s*(chain|set|map) (\S+)", re.M)


class NftError(RuntimeError):
    """nft refused a transaction; the message is nft's."""


class NftUnavailable(RuntimeError):
    pass


class Nft:
    """The node's nft binary, for one family's kube-proxy table."""

    def __init__(self, family: str = "ip", binary: str = "nft") -> None:
        self.family = family
        path = shutil.which(binary)
        if path is None:
            raise NftUnavailable(f"{binary} not found: install the nftables package")
        self.binary = path

    def _nft(self, args: list[str], text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], input=text, capture_output=True, text=True, check=False)

    def run(self, text: str) -> None:
        res = self._nft(["-f", "-"], text)
        if res.returncode != 0:
            raise NftError((res.stderr or res.stdout).strip() or f"nft exited with {res.returncode}")

    def check_support(self) -> None:
        """A dry run of what the mode needs (a table with a nat base chain and a verdict map)."""
        probe = (f"add table {self.family} svcnet-probe\n"
                 f"add chain {self.family} svcnet-probe c {{ type nat hook prerouting priority -100 ; }}\n"
                 f"add map {self.family} svcnet-probe m {{ type inet_proto . inet_service : verdict ; }}\n"
                 f"add rule {self.family} svcnet-probe c numgen random mod 2 "
                 "vmap { 0 : accept , 1 : accept }\n")
        res = self._nft(["-c", "-f", "-"], probe)
        if res.returncode != 0:
            raise NftUnavailable("the kernel does not support what nftables mode needs (nf_tables, nft_nat, "
                                 f"nft_numgen, verdict maps; kernel >= 5.13): {res.stderr.strip()}")

    def names(self) -> tuple[set[str], set[str]]:
        """(chains, sets and maps) of the kube-proxy table; empty when it does not exist.
        Listed without rules or set contents (a full listing at 10k services is megabytes)."""
        chains: set[str] = set()
        sets: set[str] = set()
        for what, into in (("chains", chains), ("sets", sets), ("maps", sets)):
            res = self._nft(["-t", "list", what, self.family])
            if res.returncode != 0:
                continue
            for block in res.stdout.split(f"table {self.family} ")[1:]:
                if block.startswith(TABLE + " "):
                    into.update(name for _kind, name in _NAMES.findall(block))
        return chains, sets

    def table_exists(self) -> bool:
        res = self._nft(["list", "tables", self.family])
        return f"table {self.family} {TABLE}\n" in res.stdout + "\n"

    def delete_table(self) -> bool:
        """Remove the kube-proxy table (`--cleanup`); True when it is gone."""
        if not self.table_exists():
            return True
        res = self._nft(["delete", "table", self.family, TABLE])
        return res.returncode == 0


class LibNft(Nft):
    """Nft whose transactions go through libnftables inside this process (what `nft -f` runs,
    without starting a program each time: 10-15 ms less per sync for a proxy holding 10k
    services, measured in docs/benchmarks.md). Listings still use the nft binary.

    The library's netlink socket belongs to the network namespace of the thread that makes
    the first transaction; the proxy runs wholly inside its node's namespace.
    """

    LIBRARY = "libnftables.so.1"

    def __init__(self, family: str = "ip", binary: str = "nft", library: str = LIBRARY) -> None:
        super().__init__(family, binary)
        try:
            lib = ctypes.CDLL(library)
        except OSError as e:
            raise NftUnavailable(f"{library} cannot be loaded: {e}") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib = lib
        self._ctx: int | None = None
        self._lock = threading.Lock()

    def run(self, text: str) -> None:
        with self._lock:
            if self._ctx is None:
                self._ctx = self._lib.nft_ctx_new(0)
                if not self._ctx:
                    raise NftError("libnftables could not make a context")
                # nft's messages go to buffers we read, not to this process's stdout/stderr
                self._lib.nft_ctx_buffer_output(self._ctx)
                self._lib.nft_ctx_buffer_error(self._ctx)
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
            error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
            self._lib.nft_ctx_get_output_buffer(self._ctx)  # read (and so empty) it
            if len(text) > 1 << 20:
                self.close()  # after a big (full) transaction, drop nft's cache of the table
        if rc != 0:
            raise NftError(error.strip() or f"libnftables returned {rc}")

    def close(self) -> None:
        if self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None


def node_nft(family: str = "ip") -> Nft:
    """The fastest way this node has to apply transactions: libnftables, else the nft binary."""
    try:
        return LibNft(family)
    except NftUnavailable:
        return Nft(family)


# --- the in-memory stand-in ---

@dataclass
class _Container:
    kind: str  # set | map
    spec: str
    elements: dict[str, str] = field(default_factory=dict)  # key -> " comment ... : value" tail


@dataclass
class _Table:
    spec: str = ""
    chains: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # name -> (spec, rules)
    sets: dict[str, _Container] = field(default_factory=dict)


_STMT = re.compile(r"^(add|flush|delete|insert|create) (table|chain|set|map|rule|element) "
                   r"(ip6?|inet) (\S+)(?: (.*))?$")
_REF_CHAIN = re.compile(r"\b(?:goto|jump) ([^\s,}]+)")
_REF_SET = re.compile(r"@([^\s,}]+)")


def _split_top(text: str, sep: str) -> list[str]:
    """Split at `sep` outside braces and quotes; stripped, empty parts dropped."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _block_items(tail: str) -> list[str] | None:
    """The statements of a `{ a ; b ; }` block, or None when tail is not a block."""
    tail = tail.strip()
    if not (tail.startswith("{") and tail.endswith("}")):
        return None
    return _split_top(tail[1:-1], ";")


def _spec_text(items: list[str]) -> str:
    return "{ " + " ; ".join(items) + " ; }" if items else ""


def _chain_block(tail: str) -> tuple[str, list[str]]:
    """(spec, rules) of `add chain NAME { ... }`: type/comment lines are the spec, the rest rules."""
    items = _block_items(tail)
    if items is None:
        return tail, []
    spec = [i for i in items if i.startswith(("type ", "comment ", "policy "))]
    return _spec_text(spec), [i for i in items if i not in spec]


def _set_block(tail: str) -> tuple[str, list[str]]:
    """(spec, elements) of `add set/map NAME { ... ; elements = { a , b } ; }`."""
    items = _block_items(tail)
    if items is None:
        return tail, []
    spec, elements = [], []
    for item in items:
        if item.startswith("elements"):
            body = item.partition("=")[2].strip()
            if not (body.startswith("{") and body.endswith("}")):
                raise NftError(f"syntax error: {item}")
            elements += _split_top(body[1:-1], ",")
        else:
            spec.append(item)
    return _spec_text(spec), elements


def _element_parts(element: str) -> tuple[str, str, str, str]:
    """(key, comment, ' : ' or '', value) of one element."""
    key, sep, value = element.partition(" : ")
    comment = ""
    if ' comment "' in key:
        key, _, comment = key.partition(" comment ")
    return key.strip(), comment, sep, value


class FakeNft:
    """Applies transactions to an in-memory table, atomically, as nft would accept them."""

    def __init__(self, family: str = "ip", check_refs: bool = True) -> None:
        """check_refs=False loads text written in any order (upstream's expected outputs)."""
        self.family = family
        self.check_refs = check_refs
        self.table: _Table | None = None
        self.transactions: list[str] = []
        self.fail_next: str | None = None

    def run(self, text: str) -> None:
        self.transactions.append(text)
        if self.fail_next is not None:
            message, self.fail_next = self.fail_next, None
            raise NftError(message)
        work = copy.deepcopy(self.table)
        for no, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                work = self._apply(work, line)
            except NftError as e:
                raise NftError(f"Error: {e}\n/dev/stdin:{no}:1-{len(line)}: {line}") from None
        self.table = work

    def names(self) -> tuple[set[str], set[str]]:
        if self.table is None:
            return set(), set()
        return set(self.table.chains), set(self.table.sets)

    def check_support(self) -> None:
        return None

    def table_exists(self) -> bool:
        return self.table is not None

    def delete_table(self) -> bool:
        self.table = None
        return True

    def _apply(self, t: _Table | None, line: str) -> _Table | None:
        m = _STMT.match(line.strip())
        if not m or m.group(3) != self.family or m.group(4) != TABLE:
            raise NftError(f"syntax error or wrong table: {line}")
        verb, kind, rest = m.group(1), m.group(2), m.group(5) or ""
        if kind == "table":
            if verb == "add":
                if t is None:
                    t = _Table(spec=rest)
                return t
            if verb == "delete":
                if t is None:
                    raise NftError("No such file or directory (table)")
                return None
            if verb == "flush":
                if t is None:
                    raise NftError("No such file or directory (table)")
                for _spec, rules in t.chains.values():
                    rules.clear()
                return t
        if t is None:
            raise NftError("No such file or directory (table)")
        name, _, tail = rest.partition(" ")
        if kind == "chain":
            if verb == "add":
                spec, block_rules = _chain_block(tail)
                if name in t.chains:
                    if spec and t.chains[name][0] and spec != t.chains[name][0]:
                        raise NftError(f"Device or resource busy (chain {name} redefined)")
                else:
                    t.chains[name] = (spec, [])
                for body in block_rules:  # `add chain NAME { rule ; ... }` appends them
                    self._check_refs(t, body)
                    t.chains[name][1].append(body)
            elif verb == "flush":
                self._chain(t, name)[1].clear()
            elif verb == "delete":
                self._chain(t, name)
                for other, (_s, rules) in t.chains.items():
                    if other != name and any(name in _REF_CHAIN.findall(r) for r in rules):
                        raise NftError(f"Device or resource busy (chain {name} is referenced)")
                for c in t.sets.values():
                    if any(name in _REF_CHAIN.findall(v) for v in c.elements.values()):
                        raise NftError(f"Device or resource busy (chain {name} is referenced by a map)")
                del t.chains[name]
            return t
        if kind in ("set", "map"):
            if verb == "add":
                spec, block_elements = _set_block(tail)
                if name in t.sets:
                    if spec and spec != t.sets[name].spec:
                        raise NftError(f"File exists ({kind} {name} redefined)")
                else:
                    t.sets[name] = _Container(kind, spec)
                for element in block_elements:  # `elements = { ... }` adds them
                    self._add_element(t, t.sets[name], name, element, line)
            elif verb == "flush":
                self._set(t, name).elements.clear()
            elif verb == "delete":
                self._set(t, name)
                for _s, rules in t.chains.values():
                    if any(name in _REF_SET.findall(r) for r in rules):
                        raise NftError(f"Device or resource busy ({kind} {name} is referenced)")
                del t.sets[name]
            return t
        if kind == "rule":
            rules = self._chain(t, name)[1]
            self._check_refs(t, tail)
            if verb == "insert":
                rules.insert(0, tail)
            elif verb == "add":
                rules.append(tail)
            else:
                raise NftError(f"unsupported: {line}")
            return t
        # element
        c = self._set(t, name)
        body = tail.strip()
        if not (body.startswith("{") and body.endswith("}")):
            raise NftError(f"syntax error: {line}")
        inner = body[1:-1].strip()
        if verb == "add":
            self._add_element(t, c, name, inner, line)
        elif verb == "delete":
            key = _element_parts(inner)[0]
            if key not in c.elements:
                raise NftError(f"No such file or directory (element {key} of {name})")
            del c.elements[key]
        return t

    def _add_element(self, t: _Table, c: _Container, name: str, element: str, line: str) -> None:
        key, comment, sep, value = _element_parts(element)
        if (c.kind == "map") != bool(sep):
            raise NftError(f"element does not fit {c.kind} {name}: {line}")
        self._check_refs(t, value)
        stored = (f" comment {comment}" if comment else "") + (f" : {value}" if sep else "")
        if key in c.elements and c.elements[key] != stored:
            raise NftError(f"File exists (element {key} of {name})")
        c.elements[key] = stored

    @staticmethod
    def _chain(t: _Table, name: str) -> tuple[str, list[str]]:
        if name not in t.chains:
            raise NftError(f"No such file or directory (chain {name})")
        return t.chains[name]

    @staticmethod
    def _set(t: _Table, name: str) -> _Container:
        if name not in t.sets:
            raise NftError(f"No such file or directory (set {name})")
        return t.sets[name]

    def _check_refs(self, t: _Table, text: str) -> None:
        if not self.check_refs:
            return
        for chain in _REF_CHAIN.findall(text):
            if chain not in t.chains:
                raise NftError(f"No such file or directory (chain {chain})")
        for s in _REF_SET.findall(text):
            if s not in t.sets:
                raise NftError(f"No such file or directory (set {s})")

    def dump(self) -> str:
        """The table as `add` statements in a canonical order (chains, sets and elements by
        name; rules in chain order), for comparing two ways of reaching the same state."""
        t = self.table
        if t is None:
            return ""
        p = f"{self.family} {TABLE}"
        out = [f"add table {p}" + (f" {t.spec}" if t.spec else "")]
        for name in sorted(t.sets):
            c = t.sets[name]
            out.append(f"add {c.kind} {p} {name}" + (f" {c.spec}" if c.spec else ""))
        for name in sorted(t.chains):
            spec = t.chains[name][0]
            out.append(f"add chain {p} {name}" + (f" {spec}" if spec else ""))
        for name in sorted(t.chains):
            out += [f"add rule {p} {name} {r}" for r in t.chains[name][1]]
        for name in sorted(t.sets):
            for key in sorted(t.sets[name].elements):
                out.append(f"add element {p} {name} {{ {key}{t.sets[name].elements[key]} }}")
        return "\n".join(out) + "\n"
