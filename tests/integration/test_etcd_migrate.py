"""`svcnet datastore migrate --from sqlite://DIR --to etcd://...`: the objects arrive with
their resourceVersions, uids and allocations; a non-empty target is refused without --force."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from etcd_helpers import Rest, service, start_on_etcd

from svcnet.apiserver.launcher import SRC, start_api_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etcd_fixture import EtcdCluster, etcd_missing_reason

pytestmark = pytest.mark.timeout(120)
SVC = "/api/v1/namespaces/default/services"


def svcnet(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-m", "svcnet", *args], capture_output=True, text=True, env=env, timeout=60
    )


def datastore_cli(*args: str) -> tuple[int, str]:
    """`svcnet datastore ...` in this process (cheaper than a new interpreter per call)."""
    import typer
    from typer.testing import CliRunner

    from svcnet.cli import datastore

    app = typer.Typer()
    datastore.register(app)
    app.callback()(lambda: None)
    result = CliRunner().invoke(app, ["datastore", *args])
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


async def snapshot(rest: Rest) -> dict[str, tuple[str, str, str]]:
    status, listed = await rest.call("GET", SVC)
    assert status == 200, listed
    return {
        item["metadata"]["name"]: (
            item["metadata"]["resourceVersion"],
            item["metadata"]["uid"],
            item["spec"].get("clusterIP", ""),
        )
        for item in listed["items"]
    }


async def test_migrate_sqlite_to_etcd_keeps_resource_versions(tmp_path: Path) -> None:
    if reason := etcd_missing_reason():
        pytest.skip(reason)
    source_dir = tmp_path / "sqlite"
    server = start_api_server(source_dir)
    rest = Rest(server)
    try:
        for i in range(30):
            status, body = await rest.call("POST", SVC, service(f"m{i}"))
            assert status == 201, body
        for i in range(0, 30, 3):  # gaps in the revision sequence: updates and deletes
            status, obj = await rest.call("GET", f"{SVC}/m{i}")
            obj["metadata"]["labels"] = {"touched": "yes"}
            assert (await rest.call("PUT", f"{SVC}/m{i}", obj))[0] == 200
            assert (await rest.call("DELETE", f"{SVC}/m{i + 1}"))[0] == 200
        before = await snapshot(rest)
    finally:
        await rest.close()
        server.stop()

    etcd = EtcdCluster.start(1)
    try:
        result = svcnet("datastore", "migrate", "--from", f"sqlite://{source_dir}", "--to", etcd.url,
                        "--mapping", str(tmp_path / "map.json"))
        assert result.returncode == 0, result.stderr
        assert "resourceVersions kept for" in result.stdout, result.stdout
        mapping = json.loads((tmp_path / "map.json").read_text())
        # Only the bootstrap revisions below etcd's first free revision (2) may move.
        assert all(int(old) == new for old, new in mapping.items() if int(old) >= 2), mapping

        # A second migration into the now non-empty etcd is refused, and --force renumbers.
        code, output = await asyncio.to_thread(
            datastore_cli, "migrate", "--from", f"sqlite://{source_dir}", "--to", etcd.url
        )
        assert code == 1 and "already holds" in output, output

        moved = start_on_etcd(tmp_path / "etcd-server", etcd.url)
        rest = Rest(moved)
        try:
            after = await snapshot(rest)
            # default/kubernetes is reconciled by every server start (its endpoint moved).
            assert after.pop("kubernetes")[1:] == before.pop("kubernetes")[1:]
            assert after == before
            # The migrated allocations are live: a new Service cannot take a migrated ClusterIP.
            status, body = await rest.call("POST", SVC, service("new-after-migration"))
            assert status == 201, body
            assert body["spec"]["clusterIP"] not in {ip for _, _, ip in before.values()}
            assert int(body["metadata"]["resourceVersion"]) > max(int(rv) for rv, _, _ in before.values())
        finally:
            await rest.close()
            moved.stop(signal.SIGKILL)

        code, output = await asyncio.to_thread(
            datastore_cli, "migrate", "--from", f"sqlite://{source_dir}", "--to", etcd.url, "--force"
        )
        assert code == 0 and "renumbered in the same order" in output, output
    finally:
        etcd.stop()


def test_migrate_rejects_bad_urls() -> None:
    for args, message in (
        (["--from", "mysql://x", "--to", "etcd://127.0.0.1:1"], "unsupported datastore 'mysql'"),
        (["--from", "sqlite:///nonexistent/dir", "--to", "etcd://h:1"], "no SQLite datastore at"),
        (["--from", "etcd://h:1", "--to", "etcd://h:99999"], "bad etcd endpoint"),
        (["--from", "etcd://h:1", "--to", "etcd://h:1"], "name the same datastore"),
    ):
        code, output = datastore_cli("migrate", *args)
        assert code == 2 and message in output, output
