"""Kubeconfig loading: which server to talk to and how to prove who we are.

Reads the fields kubectl reads for the common cases (current-context or a named context;
cluster server, certificate-authority(-data), insecure-skip-tls-verify, tls-server-name; user
token, tokenFile, client-certificate(-data) + client-key(-data)) and builds the ssl.SSLContext
for them. Paths inside a kubeconfig are relative to the file, as kubectl resolves them.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_KUBECONFIG = "~/.kube/config"


class KubeconfigError(ValueError):
    """A kubeconfig that cannot be used; the message says which file and which field."""


@dataclass
class ClientConfig:
    server: str  # https://host:port (a path prefix is allowed)
    ca_data: bytes | None = None  # PEM
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    token: str | None = None
    token_file: str | None = None  # re-read on use, so rotated tokens keep working
    client_cert_data: bytes | None = None  # PEM
    client_key_data: bytes | None = None  # PEM
    namespace: str = "default"  # the context's namespace

    def bearer_token(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as e:
                raise KubeconfigError(f"cannot read tokenFile {self.token_file}: {e}") from e
        return None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS settings for an https server; None for plain http."""
        if not self.server.startswith("https://"):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx.load_verify_locations(cadata=self.ca_data.decode())
        if self.client_cert_data and self.client_key_data:
            _load_client_cert(ctx, self.client_cert_data, self.client_key_data)
        return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # The ssl module loads certificate chains only from files: write them to a private
    # directory for the duration of the call.
    with tempfile.TemporaryDirectory(prefix="svcnet-kubeconfig-") as tmp:
        cert_path = os.path.join(tmp, "client.crt")
        key_path = os.path.join(tmp, "client.key")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_path, key_path)


def _named(entries: Any, name: str, what: str, path: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(what)
            return body if isinstance(body, dict) else {}
    raise KubeconfigError(f"{path}: no {what} named {name!r}")


def _data_or_file(section: dict[str, Any], data_key: str, file_key: str, base: Path,
                  path: str) -> bytes | None:
    if section.get(data_key):
        try:
            return base64.b64decode(section[data_key], validate=True)
        except (ValueError, TypeError) as e:
            raise KubeconfigError(f"{path}: {data_key} is not valid base64") from e
    if section.get(file_key):
        file = Path(os.path.expanduser(section[file_key]))
        if not file.is_absolute():
            file = base / file
        try:
            return file.read_bytes()
        except OSError as e:
            raise KubeconfigError(f"{path}: {file_key} {file}: {e}") from e
    return None


def default_kubeconfig_path() -> str:
    """$KUBECONFIG (its first existing entry) or ~/.kube/config."""
    env = os.environ.get("KUBECONFIG")
    if env:
        for entry in env.split(os.pathsep):
            if entry and os.path.exists(os.path.expanduser(entry)):
                return os.path.expanduser(entry)
    return os.path.expanduser(DEFAULT_KUBECONFIG)


def load_kubeconfig(path: str | os.PathLike[str] | None = None, context: str | None = None) -> ClientConfig:
    """The ClientConfig of ``context`` (default: current-context) in the kubeconfig at ``path``."""
    file = str(path) if path is not None else default_kubeconfig_path()
    try:
        with open(file, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise KubeconfigError(f"cannot read kubeconfig {file}: {e}") from e
    except yaml.YAMLError as e:
        raise KubeconfigError(f"{file}: not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{file}: not a kubeconfig")
    base = Path(file).resolve().parent

    context_name = context or doc.get("current-context")
    if not context_name:
        raise KubeconfigError(f"{file}: no current-context set and no context given")
    ctx = _named(doc.get("contexts"), context_name, "context", file)
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster", file)
    user = _named(doc.get("users"), ctx["user"], "user", file) if ctx.get("user") else {}

    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{file}: cluster {ctx.get('cluster')!r} has no server")
    if user.get("exec") or user.get("auth-provider"):
        raise KubeconfigError(f"{file}: user {ctx.get('user')!r}: exec and auth-provider "
                              "credentials are not supported; use a token or a client certificate")
    token_file = user.get("tokenFile")
    if token_file and not os.path.isabs(os.path.expanduser(token_file)):
        token_file = str(base / token_file)
    return ClientConfig(
        server=server.rstrip("/"),
        ca_data=_data_or_file(cluster, "certificate-authority-data", "certificate-authority", base, file),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name"),
        token=user.get("token"),
        token_file=token_file,
        client_cert_data=_data_or_file(user, "client-certificate-data", "client-certificate", base, file),
        client_key_data=_data_or_file(user, "client-key-data", "client-key", base, file),
        namespace=ctx.get("namespace") or "default",
    )
