"""The file object source: what `-f objects.yaml` gives the proxy, DNS and trace."""

from __future__ import annotations

import io
import json
import textwrap

import pytest

from svcnet.client.cache import INDEX_SERVICE, endpointslice_service_index
from svcnet.client.filesource import FileSource, ObjectsFileError, load_objects
from svcnet.client.source import ObjectSource


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


SERVICES = """\
    apiVersion: v1
    kind: Service
    metadata:
      name: backend-svc
    spec:
      selector: {app: backend}
      ports:
      - port: 80
        targetPort: 8080
    ---
    # an empty document is skipped
    ---
    apiVersion: v1
    kind: Service
    metadata:
      name: db
      namespace: data
      creationTimestamp: 2024-05-01T10:00:00Z
    spec:
      ports:
      - port: 5432
    """


def test_multi_document_yaml_in_order(tmp_path):
    objs = load_objects([write(tmp_path, "svc.yaml", SERVICES)])
    assert [o["metadata"]["name"] for o in objs] == ["backend-svc", "db"]
    # Timestamps stay strings, as in Kubernetes JSON.
    assert objs[1]["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"


def test_list_kind_and_api_lists(tmp_path):
    path = write(tmp_path, "list.yaml", """\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Namespace
          metadata: {name: team-a}
        - apiVersion: v1
          kind: Service
          metadata: {name: web, namespace: team-a}
        ---
        apiVersion: v1
        kind: ServiceList
        metadata: {resourceVersion: "7"}
        items:
        - metadata: {name: listed}
          spec: {ports: [{port: 1}]}
        """)
    objs = load_objects([path])
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("Namespace", "team-a"), ("Service", "web"), ("Service", "listed")]
    # Items of an API list (ServiceList) take their kind and apiVersion from the list.
    assert objs[2]["apiVersion"] == "v1"


def test_json_file_and_several_files(tmp_path):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j"},
           "spec": {"ports": [{"port": 53, "protocol": "UDP"}]}}
    json_path = tmp_path / "svc.json"
    json_path.write_text(json.dumps(svc, indent=2))
    yaml_path = write(tmp_path, "svc.yaml", SERVICES)
    objs = load_objects([str(json_path), yaml_path])
    assert [o["metadata"]["name"] for o in objs] == ["j", "backend-svc", "db"]
    assert objs[0] == svc


def test_stdin(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(textwrap.dedent(SERVICES)))
    assert [o["metadata"]["name"] for o in load_objects(["-"])] == ["backend-svc", "db"]


def test_malformed_yaml_names_file_document_and_line(tmp_path):
    path = write(tmp_path, "bad.yaml", """\
        apiVersion: v1
        kind: Namespace
        metadata: {name: ok}
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: broken
         spec: {}
        """)
    with pytest.raises(ObjectsFileError) as info:
        load_objects([path])
    message = str(info.value)
    assert message.startswith(f"{path}: document 2 (line 9")


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "apiVersion": "v1",\n  "kind": "Service"\n  "metadata": {}\n}\n')
    with pytest.raises(ObjectsFileError, match=rf"^{path}: document 1 \(line 4"):
        load_objects([str(path)])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: Service\nmetadata: {name: a}\n", "object has no apiVersion"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "object has no kind"),
        ("apiVersion: v1\nkind: Service\nspec: {}\n", "Service has no metadata"),
        ("apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n", "Service has no metadata.name"),
        ("- a\n- b\n", "expected a Kubernetes object"),
        ("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Pod}]\n",
         "items[0]: Pod has no metadata"),
    ],
)
def test_documents_that_are_not_objects(tmp_path, text, problem):
    path = write(tmp_path, "x.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n---\n" + text)
    with pytest.raises(ObjectsFileError) as info:
        load_objects([path])
    assert str(info.value).startswith(f"{path}: document 2")
    assert problem in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ObjectsFileError, match=r"nope\.yaml"):
        load_objects([str(tmp_path / "nope.yaml")])


