"""Label and field selectors with apimachinery's grammar, validation and error text.

Label selectors (``?labelSelector=``, ``spec.selector`` of workloads) follow
``apimachinery/pkg/labels/selector.go``: a hand-written lexer and recursive-descent parser whose
quirks (``!key`` followed by anything, ``in``/``notin`` usable as keys and values, an empty
value after ``=``) decide which strings are accepted, so this module mirrors its structure.
Field selectors follow ``apimachinery/pkg/fields/selector.go`` plus the per-kind field label
conversion functions of kube-apiserver (``pkg/apis/core/v1/conversion.go``), which decide the
400 message for an unsupported field.

Every syntax or validation failure raises ``StatusError`` 400 (BadRequest) whose message is the
text kube-apiserver puts in the Status it returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from svcnet.api.errors import bad_request, go_quote
from svcnet.api.resources import Resource
from svcnet.api.validation.common import dig, is_qualified_name, is_valid_label_value

__all__ = [
    "FieldSelector",
    "FieldTerm",
    "LabelSelector",
    "Requirement",
    "everything",
    "field_set",
    "go_quote",
    "nothing",
    "parse_field_selector",
    "parse_label_selector",
    "selector_from_label_selector_dict",
    "selector_from_set",
]

# ---------------------------------------------------------------------------------------------
# Go-compatible formatting and apimachinery's name/value validation (util/validation).
# ---------------------------------------------------------------------------------------------


def _invalid(path: str, value: str, detail: str) -> str:
    """field.Invalid(...).Error() for a string value."""
    return f"{path}: Invalid value: {go_quote(value)}: {detail}"


def _aggregate(messages: list[str]) -> str:
    """utilerrors.Aggregate.Error(): one message bare, several de-duplicated inside [..]."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


class _SelectorError(Exception):
    """A parse failure carrying upstream's message; turned into a 400 at the public boundary."""


# ---------------------------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------------------------

IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
GREATER_THAN, LESS_THAN, EXISTS, DOES_NOT_EXIST = "gt", "lt", "exists", "!"
_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64): optional sign, ASCII digits only, 64-bit range."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            have = _parse_int64(str(labels[self.key]))
            want = _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator == EXISTS:
            return self.key
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{values}"


