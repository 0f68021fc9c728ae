"""Monitor internals on real shared memory, in-process: collector, windows, alerts, health.

The test owns the segments (``FakeOwners``) and drives a ``MonitorState`` directly, with
readings whose clock it controls, so "for" durations and windows are checked exactly and fast.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import pytest
from monsupport import until
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bog.monitor import collector as col
from bog.monitor.alerts import RULES
from bog.monitor.health import health
from bog.monitor.history import Window
from bog.monitor.reader import CRASHED, STALLED, UP
from bog.monitor.state import MonitorState
from bog.shm.layouts import LATENCY_NS_EDGES, STALE_AGE_US_EDGES
from bog.shm.metrics import CATALOGUE, histogram_quantile


@pytest.fixture
def setup(owners):
    o = owners()
    st = MonitorState(o.instance)
    yield o, st
    st.close()


def families(st) -> dict:
    text = generate_latest(st.registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


class Clock:
    """Readings at controlled times: ``at(t)`` reads shared memory and stamps it t seconds."""

    def __init__(self, st: MonitorState):
        self.st = st
        self.t0_ns = None

    def at(self, t: float):
        r = self.st.read()
        if self.t0_ns is None:
            self.t0_ns = r.wall_ns
        return replace(r, mono_s=1000.0 + t, wall_ns=self.t0_ns + int(t * 1e9))

    def step(self, t: float):
        """Record a reading at t and evaluate the alerts on it (what housekeeping does)."""
        r = self.at(t)
        self.st.history.add(r)
        self.st.alerts.evaluate(r)
        return r


# -- collector --------------------------------------------------------------------------------
def test_every_catalogue_metric_exported_with_prometheus_conventions(setup):
    o, st = setup
    o.set(signals_total=[5, 0, 0, 1, 7], fills_dropped_total=2)
    fams = families(st)
    for spec in CATALOGUE:
        if spec.process == "gateway":  # paper: no gateway, no gateway series at all
            assert spec.name not in fams, spec.name  # (test_monitor_gateway.py: dry-run/live)
            continue
        assert spec.name in fams, spec.name
        f = fams[spec.name]
        assert f.type == spec.kind
        if spec.kind == "counter":  # exposed with _total
            assert all(s.name == spec.name + "_total" for s in f.samples), f.samples
        if spec.label:
            assert sorted(s.labels[spec.label] for s in f.samples) == sorted(spec.label_values)
    sig = {s.labels["action"]: s.value for s in fams["bog_signals"].samples}
    assert sig == {"quote_both": 5, "quote_bid": 0, "quote_ask": 0, "cancel_all": 1,
                   "no_action": 7}
    assert fams["bog_fills_dropped"].samples[0].value == 2
    for name in ("bog_up", "bog_uptime_seconds", "bog_process_start_time_seconds",
                 "bog_process_restarts", "bog_fill_queue_depth", "bog_alert_firing",
                 "bog_alert_firings"):
        assert name in fams, name


def test_histogram_buckets_cumulative_with_every_edge(setup):
    o, st = setup
    b = np.zeros(len(LATENCY_NS_EDGES) + 1, np.uint64)
    b[3], b[6], b[12], b[-1] = 10, 5, 2, 1  # <=400, <=1000, <=10000, +Inf
    o.set(tick_processing_ns_bucket=b, tick_processing_ns_sum=123456.0)
    f = families(st)["bog_tick_processing_ns"]
    buckets = [(s.labels["le"], s.value) for s in f.samples if s.name.endswith("_bucket")]
    assert [le for le, _ in buckets] == [col.le_label(e) for e in LATENCY_NS_EDGES] + ["+Inf"]
    # the alert thresholds are edges: 1 us, 10 us, 100 us
    for edge in ("1000.0", "10000.0", "100000.0"):
        assert edge in dict(buckets)
    vals = [v for _, v in buckets]
    assert vals == sorted(vals) and vals[-1] == 18
    assert dict(buckets)["400.0"] == 10 and dict(buckets)["1000.0"] == 15
    count = [s.value for s in f.samples if s.name.endswith("_count")][0]
    total = [s.value for s in f.samples if s.name.endswith("_sum")][0]
    assert count == 18 and total == 123456.0


def test_absent_process_exports_up_zero_and_no_series(setup):
    o, st = setup
    o.stop("engine")
    fams = families(st)
    up = {s.labels["process"]: s.value for s in fams["bog_up"].samples}
    assert up == {"feed": 1.0, "engine": 0.0, "monitor": 1.0}
    assert "bog_position_btc" not in fams and "bog_fill_queue_depth" not in fams
    assert "bog_feed_latency_us" in fams  # the feed still runs


def test_restarts_come_from_the_segment_header(setup, monkeypatch):
    o, st = setup
    assert st.read().procs["engine"].restarts == 0
    o.stop("engine")
    assert st.read().procs["engine"].state == "absent"
    monkeypatch.setenv("BOG_RESTARTS", "3")  # what `bog run` gives its 4th engine
    o.start("engine")
    r = st.read()
    assert r.procs["engine"].state == UP and r.procs["engine"].restarts == 3
    restarts = {s.labels["process"]: s.value
                for s in families(st)["bog_process_restarts"].samples}
    assert restarts == {"feed": 0.0, "engine": 3.0}
    o.stop("engine")  # down: the last count is kept (a counter never goes down by itself)
    assert st.read().procs["engine"].restarts == 3


def test_stalled_heartbeat_and_crashed_owner(setup):
    o, st = setup
    o.beating = False
    import time

    time.sleep(0.15)
    o.set(heartbeat_ns=time.time_ns() - 6_000_000_000)
    info = st.read().procs["engine"]
    assert info.state == STALLED and not info.up
    # an owner that died without cleaning up: pid that does not exist
    o.m("feed")  # still there
    o.blocks["feed"].segment.header[0]["owner_pid"] = 2**22 + 12345
    assert st.read().procs["feed"].state == CRASHED
    o.blocks["feed"].segment.header[0]["owner_pid"] = __import__("os").getpid()


# -- windows ----------------------------------------------------------------------------------
def test_window_quantile_is_recent_not_since_start(setup):
    o, st = setup
    o.set(start_ns=o.m()["start_ns"] - 600 * 10**9)  # engine up for 10 minutes
    c = Clock(st)
    b = np.zeros(len(LATENCY_NS_EDGES) + 1, np.uint64)
    b[12] = 1000  # 1000 slow ticks (<= 10 us) long ago
    o.set(tick_processing_ns_bucket=b)
    c.step(0)
    for t in range(1, 121):
        b[3] += 10  # then 10 fast ticks (<= 400 ns) a second
        o.set(tick_processing_ns_bucket=b)
        c.step(t)
    w = Window(st.history, c.at(120))
    since_start = histogram_quantile(0.99, b, LATENCY_NS_EDGES)
    recent = w.quantile(0.99, "engine", "tick_processing_ns", LATENCY_NS_EDGES, 60)
    assert since_start > 7_500  # the old slow ticks dominate a since-start P99
    assert 300 < recent <= 400
    assert w.delta("engine", "tick_processing_ns_bucket", 60).sum() == pytest.approx(600, abs=10)
    with pytest.raises(ValueError):
        w.count_above("engine", "tick_processing_ns", LATENCY_NS_EDGES, 999, 60)


def test_window_counts_from_zero_after_restart(setup):
    o, st = setup
    c = Clock(st)
    o.set(start_ns=o.m()["start_ns"] - 600 * 10**9, sequence_gaps_total=50)
    c.step(0)
    c.step(30)
    o.stop("engine")
    o.start("engine")
    o.set(sequence_gaps_total=3)
    w = Window(st.history, c.at(40))
    assert w.delta("engine", "sequence_gaps_total", 60) == 3


# -- alerts -----------------------------------------------------------------------------------
def firing(st) -> set[str]:
    return {s.key for s in st.alerts.firing()}


def test_for_duration_log_once_and_count(setup, caplog):
    caplog.set_level(logging.INFO, logger="bog.monitor")
    o, st = setup
    c = Clock(st)
    o.set(position_btc=0.95)  # > 90% of 1 BTC, for 10 s
    c.step(0)
    c.step(5)
    assert "PositionLimitNear" not in firing(st)
    assert [s.key for s in st.alerts.pending()] == ["PositionLimitNear"]
    c.step(10)
    assert "PositionLimitNear" in firing(st)
    for t in (11, 12, 13):
        c.step(t)
    o.set(position_btc=0.5)
    c.step(14)
    c.step(15)
    assert "PositionLimitNear" not in firing(st)
    lines = [r.getMessage() for r in caplog.records]
    fired = [ln for ln in lines if ln.startswith("ALERT FIRING PositionLimitNear")]
    resolved = [ln for ln in lines if ln.startswith("ALERT RESOLVED PositionLimitNear")]
    assert len(fired) == 1 and len(resolved) == 1, lines
    assert "severity=warning value=0.95 threshold=0.9" in fired[0]
    assert st.alerts.firings_total["PositionLimitNear"] == 1
    f = families(st)
    counts = {s.labels["alertname"]: s.value for s in f["bog_alert_firings"].samples}
    assert counts["PositionLimitNear"] == 1 and counts["CircuitBreakerTripped"] == 0


def test_alert_series_and_health_reflect_firing(setup):
    o, st = setup
    c = Clock(st)
    o.set(circuit_breaker_state=2)
    c.step(0)
    f = families(st)
    s = {x.labels["alertname"]: x.value for x in f["bog_alert_firing"].samples}
    assert s["CircuitBreakerTripped"] == 1.0 and s["FillQueueOverflow"] == 0.0
    code, doc = health(st)
    assert code == 503 and doc["status"] == "degraded" and doc["circuit_breaker"] == "OPEN"
    assert [a["name"] for a in doc["alerts"]] == ["CircuitBreakerTripped"]


def scenario_values():
    """For every monitor alert: (fields to set from t=0, the second it must start firing).

    The second follows from the rule: its threshold (e.g. NoFills: quiet > 60 s, so at 60 s
    plus the moment between setting last_fill_ns and the first reading), its window (rates
    need two readings: +1 s) and its 'for' (ExtremeLatency: 1 + 30)."""
    gaps = {"sequence_gaps_total": lambda t: 2 * t}
    return {
        "CircuitBreakerTripped": ({"circuit_breaker_state": 2}, 0),
        "FillQueueOverflow": ({"fills_dropped_total": 1}, 0),
        "ExtremeLatency": ({"tick_processing_ns_bucket": lambda t: _lat(t, 13)}, 31),
        "TickLatencyP50High": ({"tick_processing_ns_bucket": lambda t: _lat(t, 7)}, 31),
        "SlowTick": ({"tick_processing_ns_bucket": lambda t: _lat(t, 16)}, 1),
        "PositionLimitNear": ({"position_btc": -0.95}, 10),
        "DailyLossNear": ({"daily_pnl_usd": -4100.0}, 30),
        "DailyLossLimit": ({"daily_pnl_usd": -5001.0}, 0),
        "SequenceGapStorm": (gaps, 63),
        "NoFills": ({}, 60),
        "NoSignals": ({}, 10),
        "OrdersWithoutFills": ({"orders_placed_total": lambda t: [t, t]}, 29),
        "FeedLatencyHigh": ({"feed:feed_latency_us_bucket": lambda t: _feed(t)}, 31),
        "StaleData": ({"feed_state": 1, "stale_age_us": 1_500_000.0}, 0),
        "FillQueueHigh": ({"fill_depth": 60}, 5),
        "PositionCorrectionsHigh": ({"position_corrections_total": lambda t: min(t, 6)}, 6),
        "ProcessDown": ({"feed:running": 0}, 10),
        "JournalWriteFailing": ({"journal_write_failing": 1}, 0),
        "UntrustedSharedMemory": ({"feed:shm_untrusted_total": 1}, 0),
        "TickAccountingBroken": ({"ring_unaccounted_ticks": -7}, 30),
        # 2 ms a second of run-queue wait: a rate needs two readings (+1 s), then 'for' 10 min
        "EngineCoreContended": ({"thread_runqueue_wait_ns_total": lambda t: 2_000_000 * t}, 601),
        # the gateway's (run with a gateway block: execution mode dry-run / live)
        "GatewayDown": ({"gateway:running": 0}, 10),
        "VenueOrderConnectionDown": ({"gateway:connected": 0}, 10),
        "VenueRejectsRising": ({"gateway:rejects_total": lambda t: 2 * t}, 63),
        "PositionDriftHigh": ({"gateway:position_drift_btc": -0.0015}, 15),
        "DeadManNotArmed": ({"gateway:mode": 2, "gateway:dead_man_armed": 0}, 30),
    }


GATEWAY_ALERTS = ("GatewayDown", "VenueOrderConnectionDown", "VenueRejectsRising",
                  "PositionDriftHigh", "DeadManNotArmed")


def _lat(t, idx):
    b = np.zeros(len(LATENCY_NS_EDGES) + 1, np.uint64)
    b[idx] = 100 * (t + 1)
    return b


def _feed(t):
    from bog.shm.layouts import FEED_LATENCY_US_EDGES

    b = np.zeros(len(FEED_LATENCY_US_EDGES) + 1, np.uint64)
    b[9] = 100 * (t + 1)  # (1 ms, 2 ms]
    return b


@pytest.mark.parametrize("name", [r.name for r in RULES])
def test_each_monitor_alert_fires_and_not_before_its_for(owners, name):
    """Each rule, driven through shared memory, fires after exactly its 'for' duration."""
    gateway = name in GATEWAY_ALERTS
    o = owners(processes=("feed", "engine", "gateway") if gateway else ("feed", "engine"))
    st = MonitorState(o.instance, exec_mode="live" if gateway else "paper")
    try:
        o.set(start_ns=o.m()["start_ns"] - 3600 * 10**9)  # engine up for an hour
        o.set("feed", start_ns=o.m()["start_ns"])
        if gateway:
            o.set("gateway", start_ns=o.m()["start_ns"], dead_man_armed=1)
        import time

        o.set(last_fill_ns=time.time_ns(), last_signal_ns=time.time_ns())
        c = Clock(st)
        fields, fire_s = scenario_values()[name]
        fired_at = None
        for t in range(0, fire_s + 3):
            for k, v in fields.items():
                v = v(t) if callable(v) else v
                if k == "fill_depth":
                    o.set_fill_depth(v)
                elif ":" in k:
                    p, f = k.split(":")
                    o.set(p, **{f: v})
                else:
                    o.set(**{k: v})
            # activity that keeps the 'no activity' alerts quiet unless the scenario stops it
            if name not in ("NoSignals",):
                o.m()["signals_total"][4] += 1
            if name not in ("NoFills", "OrdersWithoutFills"):
                o.m()["fills_received_total"][0] += 1
            c.step(t)
            if fired_at is None and any(s.rule.name == name for s in st.alerts.firing()):
                fired_at = t
        assert fired_at is not None, f"{name} did not fire in {fire_s + 2} s"
        # exactly when expected: a changed threshold, window or 'for' moves it
        assert fired_at == fire_s, (name, fired_at, fire_s)
        assert st.alerts.firings_total[name] == 1
        others = {s.rule.name for s in st.alerts.firing()} - {name}
        allowed = {"NoFills": {"OrdersWithoutFills"}, "OrdersWithoutFills": {"NoFills"},
                   "DailyLossLimit": {"DailyLossNear"}, "StaleData": set(),
                   "ExtremeLatency": {"TickLatencyP50High", "SlowTick"},
                   "SlowTick": {"ExtremeLatency", "TickLatencyP50High"},
                   "TickLatencyP50High": set()}.get(name, set())
        assert others <= allowed, (name, others)
    finally:
        st.close()


def test_engine_core_contended_is_a_rate_over_five_minutes(setup):
    """The hot thread's run-queue wait, exported in seconds, alerts on its rate over 5 min:
    0.9 ms per second for 12 min never fires; a 2 s stall once is gone from the window 5 min
    later; 1.2 ms per second fires 10 min after its 5 min mean passes 1 ms per second, the rate
    (seconds per second) as its value."""
    o, st = setup
    o.set(start_ns=o.m()["start_ns"] - 3600 * 10**9)
    o.set(thread_runqueue_wait_ns_total=1_500_000_000, thread_preemptions_total=7)
    o.set("feed", thread_runqueue_wait_ns_total=250_000_000, thread_preemptions_total=3)
    f = families(st)  # counters in seconds (scaled from ns), preemptions as counted
    assert f["bog_engine_hot_thread_runqueue_wait_seconds"].samples[0].value == 1.5
    assert f["bog_engine_hot_thread_preemptions"].samples[0].value == 7
    assert f["bog_feed_thread_runqueue_wait_seconds"].samples[0].value == 0.25
    assert f["bog_feed_thread_preemptions"].samples[0].value == 3
    c = Clock(st)
    base = 1_500_000_000

    def run(t0, t1, ns_per_s, stall_at=None):
        nonlocal base
        for t in range(t0, t1):
            base += ns_per_s + (2_000_000_000 if t == stall_at else 0)
            o.set(thread_runqueue_wait_ns_total=base)
            c.step(t)

    run(0, 720, 900_000, stall_at=5)  # 2 s at once: the 5 min rate is 7.6 ms/s until 305 s
    assert st.alerts.firings_total["EngineCoreContended"] == 0
    s = st.alerts.states["EngineCoreContended"]
    assert s.value == pytest.approx(0.0009) and s.pending_since_mono is None
    run(720, 1400, 1_200_000)  # the 5 min mean passes 1 ms/s 100 s in (t = 820): pending
    assert not s.firing and s.pending_since_mono is not None
    run(1400, 1440, 1_200_000)  # ... and 'for' 10 min later it fires
    assert st.alerts.firings_total["EngineCoreContended"] == 1
    assert s.firing and s.value == pytest.approx(0.0012)


def test_stale_incident_in_last_minute(setup):
    o, st = setup
    c = Clock(st)
    o.set(start_ns=o.m()["start_ns"] - 600 * 10**9)
    c.step(0)
    b = np.zeros(len(STALE_AGE_US_EDGES) + 1, np.uint64)
    b[6] = 1  # an incident of (1 s, 2 s] just ended
    o.set(stale_data_age_us_bucket=b)
    c.step(1)
    st_ = [s for s in st.alerts.firing() if s.rule.name == "StaleData"]
    assert st_ and st_[0].value == 2_000_000
    c.step(62)
    assert "StaleData" not in firing(st)


def test_rules_in_sync_with_prometheus_alerts():
    import yaml

    from bog.monitor.assets import render

    doc = yaml.safe_load(render("alerts"))
    prom = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    mon = {r.name: r for r in RULES}
    assert set(prom) - set(mon) == {"MonitorDown"}  # the monitor cannot report itself down
    assert set(mon) <= set(prom)
    for name, r in mon.items():
        p = prom[name]
        assert p["labels"]["severity"] == r.severity, name
        assert _dur(p["for"]) == r.for_s, name
        assert p["annotations"]["summary"].split(" (")[0] in r.summary, name
        # the same threshold: the rule's comparison appears in the PromQL expression
        assert _promql_comparison(r) in p["expr"], (name, _promql_comparison(r), p["expr"])


def _promql_comparison(rule) -> str:
    """The comparison a PromQL rule must contain for the monitor's ``rule``."""
    if rule.name == "ProcessDown":  # value 1 when down > 0  <=>  bog_up == 0
        return "== 0"
    t = rule.threshold
    if callable(t):  # factor x a published limit
        scaled = f"-bog_{t.field}" if t.factor == -1 else f"{t.factor:g} * bog_{t.field}"
        return f"{rule.op} {scaled}"
    return f"{rule.op} {t:g}"


