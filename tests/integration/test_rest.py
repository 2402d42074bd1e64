"""REST semantics of the API application: object metadata, optimistic concurrency,
generateName, snapshot pagination, deletion (graceful, finalizers, namespaces),
subresources, discovery and bad input — each reply checked against upstream's shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import re

import orjson
import pytest
from test_api_support import PODS, SVC, Api, api, make_api, namespace, pod, service

from svcnet.api import names

__all__ = ["api", "make_api"]

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def test_create_get_update_delete_service(api: Api) -> None:
    created = await api.ok("POST", SVC.format(ns="default"), service("web"))
    md = created["metadata"]
    assert md["namespace"] == "default"
    assert UUID.match(md["uid"]) and RFC3339.match(md["creationTimestamp"])
    assert int(md["resourceVersion"]) == await api.store.current_revision()

    got = await api.ok("GET", SVC.format(ns="default") + "/web")
    assert got == created

    got["metadata"]["labels"] = {"tier": "front"}
    updated = await api.ok("PUT", SVC.format(ns="default") + "/web", got)
    assert updated["metadata"]["labels"] == {"tier": "front"}
    assert updated["metadata"]["uid"] == md["uid"]
    assert updated["metadata"]["creationTimestamp"] == md["creationTimestamp"]
    assert int(updated["metadata"]["resourceVersion"]) > int(md["resourceVersion"])

    deleted = await api.ok("DELETE", SVC.format(ns="default") + "/web")
    assert deleted["kind"] == "Service"  # services return the deleted object
    status, body, _ = await api.call("GET", SVC.format(ns="default") + "/web")
    assert status == 404
    assert body["reason"] == "NotFound" and body["message"] == 'services "web" not found'
    assert body["details"] == {"name": "web", "kind": "services"}


async def test_noop_update_keeps_resource_version(api: Api) -> None:
    created = await api.ok("POST", SVC.format(ns="default"), service("same"))
    again = await api.ok("PUT", SVC.format(ns="default") + "/same", created)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_create_requires_existing_namespace(api: Api) -> None:
    status, body, _ = await api.call("POST", SVC.format(ns="nope"), service("x"))
    assert status == 404
    assert body["message"] == 'namespaces "nope" not found'


async def test_system_namespaces_exist_at_start(api: Api) -> None:
    body = await api.ok("GET", "/api/v1/namespaces")
    got = {item["metadata"]["name"]: item for item in body["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(got)
    assert got["default"]["status"]["phase"] == "Active"
    assert got["default"]["spec"]["finalizers"] == ["kubernetes"]


async def test_conflict_on_stale_resource_version(api: Api) -> None:
    created = await api.ok("POST", SVC.format(ns="default"), service("c"))
    first = dict(created, metadata={**created["metadata"], "labels": {"a": "1"}})
    await api.ok("PUT", SVC.format(ns="default") + "/c", first)
    stale = dict(created, metadata={**created["metadata"], "labels": {"a": "2"}})
    status, body, _ = await api.call("PUT", SVC.format(ns="default") + "/c", stale)
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on services "c": the object has been modified; please apply '
        "your changes to the latest version and try again"
    )
    # Without a resourceVersion the update is unconditional (Service allows it).
    del stale["metadata"]["resourceVersion"]
    assert (await api.ok("PUT", SVC.format(ns="default") + "/c", stale))["metadata"]["labels"] == {"a": "2"}


async def test_put_creates_services_but_not_pods(api: Api) -> None:
    status, body, _ = await api.call("PUT", SVC.format(ns="default") + "/made", service("made"))
    assert status == 201 and body["metadata"]["uid"]
    status, body, _ = await api.call("PUT", PODS.format(ns="default") + "/p", pod("p"))
    assert status == 404 and body["message"] == 'pods "p" not found'


async def test_already_exists(api: Api) -> None:
    await api.ok("POST", SVC.format(ns="default"), service("dup"))
    status, body, _ = await api.call("POST", SVC.format(ns="default"), service("dup"))
    assert status == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'services "dup" already exists'


async def test_generate_name_retries_on_collision(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    await api.ok("POST", SVC.format(ns="default"), service("gen-aaaaa"))
    suggestions = iter(["gen-aaaaa", "gen-aaaaa", "gen-bbbbb"])
    monkeypatch.setattr(names, "generate_name", lambda base: next(suggestions))
    body = service("")
    body["metadata"] = {"generateName": "gen-"}
    created = await api.ok("POST", SVC.format(ns="default"), body)
    assert created["metadata"]["name"] == "gen-bbbbb"


async def test_generate_name_uses_upstream_alphabet(api: Api) -> None:
    body = service("")
    body["metadata"] = {"generateName": "web-"}
    created = await api.ok("POST", SVC.format(ns="default"), body)
    assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{5}", created["metadata"]["name"])


async def test_name_or_generate_name_required(api: Api) -> None:
    body = service("")
    body["metadata"] = {}
    status, reply, _ = await api.call("POST", SVC.format(ns="default"), body)
    assert status == 422 and reply["reason"] == "Invalid"
    assert {
        "reason": "FieldValueRequired",
        "message": "Required value: name or generateName is required",
        "field": "metadata.name",
    } in reply["details"]["causes"]


async def test_pagination_is_one_snapshot_while_writes_happen(api: Api) -> None:
    base = SVC.format(ns="default")
    for i in range(25):
        await api.ok("POST", base, service(f"page-{i:02d}"))
    first = await api.ok("GET", base + "?limit=10")
    assert first["metadata"]["remainingItemCount"] == 15
    snapshot_rv = first["metadata"]["resourceVersion"]
    # kubectl pages Tables: the same page as a Table carries the same list metadata.
    resp = await api.client.get(
        base + "?limit=10", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    )
    table = await resp.json()
    assert resp.status == 200 and table["kind"] == "Table"
    assert [row["cells"][0] for row in table["rows"]] == [item["metadata"]["name"] for item in first["items"]]
    assert table["metadata"] == first["metadata"]
    seen = [item["metadata"]["name"] for item in first["items"]]
    token = first["metadata"]["continue"]
    writes = 0
    while token:
        # Writes between pages must not show up in, or disappear from, the paged list.
        await api.ok("POST", base, service(f"late-{writes}"))
        await api.ok("DELETE", base + f"/page-{24 - writes:02d}")
        writes += 1
        page = await api.ok("GET", base + f"?limit=10&continue={token}")
        assert page["metadata"]["resourceVersion"] == snapshot_rv
        seen += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == [f"page-{i:02d}" for i in range(25)]
    assert writes == 2


async def test_pagination_with_selector_fills_pages(api: Api) -> None:
    base = SVC.format(ns="default")
    for i in range(12):
        await api.ok("POST", base, service(f"sel-{i:02d}", labels={"even": str(i % 2 == 0).lower()}))
    names_seen: list[str] = []
    token = ""
    while True:
        page = await api.ok("GET", base + f"?limit=4&labelSelector=even%3Dtrue&continue={token}")
        assert len(page["items"]) <= 4
        names_seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert names_seen == [f"sel-{i:02d}" for i in range(0, 12, 2)]


async def test_expired_continue_token_is_410(api: Api) -> None:
    base = SVC.format(ns="default")
    for i in range(4):
        await api.ok("POST", base, service(f"exp-{i}"))
    first = await api.ok("GET", base + "?limit=2")
    await api.ok("DELETE", base + "/exp-3")
    await api.store.compact(await api.store.current_revision())
    status, body, _ = await api.call("GET", base + f"?limit=2&continue={first['metadata']['continue']}")
    assert status == 410 and body["reason"] == "Expired"
    assert body["message"].startswith("The provided continue parameter is too old")


@pytest.mark.parametrize(
    "query, fragment",
    [
        ("limit=abc", 'strconv.ParseInt: parsing "abc": invalid syntax'),
        ("limit=99999999999999999999", "value out of range"),
        ("continue=not-base64!!", "continue key is not valid"),
        (
            "continue="
            + base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":0,"start":"a\\u0000"}').decode(),
            "incorrect encoded start resourceVersion",
        ),
        (
            "continue="
            + base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":3,"start":"../x\\u0000"}').decode(),
            "continue key is not valid",
        ),
        (
            "continue="
            + base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":99999999,"start":"a\\u0000"}').decode(),
            "continue key is not valid",
        ),
        ("resourceVersion=abc", "invalid resourceVersion"),
        ("labelSelector=a%20in%20(", ""),
        ("fieldSelector=spec.bogus%3D1", "field label not supported: spec.bogus"),
    ],
)
async def test_bad_list_queries_are_400(api: Api, query: str, fragment: str) -> None:
    status, body, _ = await api.call("GET", SVC.format(ns="default") + "?" + query)
    assert status == 400, body
    assert body["kind"] == "Status" and body["reason"] == "BadRequest"
    assert fragment in body["message"]


async def test_resource_version_match_rules(make_api) -> None:
    api = await make_api(wait_for_revision_seconds=0.2)
    base = SVC.format(ns="default")
    created = await api.ok("POST", base, service("rv"))
    old_rv = created["metadata"]["resourceVersion"]
    await api.ok("DELETE", base + "/rv")
    exact = await api.ok("GET", base + f"?resourceVersion={old_rv}&resourceVersionMatch=Exact")
    assert [i["metadata"]["name"] for i in exact["items"]] == ["rv"]
    assert exact["metadata"]["resourceVersion"] == old_rv
    newer = await api.ok("GET", base + f"?resourceVersion={old_rv}&resourceVersionMatch=NotOlderThan")
    assert newer["items"] == []
    status, body, _ = await api.call("GET", base + "?resourceVersion=999999")
    assert status == 504 and body["reason"] == "Timeout"
    assert body["message"].startswith("Too large resource version: 999999")
    status, body, _ = await api.call("GET", base + "?resourceVersionMatch=Exact")
    assert status == 422 and body["details"]["causes"][0]["field"] == "resourceVersionMatch"
    status, body, _ = await api.call("GET", base + "?resourceVersion=0&resourceVersionMatch=Exact")
    assert status == 422


async def test_list_across_namespaces_and_field_selectors(api: Api) -> None:
    await api.ok("POST", "/api/v1/namespaces", namespace("other"))
    await api.ok("POST", SVC.format(ns="default"), service("a1", type="NodePort"))
    await api.ok("POST", SVC.format(ns="other"), service("a2"))
    every = await api.ok("GET", "/api/v1/services")
    got = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in every["items"]}
    assert {("default", "a1"), ("other", "a2")} <= got
    only = await api.ok("GET", "/api/v1/services?fieldSelector=metadata.namespace%3Dother")
    assert [i["metadata"]["name"] for i in only["items"]] == ["a2"]
    node_ports = await api.ok("GET", "/api/v1/services?fieldSelector=spec.type%3DNodePort")
    assert [i["metadata"]["name"] for i in node_ports["items"]] == ["a1"]


async def test_graceful_pod_deletion(api: Api) -> None:
    base = PODS.format(ns="default")
    await api.ok("POST", base, pod("scheduled", node="node-1"))
    marked = await api.ok("DELETE", base + "/scheduled")
    md = marked["metadata"]
    assert md["deletionGracePeriodSeconds"] == 30 and RFC3339.match(md["deletionTimestamp"])
    still = await api.ok("GET", base + "/scheduled")
    assert still["metadata"]["deletionTimestamp"] == md["deletionTimestamp"]
    # A shorter grace period shortens it; zero (what the node agent sends) removes the pod.
    shorter = await api.ok("DELETE", base + "/scheduled?gracePeriodSeconds=5")
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    await api.ok(
        "DELETE", base + "/scheduled", {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
    )
    assert (await api.call("GET", base + "/scheduled"))[0] == 404

    await api.ok("POST", base, pod("unscheduled"))
    await api.ok("DELETE", base + "/unscheduled")
    assert (await api.call("GET", base + "/unscheduled"))[0] == 404


async def test_finalizers_hold_deletion_until_removed(api: Api) -> None:
    base = SVC.format(ns="default")
    body = service("fin")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await api.ok("POST", base, body)
    marked = await api.ok("DELETE", base + "/fin")
    assert marked["metadata"]["deletionTimestamp"]
    current = await api.ok("GET", base + "/fin")
    current["metadata"]["finalizers"].append("example.com/new")
    status, reply, _ = await api.call("PUT", base + "/fin", current)
    assert status == 422
    assert reply["details"]["causes"][0]["field"] == "metadata.finalizers"
    assert "no new finalizers can be added if the object is being deleted" in reply["message"]
    await api.ok(
        "PATCH",
        base + "/fin",
        {"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    assert (await api.call("GET", base + "/fin"))[0] == 404


async def test_delete_preconditions(api: Api) -> None:
    base = SVC.format(ns="default")
    created = await api.ok("POST", base, service("pre"))
    status, body, _ = await api.call("DELETE", base + "/pre", {"preconditions": {"uid": "other"}})
    assert status == 409
    assert body["message"] == (
        f'Operation cannot be fulfilled on services "pre": Precondition failed: '
        f"UID in precondition: other, UID in object meta: {created['metadata']['uid']}"
    )
    status, body, _ = await api.call("DELETE", base + "/pre", {"preconditions": {"resourceVersion": "1"}})
    assert status == 409
    await api.ok("DELETE", base + "/pre", {"preconditions": {"uid": created["metadata"]["uid"]}})


async def test_delete_status_reply_for_other_kinds(api: Api) -> None:
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}, "subsets": []}
    created = await api.ok("POST", "/api/v1/namespaces/default/endpoints", ep)
    reply = await api.ok("DELETE", "/api/v1/namespaces/default/endpoints/e")
    assert reply == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "e", "kind": "endpoints", "uid": created["metadata"]["uid"]},
    }


async def test_dry_run_does_not_persist(api: Api) -> None:
    base = SVC.format(ns="default")
    await api.ok("POST", base + "?dryRun=All", service("dry"))
    assert (await api.call("GET", base + "/dry"))[0] == 404
    status, body, _ = await api.call("POST", base + "?dryRun=Maybe", service("dry"))
    assert status == 422 and body["details"]["causes"][0]["field"] == "dryRun"


async def test_delete_collection_with_selector(api: Api) -> None:
    base = SVC.format(ns="default")
    for i in range(3):
        await api.ok("POST", base, service(f"dc-{i}", labels={"group": "gone" if i < 2 else "kept"}))
    reply = await api.ok("DELETE", base + "?labelSelector=group%3Dgone")
    assert sorted(i["metadata"]["name"] for i in reply["items"]) == ["dc-0", "dc-1"]
    left = await api.ok("GET", base + "?labelSelector=group")
    assert [i["metadata"]["name"] for i in left["items"]] == ["dc-2"]


async def test_namespace_deletion_cascades(make_api) -> None:
    api = await make_api(namespace_retry_seconds=0.05)
    await api.ok("POST", "/api/v1/namespaces", namespace("doomed"))
    await api.ok("POST", SVC.format(ns="doomed"), service("s1"))
    await api.ok("POST", PODS.format(ns="doomed"), pod("p1", node="n1"))
    marked = await api.ok("DELETE", "/api/v1/namespaces/doomed")
    assert marked["status"]["phase"] == "Terminating" and marked["metadata"]["deletionTimestamp"]
    status, body, _ = await api.call("POST", SVC.format(ns="doomed"), service("s2"))
    if status != 404:  # the namespace may already be gone
        assert status == 403 and body["reason"] == "Forbidden"
        assert body["details"]["causes"][0]["reason"] == "NamespaceTerminating"
    # The scheduled pod is deleted gracefully; its node agent (here: the test) finishes it.
    for _ in range(100):
        status, p, _ = await api.call("GET", PODS.format(ns="doomed") + "/p1")
        if status == 200 and p["metadata"].get("deletionTimestamp"):
            await api.ok("DELETE", PODS.format(ns="doomed") + "/p1?gracePeriodSeconds=0")
        status, _, _ = await api.call("GET", "/api/v1/namespaces/doomed")
        if status == 404:
            break
        await asyncio.sleep(0.05)
    assert status == 404
    assert (await api.call("GET", SVC.format(ns="doomed") + "/s1"))[0] == 404


async def test_status_subresource_updates_only_status(api: Api) -> None:
    base = SVC.format(ns="default")
    created = await api.ok("POST", base, service("lb", type="LoadBalancer"))
    created["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    created["spec"]["sessionAffinity"] = "ClientIP"
    updated = await api.ok("PUT", base + "/lb/status", created)
    assert [i["ip"] for i in updated["status"]["loadBalancer"]["ingress"]] == ["192.0.2.10"]
    assert updated["spec"]["sessionAffinity"] == "None"  # spec changes are ignored on /status
    # ...and a main-resource update cannot change status.
    updated["status"] = {"loadBalancer": {}}
    again = await api.ok("PUT", base + "/lb", updated)
    assert [i["ip"] for i in again["status"]["loadBalancer"]["ingress"]] == ["192.0.2.10"]
    patched = await api.ok(
        "PATCH",
        base + "/lb/status",
        {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.11"}]}}},
        content_type="application/merge-patch+json",
    )
    assert [i["ip"] for i in patched["status"]["loadBalancer"]["ingress"]] == ["192.0.2.11"]


def deployment(name: str, replicas: int = 1) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


async def test_scale_subresource(api: Api) -> None:
    base = "/apis/apps/v1/namespaces/default/deployments"
    created = await api.ok("POST", base, deployment("web", 2))
    assert created["metadata"]["generation"] == 1
    scale = await api.ok("GET", base + "/web/scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"]["selector"] == "app=web"
    scale["spec"]["replicas"] = 5
    scaled = await api.ok("PUT", base + "/web/scale", scale)
    assert scaled["spec"]["replicas"] == 5
    scaled_deployment = await api.ok("GET", base + "/web")
    assert scaled_deployment["spec"]["replicas"] == 5
    assert scaled_deployment["metadata"]["generation"] == 2  # a spec change bumps generation
    labelled = await api.ok(
        "PATCH",
        base + "/web",
        {"metadata": {"labels": {"a": "b"}}},
        content_type="application/merge-patch+json",
    )
    assert labelled["metadata"]["generation"] == 2  # metadata changes do not
    patched = await api.ok(
        "PATCH", base + "/web/scale", {"spec": {"replicas": 3}}, content_type="application/merge-patch+json"
    )
    assert patched["spec"]["replicas"] == 3
    scale = await api.ok("GET", base + "/web/scale")
    scale["spec"]["replicas"] = -1
    status, body, _ = await api.call("PUT", base + "/web/scale", scale)
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.replicas"
    stale = dict(scale, spec={"replicas": 1}, metadata={**scale["metadata"], "resourceVersion": "1"})
    assert (await api.call("PUT", base + "/web/scale", stale))[0] == 409


async def test_patch_types(api: Api) -> None:
    base = SVC.format(ns="default")
    body = service("p")
    body["spec"]["ports"] = [{"name": "http", "port": 80, "protocol": "TCP"}]
    await api.ok("POST", base, body)
    smp = await api.ok(
        "PATCH",
        base + "/p",
        {"spec": {"ports": [{"name": "https", "port": 443}]}},
        content_type="application/strategic-merge-patch+json",
    )
    assert sorted(p["port"] for p in smp["spec"]["ports"]) == [80, 443]  # merged by port
    merge = await api.ok(
        "PATCH",
        base + "/p",
        {"spec": {"ports": [{"name": "only", "port": 8080}]}},
        content_type="application/merge-patch+json",
    )
    assert [p["port"] for p in merge["spec"]["ports"]] == [8080]  # replaced
    jp = await api.ok(
        "PATCH",
        base + "/p",
        [{"op": "add", "path": "/metadata/labels", "value": {"j": "p"}}],
        content_type="application/json-patch+json",
    )
    assert jp["metadata"]["labels"] == {"j": "p"}
    status, reply, _ = await api.call(
        "PATCH",
        base + "/p",
        {"metadata": {"resourceVersion": "1"}},
        content_type="application/merge-patch+json",
    )
    assert status == 409 and reply["reason"] == "Conflict"
    status, _, _ = await api.call("PATCH", base + "/missing", {}, content_type="application/merge-patch+json")
    assert status == 404


async def test_discovery(api: Api) -> None:
    assert (await api.ok("GET", "/api"))["versions"] == ["v1"]
    core = await api.ok("GET", "/api/v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["services"]["shortNames"] == ["svc"]
    assert by_name["services"]["categories"] == ["all"]
    assert by_name["services"]["namespaced"] is True and by_name["services"]["kind"] == "Service"
    assert "watch" in by_name["services"]["verbs"]
    assert by_name["services/status"]["verbs"] == ["get", "patch", "update"]
    assert by_name["nodes"]["namespaced"] is False
    groups = await api.ok("GET", "/apis")
    assert {g["name"] for g in groups["groups"]} >= {"apps", "discovery.k8s.io", "coordination.k8s.io"}
    apps = await api.ok("GET", "/apis/apps/v1")
    scale = {r["name"]: r for r in apps["resources"]}["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    version = await api.ok("GET", "/version")
    assert (version["major"], version["minor"]) == ("1", "32")
    assert (await api.call("GET", "/apis/nope/v1"))[0] == 404


@pytest.mark.parametrize(
    "raw, content_type, code, fragment",
    [
        (
            b"{not json",
            "application/json",
            400,
            "the object provided is unrecognized (must be of type Service)",
        ),
        (b"[1, 2]", "application/json", 400, "the object provided is unrecognized"),
        (b"", "application/json", 400, "unexpected end of JSON input"),
        (
            b'{"apiVersion": "v2", "kind": "Service", "metadata": {"name": "x"}}',
            "application/json",
            400,
            "the API version in the data (v2) does not match the expected API version (v1)",
        ),
        (
            b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}',
            "application/json",
            400,
            "cannot be handled as a Service",
        ),
        (
            b'{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "kube-system"}}',
            "application/json",
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
        ),
        (
            b'{"apiVersion": "v1", "kind": "Service", "metadata": "x"}',
            "application/json",
            400,
            "cannot be handled as a Service",
        ),
        (b"kind: Service\n", "text/plain", 415, "the body of the request was in an unknown format"),
        (b"- a\n- b\n", "application/yaml", 400, "the object provided is unrecognized"),
    ],
)
async def test_bad_bodies(api: Api, raw: bytes, content_type: str, code: int, fragment: str) -> None:
    status, body, _ = await api.call("POST", SVC.format(ns="default"), raw=raw, content_type=content_type)
    assert status == code, body
    assert body["kind"] == "Status" and body["code"] == code
    assert fragment in body["message"]


async def test_yaml_body_is_accepted(api: Api) -> None:
    raw = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: yml\nspec:\n  ports:\n  - port: 80\n"
    status, body, _ = await api.call(
        "POST", SVC.format(ns="default"), raw=raw, content_type="application/yaml"
    )
    assert status == 201 and body["metadata"]["name"] == "yml"


async def test_oversized_body_is_413(make_api) -> None:
    api = await make_api(max_body_bytes=1024)
    big = service("big", labels={"pad": "x"})
    big["metadata"]["annotations"] = {"pad": "y" * 2048}
    status, body, _ = await api.call("POST", SVC.format(ns="default"), big)
    assert status == 413 and body["reason"] == "RequestEntityTooLarge"
    assert body["message"] == "Request entity too large: limit is 1024"
    # The server keeps serving.
    assert (await api.call("GET", SVC.format(ns="default")))[0] == 200


async def test_duplicate_fields(api: Api) -> None:
    raw = (
        b'{"apiVersion":"v1","kind":"Service","metadata":{"name":"d","name":"d"},'
        b'"spec":{"ports":[{"port":80}]}}'
    )
    status, body, _ = await api.call("POST", SVC.format(ns="default") + "?fieldValidation=Strict", raw=raw)
    assert status == 400
    assert body["message"] == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'duplicate field "metadata.name"'
    )
    status, body, headers = await api.call("POST", SVC.format(ns="default"), raw=raw)
    assert status == 201
    assert headers.getall("Warning") == ['299 - "duplicate field \\"metadata.name\\""']
    status, body, headers = await api.call(
        "POST", SVC.format(ns="default") + "?fieldValidation=Ignore", raw=raw.replace(b'"d"', b'"e"')
    )
    assert status == 201 and "Warning" not in headers
    status, body, _ = await api.call("POST", SVC.format(ns="default") + "?fieldValidation=Sometimes", raw=raw)
    assert status == 422


async def test_methods_and_paths(api: Api) -> None:
    status, body, _ = await api.call("POST", SVC.format(ns="default") + "/x", service("x"))
    assert status == 405 and body["reason"] == "MethodNotAllowed"
    status, body, _ = await api.call("GET", "/api/v1/namespaces/default/widgets")
    assert status == 404 and body["kind"] == "Status"
    status, body, _ = await api.call("GET", "/nowhere")
    assert status == 404 and body["kind"] == "Status"
    status, body, _ = await api.call("POST", "/api/v1/services", service("x"))
    assert status == 405
    status, body, _ = await api.call("PATCH", SVC.format(ns="default") + "/x", {}, content_type="text/plain")
    assert status == 415
    # CBOR apply patches are alpha in 1.32 and not served; YAML ones are (server-side apply).
    status, body, _ = await api.call(
        "PATCH", SVC.format(ns="default") + "/x", raw=b"\xa0", content_type="application/apply-patch+cbor"
    )
    assert status == 415 and body["reason"] == "UnsupportedMediaType"
    status, body, _ = await api.call(
        "PATCH", SVC.format(ns="default") + "/x", raw=b"a: b", content_type="application/apply-patch+yaml"
    )
    assert status == 422 and "fieldManager: Required value" in body["message"]


async def test_server_survives_unexpected_errors(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from svcnet.apiserver import registry

    def boom(*_: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(registry.Registry, "_baseline_name_errors", staticmethod(boom))
    status, body, _ = await api.call("POST", SVC.format(ns="default"), service("x"))
    assert status == 500 and body["reason"] == "InternalError" and "kaboom" in body["message"]
    monkeypatch.undo()
    assert (await api.call("POST", SVC.format(ns="default"), service("x")))[0] == 201


async def test_cascading_delete_of_dependents(api: Api) -> None:
    owner = await api.ok("POST", "/apis/apps/v1/namespaces/default/deployments", deployment("own"))
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "own", "uid": owner["metadata"]["uid"]}
    await api.ok("POST", PODS.format(ns="default"), pod("child", ownerReferences=[ref]))
    await api.ok("DELETE", "/apis/apps/v1/namespaces/default/deployments/own")
    for _ in range(100):
        if (await api.call("GET", PODS.format(ns="default") + "/child"))[0] == 404:
            break
        await asyncio.sleep(0.02)
    assert (await api.call("GET", PODS.format(ns="default") + "/child"))[0] == 404


async def test_list_body_is_valid_json_with_resource_version(api: Api) -> None:
    resp = await api.client.get(SVC.format(ns="default"))
    body = orjson.loads(await resp.read())
    assert body["kind"] == "ServiceList" and body["apiVersion"] == "v1"
    assert int(body["metadata"]["resourceVersion"]) == await api.store.current_revision()
    assert json.loads(json.dumps(body))["items"] == []


async def test_unknown_fields_strict_warn_ignore(api: Api) -> None:
    base = SVC.format(ns="default")
    body = service("uf")
    body["spec"]["foo"] = 1
    status, reply, _ = await api.call("POST", base + "?fieldValidation=Strict", body)
    assert status == 400
    assert reply["message"] == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'unknown field "spec.foo"'
    )
    status, reply, headers = await api.call("POST", base, body)
    assert status == 201 and "foo" not in reply["spec"]
    assert headers.getall("Warning") == ['299 - "unknown field \\"spec.foo\\""']
    body["metadata"]["name"] = "uf2"
    status, reply, headers = await api.call("POST", base + "?fieldValidation=Ignore", body)
    assert status == 201 and "Warning" not in headers
    status, reply, _ = await api.call(
        "PATCH",
        base + "/uf?fieldValidation=Strict",
        {"spec": {"bar": True}},
        content_type="application/merge-patch+json",
    )
    assert status == 400 and 'unknown field "spec.bar"' in reply["message"]


async def test_yaml_duplicate_fields_are_reported(api: Api) -> None:
    raw = (
        b"apiVersion: v1\nkind: Service\nmetadata:\n  name: ydup\n  name: ydup\n"
        b"spec:\n  ports:\n  - port: 80\n"
    )
    status, body, _ = await api.call(
        "POST", SVC.format(ns="default") + "?fieldValidation=Strict", raw=raw, content_type="application/yaml"
    )
    assert status == 400 and 'duplicate field "metadata.name"' in body["message"]


async def test_system_namespaces_cannot_be_deleted(api: Api) -> None:
    status, body, _ = await api.call("DELETE", "/api/v1/namespaces/default")
    assert status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == 'namespaces "default" is forbidden: this namespace may not be deleted'


async def test_namespaces_cannot_be_deleted_as_a_collection(api: Api) -> None:
    status, body, _ = await api.call("DELETE", "/api/v1/namespaces")
    assert status == 405 and body["kind"] == "Status"
    status, body, _ = await api.call("GET", "/api/v1/namespaces/default")
    assert status == 200


async def test_restart_keeps_objects_and_paging_snapshot(tmp_path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from svcnet.apiserver.app import build_app
    from svcnet.apiserver.options import ApiServerOptions
    from svcnet.store.sqlite import SqliteStore

    async def start() -> tuple[TestClient, SqliteStore]:
        store = SqliteStore(str(tmp_path / "state.db"))
        await store.start()
        client = TestClient(TestServer(build_app(store, ApiServerOptions()), host="127.0.0.1"))
        await client.start_server()
        return client, store

    client, store = await start()
    base = SVC.format(ns="default")
    for i in range(5):
        resp = await client.post(base, json=service(f"keep-{i}"))
        assert resp.status == 201
    first = await (await client.get(base + "?limit=2")).json()
    await client.close()
    await store.close()

    client, store = await start()
    try:
        await (await client.delete(base + "/keep-4")).read()
        page = await (await client.get(base + f"?limit=10&continue={first['metadata']['continue']}")).json()
        # The continuation still shows the snapshot of the first page, from before the restart.
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        assert [i["metadata"]["name"] for i in page["items"]] == ["keep-2", "keep-3", "keep-4"]
        now = await (await client.get(base)).json()
        assert [i["metadata"]["name"] for i in now["items"]] == [f"keep-{i}" for i in range(4)]
        assert int(now["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    finally:
        await client.close()
        await store.close()


async def test_concurrent_patches_all_apply(api: Api) -> None:
    base = SVC.format(ns="default")
    await api.ok("POST", base, service("busy"))

    async def label(i: int) -> None:
        await api.ok(
            "PATCH",
            base + "/busy",
            {"metadata": {"labels": {f"l{i}": "x"}}},
            content_type="application/strategic-merge-patch+json",
        )

    await asyncio.gather(*(label(i) for i in range(20)))
    final = await api.ok("GET", base + "/busy")
    assert set(final["metadata"]["labels"]) == {f"l{i}" for i in range(20)}
