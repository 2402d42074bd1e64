import copy
import json
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from svcnet.api.errors import StatusError
from svcnet.api.patch import json_patch, merge_patch, strategic_merge_patch
from svcnet.api.schema import drop_unknown_fields


def status_of(fn, *args):
    with pytest.raises(StatusError) as info:
        fn(*args)
    return info.value


# ---- JSON patch: RFC 6902 appendix A ---------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "ops", "expected"),
    [
        # A.1 adding an object member
        ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"foo": "bar", "baz": "qux"}),
        # A.2 adding an array element
        (
            {"foo": ["bar", "baz"]},
            [{"op": "add", "path": "/foo/1", "value": "qux"}],
            {"foo": ["bar", "qux", "baz"]},
        ),
        # A.3 removing an object member
        ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
        # A.4 removing an array element
        ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
        # A.5 replacing a value
        (
            {"baz": "qux", "foo": "bar"},
            [{"op": "replace", "path": "/baz", "value": "boo"}],
            {"baz": "boo", "foo": "bar"},
        ),
        # A.6 moving a value
        (
            {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
            [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
            {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
        ),
        # A.7 moving an array element
        (
            {"foo": ["all", "grass", "cows", "eat"]},
            [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
            {"foo": ["all", "cows", "eat", "grass"]},
        ),
        # A.8 testing a value: success
        (
            {"baz": "qux", "foo": ["a", 2, "c"]},
            [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
            {"baz": "qux", "foo": ["a", 2, "c"]},
        ),
        # A.10 adding a nested member object
        (
            {"foo": "bar"},
            [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
            {"foo": "bar", "child": {"grandchild": {}}},
        ),
        # A.11 ignoring unrecognized elements
        (
            {"foo": "bar"},
            [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
            {"foo": "bar", "baz": "qux"},
        ),
        # A.14 ~ escape ordering
        ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
        # A.16 adding an array value
        (
            {"foo": ["bar"]},
            [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
            {"foo": ["bar", ["abc", "def"]]},
        ),
        # pointer escaping of "/" and "~" in keys (annotations such as example.com/x)
        (
            {"a": {"example.com/x": "1", "t~": "2"}},
            [
                {"op": "replace", "path": "/a/example.com~1x", "value": "3"},
                {"op": "remove", "path": "/a/t~0"},
            ],
            {"a": {"example.com/x": "3"}},
        ),
        # copy, and json-patch v4's negative index counting from the end
        (
            {"a": [1, 2, 3], "b": {}},
            [{"op": "copy", "from": "/a", "path": "/b/c"}, {"op": "remove", "path": "/a/-1"}],
            {"a": [1, 2], "b": {"c": [1, 2, 3]}},
        ),
        # test of a missing member against null passes (json-patch v4)
        ({"a": 1}, [{"op": "test", "path": "/b", "value": None}], {"a": 1}),
    ],
)
def test_json_patch_rfc_examples(doc, ops, expected):
    before = copy.deepcopy(doc)
    assert json_patch(doc, ops) == expected
    assert doc == before  # input untouched


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/baz", "value": "bar"}],  # A.9 test failure
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],  # A.12 add to a nonexistent target
        [{"op": "test", "path": "/foo", "value": "1"}],  # A.15 a string is not a number
        [{"op": "remove", "path": "/nope"}],
        [{"op": "add", "path": "/arr/5", "value": 1}],
        [{"op": "replace", "path": "/arr/x", "value": 1}],
        [{"op": "frobnicate", "path": "/foo"}],
        [{"op": "add", "path": "foo", "value": 1}],
        [{"op": "move", "from": "/missing", "path": "/foo"}],
        [{"op": "add", "path": "/foo/x", "value": 1}],  # traverse into a number
    ],
)
def test_json_patch_failures_are_422_invalid(ops):
    err = status_of(json_patch, {"baz": "qux", "foo": 1, "arr": [0]}, ops)
    assert err.code == 422
    assert err.reason == "Invalid"
    assert err.message == "the server rejected our request due to an error in our request"
    assert err.__cause__ is not None  # the precise reason stays available for logs


def test_json_patch_that_is_not_an_op_list_is_400():
    assert status_of(json_patch, {}, {"op": "add"}).code == 400
    err = status_of(json_patch, {}, ["add"])
    assert err.message == "json: cannot unmarshal string into Go value of type jsonpatch.Operation"


def test_json_patch_operation_limit_is_413():
    err = status_of(json_patch, {}, [{"op": "test", "path": "/a", "value": None}] * 10001)
    assert err.code == 413
    assert err.message.endswith("The allowed maximum operations in a JSON patch is 10000, got 10001")


# ---- merge patch: RFC 7386 appendix A --------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc_examples(doc, patch, expected):
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    out = merge_patch(doc, patch)
    assert out == expected
    # The result is the caller's to change: it shares nothing with either input.
    for container in (out, *(out.values() if isinstance(out, dict) else out)):
        if isinstance(container, dict):
            container["mutated"] = True
        elif isinstance(container, list):
            container.append("mutated")
    assert (doc, patch) == (doc_before, patch_before)


def test_merge_patch_replaces_lists_and_rejects_scalars():
    svc = {"spec": {"ports": [{"port": 80}, {"port": 443}], "clusterIPs": ["10.0.0.1"]}}
    assert merge_patch(svc, {"spec": {"ports": [{"port": 8080}]}}) == {
        "spec": {"ports": [{"port": 8080}], "clusterIPs": ["10.0.0.1"]}
    }
    for bad in ("x", 1, None, True):
        err = status_of(merge_patch, svc, bad)
        assert (err.code, err.message) == (400, "Invalid JSON Patch")


# ---- strategic merge patch ------------------------------------------------------------------

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "finalizers": ["a", "b"], "labels": {"app": "web"}},
    "spec": {
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "selector": {"app": "web"},
        "ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
            {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
        ],
    },
}


def smp(doc, patch, api_version="v1", kind=None):
    before = copy.deepcopy(doc)
    out = strategic_merge_patch(doc, patch, api_version, kind or doc["kind"])
    assert doc == before
    return out


def test_python_client_dict_patch_merges_maps():
    out = smp(SERVICE, {"metadata": {"labels": {"tier": "front"}}, "spec": {"selector": {"app": "web2"}}})
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert out["spec"]["selector"] == {"app": "web2"}
    assert out["spec"]["ports"] == SERVICE["spec"]["ports"]


def test_kubectl_apply_shape_changes_one_port_and_keeps_order():
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
            "ports": [{"port": 443, "targetPort": 9443}],
        },
    }
    out = smp(SERVICE, patch)
    assert out["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 9443},
    ]
    assert out["metadata"]["annotations"] == {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert "$setElementOrder/ports" not in out["spec"]


def test_set_element_order_reorders_ports():
    patch = {"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}]}}
    assert [p["port"] for p in smp(SERVICE, patch)["spec"]["ports"]] == [443, 80]


def test_new_port_is_merged_in_front_of_server_only_items():
    out = smp(SERVICE, {"spec": {"ports": [{"port": 8080, "protocol": "TCP"}]}})
    assert [p["port"] for p in out["spec"]["ports"]] == [8080, 80, 443]


def test_port_delete_directive_and_null_field():
    out = smp(
        SERVICE, {"spec": {"ports": [{"port": 80, "$patch": "delete"}, {"port": 443, "targetPort": None}]}}
    )
    assert out["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP"}]


def test_list_replace_directive():
    out = smp(SERVICE, {"spec": {"ports": [{"port": 53, "protocol": "UDP"}, {"$patch": "replace"}]}})
    assert out["spec"]["ports"] == [{"port": 53, "protocol": "UDP"}]


def test_map_replace_and_delete_directives():
    out = smp(SERVICE, {"spec": {"selector": {"$patch": "replace", "run": "x"}}})
    assert out["spec"]["selector"] == {"run": "x"}
    out = smp(SERVICE, {"metadata": {"labels": {"$patch": "delete"}}})
    assert out["metadata"]["labels"] == {}


def test_null_deletes_field_and_lists_without_strategy_are_replaced():
    out = smp(SERVICE, {"spec": {"clusterIP": None, "clusterIPs": ["10.96.0.11"]}})
    assert "clusterIP" not in out["spec"]
    assert out["spec"]["clusterIPs"] == ["10.96.0.11"]


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list():
    out = smp(SERVICE, {"metadata": {"finalizers": ["b", "c"]}})
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]
    out = smp(SERVICE, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]
    out = smp(SERVICE, {"metadata": {"$setElementOrder/finalizers": ["b", "a", "c"], "finalizers": ["c"]}})
    assert out["metadata"]["finalizers"] == ["b", "a", "c"]


