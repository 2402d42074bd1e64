"""svcnet's own client (ApiClient, Informer, InformerSource) against the real `svcnet server`:
the path every controller, the proxy and the DNS server take to the API."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import yaml
from test_api_support import make_api

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.cache import INDEX_SERVICE, endpointslice_service_index
from svcnet.client.informer import Informer, InformerSource
from svcnet.client.kubeconfig import ClientConfig, KubeconfigError, load_kubeconfig

__all__ = ["make_api"]


def service(name: str, port: int = 80, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"selector": {"app": name}, "ports": [{"port": port}]}}


async def until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
async def api(api_server) -> AsyncIterator[ApiClient]:
    client = ApiClient.from_kubeconfig(str(api_server.kubeconfig_path))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def namespace(api) -> str:
    name = f"client-{uuid.uuid4().hex[:8]}"
    await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def test_kubeconfig_of_the_server(api_server, tmp_path):
    cfg = load_kubeconfig(api_server.kubeconfig_path)
    assert cfg.server == api_server.url
    assert cfg.bearer_token() == api_server.token
    assert cfg.ca_data == api_server.ca_path.read_bytes()
    # The same kubeconfig with file references relative to itself, as kubectl resolves them.
    (tmp_path / "ca.crt").write_bytes(api_server.ca_path.read_bytes())
    (tmp_path / "token").write_text(api_server.token + "\n")
    doc = yaml.safe_load(api_server.kubeconfig_path.read_text())
    cluster = doc["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["certificate-authority"] = "ca.crt"
    doc["users"][0]["user"] = {"tokenFile": "token"}
    doc["contexts"][0]["context"]["namespace"] = "kube-system"
    (tmp_path / "config").write_text(yaml.safe_dump(doc))
    cfg2 = load_kubeconfig(tmp_path / "config")
    assert cfg2.ca_data == cfg.ca_data
    assert cfg2.bearer_token() == api_server.token
    assert cfg2.namespace == "kube-system"
    assert cfg2.ssl_context() is not None


def test_kubeconfig_errors_name_the_problem(tmp_path):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({"current-context": "x", "contexts": [], "clusters": []}))
    with pytest.raises(KubeconfigError, match="no context named 'x'"):
        load_kubeconfig(path)
    path.write_text(yaml.safe_dump({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1",
                                                "certificate-authority-data": base64.b64encode(b"x").decode()
                                                + "!"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    with pytest.raises(KubeconfigError, match="certificate-authority-data is not valid base64"):
        load_kubeconfig(path)


def _self_signed() -> tuple[bytes, bytes]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_kubeconfig_client_certificate(tmp_path):
    cert, key = _self_signed()
    (tmp_path / "client.key").write_bytes(key)
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1",
                                                "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"client-certificate-data": base64.b64encode(cert).decode(),
                                          "client-key": "client.key"}}]}))
    cfg = load_kubeconfig(path)
    assert cfg.client_cert_data == cert and cfg.client_key_data == key
    assert cfg.insecure_skip_tls_verify
    assert cfg.ssl_context() is not None  # the pair loads


async def test_tls_verification(api_server):
    cfg = load_kubeconfig(api_server.kubeconfig_path)
    cfg.ca_data = _self_signed()[0]  # a CA that did not sign the server's certificate
    async with ApiClient(cfg) as wrong_ca:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await wrong_ca.list("namespaces")
    cfg.ca_data = None
    cfg.insecure_skip_tls_verify = True
    async with ApiClient(cfg) as insecure:
        names = {o["metadata"]["name"] for o in (await insecure.list("namespaces"))["items"]}
    assert {"default", "kube-system", "kube-public"} <= names


async def test_verbs_round_trip(api, namespace):
    created = await api.create("services", service("web"), namespace)
    assert created["metadata"]["namespace"] == namespace
    assert created["spec"]["ports"][0]["protocol"] == "TCP", "defaults applied by the server"
    got = await api.get("svc", "web", namespace)
    assert got["metadata"]["uid"] == created["metadata"]["uid"]

    got["metadata"]["labels"] = {"tier": "front"}
    updated = await api.update("services", got)
    assert updated["metadata"]["labels"] == {"tier": "front"}
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    # A stale resourceVersion is a conflict, carried as the server's Status.
    with pytest.raises(ApiError) as info:
        await api.update("services", got)
    assert info.value.code == 409 and info.value.reason == "Conflict"

    patched = await api.patch("services", "web", {"metadata": {"labels": {"tier": "back"}}}, namespace)
    assert patched["metadata"]["labels"]["tier"] == "back"
    patched = await api.patch("services", "web", [{"op": "add", "path": "/metadata/labels/x", "value": "y"}],
                              namespace, patch_type="json")
    assert patched["metadata"]["labels"] == {"tier": "back", "x": "y"}

    with pytest.raises(ApiError) as info:
        await api.create("services", service("web"), namespace)
    assert info.value.code == 409 and info.value.reason == "AlreadyExists"

    await api.delete("services", "web", namespace)
    with pytest.raises(ApiError) as info:
        await api.get("services", "web", namespace)
    assert info.value.code == 404
    assert info.value.status["details"]["name"] == "web"


async def test_list_selectors_and_paging(api, namespace):
    for i in range(5):
        await api.create("services", service(f"s{i}", labels={"parity": "even" if i % 2 == 0 else "odd"}),
                         namespace)
    odd = await api.list("services", namespace, label_selector="parity=odd")
    assert sorted(o["metadata"]["name"] for o in odd["items"]) == ["s1", "s3"]
    by_name = await api.list("services", namespace, field_selector="metadata.name=s4")
    assert [o["metadata"]["name"] for o in by_name["items"]] == ["s4"]
    first = await api.list("services", namespace, limit=2)
    assert len(first["items"]) == 2 and first["metadata"]["continue"]
    everything = await api.list_all("services", namespace, page_size=2)
    assert sorted(o["metadata"]["name"] for o in everything["items"]) == [f"s{i}" for i in range(5)]
    assert everything["metadata"]["resourceVersion"]
    # Across namespaces.
    all_ns = await api.list_all("services")
    assert {o["metadata"]["namespace"] for o in all_ns["items"]} >= {namespace}


async def test_watch_from_list_resource_version(api, namespace):
    listing = await api.list("services", namespace)
    rv = listing["metadata"]["resourceVersion"]
    events: list[tuple[str, str]] = []

    async def consume() -> None:
        async for kind, obj in api.watch("services", namespace, resource_version=rv, timeout_seconds=10):
            if kind != "BOOKMARK":
                events.append((kind, obj["metadata"]["name"]))
            if kind == "DELETED":
                return

    task = asyncio.create_task(consume())
    await api.create("services", service("w"), namespace)
    await api.patch("services", "w", {"metadata": {"labels": {"a": "b"}}}, namespace)
    await api.delete("services", "w", namespace)
    await asyncio.wait_for(task, 10)
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


async def test_wrong_token_is_401_status(api_server):
    cfg = load_kubeconfig(api_server.kubeconfig_path)
    cfg.token = "not-the-token"
    async with ApiClient(cfg) as bad:
        with pytest.raises(ApiError) as info:
            await bad.list("services")
    assert info.value.code == 401 and info.value.status["kind"] == "Status"


async def test_informer_sees_changes_within_a_second(api, namespace):
    await api.create("services", service("pre"), namespace)
    inf = Informer(api, "services", namespace)
    events: list[tuple[str, str]] = []
    inf.add_handler(
        on_add=lambda o: events.append(("add", o["metadata"]["name"])),
        on_update=lambda old, new: events.append(("update", new["metadata"]["name"])),
        on_delete=lambda o: events.append(("delete", o["metadata"]["name"])),
    )
    await inf.start()
    try:
        assert await inf.wait_synced(timeout=5)
        assert events == [("add", "pre")]
        await api.create("services", service("new"), namespace)
        await until(lambda: ("add", "new") in events, timeout=1)
        await api.patch("services", "new", {"spec": {"ports": [{"port": 81}]}}, namespace)
        await until(lambda: ("update", "new") in events, timeout=1)
        assert inf.store.get(namespace, "new")["spec"]["ports"][0]["port"] == 81
        await api.delete("services", "pre", namespace)
        await until(lambda: ("delete", "pre") in events, timeout=1)
        assert inf.store.get(namespace, "pre") is None
    finally:
        await inf.stop()


async def test_informer_source_over_several_resources(api_server, api, namespace):
    source = InformerSource.from_kubeconfig(str(api_server.kubeconfig_path), namespace=namespace)
    source.add_indexer("endpointslices", INDEX_SERVICE, endpointslice_service_index)
    source.add_handler("services")
    async with source:
        assert await source.wait_synced(timeout=5)
        await api.create("services", service("db", 5432), namespace)
        await api.create("endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.7"]}],
            "ports": [{"port": 5432, "protocol": "TCP"}]}, namespace)

        def ready() -> bool:
            return bool(source.store("services").get(namespace, "db")
                        and source.store("endpointslices").by_index(INDEX_SERVICE, f"{namespace}/db"))

        await until(ready, timeout=2)
        # Only the namespace asked for is watched.
        assert {o["metadata"]["namespace"] for o in source.store("services").list()} == {namespace}


class CuttableLink:
    """A TCP forwarder to the API server that the test can cut (a network partition)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.up = True
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def cut(self) -> None:
        self.up = False
        for w in list(self.writers):
            w.transport.abort()

    async def close(self) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_informer_relists_after_partition_outlasting_watch_history(make_api):
    """Cut off long enough that the server's watch history moved past the informer's
    resourceVersion: the resumed watch gets 410, and the relist's difference reaches handlers
    (an object deleted during the gap is delivered as a delete)."""
    server = await make_api(watch_cache_size=3)
    host_port = server.url.split("//", 1)[1]
    link = CuttableLink(host_port.rsplit(":", 1)[0], int(host_port.rsplit(":", 1)[1]))
    port = await link.start()
    direct = ApiClient(ClientConfig(server=server.url))
    client = ApiClient(ClientConfig(server=f"http://127.0.0.1:{port}"))
    for name in ("a", "b", "c"):
        await direct.create("services", service(name), "default")
    inf = Informer(client, "services", "default", backoff_initial=0.01, backoff_cap=0.05)
    events: list[tuple[str, str]] = []
    inf.add_handler(
        on_add=lambda o: events.append(("add", o["metadata"]["name"])),
        on_update=lambda old, new: events.append(("update", new["metadata"]["name"])),
        on_delete=lambda o: events.append(("delete", o["metadata"]["name"])),
    )
    await inf.start()
    try:
        assert await inf.wait_synced(timeout=5)
        await direct.create("services", service("probe"), "default")
        await until(lambda: ("add", "probe") in events, timeout=5)  # the watch is live
        events.clear()

        link.cut()
        await direct.patch("services", "a", {"metadata": {"labels": {"v": "2"}}}, "default")
        await direct.delete("services", "b", "default")
        await direct.create("services", service("d"), "default")
        for i in range(4):  # push the informer's resourceVersion out of the 3-event window
            await direct.create("services", service(f"tmp{i}"), "default")
            await direct.delete("services", f"tmp{i}", "default")
        link.up = True

        await until(lambda: ("add", "d") in events and ("delete", "b") in events, timeout=10)
        assert inf.lists == 2, "the resumed watch got 410 and the informer relisted"
        assert sorted(events) == [("add", "d"), ("delete", "b"), ("update", "a")]
        assert sorted(o["metadata"]["name"] for o in inf.store.list()) == ["a", "c", "d", "probe"]
        # And it watches again from the relist.
        await direct.create("services", service("after"), "default")
        await until(lambda: ("add", "after") in events, timeout=5)
    finally:
        await inf.stop()
        await client.close()
        await direct.close()
        await link.close()
