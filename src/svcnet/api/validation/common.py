"""Building blocks of validation, with apimachinery's rules and message texts.

The ``is_*`` functions return lists of messages (empty when valid) as apimachinery's
``k8s.io/apimachinery/pkg/util/validation`` does; the ``validate_*`` functions wrap them in
``FieldError``s on a field path. ``GoValue`` renders a bad value the way Go's ``%#v`` prints it
in a field error (``[]string{"a", "b"}``), so messages read as kube-apiserver's do.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from svcnet.api.errors import (
    FieldError,
    forbidden,
    go_quote,
    invalid_value,
    not_supported,
    required,
    too_long,
)

FIELD_IMMUTABLE = "field is immutable"
IS_NEGATIVE = "must be greater than or equal to 0"
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
PORT_PROTOCOLS = ("SCTP", "TCP", "UDP")  # core.Protocol values, sorted as upstream lists them

# --------------------------------------------------------------------------------------------
# Go-flavoured rendering of bad values


class GoValue:
    """A bad value pre-rendered as Go's %#v would print it (FieldError prints it verbatim)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"GoValue({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoValue) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def go_slice(values: Any, type_name: str = "[]string") -> GoValue:
    """%#v of a Go slice of (named) strings: ``[]string{"a", "b"}`` or ``[]string(nil)``."""
    if values is None:
        return GoValue(f"{type_name}(nil)")
    if not isinstance(values, list):
        return GoValue(f"{type_name}{{{go_quote(values)}}}")
    return GoValue(type_name + "{" + ", ".join(go_quote(v) for v in values) + "}")


def go_string_map(values: Any) -> GoValue:
    """%#v of a map[string]string (Go prints keys sorted)."""
    if not isinstance(values, dict):
        return GoValue("map[string]string(nil)")
    items = ", ".join(f"{go_quote(k)}:{go_quote(v)}" for k, v in sorted(values.items()))
    return GoValue("map[string]string{" + items + "}")


def go_time(value: Any) -> Any:
    """metav1.Time prints through time.Time.String(): ``2024-01-02 03:04:05 +0000 UTC``."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return GoValue(parsed.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"))
    return value


# --------------------------------------------------------------------------------------------
# Typed access to JSON (Go zero values for missing fields, never raising on wrong types)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    """A string field; a missing field is Go's "" (wrong types are rendered, not dropped)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def as_int(value: Any) -> int:
    """An integer field; a missing field is 0. Wrong types become 0 (decoding rejects them)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dig(obj: Any, *keys: str) -> Any:
    """obj[k1][k2]... or None when any level is missing or not a dict."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


# --------------------------------------------------------------------------------------------
# Message builders (apimachinery util/validation)


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    text = msg + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            text += " or "
        text += f"'{example}', "
    return text + f"regex used for validation is '{fmt}')"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


EMPTY_ERROR = "must be non-empty"

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)
LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_KEY_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
LABEL_VALUE_FMT = "(" + LABEL_KEY_FMT + ")?"
LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
PERCENT_FMT = "[0-9]+%"
PERCENT_ERR = "a valid percent string must be a numeric string followed by an ending '%'"

_DNS1123_LABEL_RE = re.compile(f"^{DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")
_DNS1035_LABEL_RE = re.compile(f"^{DNS1035_LABEL_FMT}$")
_LABEL_KEY_RE = re.compile(f"^{LABEL_KEY_FMT}$")
_LABEL_VALUE_RE = re.compile(f"^{LABEL_VALUE_FMT}$")
_PORT_NAME_CHARSET_RE = re.compile("^[-a-z0-9]+$")
_PORT_NAME_LETTER_RE = re.compile("[a-z]")
_PERCENT_RE = re.compile(f"^{PERCENT_FMT}$")