def test_owner_references_merge_by_uid():
    doc = copy.deepcopy(SERVICE)
    doc["metadata"]["ownerReferences"] = [{"uid": "u1", "name": "a", "kind": "X", "apiVersion": "v1"}]
    added = {"uid": "u2", "name": "b", "kind": "Y", "apiVersion": "v1"}
    out = smp(doc, {"metadata": {"ownerReferences": [{"uid": "u1", "controller": True}, added]}})
    refs = {r["uid"]: r for r in out["metadata"]["ownerReferences"]}
    assert refs["u1"] == {"uid": "u1", "name": "a", "kind": "X", "apiVersion": "v1", "controller": True}
    assert refs["u2"]["name"] == "b"


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p"},
    "spec": {
        "containers": [
            {
                "name": "app",
                "image": "app:1",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            {"name": "sidecar", "image": "side:1"},
        ],
        "initContainers": [{"name": "init", "image": "init:1"}],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "tolerations": [{"key": "a", "operator": "Exists"}],
    },
    "status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}],
        "podIPs": [{"ip": "10.0.0.5"}],
    },
}


def test_pod_containers_env_ports_and_mounts_merge_by_their_keys():
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:2",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                    "ports": [{"containerPort": 8080}],
                    "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                }
            ]
        }
    }
    out = smp(POD, patch)
    app, sidecar = out["spec"]["containers"]
    assert sidecar == {"name": "sidecar", "image": "side:1"}
    assert app["image"] == "app:2"
    assert {e["name"]: e["value"] for e in app["env"]} == {"A": "1", "B": "3", "C": "4"}
    assert [p["containerPort"] for p in app["ports"]] == [8080, 80]
    assert app["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]


def test_init_containers_merge_by_name_and_tolerations_are_replaced():
    out = smp(
        POD,
        {
            "spec": {
                "initContainers": [{"name": "init", "image": "init:2"}],
                "tolerations": [{"key": "b", "operator": "Exists"}],
            }
        },
    )
    assert out["spec"]["initContainers"] == [{"name": "init", "image": "init:2"}]
    assert out["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_volume_retain_keys_swaps_the_volume_source():
    patch = {
        "spec": {
            "volumes": [{"name": "data", "hostPath": {"path": "/srv"}, "$retainKeys": ["hostPath", "name"]}]
        }
    }
    assert smp(POD, patch)["spec"]["volumes"] == [{"name": "data", "hostPath": {"path": "/srv"}}]


def test_retain_keys_must_list_every_patched_field():
    patch = {"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/srv"}, "$retainKeys": ["name"]}]}}
    err = status_of(strategic_merge_patch, POD, patch, "v1", "Pod")
    assert (err.code, err.message) == (400, "invalid patch format of retainKeys")


