"""The rendered units: systemd-analyze verify is silent, exposure is low, options follow config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from opshelpers import ROOT, VENV, require_tools

from bog import units as U
from bog.config import load_config, with_overrides

# Exposure ceilings (systemd-analyze security --offline=yes, systemd 252); docs/operations.md
# explains what is left: numba's JIT needs W+X memory, the monitor needs AF_INET on loopback.
MAX_EXPOSURE = {"bog-feed.service": 0.5, "bog-engine.service": 0.5, "bog-monitor.service": 1.2}


def render(tmp_path: Path, **kw) -> Path:
    opts = dict(venv=str(VENV), config=str(tmp_path / "bog.toml"), cfg=load_config(None, env={}))
    opts.update(kw)
    U.write_units(U.render_units(U.UnitOptions(**opts)), str(tmp_path))
    return tmp_path / U.UNIT_DIR


def unit(tmp_path: Path, name: str, **kw) -> str:
    return (render(tmp_path, **kw) / name).read_text()


def test_systemd_analyze_verify_prints_nothing_for_every_unit(tmp_path):
    require_tools("systemd-analyze")
    d = render(tmp_path)
    names = sorted(p.name for p in d.iterdir())
    assert names == ["bog-engine.service", "bog-feed.service", "bog-monitor.service",
                     "bog-trading.slice", "bog-trading.target"]
    for name in names:
        r = subprocess.run(["systemd-analyze", "verify", str(d / name)], capture_output=True,
                           text=True, cwd=d)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), name


def exposure(path: Path) -> float:
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(path)],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


def test_security_exposure_is_low_and_documented(tmp_path):
    require_tools("systemd-analyze")
    scores = {name: exposure(ROOT / "systemd" / name) for name in MAX_EXPOSURE}
    for name, ceiling in MAX_EXPOSURE.items():
        assert scores[name] <= ceiling, scores
    doc = (ROOT / "docs" / "operations.md").read_text()
    for name, score in scores.items():  # the documented numbers are the measured ones
        assert f"| `{name}` | {score:.1f} |" in doc, (name, score)
    # rendered for this checkout (a venv whose Python is under /root: ProtectHome=read-only)
    d = render(tmp_path)
    for name, ceiling in MAX_EXPOSURE.items():
        assert exposure(d / name) <= ceiling + 0.2, name


def test_reference_copy_in_systemd_dir_is_current():
    ref = U.reference_files()
    on_disk = {p.name: p.read_text() for p in (ROOT / "systemd").iterdir() if p.name != "README.md"}
    assert on_disk == ref, "systemd/ is stale: run python -m bog.units systemd/"


def test_units_follow_the_config(tmp_path):
    cfg = with_overrides(load_config(None, env={}),
                         process={"feed_core": 2, "engine_core": 3, "engine_housekeeping_core": 2,
                                  "monitor_core": -1, "engine_realtime_priority": 40},
                         monitor={"host": "0.0.0.0", "port": 9100, "max_connections": 100})
    eng = unit(tmp_path / "a", "bog-engine.service", cfg=cfg, instance="paper-1", ncpu=8)
    assert "CPUAffinity=2 3" in eng and "LimitRTPRIO=40" in eng
    assert "RestrictRealtime=yes" not in eng
    assert "--instance paper-1" in eng and "LogExtraFields=BOG_INSTANCE=paper-1" in eng
    assert "PrivateNetwork=yes" in eng
    mon = unit(tmp_path / "b", "bog-monitor.service", cfg=cfg)
    assert "CPUAffinity" not in mon.replace("# monitor_core", "")
    assert "IPAddressDeny" not in mon and "AF_INET" in mon and "PrivateNetwork" not in mon
    assert "\nLimitNOFILE=164\n" in mon  # max_connections + the monitor's own descriptors
    assert "LimitNOFILE" not in eng
    # a core the machine does not have: the same fallback as the process (core % ncpu)
    small = unit(tmp_path / "c", "bog-engine.service", cfg=cfg, ncpu=2)
    assert "CPUAffinity=0 1" in small
    assert "RestartSteps=5" in unit(tmp_path / "d", "bog-feed.service", systemd_version=254)
    assert "\nRestartSteps=" not in unit(tmp_path / "e", "bog-feed.service", systemd_version=252)


def test_protect_home_and_exec_quoting(tmp_path):
    feed = unit(tmp_path / "a", "bog-feed.service", venv="/opt/bog/venv",
                config="/etc/bog/my config%.toml")
    assert "ProtectHome=yes" in feed
    assert 'ExecStart=/opt/bog/venv/bin/bog feed --instance default --config ' \
           '"/etc/bog/my config%%.toml"' in feed
    home = unit(tmp_path / "b", "bog-feed.service", venv="/home/ops/venv")
    assert "ProtectHome=read-only" in home


def test_hidden_paths_follow_the_units_own_sandboxing(tmp_path):
    o = U.UnitOptions(venv="/opt/bog/venv", config="/etc/bog/bog.toml",
                      cfg=load_config(None, env={}))
    feed = U.render_units(o)[f"{U.UNIT_DIR}/bog-feed.service"]
    assert U.hidden_paths(feed) == {"/tmp": "PrivateTmp=yes", "/var/tmp": "PrivateTmp=yes",
                                    "/home": "ProtectHome=yes", "/root": "ProtectHome=yes",
                                    "/run/user": "ProtectHome=yes"}
    home = unit(tmp_path, "bog-feed.service", venv="/home/ops/venv")  # ProtectHome=read-only
    assert set(U.hidden_paths(home)) == {"/tmp", "/var/tmp"}
    extra = feed + "InaccessiblePaths=-/srv/secret\nTemporaryFileSystem=/var/lib/x:ro\n"
    assert {"/srv/secret", "/var/lib/x"} <= set(U.hidden_paths(extra))


def fake_venv(parent: Path) -> Path:
    """A directory that passes for a venv: bin/bog, and bin/python -> this Python."""
    v = parent / "venv"
    (v / "bin").mkdir(parents=True)
    (v / "bin" / "bog").write_text("#!/bin/sh\n")
    (v / "bin" / "python").symlink_to(sys.executable)
    return v


def test_install_units_refuses_a_venv_or_config_the_units_cannot_see(tmp_path):
    # tmp_path is under /tmp: the units' PrivateTmp=yes hides it (a checkout under /tmp gave
    # status=203/EXEC at every start)
    venv = fake_venv(tmp_path)
    r = bogctl("install-units", "--prefix", str(tmp_path / "out"), "--venv", str(venv),
               "--config", "/etc/bog/bog.toml")
    assert r.returncode == 2 and not (tmp_path / "out").exists(), r.stderr
    assert r.stderr.startswith(
        f"bogctl install-units: the venv {venv} is under /tmp, which the units hide "
        "(PrivateTmp=yes in bog-feed.service): the services would fail to start "
        "(status=203/EXEC); install bog where they can see it"), r.stderr
    with tempfile.TemporaryDirectory(dir="/run") as d:  # visible to the units
        ok = fake_venv(Path(d))
        r = bogctl("install-units", "--prefix", str(tmp_path / "out2"), "--venv", str(ok),
                   "--config", str(tmp_path / "bog.toml"))
        assert r.returncode == 2 and r.stderr.startswith(
            f"bogctl install-units: the config {tmp_path / 'bog.toml'} is under /tmp, which "
            "the units hide (PrivateTmp=yes in bog-feed.service): put the config where they "
            "can read it"), r.stderr
        r = bogctl("install-units", "--prefix", str(tmp_path / "out3"), "--venv", str(ok),
                   "--config", "/etc/bog/bog.toml")
        assert r.returncode == 0, r.stderr


def bogctl(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bog.ctl", *args], capture_output=True,
                          text=True, **kw)


@pytest.fixture
def venv():
    """This checkout's venv, or a stand-in when the units could not see it (a checkout under
    /tmp: install-units refuses it, tested above)."""
    try:
        U.check_visible(U.UnitOptions(venv=str(VENV), config="/etc/bog/bog.toml",
                                      cfg=load_config(None, env={})))
        yield VENV
    except U.UnitPathError:
        with tempfile.TemporaryDirectory(dir="/run") as d:
            yield fake_venv(Path(d))


def test_bogctl_install_units_prefix_print_and_errors(tmp_path, venv):
    r = bogctl("install-units", "--prefix", str(tmp_path), "--config", "/etc/bog/x.toml",
               "--instance", "p2", "--json", "--venv", str(venv))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["written"]) == 6 and doc["warnings"] == []  # no reload under a prefix
    text = (tmp_path / "etc/systemd/system/bog-engine.service").read_text()
    assert f"ExecStart={venv}/bin/bog engine --instance p2 --config /etc/bog/x.toml" in text
    assert (tmp_path / "etc/sysusers.d/bog.conf").read_text().splitlines()[-1].startswith("u bog ")
    r = bogctl("install-units", "--print", "--prefix", str(tmp_path / "none"), "--venv",
               str(venv))
    assert r.returncode == 0 and "### etc/systemd/system/bog-trading.target" in r.stdout
    assert not (tmp_path / "none").exists()
    r = bogctl("install-units", "--prefix", str(tmp_path), "--venv", str(tmp_path / "novenv"))
    assert r.returncode == 2 and "bin/bog not found" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "file").write_text("")
    r = bogctl("install-units", "--prefix", str(tmp_path / "file"), "--venv", str(venv))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