async def test_file_source_groups_defaults_and_fills_metadata(tmp_path, caplog):
    path = write(tmp_path, "objs.yaml", SERVICES.rstrip(" ") + """\
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: ignored}
    ---
    apiVersion: v1
    kind: Node
    metadata: {name: node-1, namespace: should-be-dropped}
    """)
    source = FileSource([path])
    assert isinstance(source, ObjectSource)
    await source.start()
    assert await source.wait_synced(timeout=1)
    services = source.store("services")
    backend = services.get("default", "backend-svc")
    assert backend is not None, "a Service without namespace lands in default"
    assert services.get("data", "db") is not None
    # Synthetic metadata consumers rely on.
    meta = backend["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert services.get("data", "db")["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"
    # Cluster-scoped kinds carry no namespace.
    assert source.store("nodes").get(None, "node-1")["metadata"].get("namespace") is None
    assert "ConfigMap" in caplog.text
    assert source.store("pods").list() == []
    await source.stop()


async def test_file_source_applies_api_server_defaults(tmp_path):
    source = FileSource([write(tmp_path, "svc.yaml", SERVICES)])
    await source.start()
    svc = source.store("svc").get("default", "backend-svc")
    assert svc["spec"]["ports"][0]["protocol"] == "TCP"
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["sessionAffinity"] == "None"


async def test_handlers_and_indexers(tmp_path):
    path = write(tmp_path, "eps.yaml", """\
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: web-abc
          labels: {kubernetes.io/service-name: web}
        addressType: IPv4
        endpoints: [{addresses: [10.0.0.1]}]
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: web-def
          labels: {kubernetes.io/service-name: web}
        addressType: IPv4
        endpoints: [{addresses: [10.0.0.2]}]
        """)
    source = FileSource([path])
    source.add_indexer("endpointslices", INDEX_SERVICE, endpointslice_service_index)
    seen_sync: list[str] = []
    seen_async: list[str] = []

    async def on_add_async(obj):
        seen_async.append(obj["metadata"]["name"])

    source.add_handler("endpointslices", on_add=lambda o: seen_sync.append(o["metadata"]["name"]))
    source.add_handler("EndpointSlice", on_add=on_add_async)
    await source.start()
    assert seen_sync == seen_async == ["web-abc", "web-def"]
    slices = source.store("endpointslices").by_index(INDEX_SERVICE, "default/web")
    assert sorted(s["metadata"]["name"] for s in slices) == ["web-abc", "web-def"]
    assert source.store("endpointslices").by_index(INDEX_SERVICE, "default/other") == []


async def test_reload_emits_the_difference(tmp_path):
    path = tmp_path / "objs.yaml"
    path.write_text(textwrap.dedent(SERVICES))
    source = FileSource([str(path)])
    events: list[tuple[str, str]] = []
    source.add_handler(
        "services",
        on_add=lambda o: events.append(("add", o["metadata"]["name"])),
        on_update=lambda old, new: events.append(("update", new["metadata"]["name"])),
        on_delete=lambda o: events.append(("delete", o["metadata"]["name"])),
    )
    await source.start()
    before = source.store("services").get("default", "backend-svc")
    events.clear()
    changed = textwrap.dedent(SERVICES).replace("port: 80", "port: 81").split("---")[0]
    path.write_text(changed + "---\napiVersion: v1\nkind: Service\nmetadata: {name: new}\n")
    assert await source.reload() == (1, 1, 1)
    assert sorted(events) == [("add", "new"), ("delete", "db"), ("update", "backend-svc")]
    after = source.store("services").get("default", "backend-svc")
    assert after["spec"]["ports"][0]["port"] == 81
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    # Reloading unchanged files changes nothing.
    events.clear()
    assert await source.reload() == (0, 0, 0)
    assert events == []
    # A broken file keeps the previous content.
    path.write_text("apiVersion: v1\nkind: [\n")
    with pytest.raises(ObjectsFileError):
        await source.reload()
    assert source.store("services").get("default", "new") is not None


async def test_late_handler_gets_existing_objects(tmp_path):
    source = FileSource.from_objects([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}},
    ])
    await source.start()
    seen: list[str] = []
    source.add_handler("ns", on_add=lambda o: seen.append(o["metadata"]["name"]))
    await source.stop()  # waits for the replay
    assert sorted(seen) == ["a", "b"]
