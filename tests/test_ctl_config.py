"""`bogctl config NAME` prints the shipped assets, ready for Prometheus, Alertmanager, Grafana."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from bog.monitor.assets import NAMES


def ctl(*args):
    return subprocess.run([sys.executable, "-m", "bog.ctl", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("name", NAMES)
def test_every_asset_is_printed_and_parses(name):
    r = ctl("config", name, "--instance", "prod1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout) if name == "grafana" else yaml.safe_load(r.stdout)
    assert doc


def test_prometheus_config_targets_this_instance_and_port(tmp_path):
    cfg = tmp_path / "bog.toml"
    cfg.write_text("[monitor]\nport = 9191\n[strategy]\nname = \"inventory\"\n")
    r = ctl("config", "prometheus", "--instance", "prod1", "--config", str(cfg))
    doc = yaml.safe_load(r.stdout)
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "bog-trading")
    assert job["scrape_interval"] == "1s"
    sc = job["static_configs"][0]
    assert sc["targets"] == ["127.0.0.1:9191"]
    assert sc["labels"] == {"instance": "bog-prod1", "strategy": "inventory"}
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run ./scripts/setup --test"
    (tmp_path / "prometheus.yml").write_text(r.stdout)
    for name in ("rules", "alerts"):
        (tmp_path / f"{name}.yml").write_text(ctl("config", name).stdout)
    chk = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml"),
                          str(tmp_path / "alerts.yml")], capture_output=True, text=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr


def test_unknown_asset_is_refused():
    r = ctl("config", "nagios")
    assert r.returncode == 2 and "invalid choice" in r.stderr
