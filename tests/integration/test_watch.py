"""Watches over HTTP: NDJSON framing, synthetic ADDED, exact resume, 410 Expired, bookmarks,
timeouts, selector transitions, the legacy /watch/ path and sendInitialEvents."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientResponse
from test_api_support import SVC, Api, api, make_api, service

__all__ = ["api", "make_api"]


class Stream:
    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 5.0) -> dict[str, Any] | None:
        line = await asyncio.wait_for(self.resp.content.readline(), timeout)
        if not line:
            return None
        assert line.endswith(b"\n") and line.count(b"\n") == 1  # one compact line per event
        return json.loads(line)

    async def take(self, n: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(n):
            ev = await self.next()
            assert ev is not None
            out.append((ev["type"], ev["object"]["metadata"].get("name", "")))
        return out


async def open_watch(api: Api, path: str) -> Stream:
    resp = await api.client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    return Stream(resp)


async def test_watch_sends_state_then_changes_in_order(api: Api) -> None:
    base = SVC.format(ns="default")
    await api.ok("POST", base, service("w1"))
    stream = await open_watch(api, base + "?watch=true")
    assert await stream.take(1) == [("ADDED", "w1")]
    created = await api.ok("POST", base, service("w2"))
    modified = await api.ok(
        "PATCH",
        base + "/w2",
        {"metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    await api.ok("DELETE", base + "/w2")
    events = [await stream.next() for _ in range(3)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w2"),
        ("MODIFIED", "w2"),
        ("DELETED", "w2"),
    ]
    assert events[0]["object"]["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert events[1]["object"]["metadata"]["resourceVersion"] == modified["metadata"]["resourceVersion"]
    # DELETED carries the last state at the deletion revision.
    deleted_rv = int(events[2]["object"]["metadata"]["resourceVersion"])
    assert deleted_rv > int(modified["metadata"]["resourceVersion"])
    assert events[2]["object"]["metadata"]["labels"] == {"x": "y"}
    stream.resp.close()


async def test_watch_resumes_exactly_after_resource_version(api: Api) -> None:
    base = SVC.format(ns="default")
    a = await api.ok("POST", base, service("r1"))
    await api.ok("POST", base, service("r2"))
    await api.ok("DELETE", base + "/r1")
    stream = await open_watch(api, base + f"?watch=1&resourceVersion={a['metadata']['resourceVersion']}")
    assert await stream.take(2) == [("ADDED", "r2"), ("DELETED", "r1")]
    stream.resp.close()


async def test_watch_from_expired_resource_version_gets_410(make_api) -> None:
    api = await make_api(watch_cache_size=3)
    base = SVC.format(ns="default")
    first = await api.ok("POST", base, service("e0"))
    for i in range(1, 6):
        await api.ok("POST", base, service(f"e{i}"))
    stream = await open_watch(api, base + f"?watch=1&resourceVersion={first['metadata']['resourceVersion']}")
    event = await stream.next()
    assert event is not None and event["type"] == "ERROR"
    status = event["object"]
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {first['metadata']['resourceVersion']} (")
    assert await stream.next() is None  # the stream ends after the error


async def test_bookmarks_carry_only_resource_version(make_api) -> None:
    api = await make_api(bookmark_interval_seconds=0.1)
    base = SVC.format(ns="default")
    created = await api.ok("POST", base, service("b1"))
    rv = created["metadata"]["resourceVersion"]
    stream = await open_watch(api, base + f"?watch=1&allowWatchBookmarks=true&resourceVersion={rv}")
    event = await stream.next()
    assert event == {
        "type": "BOOKMARK",
        "object": {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": event["object"]["metadata"]["resourceVersion"]},
        },
    }
    assert int(event["object"]["metadata"]["resourceVersion"]) >= int(rv)
    stream.resp.close()


async def test_no_bookmarks_unless_asked(make_api) -> None:
    api = await make_api(bookmark_interval_seconds=0.05)
    stream = await open_watch(api, SVC.format(ns="default") + "?watch=1&resourceVersion=1&timeoutSeconds=1")
    assert await stream.next() is None


async def test_timeout_seconds_ends_the_stream(api: Api) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    stream = await open_watch(api, SVC.format(ns="default") + "?watch=1&timeoutSeconds=1")
    assert await stream.next(timeout=5) is None
    assert 0.9 <= loop.time() - start < 4


async def test_selector_watch_translates_match_changes(api: Api) -> None:
    base = SVC.format(ns="default")
    await api.ok("POST", base, service("s1", labels={"team": "a"}))
    await api.ok("POST", base, service("s2", labels={"team": "b"}))
    stream = await open_watch(api, base + "?watch=1&labelSelector=team%3Da")
    assert await stream.take(1) == [("ADDED", "s1")]
    await api.ok(
        "PATCH",
        base + "/s2",
        {"metadata": {"labels": {"team": "a"}}},
        content_type="application/merge-patch+json",
    )
    await api.ok(
        "PATCH",
        base + "/s1",
        {"metadata": {"labels": {"team": "c"}}},
        content_type="application/merge-patch+json",
    )
    added, deleted = await stream.next(), await stream.next()
    assert (added["type"], added["object"]["metadata"]["name"]) == ("ADDED", "s2")
    assert (deleted["type"], deleted["object"]["metadata"]["name"]) == ("DELETED", "s1")
    # The DELETED object is the old state (still matching), at the new revision.
    assert deleted["object"]["metadata"]["labels"] == {"team": "a"}
    current = await api.ok("GET", base + "/s1")
    assert deleted["object"]["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
    stream.resp.close()


async def test_legacy_watch_path_for_one_name(api: Api) -> None:
    base = SVC.format(ns="default")
    await api.ok("POST", base, service("one"))
    await api.ok("POST", base, service("two"))
    stream = await open_watch(api, "/api/v1/watch/namespaces/default/services/one")
    assert await stream.take(1) == [("ADDED", "one")]
    await api.ok("DELETE", base + "/two")
    await api.ok("DELETE", base + "/one")
    assert await stream.take(1) == [("DELETED", "one")]
    stream.resp.close()


async def test_namespaced_watch_sees_only_its_namespace(api: Api) -> None:
    await api.ok(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}},
    )
    stream = await open_watch(api, SVC.format(ns="elsewhere") + "?watch=1")
    all_ns = await open_watch(api, "/api/v1/services?watch=1")
    await api.ok("POST", SVC.format(ns="default"), service("here"))
    await api.ok("POST", SVC.format(ns="elsewhere"), service("there"))
    assert await stream.take(1) == [("ADDED", "there")]
    assert await all_ns.take(2) == [("ADDED", "here"), ("ADDED", "there")]
    stream.resp.close()
    all_ns.resp.close()


async def test_send_initial_events_ends_with_marked_bookmark(api: Api) -> None:
    base = SVC.format(ns="default")
    await api.ok("POST", base, service("i1"))
    stream = await open_watch(
        api,
        base + "?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan",
    )
    assert await stream.take(1) == [("ADDED", "i1")]
    bookmark = await stream.next()
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    stream.resp.close()


async def test_watch_rejects_bad_parameters(api: Api) -> None:
    status, body, _ = await api.call("GET", SVC.format(ns="default") + "?watch=1&resourceVersion=x")
    assert status == 400 and body["kind"] == "Status"
    status, body, _ = await api.call("GET", SVC.format(ns="default") + "?watch=maybe")
    assert status == 400
    status, body, _ = await api.call("GET", SVC.format(ns="default") + "?watch=1&resourceVersionMatch=Exact")
    assert status == 422


async def test_many_watchers_all_receive_every_event(api: Api) -> None:
    base = SVC.format(ns="default")
    streams = [await open_watch(api, base + "?watch=1&resourceVersion=1") for _ in range(20)]
    for i in range(5):
        await api.ok("POST", base, service(f"m{i}"))
    expected = [("ADDED", f"m{i}") for i in range(5)]
    for stream in streams:
        assert await stream.take(5) == expected
        stream.resp.close()
