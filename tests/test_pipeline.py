"""End-to-end: real feed and engine processes over real POSIX shared memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from support import FAST, cleanup_segments, merge, unique_instance, wait_for

from bog.engine.journal import recover
from bog.shm.layouts import FAULT_KINDS, REJECT_REASONS
from bog.shm.segment import list_segments

pytestmark = pytest.mark.slow

# A busy market so that fills come within seconds.
BUSY = merge(FAST, {"feed": {"rate_per_s": 500.0, "sweep_depth_bps": 4.0},
                   "execution": {"maker_latency_ms": 20.0}})


def journal_lines(pl):
    p = pl.journal_path()
    if not p.exists():
        return []
    return [orjson.loads(x) for x in p.read_bytes().splitlines() if x.strip()]


def fills_received(pl) -> int:
    return int(pl.metrics()["fills_received_total"].sum())


def independent_books(events: list[dict]) -> dict:
    """Position, entry and realized PnL recomputed from the journal's fills with exact
    fractions (weighted-average cost, fees deducted): independent of bog's PositionTracker."""
    from fractions import Fraction

    pos = Fraction(0)
    entry = Fraction(0)
    realized = Fraction(0)
    fees = Fraction(0)
    for f in events:
        if f["type"] != "Fill":
            continue
        side = 1 if f["side"] == "buy" else -1
        qty = Fraction(f["qty_fixed"], 10**9)
        px = Fraction(f["price_fixed"], 10**9)
        fee = Fraction(f["fee_fixed"], 10**9)
        if pos == 0 or (pos > 0) == (side > 0):
            entry = (entry * abs(pos) + px * qty) / (abs(pos) + qty)
        else:
            closing = min(qty, abs(pos))
            realized += (px - entry) * (1 if pos > 0 else -1) * closing
            if qty > closing:
                entry = px
            elif pos + side * qty == 0:
                entry = Fraction(0)
        pos += side * qty
        realized -= fee
        fees += fee
    return {"position": pos, "entry": entry, "realized": realized, "fees": fees}


def check_fills_against_orders(events: list[dict]) -> None:
    """Every fill belongs to an order submitted before it, on the same side, at the order's
    price (paper fills execute at the order price), never beyond the order's size and never
    after the order was cancelled."""
    orders, cancelled, filled = {}, set(), {}
    for e in events:
        if e["type"] == "OrderSubmit":
            assert e["order_id"] not in orders, f"order {e['order_id']} submitted twice"
            orders[e["order_id"]] = e
        elif e["type"] == "OrderCancel":
            assert e["order_id"] in orders
            cancelled.add(e["order_id"])
        elif e["type"] == "Fill":
            o = orders.get(e["order_id"])
            assert o is not None, f"fill {e['fill_id']} of an unknown order {e['order_id']}"
            assert e["order_id"] not in cancelled, f"fill {e['fill_id']} after its cancel"
            assert e["side"] == o["side"] and e["price"] == o["price"], (e, o)
            filled[e["order_id"]] = filled.get(e["order_id"], 0) + e["qty_fixed"]
            assert filled[e["order_id"]] <= round(o["qty"] * 1e9), (e, o)


def test_pipeline_trades_and_counters_agree_with_the_journal(pipeline_factory):
    pl = pipeline_factory(BUSY).start_all()
    wait_for(lambda: fills_received(pl) >= 6, 60, what="6 fills")
    codes = pl.stop_all()
    assert codes == {"engine": 0, "feed": 0}
    assert list_segments(pl.instance) == []  # everything unlinked on clean shutdown
    ev = journal_lines(pl)
    fills = [e for e in ev if e["type"] == "Fill"]
    assert len(fills) >= 6
    assert [f["fill_id"] for f in fills] == list(range(1, len(fills) + 1))
    check_fills_against_orders(ev)
    # restart the engine without a feed: its metrics come from the journal alone, and must
    # equal an independent recomputation from the journal's fills
    pl.start("engine")
    m = pl.metrics()
    books = independent_books(ev)
    assert m["position_btc"] == pytest.approx(float(books["position"]), abs=1e-12)
    assert m["entry_price_usd"] == pytest.approx(float(books["entry"]), rel=1e-12)
    assert m["realized_pnl_usd"] == pytest.approx(float(books["realized"]), abs=1e-6)
    assert m["fees_usd_total"] == pytest.approx(float(books["fees"]), abs=1e-9)
    assert int(m["trades_total"]) == len(fills)
    assert pl.stop_all()["engine"] == 0