def _dur(text: str) -> float:
    return float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]


# -- health ------------------------------------------------------------------------------------
def test_health_fields_and_rules(setup):
    o, st = setup
    code, doc = health(st)
    assert code == 200 and doc["status"] == "healthy"
    assert list(doc) == ["status", "problems", "tick_latency_p99_ns", "circuit_breaker",
                         "fill_queue_depth", "position_drift", "processes", "alerts"]
    assert doc["problems"] == []
    assert set(doc["processes"]) == {"feed", "engine", "monitor"}
    assert doc["alerts"] == []
    # the guide's rules, corrected: depth is a ratio, drift is compared by absolute value
    o.set_fill_depth(52)
    code, doc = health(st)
    assert code == 503 and doc["status"] == "degraded"
    assert doc["fill_queue_depth"] == pytest.approx(52 / 64)
    o.set_fill_depth(10)
    o.set(position_drift_btc=-0.002)
    assert health(st)[1]["status"] == "degraded"
    o.set(position_drift_btc=0.0005)
    assert health(st)[1]["status"] == "healthy"
    b = np.zeros(len(LATENCY_NS_EDGES) + 1, np.uint64)
    b[13] = 100  # (10 us, 20 us]
    o.set(tick_processing_ns_bucket=b)
    code, doc = health(st)
    assert doc["status"] == "degraded" and doc["tick_latency_p99_ns"] > 10_000
    o.stop("engine")
    code, doc = health(st)
    assert code == 503 and doc["status"] == "down"
    assert doc["processes"]["engine"]["state"] == "absent"
    assert doc["circuit_breaker"] == "UNKNOWN" and doc["fill_queue_depth"] is None
    assert not math.isnan(doc["processes"]["feed"]["uptime_s"])


