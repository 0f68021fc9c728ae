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

from bog.ctl.procs import find_supervisors
from bog.process import signal_pid, stop_child
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

    run.instance, run.port, run.tmp, run.env = inst, port, tmp_path, env
    yield run
    for pid in find_supervisors(inst):  # whatever a failed test left running
        signal_pid(pid, signal.SIGTERM)
    wait_for(lambda: not find_supervisors(inst), 30, what="supervisor gone")
    cleanup_segments(inst)


def test_clear_messages_when_bog_is_not_running(local):
    r = local("status", check_rc=2)
    assert "NOT RUNNING" in r.stdout
    r = local("alerts", check_rc=2)
    assert r.stderr.startswith("bogctl alerts: the monitor does not answer at http://127.0.0.1:")
    r = local("metrics", "--grep", "bog_up", check_rc=2)
    assert "is bog-monitor running" in r.stderr
    r = local("breaker", "reset", check_rc=2)
    assert "the engine of instance" in r.stderr and "is not running (no control block" in r.stderr
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
    assert doc["via"] == "supervisor" and doc["pid"] in find_supervisors(local.instance)
    assert doc["processes"] == {"feed": "up", "engine": "up", "monitor": "up"}
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
    assert find_supervisors(local.instance) == []
    wait_for(lambda: list_segments(local.instance) == [], 10, what="segments unlinked")
    assert local("status").returncode == 2
    assert (local.tmp / "logs" / "bog.log").exists()


def test_start_reports_a_process_that_failed_to_start(local):
    """The monitor's port is taken: the supervisor stops the pipeline; 'bogctl start' must say
    so (naming the monitor), not "bog started"."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", local.port))
        held.listen(1)
        r = local("start")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "bog started" not in r.stdout
        assert r.stderr.startswith("bogctl start: bog-monitor failed: bog run exited with status 1")
        assert "address already in use" in r.stderr, r.stderr
    assert find_supervisors(local.instance) == []


def test_status_alerts_metrics_find_a_monitor_started_with_another_port(local):
    """``bog run --port P``: the config says another port; the monitor publishes where it
    listens (``/bog.<instance>.monitor``) and bogctl goes there."""
    port = free_port()
    assert port != local.port
    p = subprocess.Popen([sys.executable, "-m", "bog.cli", "run", "--instance", local.instance,
                          "--port", str(port)], cwd=local.tmp, env=local.env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        def monitor_up():
            s = json.loads(local("status", "--json").stdout)
            return s["processes"]["monitor"]["up"] and s
        s = wait_for(monitor_up, 90, what="monitor up in bogctl status")
        mon = s["processes"]["monitor"]
        assert mon["url"] == f"http://127.0.0.1:{port}/health"
        assert mon["address_from"] == "shared memory" and mon["pid"] > 0
        assert f"http://127.0.0.1:{port}/health" in local("status").stdout
        wait_for(lambda: local("metrics", "--grep", "bog_up").returncode == 0, 30,
                 what="bogctl metrics")
        r = local("alerts", "--json")
        assert r.returncode in (0, 1), r.stderr
        assert "firing" in json.loads(r.stdout)
        assert f"/bog.{local.instance}.monitor" in list_segments(local.instance)
    finally:
        stop_child(p)
    # unlinked on shutdown; then bogctl falls back to the config's port
    assert f"/bog.{local.instance}.monitor" not in list_segments(local.instance)
    mon = json.loads(local("status", "--json").stdout)["processes"]["monitor"]
    assert not mon["up"] and mon["url"] == f"http://127.0.0.1:{local.port}/health"
    assert mon["address_from"] == "config"


def test_bogctl_runs_from_a_read_only_install_without_a_cache_dir(tmp_path):
    """The numba cache fallback at the entry point: bog/ read-only (a bind mount in a private
    mount namespace: root ignores file modes, not a read-only mount) and no usable user cache
    directory, as for an operator account or ``nobody`` on an installed venv."""
    import shutil

    import bog

    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) missing")
    src = os.path.dirname(os.path.abspath(bog.__file__))
    inst = unique_instance("ro")
    script = (f"mount --bind -o ro {src} {src} && "
              f"{sys.executable} -m bog.ctl status --instance {inst}; echo rc=$?; "
              f"touch {src}/.rw-probe 2>/dev/null && echo still-writable")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    # a home and cache directory inside the read-only mount (root could create /nonexistent)
    env.update(HOME=f"{src}/no-home", XDG_CACHE_HOME=f"{src}/no-home/.cache")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    if "unshare failed" in r.stderr or "mount:" in r.stderr:
        pytest.skip(f"no private mount namespace here: {r.stderr.strip()}")
    assert "still-writable" not in r.stdout, "bog/ was not read-only: the test proves nothing"
    assert "Traceback" not in r.stderr, r.stderr
    assert "rc=2" in r.stdout and "NOT RUNNING" in r.stdout, (r.stdout, r.stderr)