def test_live_counters_match_journal_while_running(pipeline_factory):
    pl = pipeline_factory(BUSY).start_all()
    wait_for(lambda: fills_received(pl) >= 4, 60, what="4 fills")
    pl.procs["feed"].stop()  # freeze the market so the numbers hold still
    time.sleep(0.3)
    m = pl.metrics()
    ev = journal_lines(pl)
    fills = [e for e in ev if e["type"] == "Fill"]
    buys = sum(1 for f in fills if f["side"] == "buy")
    assert int(m["fills_received_total"][0]) == buys
    assert int(m["fills_received_total"][1]) == len(fills) - buys
    assert int(m["fills_generated_total"]) == len(fills)
    assert int(m["fills_dropped_total"]) == 0
    assert m["position_btc"] == pytest.approx(
        sum((1 if f["side"] == "buy" else -1) * f["qty_fixed"] for f in fills) / 1e9, abs=1e-12)
    assert int(m["orders_placed_total"].sum()) == sum(1 for e in ev if e["type"] == "OrderSubmit")
    assert int(m["ticks_total"]) > 20 and int(m["ticks_accepted_total"]) > 20
    assert int(m["signals_total"].sum()) == int(m["ticks_accepted_total"])
    assert int(m["tick_processing_ns_bucket"].sum()) == int(m["ticks_total"]) - int(m["sequence_duplicates_total"])
    # process block
    assert int(m["core"]) in (0, 1) and int(m["running"]) == 1
    assert "Signal::QuoteBoth" in pl.log_text()


def test_kill9_engine_then_restart_recovers_position_and_pnl_exactly(pipeline_factory):
    pl = pipeline_factory(BUSY).start_all()
    wait_for(lambda: fills_received(pl) >= 5 and pl.metrics()["position_btc"] != 0, 90,
             what="fills and an open position")
    pl.procs["feed"].stop()
    time.sleep(0.3)
    before = pl.metrics()
    pl.procs["engine"].stop(signal.SIGKILL)
    # the dead engine's segments are still there; a new engine replaces them
    assert any(n.endswith(".engine") for n in list_segments(pl.instance))
    pl.start("engine")
    after = pl.metrics()
    for k in ("position_btc", "entry_price_usd", "realized_pnl_usd", "daily_pnl_usd",
              "trades_total", "fees_usd_total"):
        assert after[k] == before[k], k
    assert "recovered from journal" in pl.procs["engine"].output()
    assert "replacing stale shared memory" in pl.procs["engine"].output()


def test_fill_queue_overflow_drops_counts_logs_and_trips_breaker(pipeline_factory):
    pl = pipeline_factory(merge(BUSY, {"execution": {"fill_queue_size": 2,
                                                     "fault_stop_fill_drain": True}})).start_all()
    wait_for(lambda: int(pl.metrics()["fills_dropped_total"]) >= 1, 90, what="a dropped fill")
    m = pl.metrics()
    assert int(m["circuit_breaker_state"]) == 2 and int(m["circuit_breaker_latched"]) == 1
    assert int(m["fill_queue_capacity"]) == 2
    assert int(m["fills_generated_total"]) == 2 + int(m["fills_dropped_total"])
    wait_for(lambda: "fills dropped" in pl.log_text(), 5, what="log line")
    text = pl.log_text()
    line = next(x for x in text.splitlines() if "fills dropped" in x)
    assert "CRITICAL" in line
    assert "Circuit breaker tripped by risk: fills dropped" in text
    assert "Circuit breaker CLOSED -> OPEN" in text
    # reconciliation sees the executor ledger ahead of tracking by the dropped fills
    wait_for(lambda: int(pl.metrics()["position_corrections_total"]) >= 1, 10,
             what="a position correction")
    assert "Position correction" in pl.log_text()


