"""Bad input: every reply to garbage is a clear Status, nothing is half-written, and the
server keeps serving. Runs against the real server process."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcnet.apiserver.launcher import ApiServerProcess

SERVICES = "/api/v1/namespaces/default/services"


def _call(server: ApiServerProcess, method: str, path: str, body: bytes | None = None,
          content_type: str = "application/json") -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    req = urllib.request.Request(server.url + path, data=body, method=method)
    req.add_header("Authorization", f"Bearer {server.token}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _assert_status(code: int, body: bytes, expected_code: int | None = None) -> dict:
    doc = json.loads(body)
    assert doc.get("kind") == "Status", body[:300]
    assert doc["code"] == code
    assert doc["message"]
    if expected_code is not None:
        assert code == expected_code, doc
    return doc


def _exists(server: ApiServerProcess, name: str) -> bool:
    return _call(server, "GET", f"{SERVICES}/{name}")[0] == 200


def test_garbage_body_is_a_400_status(api_server: ApiServerProcess) -> None:
    code, body = _call(api_server, "POST", SERVICES, b"{not json")
    _assert_status(code, body, 400)


def test_oversized_body_is_a_413_status(api_server: ApiServerProcess) -> None:
    name = "too-big"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name,
           "annotations": {"pad": "x" * (4 * 1024 * 1024)}}, "spec": {"ports": [{"port": 80}]}}
    code, body = _call(api_server, "POST", SERVICES, json.dumps(svc).encode())
    _assert_status(code, body, 413)
    assert not _exists(api_server, name)


def test_unsupported_content_type_is_a_415_status(api_server: ApiServerProcess) -> None:
    code, body = _call(api_server, "POST", SERVICES, b"a=b", content_type="application/x-www-form-urlencoded")
    _assert_status(code, body, 415)
    code, body = _call(api_server, "PATCH", f"{SERVICES}/whatever", b"{}", content_type="text/plain")
    _assert_status(code, body, 415)


def test_unknown_field_under_strict_validation_is_a_400(api_server: ApiServerProcess) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "strict-one"},
           "spec": {"ports": [{"port": 80}], "bogus": 1}}
    code, body = _call(api_server, "POST", SERVICES + "?fieldValidation=Strict", json.dumps(svc).encode())
    doc = _assert_status(code, body, 400)
    assert 'unknown field "spec.bogus"' in doc["message"]
    assert not _exists(api_server, "strict-one")


def test_malformed_selectors_and_paging_values_are_400s(api_server: ApiServerProcess) -> None:
    for query in ("labelSelector=a%20in%20(", "labelSelector=!!x", "fieldSelector=spec.nope%3Dx",
                  "fieldSelector=%3D%3D", "limit=abc", "continue=%%%garbage",
                  "continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTF9"):
        code, body = _call(api_server, "GET", f"{SERVICES}?{query}")
        assert code in (400, 410), (query, code, body[:200])
        _assert_status(code, body)
    # As kube-apiserver, a negative limit is no limit at all, not an error.
    assert _call(api_server, "GET", f"{SERVICES}?limit=-5")[0] == 200


fuzz_body = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                         max_size=4),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
    # Service-shaped documents with random values in the places users make mistakes.
    st.fixed_dictionaries({
        "apiVersion": st.sampled_from(["v1", "v2", "", "apps/v1"]),
        "kind": st.sampled_from(["Service", "Pod", "Nope", ""]),
        "metadata": st.fixed_dictionaries({"name": st.text(max_size=70)}),
        "spec": st.dictionaries(
            st.sampled_from(["type", "ports", "clusterIP", "selector", "sessionAffinity",
                             "externalTrafficPolicy", "clusterIPs", "ipFamilies"]),
            st.one_of(st.text(max_size=10), st.integers(), st.lists(st.integers() | st.text(max_size=5),
                                                                   max_size=3),
                      st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)),
            max_size=5,
        ),
    }).map(lambda v: json.dumps(v).encode()),
)

fuzz_query = st.lists(
    st.tuples(
        st.sampled_from(["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion",
                         "resourceVersionMatch", "watch", "timeoutSeconds", "fieldValidation", "pretty"]),
        st.text(max_size=30),
    ),
    max_size=4,
).map(urllib.parse.urlencode)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=fuzz_body, query=fuzz_query, method=st.sampled_from(["POST", "PUT", "PATCH", "GET", "DELETE"]),
       content_type=st.sampled_from(["application/json", "application/yaml", "application/merge-patch+json",
                                     "application/strategic-merge-patch+json", "application/json-patch+json",
                                     "text/html"]))
def test_fuzzed_requests_get_status_replies_and_leave_nothing_half_written(
    api_server: ApiServerProcess, body: bytes, query: str, method: str, content_type: str
) -> None:
    target = "fuzz-target"
    _call(api_server, "DELETE", f"{SERVICES}/{target}")  # every example starts with no object
    path = SERVICES if method == "POST" else f"{SERVICES}/{target}"
    if "watch" in query:
        path += "?" + query + "&timeoutSeconds=1"
    elif query:
        path += "?" + query
    sent_name = _name_in(body) if method == "POST" else target
    existed_before = bool(sent_name) and _exists(api_server, sent_name)
    code, reply = _call(api_server, method, path, body if method != "GET" else None, content_type)
    if code >= 400:
        _assert_status(code, reply)
        if sent_name and not existed_before:
            # A rejected request wrote nothing: the object that did not exist still does not.
            assert not _exists(api_server, sent_name), (method, query, body[:200], code)
    elif method in ("POST", "PUT", "PATCH") and code in (200, 201):
        # Accepted input produced a well-formed object; remove it so examples stay independent.
        created = json.loads(reply)
        if created.get("kind") == "Service":
            _call(api_server, "DELETE", f"{SERVICES}/{created['metadata']['name']}")
    assert _call(api_server, "GET", "/readyz")[0] == 200


def _name_in(body: bytes) -> str:
    """The metadata.name a create body asks for, when it is a plausible object name."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    name = doc.get("metadata", {}).get("name") if isinstance(doc, dict) and isinstance(
        doc.get("metadata"), dict) else None
    # ASCII only: str.isalnum() accepts '²' and friends, which cannot go into a URL path as is.
    safe = (isinstance(name, str) and name and name.isascii()
            and all(c.isalnum() or c in "-." for c in name) and len(name) < 64)
    return name if safe else ""