def test_fast_exposition_equals_prometheus_client(setup):
    o, st = setup
    o.set(position_btc=-0.123456789, daily_pnl_usd=float("nan"), spread_bps=float("inf"))
    o.set(tick_processing_ns_bucket=np.arange(len(LATENCY_NS_EDGES) + 1, dtype=np.uint64))

    def parsed(text):
        out = {}
        for f in text_string_to_metric_families(text):
            if f.name.startswith("process_") or f.name in ("bog_uptime_seconds",
                                                           "bog_monitor_scrape_duration_seconds"):
                continue  # change between the two calls
            out[f.name] = (f.type, f.documentation,
                           sorted((s.name, tuple(sorted(s.labels.items())),
                                   "nan" if s.value != s.value else s.value)
                                  for s in f.samples))
        return out
    ours = col.exposition(st.registry).decode()
    theirs = generate_latest(st.registry).decode()
    assert parsed(ours) == parsed(theirs)
    assert "bog_daily_pnl_usd NaN\n" in ours and "bog_spread_bps +Inf\n" in ours


# -- one set of health rules for /health and bogctl status ----------------------------------------
HEALTH_CASES = [
    # (facts that differ from a healthy pipeline, the problem it must report)
    ({"breaker": 1}, "circuit breaker HALF_OPEN"),
    ({"fill_queue_ratio": 0.8}, "fill queue above 80%"),
    ({"fills_dropped": 3}, "3 fills dropped"),
    ({"position_drift_btc": -0.001}, "position drift -0.001000 BTC"),
    ({"tick_p99_ns": 10_001.0}, "tick latency P99 10001 ns > 10 us"),
    ({"feed_state": 1}, "feed STALE"),
    ({"paused": True}, "trading paused"),
    ({"critical_alerts": ("SlowTick",)}, "critical alert firing: SlowTick"),
    ({"monitor_up": False}, "monitor is down"),
]