def test_feed_faults_land_in_the_right_counters(pipeline_factory):
    pl = pipeline_factory(merge(FAST, {
        "feed": {"rate_per_s": 1000.0, "fault_gap_probability": 0.01, "fault_gap_size": 3,
                 "fault_bad_book_probability": 0.01, "fault_stall_every_s": 2.0,
                 "fault_stall_s": 0.6},
        "validation": {"stale_after_ms": 200.0, "offline_after_ms": 400.0},
        "breaker": {"failure_threshold": 1000}}))
    pl.start_all()
    wait_for(lambda: int(pl.metrics()["stale_data_age_us_bucket"].sum()) >= 1
             and int(pl.metrics()["sequence_gaps_total"]) >= 3, 60, what="stale ended + gaps")
    pl.procs["feed"].stop()
    time.sleep(0.2)
    e = pl.metrics()
    gaps = int(e["sequence_gaps_total"])
    assert int(e["sequence_gap_ticks_total"]) >= 3 * gaps  # each injected gap skips 3
    assert int(e["sequence_gap_size_bucket"].sum()) == gaps
    crossed = int(e["ticks_rejected_total"][REJECT_REASONS.index("crossed_book")])
    zero = int(e["ticks_rejected_total"][REJECT_REASONS.index("zero_or_negative_price")])
    assert crossed >= 1 and zero >= 1 and abs(crossed - zero) <= 1  # the feed alternates
    assert int(e["stale_data_total"]) >= 1 and int(e["offline_total"]) >= 1
    assert int(e["stale_data_age_us_bucket"].sum()) >= 1
    assert int(e["ring_lost_ticks_total"]) == 0
    text = pl.log_text()
    assert "Sequence gap: expected" in text
    assert "Stale data: no market update" in text
    assert "Rejected snapshot" in text and "crossed_book" in text


def test_feed_counters_for_injected_faults(pipeline_factory):
    pl = pipeline_factory(merge(FAST, {"feed": {
        "rate_per_s": 2000.0, "fault_gap_probability": 0.02,
        "fault_latency_spike_probability": 0.05, "fault_latency_spike_us": 3000.0}}))
    pl.start("feed")
    pl.start("engine")
    wait_for(lambda: int(pl.metrics("feed")["faults_injected_total"][0]) >= 10
             and int(pl.metrics()["sequence_gaps_total"]) >= 3, 30, what="gaps")
    f = pl.metrics("feed")
    spikes = int(f["faults_injected_total"][FAULT_KINDS.index("latency_spike")])
    assert spikes >= 1
    # latency spikes land above the 1 ms edge of the feed latency histogram
    from bog.shm.layouts import FEED_LATENCY_US_EDGES

    above_1ms = int(f["feed_latency_us_bucket"][list(FEED_LATENCY_US_EDGES).index(1000) + 1:].sum())
    assert above_1ms >= spikes
    e = pl.metrics()
    assert 0 < int(e["sequence_gaps_total"]) <= int(f["faults_injected_total"][0])


def test_breaker_cycles_open_half_open_closed_on_market_anomalies(pipeline_factory):
    pl = pipeline_factory(merge(FAST, {
        "feed": {"rate_per_s": 1000.0, "fault_bad_book_probability": 0.01},
        "breaker": {"failure_threshold": 3, "window_s": 1.0, "cooldown_s": 0.3,
                    "half_open_successes": 5}})).start_all()
    wait_for(lambda: int(pl.metrics()["circuit_breaker_trips_total"]) >= 2, 60, what="two trips")
    text = pl.log_text()
    for t in ("Circuit breaker CLOSED -> OPEN", "Circuit breaker OPEN -> HALF_OPEN"):
        assert t in text
    assert "HALF_OPEN -> CLOSED" in text or "HALF_OPEN -> OPEN" in text
    assert int(pl.metrics()["circuit_breaker_latched"]) == 0