def _new_requirement(key: str, operator: str, values: list[str]) -> Requirement:
    """labels.NewRequirement: validates and raises with the aggregated field errors."""
    errs: list[str] = []
    key_errs = is_qualified_name(key)
    if key_errs:
        errs.append(_invalid("key", key, "; ".join(key_errs)))
    if operator in (IN, NOT_IN):
        if not values:
            errs.append(
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
            )
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            errs.append(
                f"values: Invalid value: {_go_string_slice(values)}: "
                "exact-match compatibility requires one single value"
            )
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if values:
            errs.append(
                f"values: Invalid value: {_go_string_slice(values)}: "
                "values set must be empty for exists and does not exist"
            )
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(values) != 1:
            errs.append(
                f"values: Invalid value: {_go_string_slice(values)}: "
                "for 'Gt', 'Lt' operators, exactly one value is required"
            )
        for i, v in enumerate(values):
            if _parse_int64(v) is None:
                errs.append(
                    _invalid(f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer")
                )
    else:
        supported = ", ".join(go_quote(o) for o in (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST))
        errs.append(f"operator: Unsupported value: {go_quote(operator)}: supported values: {supported}")
    for i, v in enumerate(values):
        value_errs = is_valid_label_value(v)
        if value_errs:
            errs.append(_invalid(f"values[{i}][{key}]", v, "; ".join(value_errs)))
    if errs:
        raise _SelectorError(_aggregate(errs))
    return Requirement(key, operator, tuple(values))


def _go_string_slice(values: list[str]) -> str:
    return "[]string{" + ", ".join(go_quote(v) for v in values) + "}"


@dataclass(frozen=True)
class LabelSelector:
    """AND of requirements, sorted by key as upstream sorts them.

    ``matches_nothing`` is the selector of a nil metav1.LabelSelector (labels.Nothing()).
    """

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (labels.Everything())."""
        return not self.matches_nothing and not self.requirements

    def matches(self, labels: dict[str, str] | None) -> bool:
        if self.matches_nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def everything() -> LabelSelector:
    return LabelSelector()


def nothing() -> LabelSelector:
    return LabelSelector(matches_nothing=True)


def _sorted_by_key(requirements: list[Requirement]) -> tuple[Requirement, ...]:
    # Go sorts with an unstable sort; a stable one gives the same result for distinct keys.
    return tuple(sorted(requirements, key=lambda r: r.key))


# Lexer tokens.
_ERROR, _EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(14)
_TOKENS = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_END = "\0"  # upstream's lexer reads byte 0 at the end, so a NUL in the input also ends a token


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _read(self) -> str:
        if self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            return ch
        return _END

    def _unread(self) -> None:
        self.pos -= 1

    def _scan_id_or_keyword(self) -> tuple[int, str]:
        buf = []
        while True:
            ch = self._read()
            if ch == _END:
                break
            if ch in _SPECIAL or ch in _WHITESPACE:
                self._unread()
                break
            buf.append(ch)
        word = "".join(buf)
        return _TOKENS.get(word, _ID), word

    def _scan_special(self) -> tuple[int, str]:
        buf = ""
        last: tuple[int, str] | None = None
        while True:
            ch = self._read()
            if ch == _END:
                break
            if ch in _SPECIAL:
                buf += ch
                if buf in _TOKENS:
                    last = (_TOKENS[buf], buf)
                elif last is not None:
                    self._unread()
                    break
            else:
                self._unread()
                break
        if last is None:
            return _ERROR, f"error expected: keyword found '{buf}'"
        return last

    def lex(self) -> tuple[int, str]:
        ch = self._read()
        while ch in _WHITESPACE:
            ch = self._read()
        if ch == _END:
            return _EOS, ""
        self._unread()
        if ch in _SPECIAL:
            return self._scan_special()
        return self._scan_id_or_keyword()


class _LabelParser:
    def __init__(self, text: str) -> None:
        lexer = _Lexer(text)
        self.items: list[tuple[int, str]] = []
        while True:
            tok = lexer.lex()
            self.items.append(tok)
            if tok[0] == _EOS:
                break
        self.pos = 0

    @staticmethod
    def _as_value(tok: int) -> int:
        # In value context "in" and "notin" are plain identifiers (e.g. "x in (in)").
        return _ID if tok in (_IN, _NOTIN) else tok

    def lookahead(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        return (self._as_value(tok) if values else tok), lit

    def consume(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        self.pos += 1
        return (self._as_value(tok) if values else tok), lit

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_ID, _NOT):
                try:
                    requirements.append(self._requirement())
                except _SelectorError as e:
                    raise _SelectorError(f"unable to parse requirement: {e}") from None
                tok, lit = self.consume()
                if tok == _EOS:
                    return requirements
                if tok == _COMMA:
                    tok2, lit2 = self.lookahead()
                    if tok2 not in (_ID, _NOT):
                        raise _SelectorError(f"found '{lit2}', expected: identifier after ','")
                else:
                    raise _SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return requirements
            else:
                raise _SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def _requirement(self) -> Requirement:
        key, operator = self._key_and_inferred_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            return _new_requirement(key, operator, [])
        operator = self._operator()
        values = self._set_values() if operator in (IN, NOT_IN) else self._exact_value()
        return _new_requirement(key, operator, sorted(values))

    def _key_and_inferred_operator(self) -> tuple[str, str]:
        operator = ""
        tok, lit = self.consume()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, lit = self.consume()
        if tok != _ID:
            raise _SelectorError(f"found '{lit}', expected: identifier")
        key_errs = is_qualified_name(lit)
        if key_errs:
            # Upstream validates against a nil field path, which prints as "<nil>".
            raise _SelectorError(_invalid("<nil>", lit, "; ".join(key_errs)))
        if self.lookahead()[0] in (_EOS, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        return lit, operator

    def _operator(self) -> str:
        tok, lit = self.consume(values=False)
        operator = {
            _IN: IN,
            _EQ: EQUALS,
            _DEQ: DOUBLE_EQUALS,
            _GT: GREATER_THAN,
            _LT: LESS_THAN,
            _NOTIN: NOT_IN,
            _NEQ: NOT_EQUALS,
        }.get(tok)
        if operator is None:
            raise _SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return operator

    def _set_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPEN:
            raise _SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_ID, _COMMA):
            values = self._identifier_list()
            if self.consume()[0] != _CLOSE:
                # Upstream reports the literal it looked at before the list, not the bad token.
                raise _SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE:  # "()" is the set holding the empty value
            self.consume()
            return {""}
        raise _SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def _identifier_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _ID:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return values
                raise _SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:  # empty values: "(,a", "a,)", "a,,b"
                if not values:
                    values.add("")
                tok2, _ = self.lookahead()
                if tok2 == _CLOSE:
                    values.add("")
                    return values
                if tok2 == _COMMA:
                    self.consume()
                    values.add("")
                continue
            raise _SelectorError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        tok, _ = self.lookahead()
        if tok in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _ID:
            return {lit}
        raise _SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse ``?labelSelector=`` text (labels.Parse). An empty string selects everything."""
    try:
        requirements = _LabelParser(text).parse()
    except _SelectorError as e:
        raise bad_request(str(e)) from None
    return LabelSelector(_sorted_by_key(requirements))


def selector_from_set(labels: dict[str, str] | None) -> LabelSelector:
    """labels.SelectorFromSet: equality on every pair, no validation; nil or {} selects everything.

    This is how a Service's ``spec.selector`` map is matched against pods.
    """
    return LabelSelector(_sorted_by_key([Requirement(k, EQUALS, (v,)) for k, v in (labels or {}).items()]))


_LABEL_SELECTOR_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def selector_from_label_selector_dict(d: dict[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector for a JSON ``LabelSelector`` (matchLabels, matchExpressions).

    ``None`` (a nil selector) matches NOTHING; ``{}`` (no labels and no expressions) matches
    EVERYTHING. Invalid keys, values or operators raise StatusError 400 with upstream's text.
    """
    if d is None:
        return nothing()
    if not isinstance(d, dict):
        raise bad_request("label selector must be an object")
    match_labels = d.get("matchLabels") or {}
    expressions = d.get("matchExpressions") or []
    if not isinstance(match_labels, dict) or not isinstance(expressions, list):
        raise bad_request("label selector: matchLabels must be an object and matchExpressions a list")
    if not match_labels and not expressions:
        return everything()
    requirements = []
    try:
        for key, value in match_labels.items():
            if not isinstance(value, str):
                raise _SelectorError(f"matchLabels[{key}] must be a string")
            requirements.append(_new_requirement(key, EQUALS, [value]))
        for expr in expressions:
            if not isinstance(expr, dict):
                raise _SelectorError("matchExpressions items must be objects")
            op = expr.get("operator")
            if op not in _LABEL_SELECTOR_OPERATORS:
                raise _SelectorError(f"{go_quote(str(op or ''))} is not a valid label selector operator")
            values = expr.get("values") or []
            key = expr.get("key")
            if (
                not isinstance(key, str)
                or not isinstance(values, list)
                or not all(isinstance(v, str) for v in values)
            ):
                raise _SelectorError("matchExpressions items need a string key and a list of string values")
            requirements.append(_new_requirement(key, _LABEL_SELECTOR_OPERATORS[op], list(values)))
    except _SelectorError as e:
        raise bad_request(str(e)) from None
    return LabelSelector(_sorted_by_key(requirements))


# ---------------------------------------------------------------------------------------------
# Field selectors
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negated: bool = False  # "!=" instead of "=" / "=="

    def matches(self, fields: dict[str, str]) -> bool:
        return (fields.get(self.field, "") == self.value) != self.negated

    def __str__(self) -> str:
        return f"{self.field}{'!=' if self.negated else '='}{escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """AND of field terms, in the (sorted) order upstream parses them."""

    terms: tuple[FieldTerm, ...]
    resource: Resource | None = None

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches_fields(self, fields: dict[str, str]) -> bool:
        return all(t.matches(fields) for t in self.terms)

    def matches(self, obj: dict[str, Any]) -> bool:
        if not self.terms:
            return True
        if self.resource is None:
            raise ValueError("matches(obj) needs the selector's resource; use matches_fields")
        return self.matches_fields(field_set(self.resource, obj))

    def requires_exact_match(self, field: str) -> str | None:
        """The value a ``field=value`` term pins (used to narrow a list, e.g. by spec.nodeName)."""
        for t in self.terms:
            if t.field == field and not t.negated:
                return t.value
        return None

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)


def escape_field_value(value: str) -> str:
    """fields.EscapeValue: backslash, comma and equals sign get a backslash."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out = []
    in_slash = False
    for ch in value:
        if in_slash:
            if ch not in "\\,=":
                raise _SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch in ",=":
            # Go prints the rune with %v, i.e. as its code point number.
            raise _SelectorError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if in_slash:
        raise _SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms = []
    start = 0
    in_slash = False
    for i, ch in enumerate(text):
        if in_slash:
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


_TERM_OPERATORS = ("!=", "==", "=")


def _split_term(term: str) -> tuple[str, str, str] | None:
    # No escaping on the left-hand side: the first operator found splits the term.
    for i in range(len(term)):
        for op in _TERM_OPERATORS:
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


# Kinds for which kube-apiserver registers a field label conversion function (core/v1); every
# other kind gets runtime.DefaultMetaV1FieldSelectorConversion (name and namespace only).
_CONVERTED_KINDS = frozenset(
    {("v1", "Pod"), ("v1", "Node"), ("v1", "Namespace"), ("v1", "Service"), ("v1", "Event")}
)
# Cluster-scoped kinds whose conversion function does not accept metadata.namespace.
_NO_NAMESPACE_LABEL = frozenset({("v1", "Node"), ("v1", "Namespace")})
# Old clients' spellings that the conversion rewrites.
_FIELD_ALIASES = {("v1", "Pod"): {"spec.host": "spec.nodeName"}}


def supported_field_labels(resource: Resource) -> tuple[str, ...]:
    gvk = (resource.api_version, resource.kind)
    labels = ["metadata.name"]
    if gvk not in _NO_NAMESPACE_LABEL:
        labels.append("metadata.namespace")
    if gvk in _CONVERTED_KINDS:
        labels.extend(resource.selectable_fields)
    return tuple(labels)


def _convert_field_label(resource: Resource, label: str) -> str:
    gvk = (resource.api_version, resource.kind)
    label = _FIELD_ALIASES.get(gvk, {}).get(label, label)
    if label in supported_field_labels(resource):
        return label
    if gvk in _CONVERTED_KINDS:
        raise _SelectorError(f"field label not supported: {label}")
    raise _SelectorError(
        f'{go_quote(label)} is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


def _parse_field_terms(text: str) -> list[FieldTerm]:
    terms = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise _SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        terms.append(FieldTerm(lhs, _unescape_field_value(rhs), negated=(op == "!=")))
    return terms


def parse_field_selector(text: str, resource: Resource | None = None) -> FieldSelector:
    """Parse ``?fieldSelector=`` text; with a resource, check and convert its field labels.

    Syntax errors come first (as upstream decodes the query before converting labels), then the
    first unsupported label in sorted term order: ``field label not supported: X``.
    """
    try:
        terms = _parse_field_terms(text)
        if resource is not None:
            terms = [FieldTerm(_convert_field_label(resource, t.field), t.value, t.negated) for t in terms]
    except _SelectorError as e:
        raise bad_request(str(e)) from None
    return FieldSelector(tuple(terms), resource)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pod_ip(obj: dict[str, Any]) -> str:
    # Upstream reads PodIPs[0]; v1 -> internal conversion fills PodIPs from podIP when empty.
    pod_ips = dig(obj, "status", "podIPs")
    if isinstance(pod_ips, list) and pod_ips and isinstance(pod_ips[0], dict):
        return _text(pod_ips[0].get("ip"))
    return _text(dig(obj, "status", "podIP"))


def field_set(resource: Resource, obj: dict[str, Any]) -> dict[str, str]:
    """The selectable fields of ``obj`` as the kind's registry strategy computes them.

    Missing values are "", booleans "true"/"false". ``status.podIPs`` is accepted as a label by
    upstream but not in its field set, so (as upstream) it only ever matches "".
    """
    fields = {"metadata.name": _text(dig(obj, "metadata", "name"))}
    if resource.namespaced:
        fields["metadata.namespace"] = _text(dig(obj, "metadata", "namespace"))
    gvk = (resource.api_version, resource.kind)
    if gvk == ("v1", "Pod"):
        fields.update(
            {
                "spec.nodeName": _text(dig(obj, "spec", "nodeName")),
                "spec.restartPolicy": _text(dig(obj, "spec", "restartPolicy")),
                "spec.schedulerName": _text(dig(obj, "spec", "schedulerName")),
                "spec.serviceAccountName": _text(dig(obj, "spec", "serviceAccountName")),
                "spec.hostNetwork": "true" if dig(obj, "spec", "hostNetwork") is True else "false",
                "status.phase": _text(dig(obj, "status", "phase")),
                "status.podIP": _pod_ip(obj),
                "status.nominatedNodeName": _text(dig(obj, "status", "nominatedNodeName")),
            }
        )
    elif gvk == ("v1", "Service"):
        fields["spec.clusterIP"] = _text(dig(obj, "spec", "clusterIP"))
        fields["spec.type"] = _text(dig(obj, "spec", "type"))
    elif gvk == ("v1", "Node"):
        fields["spec.unschedulable"] = "true" if dig(obj, "spec", "unschedulable") is True else "false"
    elif gvk == ("v1", "Namespace"):
        fields["status.phase"] = _text(dig(obj, "status", "phase"))
    elif gvk == ("v1", "Event"):
        for name in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
            fields[f"involvedObject.{name}"] = _text(dig(obj, "involvedObject", name))
        source = _text(dig(obj, "source", "component")) or _text(obj.get("reportingComponent"))
        fields.update(
            {
                "reason": _text(obj.get("reason")),
                "reportingComponent": _text(obj.get("reportingComponent")),
                "source": source,
                "type": _text(obj.get("type")),
            }
        )
    return fields
