import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcnet.api.errors import StatusError
from svcnet.api.resources import by_kind
from svcnet.api.selectors import (
    escape_field_value,
    field_set,
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector_dict,
    selector_from_set,
)

POD = by_kind("v1", "Pod")
SERVICE = by_kind("v1", "Service")
NODE = by_kind("v1", "Node")
NAMESPACE = by_kind("v1", "Namespace")
EVENT = by_kind("v1", "Event")
DEPLOYMENT = by_kind("apps/v1", "Deployment")
ENDPOINTSLICE = by_kind("discovery.k8s.io/v1", "EndpointSlice")

LABELS = {"app": "web", "tier": "front", "version": "10"}


def bad_label(text: str) -> str:
    with pytest.raises(StatusError) as info:
        parse_label_selector(text)
    assert info.value.code == 400
    assert info.value.reason == "BadRequest"
    return info.value.message


# ---- label selectors: every operator -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "matched"),
    [
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),  # != matches objects without the key
        ("app in (db,web)", True),
        ("app in (db)", False),
        ("app notin (db)", True),
        ("app notin (web)", False),
        ("missing notin (x)", True),  # notin matches objects without the key
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("version>9", True),
        ("version>10", False),
        ("version<11", True),
        ("version<10", False),
        ("app>1", False),  # not an integer label: Gt never matches
        ("missing>1", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("  app = web ,\ttier\n=front  ", True),  # whitespace is a delimiter
        ("", True),
        ("missing=", False),
        ("missing in ()", False),
        ("missing notin ()", True),
    ],
)
def test_label_operators(text, matched):
    assert parse_label_selector(text).matches(LABELS) is matched


def test_empty_value_matches_empty_label():
    assert parse_label_selector("a=").matches({"a": ""})
    assert parse_label_selector("a in (,x)").matches({"a": ""})


def test_in_and_notin_are_usable_as_keys_and_values():
    sel = parse_label_selector("in in (notin),notin=in")
    assert sel.matches({"in": "notin", "notin": "in"})
    assert not sel.matches({"in": "x", "notin": "in"})


def test_matches_none_labels_like_empty():
    assert parse_label_selector("!a").matches(None)
    assert not parse_label_selector("a").matches(None)


def test_selector_is_sorted_by_key_and_prints_like_upstream():
    sel = parse_label_selector("z in (b,a), a notin (y,x), !m, k, n>3")
    assert str(sel) == "a notin (x,y),k,!m,n>3,z in (a,b)"
    assert parse_label_selector("").empty
    assert not sel.empty


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a=b,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("x in a", "unable to parse requirement: found 'a' expected: '('"),
        ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("x=(", "unable to parse requirement: found '(', expected: identifier"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        (
            "x>a",
            'unable to parse requirement: values[0]: Invalid value: "a": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "x<",
            'unable to parse requirement: values[0]: Invalid value: "": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
    ],
)
def test_label_syntax_errors(text, message):
    assert bad_label(text) == message