def test_daily_loss_latches_breaker_until_bogctl_reset(pipeline_factory):
    pl = pipeline_factory(merge(BUSY, {"risk": {"max_daily_loss_usd": 0.01}})).start_all()
    wait_for(lambda: int(pl.metrics()["circuit_breaker_latched"]) == 1, 90, what="latch")
    time.sleep(0.1)  # let the drain publish the PnL of the fill that tripped it
    m = pl.metrics()
    assert int(m["circuit_breaker_state"]) == 2 and m["daily_pnl_usd"] <= -0.01
    time.sleep(0.5)
    assert int(pl.metrics()["circuit_breaker_state"]) == 2  # no automatic recovery
    assert int(pl.metrics()["open_orders"]) == 0
    r = subprocess.run([sys.executable, "-m", "bog.ctl", "breaker", "reset", "--instance",
                        pl.instance, "--timeout", "20"], capture_output=True, text=True,
                       env=pl.env, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "Circuit breaker reset by bogctl (was OPEN)" in pl.log_text(), 10,
             what="reset log line")
    assert "Circuit breaker tripped by risk: daily loss limit hit" in pl.log_text()


def test_bogctl_pause_resume_and_status(pipeline_factory):
    pl = pipeline_factory(BUSY).start_all()
    wait_for(lambda: int(pl.metrics()["open_orders"]) > 0, 30, what="quotes")

    def ctl(*a):
        if a[0] in ("pause", "resume"):
            a += ("--timeout", "20")  # a loaded test machine can delay the engine's answer
        return subprocess.run([sys.executable, "-m", "bog.ctl", *a, "--instance", pl.instance],
                              capture_output=True, text=True, env=pl.env, timeout=60)

    assert ctl("pause").returncode == 0
    wait_for(lambda: int(pl.metrics()["paused"]) == 1 and int(pl.metrics()["open_orders"]) == 0,
             5, what="paused with no quotes")
    r = ctl("status", "--json")
    s = json.loads(r.stdout)
    assert r.returncode == 1 and s["status"] == "degraded" and "trading paused" in s["problems"]
    assert s["processes"]["engine"]["up"] and s["processes"]["feed"]["up"]
    assert s["engine"]["ticks_per_s"] > 100
    assert ctl("resume").returncode == 0
    wait_for(lambda: int(pl.metrics()["open_orders"]) > 0, 10, what="quotes again")
    r = ctl("status")
    assert "engine   up" in r.stdout and "\033[" not in r.stdout  # no colour when piped
    assert "Trading paused (quotes cancelled) by bogctl" in pl.log_text()
    assert "Trading resumed by bogctl" in pl.log_text()
    pl.stop_all()
    r = ctl("status")
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout


def test_engine_waits_for_feed_and_detects_feed_restart(pipeline_factory):
    pl = pipeline_factory(merge(FAST, {"validation": {"stale_after_ms": 100.0,
                                                      "offline_after_ms": 300.0}}))
    pl.start("engine")
    wait_for(lambda: int(pl.metrics()["feed_state"]) == 2, 10, what="offline without feed")
    pl.start("feed")
    wait_for(lambda: int(pl.metrics()["ticks_total"]) > 50, 20, what="ticks after feed start")
    assert int(pl.metrics()["feed_state"]) == 0
    pl.procs["feed"].stop(signal.SIGKILL)  # crash: segment left behind
    wait_for(lambda: int(pl.metrics()["feed_state"]) >= 1, 10, what="stale after feed crash")
    pl.start("feed")
    wait_for(lambda: int(pl.metrics()["feed_restarts_total"]) == 1
             and int(pl.metrics()["feed_state"]) == 0, 20, what="feed restart detected")
    m = pl.metrics()
    assert int(m["sequence_backwards_total"]) == 0  # a restart is not an anomaly
    assert "feed restart detected" in pl.log_text()


