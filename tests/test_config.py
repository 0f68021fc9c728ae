"""Configuration: defaults, ranges, env overrides and clear errors naming key, value, range."""

from __future__ import annotations

import os
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


def test_unreadable_config_files_give_clear_errors(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[feed]\nrate_per_s = 5  # caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.toml is not valid UTF-8 \(line 2: byte 0xe9\)"):
        load_config(str(bad), env={})
    with pytest.raises(ConfigError, match=r"config file .*: Is a directory"):
        load_config(str(tmp_path), env={})


def test_misspelled_environment_override_is_refused_with_the_closest_name():
    with pytest.raises(ConfigError) as e:
        build_config({}, env={"BOG_FEED_RATE": "5"})
    assert str(e.value) == "unknown setting BOG_FEED_RATE; did you mean BOG_FEED_RATE_PER_S?"
    with pytest.raises(ConfigError, match=r"unknown setting BOG_RISK_MAX_POSITION; did you mean "
                                          r"BOG_RISK_MAX_POSITION_BTC\?"):
        build_config({}, env={"BOG_RISK_MAX_POSITION": "2"})
    with pytest.raises(ConfigError, match=r"unknown setting BOG_XYZZY; overrides are "):
        build_config({}, env={"BOG_XYZZY": "1"})
    # bog's other variables, the overrides and non-BOG_ variables are fine
    env = {"BOG_STATE_DIR": "/s", "BOG_LOG_DIR": "/l", "BOG_LOG_JSON": "1", "BOG_LOG_STDERR": "0",
           "BOG_INSTANCE": "x", "BOG_CONFIG": "/c", "BOG_FEED_RATE_PER_S": "5",
           "FEED_RATE": "7", "BOGUS": "1"}
    assert build_config({}, env=env).feed.rate_per_s == 5.0


def _cli(argv: list[str], tmp_path, extra_env: dict, timeout: float = 60.0):
    """The real command line in a subprocess, with only the test's BOG_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOG_")
           and k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    env.update({"BOG_STATE_DIR": str(tmp_path / "state"), "BOG_LOG_DIR": str(tmp_path / "logs")})
    env.update(extra_env)
    for k in [k for k, v in env.items() if v is None]:
        del env[k]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=timeout)


# Each case: files to write, config path, environment, the name the error must contain, and
# the commands it applies to (journal directory: only what runs the engine; bogctl makes none).
def _error_cases(tmp_path):
    (tmp_path / "latin1.toml").write_bytes(b"[feed]\nrate_per_s = 5  # caf\xe9\n")
    (tmp_path / "cfgdir").mkdir()
    (tmp_path / "bad_log.toml").write_text('[process]\nlog_dir = "/proc/bog-nope"\n')
    (tmp_path / "afile").write_text("")
    (tmp_path / "logs2" / "bog.log").mkdir(parents=True)  # the log file cannot be opened
    every = ("feed", "engine", "monitor", "run", "bogctl")
    procs = ("feed", "engine", "monitor", "run")
    return {
        "non_utf8": ("latin1.toml", {}, "latin1.toml is not valid UTF-8", every),
        "directory": ("cfgdir", {}, "cfgdir: Is a directory", every),
        "log_dir_env": (None, {"BOG_LOG_DIR": "/proc/bog-nope"},
                        "BOG_LOG_DIR=/proc/bog-nope: cannot create the log directory", procs),
        "log_dir_file": (None, {"BOG_LOG_DIR": str(tmp_path / "afile")},
                         "BOG_LOG_DIR=", procs),
        "log_file": (None, {"BOG_LOG_DIR": str(tmp_path / "logs2")},
                     f"log file {tmp_path / 'logs2' / 'bog.log'} (BOG_LOG_DIR or process.log_dir)"
                     ": Is a directory", procs),
        "log_dir_key": ("bad_log.toml", {"BOG_LOG_DIR": None},
                        "process.log_dir = '/proc/bog-nope' (bad_log.toml): cannot create", procs),
        "state_dir": (None, {"BOG_STATE_DIR": "/proc/bog-nope"},
                      "BOG_STATE_DIR=/proc/bog-nope: cannot create the journal directory",
                      ("engine", "run")),
        "misspelled": (None, {"BOG_FEED_RATE": "5"},
                       "unknown setting BOG_FEED_RATE; did you mean BOG_FEED_RATE_PER_S?", every),
    }


CASES = ("non_utf8", "directory", "log_dir_env", "log_dir_file", "log_file", "log_dir_key",
         "state_dir", "misspelled")


@pytest.mark.parametrize("case", CASES)
def test_config_errors_are_one_line_naming_the_setting_without_traceback(tmp_path, instance,
                                                                         case):
    cfg, env, name, commands = _error_cases(tmp_path)[case]
    for cmd in commands:
        argv = ([sys.executable, "-m", "bog.ctl", "status"] if cmd == "bogctl" else
                [sys.executable, "-m", "bog.cli", cmd])
        argv += ["--instance", instance] + (["--config", cfg] if cfg else [])
        r = _cli(argv, tmp_path, env, timeout=30)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and "Traceback" not in r.stderr, (cmd, r.stderr[-2000:])
        assert len(lines) == 1 and name in lines[0], (cmd, r.stderr[-2000:])


def test_every_bog_variable_the_code_reads_is_known():
    """A BOG_* variable read anywhere in bog is an override or listed in ENV_OTHER, so the
    misspelling check never refuses one of bog's own (e.g. the supervisor's BOG_RESTARTS)."""
    import re
    from pathlib import Path

    import bog
    from bog.config import ENV_OTHER, env_overrides

    known = set(ENV_OTHER) | set(env_overrides())
    read = set()
    for path in Path(bog.__file__).parent.rglob("*.py"):
        text = path.read_text()
        read |= set(re.findall(r'"(BOG_[A-Z0-9_]+)"', text))
    read = {v for v in read if not v.endswith("_")}  # prefixes such as "BOG_"
    assert read - known == set(), sorted(read - known)
