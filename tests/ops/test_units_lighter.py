"""The feed unit of the lighter source: outbound network only for it, verified and measured."""

from __future__ import annotations

import subprocess

from opshelpers import require_tools
from test_units import exposure, render

from bog.config import load_config, with_overrides

# measured with systemd-analyze security --offline=yes (systemd 252); docs/lighter.md
MAX_LIGHTER_FEED_EXPOSURE = 1.6  # measured 1.5 (1.3 with a loopback venue URL)


def lighter_cfg(url=""):
    return with_overrides(load_config(None, env={}), feed={"source": "lighter"},
                          venue={"url": url})


def test_lighter_feed_unit_allows_network_and_verifies(tmp_path):
    require_tools("systemd-analyze")
    d = render(tmp_path, cfg=lighter_cfg())
    text = (d / "bog-feed.service").read_text()
    assert "\nPrivateNetwork=yes" not in text
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in text
    assert "\nIPAddressDeny" not in text  # the venue addresses are not fixed
    r = subprocess.run(["systemd-analyze", "verify", str(d / "bog-feed.service")],
                       capture_output=True, text=True, cwd=d)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert exposure(d / "bog-feed.service") <= MAX_LIGHTER_FEED_EXPOSURE
    # the engine and monitor units do not change with the feed source
    synth = render(tmp_path / "s", cfg=load_config(None, env={}), config=str(tmp_path / "bog.toml"))
    for name in ("bog-engine.service", "bog-monitor.service"):
        assert (d / name).read_text() == (synth / name).read_text()
    assert "PrivateNetwork=yes" in (synth / "bog-feed.service").read_text()


def test_lighter_feed_unit_on_loopback_fake_is_restricted(tmp_path):
    d = render(tmp_path, cfg=lighter_cfg("ws://127.0.0.1:8765/stream"))
    text = (d / "bog-feed.service").read_text()
    assert "IPAddressDeny=any" in text and "IPAddressAllow=localhost" in text