def _healthy_facts(**kw):
    from bog.monitor.health import Facts

    base = dict(feed_up=True, engine_up=True, monitor_up=True, breaker=0,
                fill_queue_ratio=0.79, fills_dropped=0, position_drift_btc=0.00099,
                tick_p99_ns=10_000.0, feed_state=0, paused=False, critical_alerts=())
    base.update(kw)
    return Facts(**base)


def test_health_rules_at_their_thresholds():
    from bog.monitor.health import judge

    assert judge(_healthy_facts()) == ("healthy", [])  # every value just inside its limit
    for kw, problem in HEALTH_CASES:
        assert judge(_healthy_facts(**kw)) == ("degraded", [problem]), kw
    assert judge(_healthy_facts(feed_up=False)) == ("down", ["feed is down"])
    status, problems = judge(_healthy_facts(engine_up=False, breaker=None, feed_state=None,
                                            fill_queue_ratio=None, paused=None))
    assert (status, problems) == ("down", ["engine is down"])


def test_bogctl_status_and_health_judge_alike(setup):
    """The same shared memory, read by the monitor's /health and by bogctl status: the same
    status and the same problems (bogctl adds only what the monitor cannot see: itself)."""
    from bog.config import build_config
    from bog.ctl.status import collect_status

    o, st = setup
    cfg = build_config({"monitor": {"port": 1}}, env={})  # no monitor there: bogctl says so
    for change in ({}, {"paused": 1}, {"feed_state": 1}, {"circuit_breaker_state": 2},
                   {"fills_dropped_total": 2}, {"position_drift_btc": 0.01}):
        o.set(paused=0, feed_state=0, circuit_breaker_state=0, fills_dropped_total=0,
              position_drift_btc=0.0)
        o.set(**change)
        Clock(st).step(0)
        code, doc = health(st)
        s = collect_status(o.instance, cfg, sample_s=0)
        # without a monitor bogctl cannot know its alerts (the next test has one)
        seen = [p for p in doc["problems"] if not p.startswith("critical alert firing")]
        assert s["problems"] == ["monitor is down"] + seen, (change, s, doc)
        # a monitor that is down is itself a problem, so healthy becomes degraded for bogctl
        assert s["status"] == {"healthy": "degraded"}.get(doc["status"], doc["status"]), change
        assert code == (200 if doc["status"] == "healthy" else 503)


def test_bogctl_status_reports_the_monitors_critical_alerts(owners, monitor):
    """With a real monitor running, bogctl asks it which critical alerts fire."""
    from bog.config import build_config
    from bog.ctl.status import collect_status

    o = owners()
    o.set(circuit_breaker_state=2)
    m = monitor(o.instance)
    until(lambda: any(a["name"] == "CircuitBreakerTripped" for a in m.json("/health")["alerts"]),
          15, what="CircuitBreakerTripped firing in the monitor")
    s = collect_status(o.instance, build_config({}, env={}), sample_s=0)
    assert s["processes"]["monitor"]["up"] and s["status"] == "degraded"
    assert "critical alert firing: CircuitBreakerTripped" in s["problems"], s["problems"]
    assert s["problems"] == m.json("/health")["problems"]
