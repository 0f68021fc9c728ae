"""bogctl without systemd: the local supervisor, the monitor's alerts and metrics, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from support import (
    FAST,
    cleanup_segments,
    free_port,
    merge,
    to_toml,
    unique_instance,
    wait_for,
)

from bog import ctl
from bog.process import signal_pid
from bog.shm.segment import list_segments

pytestmark = pytest.mark.slow


@pytest.fixture
def local(tmp_path):
    """A bogctl for a fresh instance, run from tmp_path (where logs/ and state/ go)."""
    inst = unique_instance("ctl")
    port = free_port()
    cfg = tmp_path / "bog.toml"
    cfg.write_text(to_toml(merge(FAST, {"monitor": {"port": port},
                                        "feed": {"rate_per_s": 500.0}})))
    env = {k: v for k, v in os.environ.items()
           if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "BOG_LOG_DIR")}
    env.update(BOG_STATE_DIR=str(tmp_path / "state"), BOG_CONFIG=str(cfg), BOG_INSTANCE=inst)

    def run(*args, check_rc=None):
        r = subprocess.run([sys.executable, "-m", "bog.ctl", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=180)
        assert "Traceback" not in r.stderr, r.stderr
        if check_rc is not None:
            assert r.returncode == check_rc, (args, r.returncode, r.stdout, r.stderr)
        return r

    run.instance, run.port, run.tmp = inst, port, tmp_path
    yield run
    for pid in ctl.find_supervisors(inst):  # whatever a failed test left running
        signal_pid(pid, signal.SIGTERM)
    wait_for(lambda: not ctl.find_supervisors(inst), 30, what="supervisor gone")
    cleanup_segments(inst)


def test_clear_messages_when_bog_is_not_running(local):
    r = local("status", check_rc=2)
    assert "NOT RUNNING" in r.stdout
    r = local("alerts", check_rc=2)
    assert r.stderr.startswith("bogctl alerts: the monitor does not answer at http://127.0.0.1:")
    r = local("metrics", "--grep", "bog_up", check_rc=2)
    assert "is bog-monitor running" in r.stderr
    r = local("breaker", "reset", check_rc=2)
    assert "does not exist (is the process running?)" in r.stderr
    r = local("stop", check_rc=0)
    assert "not running" in r.stdout
    r = local("restart", "engine", check_rc=2)
    assert "no local supervisor" in r.stderr
    r = local("logs", check_rc=2)
    assert "no log file" in r.stderr
    r = local("logs", "--since", "whenever", check_rc=2)
    assert "--since 'whenever'" in r.stderr


def test_start_restart_one_process_and_stop_through_the_local_supervisor(local):
    r = local("start", "--json", check_rc=0)
    doc = json.loads(r.stdout)
    assert doc["via"] == "supervisor" and doc["pid"] in ctl.find_supervisors(local.instance)
    assert json.loads(local("start", "--json", check_rc=0).stdout)["already_running"]
    assert "local supervisor runs all three" in local("start", "engine", check_rc=2).stderr
    wait_for(lambda: local("status").returncode == 0, 60, what="healthy status")
    s = json.loads(local("status", "--json").stdout)
    assert all(p["up"] for p in s["processes"].values()) and "systemd" not in s
    old = s["processes"]["engine"]["pid"]
    r = local("restart", "engine", "--json", check_rc=0)
    doc = json.loads(r.stdout)
    assert doc["old_pid"] == old and doc["pid"] != old
    assert "stop everything" in local("stop", "feed", check_rc=2).stderr
    # the monitor's view
    wait_for(lambda: "bog_ticks_total" in local("metrics", "--grep", "bog_ticks_total").stdout,
             30, what="metrics")
    samples = json.loads(local("metrics", "--grep", "bog_up", "--json", check_rc=0).stdout)
    assert {s["labels"]["process"] for s in samples if s["name"] == "bog_up"} >= {"feed", "engine"}
    r = local("alerts", "--json")
    assert r.returncode in (0, 1) and "firing" in json.loads(r.stdout)
    assert local("alerts").stdout.startswith(f"bog instance {local.instance}: ")
    # logs went to ./logs/bog.log (the supervisor's children), bog run's output to bog-run.out
    r = local("logs", "--pattern", "signals", "-n", "2", check_rc=0)
    assert len(r.stdout.splitlines()) == 2 and "Signal::" in r.stdout
    r = local("stop", "--json", check_rc=0)
    assert json.loads(r.stdout)["ok"]
    assert ctl.find_supervisors(local.instance) == []
    wait_for(lambda: list_segments(local.instance) == [], 10, what="segments unlinked")
    assert local("status").returncode == 2
    assert (local.tmp / "logs" / "bog.log").exists()
