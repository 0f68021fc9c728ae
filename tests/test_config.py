"""Configuration: defaults, ranges, env overrides and clear errors naming key, value, range."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from bog.config import ConfigError, build_config, default_toml, load_config


def test_defaults_match_the_original_system():
    c = build_config({}, env={})
    assert c.strategy.spread_bps == 10.0 and c.strategy.order_size_btc == 0.1
    assert c.risk.max_position_btc == 1.0 and c.risk.max_daily_loss_usd == 5000.0
    assert c.execution.fill_queue_size == 1024 and c.execution.maker_latency_ms == 200.0
    assert c.execution.maker_fee_bps == 0.2 and c.execution.taker_fee_bps == 2.0
    assert c.monitor.host == "127.0.0.1" and c.monitor.port == 9090
    assert (c.breaker.failure_threshold, c.breaker.window_s, c.breaker.cooldown_s,
            c.breaker.half_open_successes) == (5, 60.0, 30.0, 2)


def test_default_file_round_trips_and_documents_every_key():
    text = default_toml()
    data = tomllib.loads(text)
    assert build_config(data, env={}) == build_config({}, env={})
    assert "max_position_btc = 1.0  # |position| limit" in text


@pytest.mark.parametrize(
    "data,message",
    [
        ({"risk": {"max_position_btc": -1}}, r"risk.max_position_btc = -1.0 .*allowed range is 1e-09 .. 1000000.0"),
        ({"risk": {"max_position_btc": float("nan")}}, r"risk.max_position_btc = nan .*finite"),
        ({"execution": {"fill_queue_size": 0}}, r"execution.fill_queue_size = 0 .*allowed range is 1 .. 1048576"),
        ({"execution": {"fill_queue_size": "big"}}, r"execution.fill_queue_size = 'big'.*not a valid int"),
        ({"strategy": {"name": "yolo"}}, r"strategy.name = 'yolo'.*allowed values are simple-spread, inventory"),
        ({"strategy": {"spred_bps": 3}}, r"unknown key strategy.spred_bps"),
        ({"risks": {}}, r"unknown section \[risks\]"),
        ({"feed": {"ring_capacity": 1000}}, r"feed.ring_capacity = 1000: must be a power of two"),
        ({"strategy": {"order_size_btc": 2.0}}, r"strategy.order_size_btc = 2.0: allowed range is 0.0001 .. 0.5"),
        ({"monitor": {"port": 70000}}, r"monitor.port = 70000"),
    ],
)
def test_invalid_values_name_key_value_and_range(data, message):
    with pytest.raises(ConfigError, match=message):
        build_config(data, env={})


def test_environment_overrides_the_guides_knobs():
    env = {"MAX_POSITION": "2.5", "MAX_DAILY_LOSS": "100", "FILL_QUEUE_SIZE": "2048",
           "SPREAD_BPS": "12", "ORDER_SIZE": "0.2", "BOG_FEED_RATE_PER_S": "500"}
    c = build_config({"risk": {"max_position_btc": 1.0}}, env=env)
    assert c.risk.max_position_btc == 2.5 and c.risk.max_daily_loss_usd == 100.0
    assert c.execution.fill_queue_size == 2048 and c.strategy.spread_bps == 12.0
    assert c.strategy.order_size_btc == 0.2 and c.feed.rate_per_s == 500.0
    with pytest.raises(ConfigError, match=r"environment MAX_POSITION"):
        build_config({}, env={"MAX_POSITION": "-3"})


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.toml"), env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk\nmax_position_btc = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad), env={})


@pytest.mark.parametrize("cmd", ["feed", "engine", "run"])
def test_processes_refuse_bad_config_with_one_line_error(tmp_path, cmd):
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk]\nmax_daily_loss_usd = -5\n")
    r = subprocess.run([sys.executable, "-m", "bog.cli", cmd, "--config", str(bad),
                        "--instance", "cfgtest"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "risk.max_daily_loss_usd = -5.0" in r.stderr and "allowed range" in r.stderr
    assert "Traceback" not in r.stderr
