"""One definition of every code (bog/shm/codes.py): the shipped assets and the processes'
texts are checked against it, so reordering or renaming a code cannot relabel one side only."""

from __future__ import annotations

import json
import re

import yaml

from bog.engine import kernel as K
from bog.engine.process import SIGNAL_LOG_NAMES
from bog.monitor.assets import render
from bog.shm import codes
from bog.shm import layouts as L


def _panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def test_dashboard_value_mappings_are_the_codes():
    dash = json.loads(render("grafana"))
    by_metric = {}
    for p in _panels(dash):
        maps = p.get("fieldConfig", {}).get("defaults", {}).get("mappings", [])
        for m in maps:
            if m.get("type") != "value":
                continue
            for t in p.get("targets", []):
                metric = re.match(r"[a-z_:]+", t["expr"]).group(0)
                by_metric[metric] = {int(k): v["text"] for k, v in m["options"].items()}
    assert by_metric["bog_circuit_breaker_state"] == dict(enumerate(codes.BREAKER))
    if "bog_feed_state" in by_metric:
        assert by_metric["bog_feed_state"] == dict(enumerate(codes.FEED_STATE))


def test_every_histogram_bound_in_the_rules_is_a_bucket_edge():
    """``le="X"`` in a PromQL rule must be an edge of that histogram (layouts.py), or the
    rule silently compares against the next bucket."""
    edges = {"bog_tick_processing_ns": L.LATENCY_NS_EDGES,
             "bog_strategy_calc_ns": L.LATENCY_NS_EDGES,
             "bog_execution_ns": L.LATENCY_NS_EDGES,
             "bog_feed_to_decision_ns": L.LATENCY_NS_EDGES,
             "bog_feed_latency_us": L.FEED_LATENCY_US_EDGES,
             "bog_stale_data_age_us": L.STALE_AGE_US_EDGES,
             "bog_sequence_gap_size": L.GAP_SIZE_EDGES}
    found = 0
    for asset in ("alerts", "rules"):
        for g in yaml.safe_load(render(asset))["groups"]:
            for r in g["rules"]:
                for hist, le in re.findall(r'(bog_[a-z_]+)_bucket\{[^}]*le="([0-9.e+]+)"',
                                           r["expr"]):
                    assert float(le) in {float(e) for e in edges[hist]}, (r, hist, le)
                    found += 1
    assert found >= 2


def test_alert_thresholds_name_codes_not_numbers():
    from bog.monitor.alerts import RULES_BY_NAME

    assert RULES_BY_NAME["CircuitBreakerTripped"].threshold == codes.BREAKER.OPEN
    doc = yaml.safe_load(render("alerts"))
    exprs = {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}
    assert exprs["CircuitBreakerTripped"] == f"bog_circuit_breaker_state == {codes.BREAKER.OPEN}"
    assert f"bog_feed_state >= {codes.FEED_STATE.STALE}" in exprs["StaleData"]


def test_kernel_and_layout_constants_are_derived_from_the_codes():
    assert (K.BREAKER_CLOSED, K.BREAKER_HALF_OPEN, K.BREAKER_OPEN) == (0, 1, 2)
    assert K.BREAKER_OPEN == codes.BREAKER.index("OPEN")
    assert K.FEED_STALE == codes.FEED_STATE.index("STALE")
    assert L.REJ_DEPTH == codes.REJECT.index("bad_depth")
    assert L.RISK_PAUSED == codes.RISK.index("paused")
    assert K.TRIP_NAMES[K.TRIP_FILLS_DROPPED] == "fills dropped"
    assert K.CAUSE_MANUAL == codes.BREAKER_CAUSE.index("bogctl breaker reset")
    assert L.FILL_LIQ_TAKER == codes.LIQUIDITY.index("taker")
    # array-valued metrics are sized by their code sets
    m = L.ENGINE_METRICS
    assert m["ticks_rejected_total"].shape == (len(codes.REJECT),)
    assert m["signals_total"].shape == (len(codes.SIGNAL),)
    assert m["risk_rejections_total"].shape == (len(codes.RISK),)
    assert L.FEED_METRICS["faults_injected_total"].shape == (len(codes.FAULT),)


def test_signal_log_names_are_the_guides():
    # the guide greps for "Signal::" lines with these names
    assert SIGNAL_LOG_NAMES == ("QuoteBoth", "QuoteBid", "QuoteAsk", "CancelAll", "NoAction")


def test_codes_reject_duplicate_labels():
    import pytest

    with pytest.raises(ValueError):
        codes.Codes(A="x", B="x")
    c = codes.Codes(A="a", B="b")
    assert (c.A, c.B, c[1], c.index("a"), len(c), c.names) == (0, 1, "b", 0, 2, ("A", "B"))
