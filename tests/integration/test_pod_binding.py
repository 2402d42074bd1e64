"""pods/NAME/binding: how a scheduler assigns a pod to a node, with upstream's rules."""

from __future__ import annotations

from test_api_support import PODS, Api, api, make_api, pod

__all__ = ["api", "make_api"]  # fixtures used by name


def binding(name: str, node: str, **meta: str) -> dict:
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, **meta},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


async def test_binding_assigns_an_unscheduled_pod_once(api: Api) -> None:
    base = PODS.format(ns="default")
    created = await api.ok("POST", base, pod("web-1"))
    status, body, _ = await api.call("POST", f"{base}/web-1/binding", binding("web-1", "node-a"))
    assert status == 201 and body == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                      "status": "Success", "code": 201}
    bound = await api.ok("GET", f"{base}/web-1")
    assert bound["spec"]["nodeName"] == "node-a"
    assert bound["metadata"]["uid"] == created["metadata"]["uid"]
    scheduled = [c for c in bound["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled and scheduled[0]["status"] == "True"
    # a second binding is refused with upstream's conflict
    status, body, _ = await api.call("POST", f"{base}/web-1/binding", binding("web-1", "node-b"))
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"].endswith('pod web-1 is already assigned to node "node-a"')
    assert (await api.ok("GET", f"{base}/web-1"))["spec"]["nodeName"] == "node-a"


async def test_binding_refuses_bad_targets_and_stale_uids(api: Api) -> None:
    base = PODS.format(ns="default")
    await api.ok("POST", base, pod("web-2"))
    status, body, _ = await api.call("POST", f"{base}/web-2/binding", binding("web-2", ""))
    assert status == 422 and body["details"]["causes"][0]["field"] == "target.name"
    wrong_kind = binding("web-2", "node-a")
    wrong_kind["target"]["kind"] = "Pod"
    status, body, _ = await api.call("POST", f"{base}/web-2/binding", wrong_kind)
    assert status == 422 and "must be empty or 'Node'" in body["message"]
    status, body, _ = await api.call("POST", f"{base}/web-2/binding", binding("other", "node-a"))
    assert status == 400 and body["message"] == "name in URL does not match name in Binding object"
    status, body, _ = await api.call("POST", f"{base}/web-2/binding", binding("web-2", "node-a", uid="nope"))
    assert status == 409 and "Precondition failed: UID in precondition: nope" in body["message"]
    status, _, _ = await api.call("POST", f"{base}/missing/binding", binding("missing", "node-a"))
    assert status == 404
    assert "nodeName" not in (await api.ok("GET", f"{base}/web-2"))["spec"]


async def test_binding_is_create_only_and_listed_in_discovery(api: Api) -> None:
    base = PODS.format(ns="default")
    await api.ok("POST", base, pod("web-3"))
    status, _, _ = await api.call("GET", f"{base}/web-3/binding")
    assert status == 405
    resources = (await api.ok("GET", "/api/v1"))["resources"]
    entry = next(r for r in resources if r["name"] == "pods/binding")
    assert entry["verbs"] == ["create"]
