"""The `svcnet` command. Each subcommand lives in its own module under svcnet.cli and exposes
``register(app)``; listing it in COMMAND_MODULES is all it takes to add one."""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES: list[str] = [
    "svcnet.cli.server",
    "svcnet.cli.proxy",
    "svcnet.cli.trace",
    "svcnet.cli.dns",
    "svcnet.cli.node",
    "svcnet.cli.lab",
    "svcnet.cli.up",
    "svcnet.cli.demo",
    "svcnet.cli.controllers",
    "svcnet.cli.datastore",
]

app = typer.Typer(
    name="svcnet",
    help="Kubernetes Service networking: API server, controllers, kube-proxy, DNS and a lab.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """svcnet: Kubernetes Service networking in Python."""


def build() -> typer.Typer:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def run() -> None:
    build()(prog_name="svcnet")