def _full(regex: re.Pattern[str], value: str) -> bool:
    # Go's regexp "$" does not match before a trailing newline; fullmatch gives the same.
    return regex.fullmatch(value) is not None


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _full(_DNS1123_LABEL_RE, value):
        if _full(_DNS1123_SUBDOMAIN_RE, value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _full(_DNS1123_SUBDOMAIN_RE, value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _full(_DNS1035_LABEL_RE, value):
        errs.append(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """A label key / qualified name: optional DNS-subdomain prefix and '/', then a name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + EMPTY_ERROR)
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + EMPTY_ERROR)
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _full(_LABEL_KEY_RE, name):
        errs.append("name part " + regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _full(_LABEL_VALUE_RE, value):
        errs.append(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


def is_valid_port_name(port: str) -> list[str]:
    """IANA_SVC_NAME: at most 15 of [-a-z0-9], at least one letter, no '--', no edge '-'."""
    errs = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _full(_PORT_NAME_CHARSET_RE, port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER_RE.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_percent(value: str) -> list[str]:
    return [] if _full(_PERCENT_RE, value) else [regex_error(PERCENT_ERR, PERCENT_FMT, "1%", "93%")]


# --------------------------------------------------------------------------------------------
# Name functions (apimachinery api/validation/generic.go): prefix=True is for generateName,
# where a trailing dash is allowed because random characters follow.


NameFn = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str) -> str:
    if len(name) > 1 and name.endswith("-"):
        return name[:-1] + "a"
    return name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


# --------------------------------------------------------------------------------------------
# FieldError wrappers


def validate_dns1123_label(value: str, path: str) -> list[FieldError]:
    return [invalid_value(path, value, m) for m in is_dns1123_label(value)]


def validate_dns1123_subdomain(value: str, path: str) -> list[FieldError]:
    return [invalid_value(path, value, m) for m in is_dns1123_subdomain(value)]


def validate_qualified_name(value: str, path: str) -> list[FieldError]:
    return [invalid_value(path, value, m) for m in is_qualified_name(value)]


def validate_required_enum(value: str, path: str, allowed: tuple[str, ...]) -> list[FieldError]:
    """Required, and one of ``allowed`` (upstream's Required, then NotSupported)."""
    if not value:
        return [required(path)]
    if value not in allowed:
        return [not_supported(path, value, allowed)]
    return []


def validate_port_num_or_name(value: Any, path: str) -> list[FieldError]:
    """An IntOrString port: 1-65535, or an IANA service name."""
    if isinstance(value, str):
        return [invalid_value(path, value, m) for m in is_valid_port_name(value)]
    number = as_int(value)
    return [invalid_value(path, number, m) for m in is_valid_port_num(number)]


def validate_nonnegative(value: int, path: str) -> list[FieldError]:
    return [invalid_value(path, value, IS_NEGATIVE)] if value < 0 else []


def validate_label_name(key: str, path: str) -> list[FieldError]:
    return [invalid_value(path, key, m) for m in is_qualified_name(key)]


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in as_dict(labels).items():
        errs.extend(validate_label_name(key, path))
        text = as_str(value)
        errs.extend(invalid_value(path, text, m) for m in is_valid_label_value(text))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    for key, value in as_dict(annotations).items():
        # The rule is a qualified name except that case does not matter.
        errs.extend(invalid_value(path, key, m) for m in is_qualified_name(key.lower()))
        total += len(key.encode()) + len(as_str(value).encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def validate_immutable(new: Any, old: Any, path: str, rendered: Any = None) -> list[FieldError]:
    if semantic_equal(new, old):
        return []
    return [invalid_value(path, new if rendered is None else rendered, FIELD_IMMUTABLE)]


def semantic_equal(a: Any, b: Any) -> bool:
    """Go's Semantic.DeepEqual for JSON: nil and empty maps/lists/strings are equal."""
    if _empty(a) and _empty(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return all(semantic_equal(a.get(k), b.get(k)) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(semantic_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b)


def _empty(value: Any) -> bool:
    return (
        value is None
        or value == {}
        or value == []
        or value == ""
        or value is False
        or (is_int(value) and value == 0)
    )


# --------------------------------------------------------------------------------------------
# IP addresses (k8s.io/utils/net ParseIPSloppy semantics)

_DOTTED_QUAD_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip_sloppy(value: Any) -> IPAddress | None:
    """Go's net.ParseIP, which also accepts leading zeros in IPv4 (read as decimal)."""
    if not isinstance(value, str) or not value or "%" in value:
        return None
    return _parse_ip_text(value)


# Slices, Endpoints and Services are revalidated on every write with mostly the same addresses;
# parsed addresses are immutable, so a bounded cache makes repeated parsing nearly free.
@functools.lru_cache(maxsize=65536)
def _parse_ip_text(value: str) -> IPAddress | None:
    match = _DOTTED_QUAD_RE.match(value)
    if match:
        octets = [int(x) for x in match.groups()]
        if any(o > 255 for o in octets):
            return None
        return ipaddress.IPv4Address(".".join(str(o) for o in octets))
    if ":" not in value:
        return None
    try:
        return ipaddress.IPv6Address(value)
    except ValueError:
        return None


def ip_family(ip: IPAddress) -> str:
    """IPv4 for v4 and IPv4-mapped v6 (Go's To4() != nil), otherwise IPv6."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return "IPv4"
    return "IPv4" if ip.version == 4 else "IPv6"


def ip_family_of(value: str) -> str | None:
    ip = parse_ip_sloppy(value)
    return ip_family(ip) if ip is not None else None


def is_valid_ip(path: str, value: Any) -> list[FieldError]:
    if parse_ip_sloppy(value) is None:
        return [
            invalid_value(
                path, as_str(value), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
            )
        ]
    return []


def is_valid_ipv4_address(path: str, value: Any) -> list[FieldError]:
    ip = parse_ip_sloppy(value)
    if ip is None or ip_family(ip) != "IPv4":
        return [invalid_value(path, as_str(value), "must be a valid IPv4 address")]
    return []


def is_valid_ipv6_address(path: str, value: Any) -> list[FieldError]:
    ip = parse_ip_sloppy(value)
    if ip is None or ip_family(ip) != "IPv6":
        return [invalid_value(path, as_str(value), "must be a valid IPv6 address")]
    return []


def is_valid_cidr(path: str, value: Any) -> list[FieldError]:
    text = as_str(value)
    address, slash, bits = text.partition("/")
    ok = False
    if slash and bits.isdigit() and (ip := parse_ip_sloppy(address)) is not None:
        max_bits = 32 if ip.version == 4 else 128
        ok = int(bits) <= max_bits and not (len(bits) > 1 and bits.startswith("0"))
    if not ok:
        return [invalid_value(path, text, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    return []


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
_LINK_LOCAL_MULTICAST_V4 = ipaddress.ip_network("224.0.0.0/24")


LOOPBACK_DETAIL = "may not be in the loopback range (127.0.0.0/8, ::1/128)"


def validate_non_special_ip(value: Any, path: str) -> list[FieldError]:
    """No unspecified, loopback, link-local or link-local multicast addresses."""
    text = as_str(value)
    ip = parse_ip_sloppy(text)
    if ip is None:
        return [invalid_value(path, text, "must be a valid IP address")]
    ip = _unmapped(ip)
    errs = []
    if ip.is_unspecified:
        errs.append(invalid_value(path, text, f"may not be unspecified ({text})"))
    if ip.is_loopback:
        errs.append(invalid_value(path, text, LOOPBACK_DETAIL))
    link_local_unicast = ip in (_LINK_LOCAL_V4 if ip.version == 4 else _LINK_LOCAL_V6)
    if link_local_unicast:
        errs.append(
            invalid_value(path, text, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        )
    link_local_multicast = (
        ip in _LINK_LOCAL_MULTICAST_V4
        if ip.version == 4
        else (ip.is_multicast and (int(ip) >> 112) & 0xF == 2)
    )
    if link_local_multicast:
        errs.append(
            invalid_value(
                path, text, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
            )
        )
    return errs


def is_dual_stack(ips: Iterable[str]) -> bool:
    families = {ip_family_of(ip) for ip in ips}
    return "IPv4" in families and "IPv6" in families


# --------------------------------------------------------------------------------------------
# metav1.LabelSelector


def validate_label_selector(selector: Any, path: str) -> list[FieldError]:
    """meta/v1/validation ValidateLabelSelector (strict label values)."""
    errs: list[FieldError] = []
    if selector is None:
        return errs
    selector = as_dict(selector)
    for i, req in enumerate(as_list(selector.get("matchExpressions"))):
        req_path = f"{path}.matchExpressions[{i}]"
        req = as_dict(req)
        operator = as_str(req.get("operator"))
        values = as_list(req.get("values"))
        if operator in ("In", "NotIn"):
            if not values:
                errs.append(
                    required(f"{req_path}.values", "must be specified when `operator` is 'In' or 'NotIn'")
                )
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    forbidden(
                        f"{req_path}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errs.append(invalid_value(f"{req_path}.operator", operator, "not a valid selector operator"))
        errs.extend(validate_label_name(as_str(req.get("key")), f"{req_path}.key"))
        for j, value in enumerate(values):
            text = as_str(value)
            errs.extend(invalid_value(f"{req_path}.values[{j}]", text, m) for m in is_valid_label_value(text))
    errs.extend(validate_labels(selector.get("matchLabels"), f"{path}.matchLabels"))
    return errs


def label_selector_matches(selector: Any, labels: Any) -> bool:
    """Whether labels satisfy a metav1.LabelSelector (an empty selector matches everything)."""
    selector = as_dict(selector)
    labels = as_dict(labels)
    for key, value in as_dict(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for req in as_list(selector.get("matchExpressions")):
        req = as_dict(req)
        key = req.get("key")
        values = as_list(req.get("values"))
        operator = req.get("operator")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def label_selector_is_empty(selector: Any) -> bool:
    selector = as_dict(selector)
    return not as_dict(selector.get("matchLabels")) and not as_list(selector.get("matchExpressions"))


def go_label_selector(selector: Any) -> GoValue:
    """%#v of a metav1.LabelSelector, for the rare messages that print one."""
    selector = as_dict(selector)
    labels = selector.get("matchLabels")
    rendered_labels = go_string_map(labels)
    exprs = selector.get("matchExpressions")
    rendered_exprs = (
        "[]v1.LabelSelectorRequirement(nil)"
        if not exprs
        else (
            "[]v1.LabelSelectorRequirement{"
            + ", ".join(
                "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}".format(
                    go_quote(as_str(as_dict(e).get("key"))),
                    go_quote(as_str(as_dict(e).get("operator"))),
                    go_slice(as_dict(e).get("values")),
                )
                for e in as_list(exprs)
            )
            + "}"
        )
    )
    return GoValue(f"v1.LabelSelector{{MatchLabels:{rendered_labels}, MatchExpressions:{rendered_exprs}}}")