def test_pod_status_conditions_by_type_and_pod_ips_by_ip():
    out = smp(
        POD, {"status": {"conditions": [{"type": "Ready", "status": "True"}], "podIPs": [{"ip": "fd00::5"}]}}
    )
    assert {c["type"]: c["status"] for c in out["status"]["conditions"]} == {
        "Ready": "True",
        "Initialized": "True",
    }
    assert {p["ip"] for p in out["status"]["podIPs"]} == {"10.0.0.5", "fd00::5"}


def test_node_addresses_and_conditions_by_type_and_pod_cidrs_as_set():
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n"},
        "spec": {"podCIDRs": ["10.244.0.0/24"]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "192.0.2.1"},
                {"type": "Hostname", "address": "n"},
            ],
            "conditions": [{"type": "Ready", "status": "Unknown"}],
        },
    }
    out = smp(
        node,
        {
            "spec": {"podCIDRs": ["fd00:10::/64"]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "192.0.2.9"}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        },
    )
    # Upstream's ordering puts patch items that the live list lacks in front.
    assert out["spec"]["podCIDRs"] == ["fd00:10::/64", "10.244.0.0/24"]
    assert {a["type"]: a["address"] for a in out["status"]["addresses"]} == {
        "InternalIP": "192.0.2.9",
        "Hostname": "n",
    }
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


