"""The admin kubeconfig: server address, cluster CA and bearer token, in the format kubectl and
the official Python client load unchanged."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

KUBECONFIG_NAME = "admin.kubeconfig"
SERVER_URL_NAME = "server-url"


def kubeconfig_text(server_url: str, ca_pem: bytes, token: str, cluster: str = "svcnet") -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "admin"}}],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_private_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def url_for(host: str, port: int) -> str:
    # The kubeconfig must name an address a client can dial: a wildcard bind is reached on loopback.
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


def load_admin_kubeconfig(data_dir: Path) -> str:
    """The kubeconfig a running (or previously run) server wrote to its data directory."""
    path = data_dir / KUBECONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(
            f"no kubeconfig in {data_dir}: start the server first with `svcnet server --data-dir {data_dir}`"
        )
    return path.read_text()
