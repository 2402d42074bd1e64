"""`svcnet proxy render` and the daemon's argument checks."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from svcnet.cli.main import build
from svcnet.proxy.iptables import sort_restore_text

GOLDEN = Path(__file__).parent / "golden" / "iptables"
runner = CliRunner()
app = build()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_render_prints_the_full_sync() -> None:
    res = invoke("proxy", "render", "--mode", "iptables", "-f", str(GOLDEN / "three.yaml"),
                 "--node-name", "test-node", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.startswith("*filter\n:KUBE-SERVICES - [0:0]\n") and out.endswith("COMMIT\n")
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000" in out  # production mark format
    assert "-j MASQUERADE --random-fully" in out
    assert "--probability 0.3333333333 -j KUBE-SEP-SXIVWICOYRO3J4NJ" in out
    sorted_res = invoke("proxy", "render", "-f", str(GOLDEN / "three.yaml"), "--sorted")
    assert sorted_res.stdout == sort_restore_text(sorted_res.stdout)


def test_render_flags_shape_the_output() -> None:
    res = invoke("proxy", "render", "-f", str(GOLDEN / "three.yaml"), "--masquerade-all",
                 "--no-localhost-nodeports", "--masquerade-bit", "5")
    assert res.exit_code == 0, res.output
    assert "KUBE-FIREWALL" not in res.stdout
    assert "--or-mark 0x00000020" in res.stdout
    assert "! -d 127.0.0.0/8 -j KUBE-NODEPORTS" in res.stdout
    assert '--dport 80 -j KUBE-MARK-MASQ' in res.stdout


def test_malformed_objects_file_names_file_and_document(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nkind: [unclosed\n")
    res = invoke("proxy", "render", "-f", str(bad))
    assert res.exit_code == 2
    assert str(bad) in res.stderr and "document 2" in res.stderr


def test_every_mode_renders_and_an_unknown_mode_is_refused() -> None:
    for mode, marker in (("iptables", "*nat"), ("nftables", "add table ip kube-proxy"), ("ipvs", "-A -t")):
        res = invoke("proxy", "render", "--mode", mode, "-f", str(GOLDEN / "three.yaml"))
        assert res.exit_code == 0, (mode, res.stderr)
        assert marker in res.stdout, mode
    bogus = invoke("proxy", "render", "--mode", "bogus", "-f", str(GOLDEN / "three.yaml"))
    assert bogus.exit_code == 2 and "bogus" in bogus.stderr


def test_bad_node_flags_are_rejected() -> None:
    res = invoke("proxy", "render", "-f", str(GOLDEN / "three.yaml"), "--node-ip", "1.2.3")
    assert res.exit_code == 2 and "--node-ip '1.2.3' is not an IP address" in res.stderr
    res = invoke("proxy", "render", "-f", str(GOLDEN / "three.yaml"), "--cluster-cidr", "10.0.0.0/33")
    assert res.exit_code == 2 and "is not a CIDR" in res.stderr
    res = invoke("proxy", "--mode", "iptables", "-f", str(GOLDEN / "three.yaml"))
    assert res.exit_code == 2 and "--node-name is required" in res.stderr


def test_render_reads_the_node_zone_from_a_node_object_in_the_files() -> None:
    fixture = str(GOLDEN / "topology.yaml")  # holds Node test-node in zone "za"
    in_zone = invoke("proxy", "render", "-f", fixture, "--node-name", "test-node").stdout
    assert "10.180.7.1:80" in in_zone and "10.180.7.2:80" not in in_zone
    unknown_node = invoke("proxy", "render", "-f", fixture, "--node-name", "elsewhere").stdout
    assert "10.180.7.2:80" in unknown_node  # no zone label: hints are ignored
