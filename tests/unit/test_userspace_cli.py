"""`svcnet proxy userspace` rejects bad flags with a clear message before starting anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from svcnet.cli.main import build


@pytest.fixture(scope="module")
def app():
    return build()


@pytest.mark.parametrize(("args", "message"), [
    (["--node-name", "n"], "give exactly one of -f OBJECTS or --kubeconfig K"),
    (["-f", "x.yaml"], "--node-name is required"),
    (["-f", "x.yaml", "--node-name", "n", "--scheduler", "fastest"], "unknown --scheduler 'fastest'"),
    (["-f", "x.yaml", "--node-name", "n", "--maglev-table-size", "256"], "must be a prime"),
    (["-f", "x.yaml", "--node-name", "n", "--redirect", "ipvs"], "--redirect must be one of"),
    (["-f", "x.yaml", "--node-name", "n", "--max-connections", "0"], "--max-connections must be >= 1"),
    (["-f", "x.yaml", "--node-name", "n", "--drain-timeout", "soon"], "invalid duration 'soon'"),
])
def test_bad_flags_are_refused_clearly(app, args, message):
    result = CliRunner().invoke(app, ["proxy", "userspace", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_mode_userspace_points_at_the_subcommand(app):
    result = CliRunner().invoke(app, ["proxy", "--mode", "userspace", "-f", "x.yaml", "--node-name", "n"])
    assert result.exit_code != 0
    assert "svcnet proxy userspace" in result.output


def test_help_lists_every_scheduler(app):
    result = CliRunner().invoke(app, ["proxy", "userspace", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for name in ("random", "rr", "wrr", "lc", "wlc", "sed", "nq", "dh", "sh", "mh", "p2c"):
        assert name in result.output
