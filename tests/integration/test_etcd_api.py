"""The API suites of test_pythonclient.py and test_watch.py, run again with the API server on
etcd: the same tests, collected here, with ``make_api`` building the application on an
EtcdStore (a one-member etcd shared by the session, a fresh key prefix per application)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_api_support import Api

from svcnet.apiserver.app import build_app
from svcnet.apiserver.options import ApiServerOptions
from svcnet.store.etcd import EtcdStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_pythonclient import *  # noqa: F403 - the suites, collected again on etcd
from test_pythonclient import (
    test_dynamic_client_discovery,
    test_pod_crud_and_selectors_with_official_client,
    test_service_crud_with_official_client,
    test_watch_from_expired_resource_version_raises_410,
    test_watch_stream_sees_added_modified_deleted_in_order,
)
from test_watch import *  # noqa: F403
from test_watch import (
    test_bookmarks_carry_only_resource_version,
    test_legacy_watch_path_for_one_name,
    test_many_watchers_all_receive_every_event,
    test_namespaced_watch_sees_only_its_namespace,
    test_no_bookmarks_unless_asked,
    test_selector_watch_translates_match_changes,
    test_send_initial_events_ends_with_marked_bookmark,
    test_timeout_seconds_ends_the_stream,
    test_watch_from_expired_resource_version_gets_410,
    test_watch_rejects_bad_parameters,
    test_watch_resumes_exactly_after_resource_version,
    test_watch_sends_state_then_changes_in_order,
)

from etcd_fixture import EtcdCluster, etcd_missing_reason, shared_etcd

COLLECTED_AGAIN = [
    test_dynamic_client_discovery,
    test_pod_crud_and_selectors_with_official_client,
    test_service_crud_with_official_client,
    test_watch_from_expired_resource_version_raises_410,
    test_watch_stream_sees_added_modified_deleted_in_order,
    test_bookmarks_carry_only_resource_version,
    test_legacy_watch_path_for_one_name,
    test_many_watchers_all_receive_every_event,
    test_namespaced_watch_sees_only_its_namespace,
    test_no_bookmarks_unless_asked,
    test_selector_watch_translates_match_changes,
    test_send_initial_events_ends_with_marked_bookmark,
    test_timeout_seconds_ends_the_stream,
    test_watch_from_expired_resource_version_gets_410,
    test_watch_rejects_bad_parameters,
    test_watch_resumes_exactly_after_resource_version,
    test_watch_sends_state_then_changes_in_order,
]



# These name resourceVersion=1, which is inside the watch window only of a store that starts
# empty: they get an etcd of their own instead of a prefix in the shared one.
NEED_EMPTY_ETCD = {
    test_many_watchers_all_receive_every_event.__name__,
    test_no_bookmarks_unless_asked.__name__,
}


@pytest.fixture
async def make_api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    if reason := etcd_missing_reason():
        pytest.skip(reason)
    private = EtcdCluster.start(1) if request.node.name in NEED_EMPTY_ETCD else None
    endpoints = (private or shared_etcd()).endpoints
    started: list[tuple[TestClient, EtcdStore]] = []

    async def start(**options: Any) -> Api:
        store = EtcdStore(endpoints, prefix=f"/svt-api-{tmp_path.name}-{len(started)}", compact_interval=0)
        await store.start()
        client = TestClient(TestServer(build_app(store, ApiServerOptions(**options)), host="127.0.0.1"))
        await client.start_server()
        started.append((client, store))
        return Api(client, store, str(client.make_url("")).rstrip("/"))  # type: ignore[arg-type]

    try:
        yield start
    finally:
        for client, store in reversed(started):
            await client.close()
            await store.close()
        if private is not None:
            private.stop()