def test_bog_run_starts_everything_and_cleans_up(tmp_path):
    inst = unique_instance("run")
    env = dict(os.environ, BOG_STATE_DIR=str(tmp_path / "s"), BOG_LOG_DIR=str(tmp_path / "l"))
    try:
        r = subprocess.run([sys.executable, "-m", "bog.cli", "run", "--instance", inst,
                            "--duration", "6", "--no-monitor"], capture_output=True, text=True,
                           env=env, timeout=180)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "pipeline up" in r.stderr and "all processes stopped" in r.stderr
        assert list_segments(inst) == []
        log = (tmp_path / "l" / "bog.log").read_text()
        assert "bog-engine running" in log and "bog-feed running" in log
        assert (Path(tmp_path / "s" / inst / "journal.jsonl")).exists()
    finally:
        cleanup_segments(inst)


def test_bog_run_with_monitor_on_any_free_port_comes_up_and_honours_duration(tmp_path):
    """``bog run --port 0``: the monitor binds a free port; the supervisor finds it in the
    monitor's address segment (it used to poll port 0, never saw the monitor up, and ignored
    --duration until its start timeout)."""
    inst = unique_instance("run0")
    env = dict(os.environ, BOG_STATE_DIR=str(tmp_path / "s"), BOG_LOG_DIR=str(tmp_path / "l"))
    try:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "bog.cli", "run", "--instance", inst,
                            "--duration", "4", "--port", "0"], capture_output=True, text=True,
                           env=env, timeout=180)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "pipeline up" in r.stderr and "all processes stopped" in r.stderr
        assert time.monotonic() - t0 < 100  # not the 120 s start timeout
        log = (tmp_path / "l" / "bog.log").read_text()
        assert "bog-monitor running" in log
        assert list_segments(inst) == []
    finally:
        cleanup_segments(inst)


def test_same_instance_cannot_start_twice(pipeline_factory):
    pl = pipeline_factory(FAST)
    pl.start("feed")
    p = subprocess.run(pl.argv("feed"), capture_output=True, text=True, env=pl.env, timeout=60)
    assert p.returncode == 1
    assert "owned by running process" in p.stderr and "Traceback" not in p.stderr


def test_ring_overrun_between_processes_is_detected_and_counted(pipeline_factory):
    """A small ring and a flat-out feed: the engine is lapped, counts it and resyncs."""
    pl = pipeline_factory(merge(FAST, {"feed": {"rate_per_s": 0.0, "ring_capacity": 64}}))
    pl.start_all()
    wait_for(lambda: int(pl.metrics()["ring_overruns_total"]) >= 1, 30, what="an overrun")
    m = pl.metrics()
    assert int(m["ring_lost_ticks_total"]) >= 64 * int(m["ring_overruns_total"]) // 2
    assert int(m["ticks_total"]) > 0
    wait_for(lambda: "Ring overrun" in pl.log_text(), 5, what="overrun log line")
    # lost ticks are counted as ring loss, not as feed sequence gaps
    assert int(m["sequence_gaps_total"]) <= int(m["ring_overruns_total"])


