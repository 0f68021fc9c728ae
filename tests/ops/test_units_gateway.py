"""bog-gateway.service: rendered only for dry-run / live, verified by systemd-analyze, pinned,
part of bog-trading.target, the venue API key as a systemd credential (never its content)."""

from __future__ import annotations

import os
import subprocess

from opshelpers import require_tools
from test_units import exposure, render

from bog import units as U
from bog.config import load_config, with_overrides

# systemd-analyze security --offline=yes (systemd 252): like the lighter feed's (outbound
# network to the venue, numba's W+X memory); docs/live-trading.md
MAX_GATEWAY_EXPOSURE = 1.6


def gw_cfg(mode="live", **gateway):
    g = dict(network="testnet", account_index=7, api_key_index=3)
    g.update(gateway)
    return with_overrides(load_config(None, env={}), execution={"mode": mode}, gateway=g,
                          process={"gateway_core": 1})


def test_paper_renders_no_gateway_unit(tmp_path):
    d = render(tmp_path)
    assert not (d / "bog-gateway.service").exists()
    for p in d.iterdir():
        assert "bog-gateway" not in p.read_text() and "LoadCredential" not in p.read_text()
    assert U.processes_for(load_config(None, env={})) == ("feed", "engine", "monitor")


def test_live_gateway_unit_verifies_and_is_part_of_the_target(tmp_path):
    require_tools("systemd-analyze")
    d = render(tmp_path, cfg=gw_cfg())
    names = sorted(p.name for p in d.iterdir())
    assert names == ["bog-engine.service", "bog-feed.service", "bog-gateway.service",
                     "bog-monitor.service", "bog-trading.slice", "bog-trading.target"]
    for name in names:
        r = subprocess.run(["systemd-analyze", "verify", str(d / name)], capture_output=True,
                           text=True, cwd=d)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), name
    text = (d / "bog-gateway.service").read_text()
    lines = text.splitlines()
    assert "PartOf=bog-trading.target" in lines and "WantedBy=bog-trading.target" in lines
    assert "After=bog-engine.service" in lines
    assert "CPUAffinity=1" in lines  # [process] gateway_core
    assert "LoadCredential=lighter-api-key:/etc/bog/lighter-api-key" in lines
    assert "UMask=0077" in lines and "StateDirectoryMode=0700" in lines
    assert "User=bog" in lines and "Slice=bog-trading.slice" in lines
    assert any(ln.startswith("ExecStart=") and ln.split()[1] == "gateway" for ln in lines)
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in lines
    assert "PrivateNetwork=yes" not in lines
    target = (d / "bog-trading.target").read_text().splitlines()
    assert "Wants=bog-feed.service bog-engine.service bog-monitor.service " \
           "bog-gateway.service" in target
    assert any(ln.startswith("After=") and "bog-gateway.service" in ln for ln in target)
    assert exposure(d / "bog-gateway.service") <= MAX_GATEWAY_EXPOSURE
    # feed, engine and monitor do not change with the execution mode
    paper = render(tmp_path / "p", config=str(tmp_path / "bog.toml"),
                   cfg=with_overrides(load_config(None, env={}), process={"gateway_core": 1}))
    for name in ("bog-feed.service", "bog-engine.service", "bog-monitor.service",
                 "bog-trading.slice"):
        assert (d / name).read_text() == (paper / name).read_text(), name


def test_dry_run_gateway_unit_has_no_credential_by_default(tmp_path):
    d = render(tmp_path, cfg=gw_cfg("dry-run", network="", account_index=-1, api_key_index=-1))
    lines = (d / "bog-gateway.service").read_text().splitlines()
    assert not any(ln.startswith("LoadCredential=") for ln in lines)  # no key file needed
    assert "#LoadCredential=lighter-api-key:/etc/bog/lighter-api-key" in lines
    assert "bog-gateway.service" in (d / "bog-trading.target").read_text()


def test_gateway_unit_on_a_loopback_fake_venue_is_restricted(tmp_path):
    d = render(tmp_path, cfg=gw_cfg(url="ws://127.0.0.1:8765/stream"))
    lines = (d / "bog-gateway.service").read_text().splitlines()
    assert "IPAddressDeny=any" in lines and "IPAddressAllow=localhost" in lines


def test_the_key_is_never_in_a_unit(tmp_path):
    """With gateway.api_key_file set, the unit names where the key is, never the key."""
    key = "ab" * 40
    kf = tmp_path / "key"
    kf.write_text(key)
    os.chmod(kf, 0o600)
    d = render(tmp_path / "u", cfg=gw_cfg(api_key_file=str(kf)))
    for p in d.iterdir():
        text = p.read_text()
        assert key[:16] not in text and key not in text, p.name
    assert str(kf) in (d / "bog-gateway.service").read_text()  # the comment says it is used