def test_deployment_template_uses_pod_spec_keys_and_conditions_merge():
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 1,
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": copy.deepcopy(POD["spec"])},
        },
        "status": {"conditions": [{"type": "Available", "status": "True"}]},
    }
    patch = {
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                    "containers": [{"name": "sidecar", "image": "side:2"}],
                }
            },
        },
        "status": {"conditions": [{"type": "Progressing", "status": "True"}]},
    }
    out = smp(dep, patch, "apps/v1")
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[1]["image"] == "side:2"
    assert containers[0]["image"] == "app:1"
    assert out["spec"]["replicas"] == 3
    assert {c["type"] for c in out["status"]["conditions"]} == {"Available", "Progressing"}


def test_statefulset_template_containers_merge():
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "s"},
        "spec": {"template": {"spec": {"containers": [{"name": "db", "image": "db:1"}]}}},
    }
    out = smp(
        sts, {"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "db:2"}]}}}}, "apps/v1"
    )
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "db", "image": "db:2"}]


def test_endpointslice_lists_are_replaced():
    eps = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "e"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
        "ports": [{"name": "http", "port": 80}],
    }
    out = smp(eps, {"endpoints": [{"addresses": ["10.0.0.3"]}]}, "discovery.k8s.io/v1")
    assert out["endpoints"] == [{"addresses": ["10.0.0.3"]}]
    assert out["ports"] == [{"name": "http", "port": 80}]