def test_bog_run_restarts_a_crashed_engine(tmp_path):
    from support import to_toml

    from bog.process import signal_pid
    from bog.shm import SegmentNames
    from bog.shm.metrics import MetricsBlock

    inst = unique_instance("sup")
    cfgp = tmp_path / "bog.toml"
    cfgp.write_text(to_toml(FAST))
    env = dict(os.environ, BOG_STATE_DIR=str(tmp_path / "s"), BOG_LOG_DIR=str(tmp_path / "l"))
    out = open(tmp_path / "run.out", "wb")
    sup = subprocess.Popen([sys.executable, "-m", "bog.cli", "run", "--instance", inst,
                            "--config", str(cfgp), "--no-monitor"], env=env,
                           stdout=out, stderr=subprocess.STDOUT)
    names = SegmentNames(inst)

    def engine_pid():
        try:
            blk = MetricsBlock.attach(names.engine_metrics, "engine")
        except Exception:
            return 0
        try:
            return int(blk.m[0]["pid"]) if int(blk.m[0]["running"]) == 1 else 0
        finally:
            blk.close(unlink=False)

    try:
        wait_for(lambda: b"pipeline up" in (tmp_path / "run.out").read_bytes(), 120,
                 what="bog run: pipeline up")
        first = engine_pid()
        assert signal_pid(first, signal.SIGKILL)  # from shared memory: checked > 0, alive
        second = wait_for(lambda: (p := engine_pid()) and p != first and p, 60,
                          what="engine restarted by the supervisor")
        assert second != first
        log = (tmp_path / "l" / "bog.log").read_text()
        assert "bog-engine exited with status -9; restarting" in log
    finally:
        sup.send_signal(signal.SIGTERM)
        code = sup.wait(60)
        out.close()
        assert code == 0, (tmp_path / "run.out").read_text()[-3000:]
        assert list_segments(inst) == []
        cleanup_segments(inst)


def test_engine_restarted_beyond_daily_loss_limit_starts_halted(pipeline_factory):
    import time as _t

    from bog.engine.journal import Journal

    pl = pipeline_factory(merge(BUSY, {"risk": {"max_daily_loss_usd": 50.0}}))
    j = Journal(str(pl.journal_path()))
    now = _t.time_ns()
    j.fill(1, 1, 1, 60_000 * 10**9, 10**8, 0, 0, now - 2000)  # buy 0.1 @ 60,000
    j.fill(2, 2, -1, 59_000 * 10**9, 10**8, 0, 0, now - 1000)  # sell 0.1 @ 59,000: -100 USD
    j.close()
    pl.start_all()
    wait_for(lambda: int(pl.metrics()["circuit_breaker_state"]) == 2, 10, what="breaker open")
    m = pl.metrics()
    assert m["daily_pnl_usd"] == pytest.approx(-100.0)
    assert int(m["circuit_breaker_latched"]) == 1
    time.sleep(0.5)
    assert int(pl.metrics()["open_orders"]) == 0 and int(pl.metrics()["orders_placed_total"].sum()) == 0
    assert "beyond the daily loss limit" in pl.log_text()


def test_large_journal_is_rotated_at_start_with_an_exact_checkpoint(pipeline_factory):
    pl = pipeline_factory(BUSY).start_all()
    wait_for(lambda: fills_received(pl) >= 5, 60, what="5 fills")
    pl.stop_all()
    before = recover(str(pl.journal_path())).tracker
    small = merge(BUSY, {"execution": {"journal_rotate_mb": 0.001}})
    from support import to_toml

    pl.config_path.write_text(to_toml(small))
    pl.start("engine")  # no feed: nothing trades after the restart
    m = pl.metrics()
    assert m["position_btc"] == before.position and m["realized_pnl_usd"] == before.realized_pnl
    assert "journal rotated (larger than journal_rotate_mb)" in pl.procs["engine"].output()
    archives = list(pl.journal_path().parent.glob("journal-*.jsonl"))
    assert len(archives) == 1
    lines = pl.journal_path().read_text().splitlines()
    assert len(lines) == 1 and orjson.loads(lines[0])["type"] == "Checkpoint"
    assert pl.stop_all()["engine"] == 0
    # and the next start recovers from the checkpoint alone
    pl.config_path.write_text(to_toml(BUSY))
    pl.start("engine")
    m = pl.metrics()
    assert m["position_btc"] == before.position and m["entry_price_usd"] == before.entry_price
    assert m["realized_pnl_usd"] == before.realized_pnl and int(m["trades_total"]) == before.trades