def test_invalid_key_message_names_nil_path_and_regex():
    message = bad_label("-a=b")
    assert message == (
        'unable to parse requirement: <nil>: Invalid value: "-a": name part must consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )


def test_invalid_key_prefix_and_length():
    assert "prefix part a lowercase RFC 1123 subdomain" in bad_label("Example.com/a")
    assert "name part must be no more than 63 characters" in bad_label("a" * 64)
    assert "a qualified name must consist" in bad_label("a/b/c")
    assert "prefix part must be non-empty" in bad_label("/a")


def test_invalid_value_message_uses_values_index_and_key():
    message = bad_label("app=-web")
    assert message.startswith(
        'unable to parse requirement: values[0][app]: Invalid value: "-web": '
        "a valid label must be an empty string"
    )
    assert "must be no more than 63 characters" in bad_label("app=" + "v" * 64)


def test_several_value_errors_are_aggregated_in_brackets():
    message = bad_label("x>-a")
    assert message.startswith("unable to parse requirement: [values[0]: Invalid value: \"-a\": for 'Gt'")
    assert ", values[0][x]: Invalid value:" in message
    assert message.endswith("]")


# ---- metav1.LabelSelector ------------------------------------------------------------------


def test_nil_label_selector_matches_nothing_and_empty_matches_everything():
    assert not selector_from_label_selector_dict(None).matches({"a": "b"})
    assert not selector_from_label_selector_dict(None).empty
    assert selector_from_label_selector_dict({}).matches({"a": "b"})
    assert selector_from_label_selector_dict({"matchLabels": {}, "matchExpressions": []}).empty


def test_label_selector_dict_operators():
    sel = selector_from_label_selector_dict(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "version", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "legacy": "1"})
    assert not sel.matches({**LABELS, "env": "prod"})
    assert not sel.matches({**LABELS, "tier": "back"})
    assert str(sel) == "app=web,env notin (prod),!legacy,tier in (edge,front),version"


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            '"Gt" is not a valid label selector operator',
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist',
        ),
        ({"matchLabels": {"a b": "c"}}, 'key: Invalid value: "a b": name part must consist'),
    ],
)
def test_label_selector_dict_errors(selector, message):
    with pytest.raises(StatusError) as info:
        selector_from_label_selector_dict(selector)
    assert info.value.code == 400
    assert info.value.message.startswith(message)


def test_selector_from_set_is_equality_and_empty_selects_all():
    assert selector_from_set({"app": "web"}).matches(LABELS)
    assert not selector_from_set({"app": "db"}).matches(LABELS)
    assert selector_from_set({}).matches({})
    assert selector_from_set(None).empty


# ---- field selectors -----------------------------------------------------------------------


def make_pod(**status):
    return {
        "metadata": {"name": "p1", "namespace": "default"},
        "spec": {
            "nodeName": "node-1",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "hostNetwork": True,
        },
        "status": {"phase": "Running", **status},
    }


def test_pod_field_set_matches_upstream_strategy():
    fields = field_set(POD, make_pod(podIPs=[{"ip": "10.0.0.5"}, {"ip": "fd00::5"}], podIP="10.0.0.5"))
    assert fields == {
        "metadata.name": "p1",
        "metadata.namespace": "default",
        "spec.nodeName": "node-1",
        "spec.restartPolicy": "Always",
        "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "default",
        "spec.hostNetwork": "true",
        "status.phase": "Running",
        "status.podIP": "10.0.0.5",
        "status.nominatedNodeName": "",
    }
    # podIP alone (no podIPs) still counts, as the v1 -> internal conversion fills podIPs.
    assert field_set(POD, make_pod(podIP="10.0.0.9"))["status.podIP"] == "10.0.0.9"
    assert field_set(POD, {"metadata": {"name": "x"}})["spec.hostNetwork"] == "false"


def test_pod_field_selector_matching():
    pod = make_pod(podIP="10.0.0.5")
    assert parse_field_selector("spec.nodeName=node-1,status.phase!=Failed", POD).matches(pod)
    assert not parse_field_selector("spec.nodeName==node-2", POD).matches(pod)
    assert parse_field_selector("spec.host=node-1", POD).matches(pod)  # old clients' alias
    assert parse_field_selector("status.podIP=10.0.0.5", POD).matches(pod)
    assert parse_field_selector("spec.hostNetwork=true", POD).matches(pod)
    assert parse_field_selector("metadata.namespace=default,metadata.name=p1", POD).matches(pod)
    # Accepted label, but upstream's field set has no status.podIPs: only "" matches.
    assert not parse_field_selector("status.podIPs=10.0.0.5", POD).matches(pod)
    assert parse_field_selector("", POD).matches(pod)


