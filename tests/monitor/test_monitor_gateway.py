"""The monitor and bogctl status with the execution gateway (execution.mode dry-run / live).

Real shared memory: the test owns the feed's, engine's and gateway's metrics blocks
(``FakeOwners``, the same layouts and segment names as the processes) and reads them with the
monitor's own ``MonitorState`` and bogctl's ``collect_status``. Paper mode (no gateway) must
look exactly as before: no gateway series, no gateway alert, nothing says "down".
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bog.config import build_config
from bog.ctl.status import _fmt_status, collect_status
from bog.monitor.health import Facts, health, judge
from bog.monitor.state import MonitorState
from bog.shm.layouts import GATEWAY_METRICS, GATEWAY_US_EDGES, LATENCY_NS_EDGES
from bog.shm.metrics import CATALOGUE, GATEWAY

GATEWAY_SPECS = [s for s in CATALOGUE if s.process == GATEWAY]
# the process block: exported as bog_up / bog_uptime_seconds / bog_process_start_time_seconds
PROCESS_BLOCK = {"pid", "start_ns", "heartbeat_ns", "core", "running"}


def families(st) -> dict:
    text = generate_latest(st.registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def up_series(st) -> dict:
    return {s.labels["process"]: s.value for s in families(st)["bog_up"].samples}


class Clock:
    def __init__(self, st):
        self.st, self.t0 = st, None

    def step(self, t: float):
        r = self.st.read()
        self.t0 = self.t0 or r.wall_ns
        r = replace(r, mono_s=1000.0 + t, wall_ns=self.t0 + int(t * 1e9))
        self.st.history.add(r)
        self.st.alerts.evaluate(r)
        return r


def firing(st) -> set[str]:
    return {s.rule.name for s in st.alerts.firing()}


@pytest.fixture
def pipeline(owners):
    """feed + engine + a healthy dry-run gateway; a monitor state configured for dry-run."""
    made = []

    def make(processes=("feed", "engine", "gateway"), mode="dry-run"):
        o = owners(processes=processes)
        st = MonitorState(o.instance, exec_mode=mode)
        made.append(st)
        return o, st

    yield make
    for st in made:
        st.close()


# -- export ------------------------------------------------------------------------------------
def test_every_gateway_field_has_a_catalogue_name():
    """Every field of the gateway block is exported (or is the process block bog_up covers):
    a field added to GATEWAY_METRICS without a metric fails here."""
    covered = set(PROCESS_BLOCK)
    for s in GATEWAY_SPECS:
        if s.kind == "histogram":
            covered |= {s.field + "_bucket", s.field + "_sum"}
        else:
            covered.add(s.field)
        covered |= {f for f in (s.label_field, s.other_field) if f}
    assert set(GATEWAY_METRICS.names) - covered == set()
    assert all(s.name.startswith("bog_gateway_") for s in GATEWAY_SPECS)


def test_gateway_block_exported_in_dry_run(pipeline):
    o, st = pipeline()
    now = time.time_ns()
    o.set("gateway", intents_total=[7, 3, 1], intents_sent_total=11, rejects_total=9,
          reject_codes=[21104, 21733] + [0] * 14, rejects_by_code=[4, 2] + [0] * 14,
          rejects_other_total=3, dead_man_armed=1, dead_man_expiry_ns=now + 45 * 10**9,
          venue_position_fixed=-25_000_000, venue_position_ns=now, position_drift_btc=0.0002,
          inflight_orders=2, open_orders=4)
    b = np.zeros(len(GATEWAY_US_EDGES) + 1, np.uint64)
    b[2] = 5
    o.set("gateway", sign_us_bucket=b, sign_us_sum=200.0)
    fams = families(st)
    for spec in GATEWAY_SPECS:
        assert spec.name in fams, spec.name
        f = fams[spec.name]
        assert f.type == spec.kind, spec.name
        if spec.label and not spec.label_field:
            assert sorted(s.labels[spec.label] for s in f.samples) == sorted(spec.label_values)

    def val(name, **labels):
        return [s.value for s in fams[name].samples
                if all(s.labels.get(k) == v for k, v in labels.items())]

    assert val("bog_gateway_intents", kind="place") == [7]
    assert val("bog_gateway_intents", kind="cancel_all") == [1]
    assert val("bog_gateway_venue_rejects") == [9]
    codes = {s.labels["code"]: s.value for s in fams["bog_gateway_venue_rejects_by_code"].samples}
    assert codes == {"21104": 4, "21733": 2, "other": 3}  # free slots are not exported
    assert val("bog_gateway_dead_man_expiry_timestamp_seconds")[0] == pytest.approx(
        now / 1e9 + 45, abs=1e-3)  # seconds, not ns
    assert val("bog_gateway_venue_position_btc") == [pytest.approx(-0.025)]  # BTC, not fixed
    assert val("bog_gateway_mode") == [1] and val("bog_gateway_venue_connected") == [1]
    assert val("bog_gateway_inflight_orders") == [2]
    assert [s.value for s in fams["bog_gateway_sign_us"].samples
            if s.name.endswith("_count")] == [5]
    assert up_series(st) == {"feed": 1.0, "engine": 1.0, "gateway": 1.0, "monitor": 1.0}
    assert {s.labels["process"] for s in fams["bog_process_restarts"].samples} == {
        "feed", "engine", "gateway"}
    # histograms with their own edges
    le = [s.labels["le"] for s in fams["bog_gateway_intent_to_sent_ns"].samples
          if s.name.endswith("_bucket")]
    assert len(le) == len(LATENCY_NS_EDGES) + 1


# -- mode awareness ----------------------------------------------------------------------------
def test_paper_has_no_gateway_anywhere(pipeline):
    """Paper, no gateway: bog_up has no gateway, no gateway alert is ever active, /health and
    bogctl status say nothing about one (exactly as before the gateway existed)."""
    o, st = pipeline(processes=("feed", "engine"), mode="paper")
    c = Clock(st)
    for t in range(0, 40):
        o.m()["signals_total"][4] += 1
        o.m()["fills_received_total"][0] += 1
        c.step(t)
    assert up_series(st) == {"feed": 1.0, "engine": 1.0, "monitor": 1.0}
    assert not any(n.startswith("bog_gateway_") for n in families(st))
    assert firing(st) == set() and st.alerts.pending() == []
    code, doc = health(st)
    assert code == 200 and "gateway" not in doc and "gateway" not in doc["processes"]
    s = collect_status(o.instance, build_config({"monitor": {"port": 1}}, env={}), sample_s=0)
    assert "gateway" not in s and "gateway" not in s["processes"]


@pytest.mark.parametrize("mode", ["dry-run", "live"])
def test_gateway_required_when_configured(pipeline, mode):
    """dry-run/live configured, no gateway running: bog_up{gateway} 0, GatewayDown after its
    10 s, /health down; ProcessDown stays about the feed and the engine."""
    o, st = pipeline(processes=("feed", "engine"), mode=mode)
    c = Clock(st)
    for t in range(0, 12):
        o.m()["signals_total"][4] += 1
        o.m()["fills_received_total"][0] += 1
        c.step(t)
        if t == 9:
            assert "GatewayDown" not in firing(st)
    assert firing(st) == {"GatewayDown"}
    assert up_series(st)["gateway"] == 0.0
    code, doc = health(st)
    assert code == 503 and doc["status"] == "down"
    assert "gateway is down (absent)" in doc["problems"]
    assert doc["processes"]["gateway"]["state"] == "absent"
    assert doc["gateway"] == {"up": False, "state": "absent", "mode": mode}
    # the gateway starts: up again, the alert resolves
    o.start("gateway")
    c.step(12)
    assert "GatewayDown" not in firing(st)
    assert health(st)[1]["status"] == "healthy"


def test_gateway_expected_from_the_engine_or_its_segment(pipeline):
    """A monitor configured for paper still expects the gateway when the running engine says
    dry-run/live, or when a gateway segment is there."""
    o, st = pipeline(processes=("feed", "engine"), mode="paper")
    assert "gateway" not in st.read().procs
    o.set(exec_mode=2)  # the engine runs live (another config than the monitor's)
    assert st.read().procs["gateway"].state == "absent"
    assert up_series(st)["gateway"] == 0.0
    o.set(exec_mode=0)
    assert "gateway" not in st.read().procs
    o.start("gateway")  # a gateway segment, whatever the configs say
    assert st.read().procs["gateway"].up


# -- health --------------------------------------------------------------------------------------
def _facts(**gw):
    g = {"up": True, "state": "up", "mode": "live", "venue_connected": True,
         "dead_man_armed": True, "position_drift_btc": 0.00099}
    g.update(gw)
    return Facts(feed_up=True, engine_up=True, monitor_up=True, breaker=0,
                 fill_queue_ratio=0.0, fills_dropped=0, position_drift_btc=0.0,
                 tick_p99_ns=500.0, feed_state=0, paused=False, gateway=g)


def test_gateway_health_rules_at_their_thresholds():
    assert judge(_facts()) == ("healthy", [])
    assert judge(_facts(up=False, state="crashed")) == ("down", ["gateway is down (crashed)"])
    assert judge(_facts(venue_connected=False)) == (
        "degraded", ["gateway venue order connection down"])
    assert judge(_facts(dead_man_armed=False)) == (
        "degraded", ["dead-man switch not armed at the venue"])
    assert judge(_facts(position_drift_btc=-0.001)) == (
        "degraded", ["venue position drift -0.001000 BTC (gateway)"])
    assert judge(_facts(position_drift_btc=None)) == ("healthy", [])  # never reconciled yet
    # dry-run: no venue session, no dead-man switch to arm: neither is a problem
    assert judge(_facts(mode="dry-run", venue_connected=False, dead_man_armed=False)) == (
        "healthy", [])
    assert judge(Facts(feed_up=True, engine_up=True, gateway=None)) == ("healthy", [])


def test_health_and_bogctl_status_show_the_gateway_alike(pipeline):
    o, st = pipeline(mode="live")
    cfg = build_config({"monitor": {"port": 1}, "execution": {"mode": "live"}}, env={})
    now = time.time_ns()
    base = dict(mode=2, mainnet=0, connected=1, dead_man_armed=1,
                dead_man_expiry_ns=now + 50 * 10**9, inflight_orders=1, open_orders=3,
                venue_position_fixed=10_000_000, venue_position_ns=now, position_drift_btc=0.0)
    for change in ({}, {"connected": 0}, {"dead_man_armed": 0, "dead_man_expiry_ns": 0},
                   {"position_drift_btc": 0.004}, {"running": 0}):
        o.set("gateway", **{**base, **change})
        Clock(st).step(0)
        code, doc = health(st)
        s = collect_status(o.instance, cfg, sample_s=0)
        seen = [p for p in doc["problems"] if not p.startswith("critical alert firing")]
        assert s["problems"] == ["monitor is down"] + seen, (change, s["problems"], doc)
        moving = ("dead_man_expires_in_s", "venue_position_age_s")  # read at other instants
        assert ({k: v for k, v in s["gateway"].items() if k not in moving}
                == {k: v for k, v in doc["gateway"].items() if k not in moving})
        assert s["status"] == {"healthy": "degraded"}.get(doc["status"], doc["status"])
        g = doc["gateway"]
        if change == {}:
            assert code == 200 and doc["status"] == "healthy"
            assert g["mode"] == "live" and g["network"] == "testnet" and g["venue_connected"]
            assert g["dead_man_armed"] and 45 < g["dead_man_expires_in_s"] <= 50
            assert g["inflight_orders"] == 1 and g["open_orders"] == 3
            assert g["venue_position_btc"] == pytest.approx(0.01)
            text = _fmt_status(s, color=False)
            line = [ln for ln in text.splitlines() if ln.startswith("gateway:  ")]
            assert len(line) == 1, text
            assert "live on testnet  venue connected  dead-man armed (" in line[0]
            assert "in flight 1  open 3  drift +0.000000" in line[0]
        elif "running" in change:
            assert doc["status"] == "down" and s["status"] == "down"
            text = _fmt_status(s, color=False)
            assert "  gateway  DOWN  starting" in text.splitlines(), text
        else:
            assert code == 503 and doc["status"] == "degraded", (change, doc)


def test_dashboard_has_the_gateway_panels_and_they_answer_on_paper():
    """Four gateway panels in the Safety Nets row; each query falls back to the engine's
    bog_execution_mode on paper (no gateway series there), so every dashboard query returns
    data on a paper pipeline too (test_monitor_e2e.py runs them on a real Prometheus)."""
    import json

    from bog.monitor.assets import render

    d = json.loads(render("grafana"))
    panels = {p["title"]: p for p in d["panels"]}
    for title in ("Execution gateway", "Dead-man switch", "Position drift vs venue",
                  "Venue rejects/min"):
        p = panels[title]
        assert p["gridPos"]["y"] > panels["Safety Nets"]["gridPos"]["y"]
        for t in p["targets"]:
            assert "bog_gateway_" in t["expr"] and " or bog_execution_mode" in t["expr"]


def test_gateway_metrics_pass_promtool_check_metrics(owners, monitor):
    """A real `bog monitor` (configured for dry-run) serving the gateway's block: promtool
    lints it with nothing but the accepted unit findings of the latency families."""
    import subprocess

    import httpx
    from monsupport import need
    from test_monitor_http import PROMTOOL_ACCEPTED

    o = owners(processes=("feed", "engine", "gateway"))
    o.set("gateway", reject_codes=[21104] + [0] * 15, rejects_by_code=[2] + [0] * 15)
    m = monitor(o.instance, config='[execution]\nmode = "dry-run"\n')
    text = httpx.get(m.url + "/metrics", timeout=5).text
    assert 'bog_up{process="gateway"} 1.0' in text
    assert 'bog_gateway_venue_rejects_by_code_total{code="21104"} 2.0' in text
    p = subprocess.run([need("promtool"), "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    findings = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    assert [ln for ln in findings if not PROMTOOL_ACCEPTED.match(ln)] == []
    assert p.returncode in (0, 3)