def test_new_subtree_takes_patch_without_nulls_or_directives():
    out = smp(SERVICE, {"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60, "x": None}}}})
    assert out["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 60}}
    out = smp(SERVICE, {"metadata": {"annotations": {"$patch": "delete"}}})
    assert "annotations" not in out["metadata"]


def test_null_patch_is_a_no_op():
    assert smp(SERVICE, None) == SERVICE


@pytest.mark.parametrize(
    ("patch", "code", "message"),
    [
        (
            {"metadata": {"$deleteFromPrimitiveListX/finalizers": ["a"]}},
            400,
            "invalid patch format of primitive list",
        ),
        ({"spec": {"$setElementOrder/ports": "x"}}, 500, "expected a []interface {}, but received a string"),
        ({"spec": {"$retainKeys": "ports"}}, 400, "invalid patch format of retainKeys"),
        (
            {"spec": {"ports": [{"name": "x"}]}},
            500,
            "map: map[name:x] does not contain declared merge key: port",
        ),
        (
            {"spec": {"ports": [{"$patch": "merge", "port": 80}]}},
            500,
            "merging lists cannot yet be specified in the patch",
        ),
        (
            {"spec": {"selector": {"$patch": "merge"}}},
            500,
            "unknown patch type: merge in map: map[$patch:merge]",
        ),
        (
            {"spec": {"ports": [[1]]}},
            500,
            "list element types are not identical: [[map[name:http port:80 "
            "protocol:TCP targetPort:8080] map[name:https port:443 protocol:TCP targetPort:8443]] [[1]]]",
        ),
        (
            ["not", "a", "map"],
            400,
            "json: cannot unmarshal array into Go value of type map[string]interface {}",
        ),
    ],
)
def test_smp_errors(patch, code, message):
    err = status_of(strategic_merge_patch, SERVICE, patch, "v1", "Service")
    assert (err.code, err.message) == (code, message)


def test_smp_list_of_lists_is_422():
    doc = copy.deepcopy(SERVICE)
    doc["metadata"]["finalizers"] = []
    err = status_of(strategic_merge_patch, doc, {"metadata": {"finalizers": [["x"]]}}, "v1", "Service")
    assert (err.code, err.reason) == (422, "Invalid")
    assert err.message == "the server rejected our request due to an error in our request"


def test_smp_of_unknown_kind_is_rejected():
    err = status_of(strategic_merge_patch, {}, {}, "example.com/v1", "Widget")
    assert (err.code, err.message) == (400, "strategic merge patch format is not supported")


def test_results_are_json_serialisable_and_independent_of_inputs():
    patch = {"spec": {"ports": [{"port": 443, "targetPort": 1}]}}
    out = smp(SERVICE, patch)
    out["spec"]["ports"][0]["port"] = 1
    assert SERVICE["spec"]["ports"][1]["port"] == 443
    assert patch == {"spec": {"ports": [{"port": 443, "targetPort": 1}]}}
    json.dumps(out)


# ---- differential: kubectl patch --local runs upstream's own Go patch code ----------------

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl (upstream's Go patch code) not installed")


def _normalize(obj):
    """What a typed decode + encode keeps: known fields, no empty or zero values (omitempty)."""

    def strip(v):
        if isinstance(v, dict):
            out = {k: strip(x) for k, x in v.items()}
            return {k: x for k, x in out.items() if x not in (None, {}, [], "", 0, False)}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(drop_unknown_fields(obj["apiVersion"], obj["kind"], obj))


def _kubectl_patch(tmp_path, doc, patch, patch_type):
    path = tmp_path / "obj.json"
    path.write_text(json.dumps(doc))
    proc = subprocess.run(
        [
            KUBECTL,
            "patch",
            "-f",
            str(path),
            "--local",
            "--type",
            patch_type,
            "-p",
            json.dumps(patch),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _ours(doc, patch, patch_type):
    try:
        if patch_type == "strategic":
            return strategic_merge_patch(doc, patch, doc["apiVersion"], doc["kind"])
        if patch_type == "merge":
            return merge_patch(doc, patch)
        return json_patch(doc, patch)
    except StatusError:
        return None


def assert_same_as_kubectl(tmp_path, doc, patch, patch_type="strategic"):
    theirs = _kubectl_patch(tmp_path, doc, patch, patch_type)
    ours = _ours(doc, patch, patch_type)
    assert (theirs is None) == (ours is None), (patch, theirs, ours)
    if theirs is not None:
        assert _normalize(ours) == _normalize(theirs), patch


NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "n"},
    "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
    "status": {
        "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}, {"type": "Hostname", "address": "n"}],
        "conditions": [{"type": "Ready", "status": "Unknown"}, {"type": "MemoryPressure", "status": "False"}],
    },
}
POD_WITH_FINALIZERS = copy.deepcopy(POD)
POD_WITH_FINALIZERS["metadata"].update(
    finalizers=["a", "b"], ownerReferences=[{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u1"}]
)

SMP_CASES = [
    (SERVICE, {"spec": {"ports": [{"port": 8080, "protocol": "TCP"}]}}),
    (
        SERVICE,
        {
            "spec": {
                "$setElementOrder/ports": [{"port": 443}, {"port": 80}],
                "ports": [{"port": 443, "targetPort": 9443}],
            }
        },
    ),
    (
        SERVICE,
        {
            "spec": {
                "$setElementOrder/ports": [{"port": 9000}, {"port": 443}, {"port": 80}],
                "ports": [{"port": 9000, "protocol": "TCP"}],
            }
        },
    ),
    (
        SERVICE,
        {"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"port": 443, "$patch": "delete"}]}},
    ),
    (
        SERVICE,
        {
            "spec": {
                "$setElementOrder/ports": [{"port": 80}, {"port": 8443}],
                "ports": [{"port": 8443, "protocol": "TCP"}, {"port": 443, "$patch": "delete"}],
            }
        },
    ),
    (SERVICE, {"spec": {"ports": [{"port": 80, "$patch": "delete"}, {"port": 443, "targetPort": None}]}}),
    (SERVICE, {"spec": {"ports": [{"port": 53, "protocol": "UDP"}, {"$patch": "replace"}]}}),
    (SERVICE, {"spec": {"selector": {"$patch": "replace", "run": "x"}}}),
    (SERVICE, {"spec": {"clusterIP": None, "clusterIPs": ["10.96.0.11"]}}),
    (SERVICE, {"metadata": {"finalizers": ["c", "a"]}}),
    (
        SERVICE,
        {
            "metadata": {
                "$setElementOrder/finalizers": ["c", "b"],
                "$deleteFromPrimitiveList/finalizers": ["a"],
                "finalizers": ["c"],
            }
        },
    ),
    (SERVICE, {"metadata": {"$deleteFromPrimitiveListX/finalizers": ["a"]}}),
    (SERVICE, {"spec": {"ports": [{"name": "x"}]}}),
    (SERVICE, {"spec": {"ports": [{"$patch": "merge", "port": 80}]}}),
    (SERVICE, {"spec": {"$retainKeys": ["ports", "selector"], "ports": [{"port": 80, "name": "h"}]}}),
    (SERVICE, {"spec": {"ports": [{"port": 80}, {"port": 80, "name": "dup"}]}}),
    (SERVICE, {"spec": {"ports": None}}),
    (
        POD_WITH_FINALIZERS,
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "containers": [{"name": "sidecar", "image": "s:2"}],
            }
        },
    ),
    (
        POD_WITH_FINALIZERS,
        {"spec": {"containers": [{"name": "new", "image": "n"}, {"name": "app", "$patch": "delete"}]}},
    ),
    (
        POD_WITH_FINALIZERS,
        {
            "spec": {
                "volumes": [
                    {"name": "data", "hostPath": {"path": "/srv"}, "$retainKeys": ["hostPath", "name"]}
                ]
            }
        },
    ),
    (
        POD_WITH_FINALIZERS,
        {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "env": [{"name": "A", "$patch": "delete"}],
                        "$setElementOrder/env": [{"name": "B"}],
                    }
                ]
            }
        },
    ),
    (
        POD_WITH_FINALIZERS,
        {
            "metadata": {
                "ownerReferences": [
                    {"uid": "u1", "controller": True},
                    {"uid": "u2", "name": "b", "kind": "Y", "apiVersion": "v1"},
                ]
            }
        },
    ),
    (
        NODE,
        {
            "status": {
                "$setElementOrder/conditions": [
                    {"type": "MemoryPressure"},
                    {"type": "Ready"},
                    {"type": "PIDPressure"},
                ],
                "conditions": [{"type": "PIDPressure", "status": "False"}],
            }
        },
    ),
    (
        NODE,
        {
            "spec": {"podCIDRs": ["fd00:10::/64"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.9"}]},
        },
    ),
]


@needs_kubectl
@pytest.mark.parametrize(("doc", "patch"), SMP_CASES)
def test_smp_matches_kubectl(tmp_path, doc, patch):
    assert_same_as_kubectl(tmp_path, doc, patch)


JSON_PATCH_CASES = [
    [{"op": "add", "path": "/spec/ports/-1", "value": {"port": 1}}],
    [{"op": "add", "path": "/spec/ports/-4", "value": {"port": 1}}],
    [{"op": "remove", "path": "/spec/ports/-1"}],
    [{"op": "replace", "path": "/metadata/labels/zz", "value": "x"}],
    [{"op": "remove", "path": "/metadata/labels/zz"}],
    [{"op": "test", "path": "/metadata/labels/zz", "value": None}],
    [{"op": "test", "path": "/spec/ports/0/port", "value": 80.0}],
    [{"op": "test", "path": "/spec/ports/0/port", "value": "80"}],
    [{"op": "copy", "from": "/metadata/nope", "path": "/metadata/annotations"}],
    [{"op": "add", "path": "/metadata/labels/x"}],
    [{"op": "add", "path": "/spec/ports/01", "value": {"port": 1}}],
    [{"op": "move", "from": "/spec/ports/0", "path": "/spec/ports/1"}],
]


@needs_kubectl
@pytest.mark.parametrize("ops", JSON_PATCH_CASES)
def test_json_patch_matches_kubectl(tmp_path, ops):
    assert_same_as_kubectl(tmp_path, SERVICE, ops, "json")


def _ambiguous_upstream(patch) -> bool:
    """Patches whose upstream result depends on Go map order or slice capacity (see patch.py)."""
    if isinstance(patch, list):
        return any(_ambiguous_upstream(p) for p in patch)
    if not isinstance(patch, dict):
        return False
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and key.split("/", 1)[1] in patch:
            return True
        if key.startswith("$setElementOrder/"):
            items = patch.get(key.split("/", 1)[1])
            if isinstance(items, list) and any(isinstance(i, dict) and "$patch" in i for i in items):
                return True
        if _ambiguous_upstream(value):
            return True
    return False


_scalar = st.one_of(st.none(), st.sampled_from(["x", "y"]), st.integers(0, 3))
_env = st.fixed_dictionaries(
    {"name": st.sampled_from(["A", "B", "C"])},
    optional={"value": _scalar, "$patch": st.sampled_from(["delete", "replace"])},
)
_port = st.fixed_dictionaries(
    {"containerPort": st.sampled_from([80, 81, 82])},
    optional={"protocol": st.sampled_from(["TCP", "UDP", None]), "$patch": st.just("delete")},
)
_container = st.fixed_dictionaries(
    {"name": st.sampled_from(["app", "sidecar", "new"])},
    optional={
        "image": _scalar,
        "env": st.lists(_env, max_size=3),
        "ports": st.lists(_port, max_size=3),
        "$patch": st.just("delete"),
        "$setElementOrder/env": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["A", "B", "C"])}), max_size=3
        ),
    },
)
_patches = st.fixed_dictionaries(
    {},
    optional={
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "containers": st.lists(_container, max_size=3),
                "$setElementOrder/containers": st.lists(
                    st.fixed_dictionaries({"name": st.sampled_from(["app", "sidecar"])}),
                    max_size=2,
                    unique_by=lambda d: d["name"],
                ),
                "tolerations": st.lists(
                    st.fixed_dictionaries({"key": st.sampled_from(["a", "b"])}), max_size=2
                ),
                "nodeName": _scalar,
            },
        ),
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "finalizers": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
                "$deleteFromPrimitiveList/finalizers": st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),
                "$setElementOrder/finalizers": st.lists(
                    st.sampled_from(["a", "b", "c"]), max_size=3, unique=True
                ),
                "labels": st.one_of(
                    st.none(), st.dictionaries(st.sampled_from(["app", "x"]), _scalar, max_size=2)
                ),
            },
        ),
        "status": st.fixed_dictionaries(
            {},
            optional={
                "conditions": st.lists(
                    st.fixed_dictionaries(
                        {"type": st.sampled_from(["Ready", "Initialized", "X"])}, optional={"status": _scalar}
                    ),
                    max_size=3,
                )
            },
        ),
    },
)


@needs_kubectl
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_patches)
def test_random_smp_matches_kubectl(tmp_path, patch):
    assume(not _ambiguous_upstream(patch))
    assert_same_as_kubectl(tmp_path, POD_WITH_FINALIZERS, patch)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "spec",
                        "ports",
                        "port",
                        "$patch",
                        "metadata",
                        "finalizers",
                        "$retainKeys",
                        "$setElementOrder/ports",
                        "selector",
                        "$deleteFromPrimitiveList/finalizers",
                        "containers",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_any_patch_gives_a_result_or_a_status_error(patch):
    service_before, patch_before = copy.deepcopy(SERVICE), copy.deepcopy(patch)
    for fn, args in (
        (strategic_merge_patch, (SERVICE, patch, "v1", "Service")),
        (merge_patch, (SERVICE, patch)),
        (json_patch, (SERVICE, patch)),
    ):
        try:
            fn(*args)
        except StatusError:
            pass
        # Patching works on copies: neither the stored object nor the request body changes.
        assert (SERVICE, patch) == (service_before, patch_before), fn.__name__