def test_service_node_namespace_event_fields():
    svc = {"metadata": {"name": "s", "namespace": "ns"}, "spec": {"clusterIP": "None", "type": "ClusterIP"}}
    assert parse_field_selector("spec.clusterIP=None,spec.type=ClusterIP", SERVICE).matches(svc)
    node = {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}}
    assert field_set(NODE, node) == {"metadata.name": "n1", "spec.unschedulable": "true"}
    assert parse_field_selector("spec.unschedulable=false", NODE).matches({"metadata": {"name": "n2"}})
    ns = {"metadata": {"name": "default"}, "status": {"phase": "Active"}}
    assert parse_field_selector("status.phase=Active", NAMESPACE).matches(ns)
    event = {
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "default", "uid": "u1"},
        "reason": "Started",
        "type": "Normal",
        "reportingComponent": "kubelet",
        "source": {},
    }
    fields = field_set(EVENT, event)
    assert fields["involvedObject.kind"] == "Pod"
    assert fields["involvedObject.fieldPath"] == ""
    assert fields["source"] == "kubelet"  # falls back to reportingComponent
    sel = parse_field_selector("involvedObject.kind=Pod,involvedObject.name=p1,reason=Started", EVENT)
    assert sel.matches(event)


@pytest.mark.parametrize(
    ("text", "resource", "message"),
    [
        ("spec.foo=x", POD, "field label not supported: spec.foo"),
        ("spec.type=x", POD, "field label not supported: spec.type"),
        ("metadata.namespace=x", NODE, "field label not supported: metadata.namespace"),
        ("metadata.namespace=x", NAMESPACE, "field label not supported: metadata.namespace"),
        ("status.phase=x", SERVICE, "field label not supported: status.phase"),
        (
            "spec.replicas=1",
            DEPLOYMENT,
            '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        (
            "addressType=IPv4",
            ENDPOINTSLICE,
            '"addressType" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        ("abc", POD, "invalid selector: 'abc'; can't understand 'abc'"),
        ("a=b,c", POD, "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("metadata.name=a\\x", POD, "invalid field selector: invalid escape sequence: \\x"),
        ("metadata.name=a\\", POD, "invalid field selector: invalid escape sequence: \\"),
        ("metadata.name=a=b", POD, "invalid field selector: unescaped character in value: 61"),
    ],
)
def test_field_selector_errors(text, resource, message):
    with pytest.raises(StatusError) as info:
        parse_field_selector(text, resource)
    assert info.value.code == 400
    assert info.value.message == message


def test_field_escapes_round_trip():
    sel = parse_field_selector("metadata.name=a\\,b\\=c\\\\d", POD)
    assert sel.terms[0].value == "a,b=c\\d"
    assert str(sel) == "metadata.name=a\\,b\\=c\\\\d"
    assert sel.matches({"metadata": {"name": "a,b=c\\d"}})


def test_deployment_and_cluster_scoped_generic_fields():
    dep = {"metadata": {"name": "d", "namespace": "x"}}
    assert parse_field_selector("metadata.name=d,metadata.namespace=x", DEPLOYMENT).matches(dep)
    assert "metadata.namespace" not in field_set(NODE, {"metadata": {"name": "n"}})


# ---- properties ----------------------------------------------------------------------------

SELECTOR_ALPHABET = st.sampled_from([*"abcxyz019-_./=!<>(), \tin", "in", "notin", "!=", "=="])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(SELECTOR_ALPHABET, max_size=20).map("".join)))
def test_label_parse_raises_only_status_errors_and_round_trips(text):
    try:
        sel = parse_label_selector(text)
    except StatusError as e:
        assert e.code == 400
        return
    again = parse_label_selector(str(sel))
    assert again.requirements == sel.requirements


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.lists(st.sampled_from([*list("ab.=!,\\ "), "metadata.name", "spec.nodeName"]), max_size=15).map(
            "".join
        ),
    )
)
def test_field_parse_raises_only_status_errors_and_round_trips(text):
    try:
        sel = parse_field_selector(text)
    except StatusError as e:
        assert e.code == 400
        return
    # Upstream sorts the raw terms as strings before parsing, so printing and re-parsing may
    # reorder terms (e.g. "==,=0"); what must survive is the set of requirements.
    again = parse_field_selector(str(sel)).terms
    key = lambda t: (t.field, t.value, t.negated)  # noqa: E731
    assert sorted(again, key=key) == sorted(sel.terms, key=key)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_escape_value_inverts(value):
    sel = parse_field_selector("metadata.name=" + escape_field_value(value), POD)
    assert sel.terms[0].value == value
