"""bogctl's control verbs against a real engine: refused when the engine is dead or stuck,
"applied" only on the engine's acknowledgement, and a pause that survives a kill -9."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from support import FAST, merge, wait_for

from bog.shm import segment as seg_mod
from bog.shm.layouts import CONTROL, KIND_CONTROL

pytestmark = pytest.mark.slow

BUSY = merge(FAST, {"feed": {"rate_per_s": 500.0, "sweep_depth_bps": 4.0},
                    "execution": {"maker_latency_ms": 20.0}})


def bogctl(pl, *args, timeout=60):
    if args and args[0] in ("pause", "resume", "reconcile", "breaker") and "--timeout" not in args:
        args += ("--timeout", "20")  # a loaded test machine can delay the engine's answer
    r = subprocess.run([sys.executable, "-m", "bog.ctl", *args, "--instance", pl.instance,
                        "--config", str(pl.config_path)], capture_output=True, text=True,
                       env=pl.env, timeout=timeout)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    return r


def control_words(pl) -> dict:
    seg = seg_mod.attach(pl.names.control, KIND_CONTROL)
    try:
        rec = seg.view(CONTROL)[0].copy()
    finally:
        seg.close(unlink=False)
    return {k: int(rec[k]) for k in CONTROL.names if k != "pad"}


def kill9(pl, name="engine"):
    p = pl.procs[name]
    os.kill(p.pid, signal.SIGKILL)
    p.p.wait(30)
    p.logf.close()


def test_requests_to_a_dead_engine_are_refused(pipeline_factory):
    pl = pipeline_factory(BUSY).start_all()
    assert json.loads(bogctl(pl, "reconcile", "--json").stdout)["applied"]
    before = control_words(pl)
    assert before["reconcile_applied"] == before["reconcile_requests"] == 1
    kill9(pl)
    assert os.path.exists(f"/dev/shm{pl.names.control}")  # the stale block is still there
    for args in (("pause",), ("breaker", "reset"), ("reconcile",), ("resume",)):
        r = bogctl(pl, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "engine of instance" in r.stderr and "is not running" in r.stderr, r.stderr
        assert "nothing was changed" in r.stderr and "which is gone" in r.stderr
    assert control_words(pl) == before  # nothing written into the dead engine's block
    pl.procs["engine"].stop()
    seg_mod.unlink_instance(pl.instance)
    r = bogctl(pl, "pause")
    assert r.returncode == 2 and "no control block" in r.stderr


def test_no_acknowledgement_is_a_failure_and_a_stuck_engine_is_refused(pipeline_factory):
    pl = pipeline_factory(BUSY).start_all()
    eng = pl.procs["engine"]
    os.kill(eng.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = bogctl(pl, "breaker", "reset", "--timeout", "1")
        assert r.returncode == 1 and "did not acknowledge within 1 s" in r.stderr, r.stderr
        assert time.monotonic() - t0 < 30
        time.sleep(5.5)  # the heartbeat is now older than the monitor's stall threshold
        r = bogctl(pl, "pause")
        assert r.returncode == 2 and "is not responding" in r.stderr, r.stderr
        assert "heartbeat" in r.stderr and control_words(pl)["pause_requested"] == 0
    finally:
        os.kill(eng.pid, signal.SIGCONT)
    # the pending reset stays in the block and is applied once the engine runs again
    wait_for(lambda: control_words(pl)["breaker_reset_applied"] == 1, 10, what="late ack")
    wait_for(lambda: "Circuit breaker reset by bogctl" in pl.log_text(), 10, what="reset line")


def test_pause_survives_an_engine_crash_until_resume(pipeline_factory):
    pl = pipeline_factory(BUSY).start_all()
    wait_for(lambda: int(pl.metrics()["open_orders"]) > 0, 30, what="quotes")
    r = bogctl(pl, "pause")
    assert r.returncode == 0, r.stderr
    assert "paused: quotes cancelled; paused (persisted)" in r.stdout
    m = pl.metrics()
    assert int(m["paused"]) == 1 and int(m["open_orders"]) == 0  # applied before "applied"
    flag = pl.state_dir / pl.instance / "paused"
    assert stat.S_IMODE(flag.stat().st_mode) == 0o600
    assert "PAUSED (persisted)" in bogctl(pl, "status").stdout
    assert "Trading paused (quotes cancelled) by bogctl - paused (persisted)" in pl.log_text()

    kill9(pl)
    pl.start("engine")  # a fresh engine, fresh control block and metrics
    wait_for(lambda: int(pl.metrics()["ticks_total"]) > 1000, 30, what="ticks after restart")
    m = pl.metrics()
    assert int(m["paused"]) == 1
    assert int(m["orders_placed_total"].sum()) == 0 and int(m["open_orders"]) == 0
    assert "Trading paused (persisted): paused by bogctl before this start" in pl.log_text()
    s = json.loads(bogctl(pl, "status", "--json").stdout)
    assert s["engine"]["paused"] and s["engine"]["pause_persisted"]
    assert "trading paused" in s["problems"]
    assert bogctl(pl, "pause").returncode == 0  # already paused: acknowledged at once

    r = bogctl(pl, "resume", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["pause_persisted"] is False, r.stdout
    assert not flag.exists()
    wait_for(lambda: int(pl.metrics()["open_orders"]) > 0, 30, what="quotes again")
    assert "PAUSED" not in bogctl(pl, "status").stdout
