"""etcd with TLS on its client port and client-certificate authentication: the store and
`svcnet server --datastore etcds://... --etcd-cafile/--etcd-certfile/--etcd-keyfile`."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from etcd_helpers import Rest, service

from svcnet.apiserver.launcher import start_api_server
from svcnet.store import EtcdTLS, UnavailableError
from svcnet.store.etcd import EtcdStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etcd_fixture import EtcdCluster, MemberTLS, etcd_missing_reason

pytestmark = pytest.mark.timeout(60)


def _issue(directory: Path, name: str, usages: list[x509.ObjectIdentifier],
           issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EtcdCluster, EtcdTLS]]:
    if reason := etcd_missing_reason():
        pytest.skip(reason)
    pki = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = _issue(pki, "ca", [], None)
    ca = (x509.load_pem_x509_certificate(ca_cert.read_bytes()),
          serialization.load_pem_private_key(ca_key.read_bytes(), None))
    # etcd's JSON gateway dials the member's own gRPC port with the member certificate, so
    # under --client-cert-auth that certificate must be good for client auth too.
    member = _issue(pki, "member", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], ca)
    client = _issue(pki, "client", [ExtendedKeyUsageOID.CLIENT_AUTH], ca)
    cluster = EtcdCluster.start(1, tls=MemberTLS(member[0], member[1], ca_cert))
    try:
        yield cluster, EtcdTLS(cafile=str(ca_cert), certfile=str(client[0]), keyfile=str(client[1]))
    finally:
        cluster.stop()


async def test_store_over_tls_with_a_client_certificate(tls_etcd: tuple[EtcdCluster, EtcdTLS]) -> None:
    cluster, tls = tls_etcd
    store = EtcdStore(cluster.endpoints, tls=tls, prefix="/tls-store", compact_interval=0)
    await store.start()
    try:
        watch = store.watch("/k/", 0)
        created = await store.create("/k/a", b"secret")
        event = await asyncio.wait_for(anext(watch), 5)
        assert event.kv == created
        await watch.aclose()
    finally:
        await store.close()

    # Without a client certificate the members refuse the connection: a clear error, no hang.
    anonymous = EtcdStore(
        cluster.endpoints, tls=EtcdTLS(cafile=tls.cafile), request_timeout=2, compact_interval=0
    )
    with pytest.raises(UnavailableError):
        await anonymous.start()


async def test_api_server_on_etcd_over_tls(tls_etcd: tuple[EtcdCluster, EtcdTLS], tmp_path: Path) -> None:
    cluster, tls = tls_etcd
    assert tls.certfile and tls.keyfile and tls.cafile
    server = start_api_server(tmp_path / "data", extra_args=[
        "--datastore", cluster.url, "--etcd-cafile", tls.cafile,
        "--etcd-certfile", tls.certfile, "--etcd-keyfile", tls.keyfile,
    ])
    rest = Rest(server)
    try:
        status, body = await rest.call("POST", "/api/v1/namespaces/default/services", service("over-tls"))
        assert status == 201, body
    finally:
        await rest.close()
        server.stop(signal.SIGKILL)
