"""The shipped monitoring files: valid for promtool/amtool, rules unit-tested, dashboard sound."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from monsupport import ROOT, need

from bog.monitor import collector as col
from bog.monitor.alerts import RULES
from bog.monitor.assets import NAMES, render
from bog.shm.metrics import CATALOGUE

HERE = Path(__file__).parent


def run(*argv, cwd=None):
    p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)
    assert p.returncode == 0, f"{' '.join(map(str, argv))}\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


def write_prometheus_dir(d: Path, port=9090, instance="default") -> Path:
    (d / "prometheus.yml").write_text(render("prometheus", instance, port))
    (d / "bog-rules.yml").write_text(render("rules"))
    (d / "bog-alerts.yml").write_text(render("alerts"))
    return d / "prometheus.yml"


def test_render_all_and_parameters():
    for name in NAMES:
        assert render(name).strip()
    text = render("prometheus", instance="prod-1", port=9123)
    doc = yaml.safe_load(text)
    job = doc["scrape_configs"][0]
    assert job["job_name"] == "bog-trading" and job["scrape_interval"] == "1s"
    sc = job["static_configs"][0]
    assert sc["targets"] == ["127.0.0.1:9123"]
    assert sc["labels"] == {"instance": "bog-prod-1", "strategy": "simple-spread"}
    assert doc["rule_files"] == ["bog-rules.yml", "bog-alerts.yml"]
    with pytest.raises(ValueError):
        render("nope")
    with pytest.raises(Exception):
        render("prometheus", instance="bad name")
    with pytest.raises(ValueError):
        render("prometheus", port=0)


def test_promtool_check_config_and_rules(tmp_path):
    promtool = need("promtool")
    out = run(promtool, "check", "config", write_prometheus_dir(tmp_path))
    assert "SUCCESS: 2 rule files found" in out
    out = run(promtool, "check", "rules", tmp_path / "bog-rules.yml", tmp_path / "bog-alerts.yml")
    n_alerts = sum(len(g["rules"]) for g in yaml.safe_load(render("alerts"))["groups"])
    assert n_alerts == len(RULES) + 1  # the monitor's own rules + MonitorDown
    assert "SUCCESS: 6 rules found" in out and f"SUCCESS: {n_alerts} rules found" in out


def test_promtool_unit_tests_cover_every_alert_and_recording_rule():
    promtool = need("promtool")
    test_file = HERE / "promtool" / "alerts_test.yml"
    run(promtool, "test", "rules", test_file.name, cwd=test_file.parent)
    tests = yaml.safe_load(test_file.read_text())["tests"]
    fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", [])
             if a["exp_alerts"]}
    not_fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", [])
                 if not a["exp_alerts"]}
    recorded = {e["expr"] for t in tests for e in t.get("promql_expr_test", [])}
    alerts = {r["alert"] for g in yaml.safe_load(render("alerts"))["groups"] for r in g["rules"]}
    records = {r["record"] for g in yaml.safe_load(render("rules"))["groups"] for r in g["rules"]}
    assert fired == alerts  # every alert shown to fire ...
    assert not_fired == alerts  # ... and shown not to fire on harmless input or before `for`
    assert recorded == records


def test_alertmanager_config():
    amtool = need("amtool")
    p = Path(ROOT / "bog" / "assets" / "alertmanager.yml")
    out = run(amtool, "check-config", p)
    assert "SUCCESS" in out
    doc = yaml.safe_load(render("alertmanager"))
    routes = {r["matchers"][0]: r["receiver"] for r in doc["route"]["routes"]}
    assert routes == {'severity="critical"': "critical", 'severity="warning"': "warning"}


def exported_names() -> set[str]:
    names = set()
    for s in CATALOGUE:
        if s.kind == "counter":
            names.add(s.name + "_total")
        elif s.kind == "histogram":
            names |= {s.name + "_bucket", s.name + "_sum", s.name + "_count"}
        else:
            names.add(s.name)
    names |= set(col.MONITOR_NAMES) | {"up"}
    return names


_IDENT = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"sum", "without", "by", "on", "ignoring", "and", "or", "unless", "bool", "le",
             "abs", "rate", "increase", "histogram_quantile", "deriv", "instance", "job",
             "process", "side", "action", "avg", "max", "min", "count", "offset", "group_left",
             "group_right"}


def metric_names_in(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # drop label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # and ranges
    expr = re.sub(r"\([^()]*\)\s*(?=\()", "", expr)
    return {m for m in _IDENT.findall(expr) if m not in _KEYWORDS and not m[0].isdigit()}


def dashboard_exprs() -> list[str]:
    d = json.loads(render("grafana"))
    return [t["expr"] for p in d["panels"] for t in p.get("targets", [])]


def test_rules_and_dashboard_use_exported_names_only():
    exported = exported_names()
    records = {r["record"] for g in yaml.safe_load(render("rules"))["groups"] for r in g["rules"]}
    exprs = [r["expr"] for n in ("rules", "alerts")
             for g in yaml.safe_load(render(n))["groups"] for r in g["rules"]]
    exprs += dashboard_exprs()
    for expr in exprs:
        for name in metric_names_in(expr):
            assert name in exported or name in records, f"{name} in {expr!r} is not exported"
    # the guide's mistakes are gone
    text = "\n".join(exprs)
    assert "MAX_POSITION" not in text and "MAX_DAILY_LOSS" not in text
    assert not re.search(r"bog_fills_received(?!_total)", text)
    assert len(metric_names_in(text)) > 30  # the name extraction did find names
    # le labels in the rules are exactly those the collector writes
    for le in re.findall(r'le="([^"]+)"', render("alerts")):
        assert le in {col.le_label(e) for s in CATALOGUE if s.edges is not None for e in s.edges}


def test_grafana_dashboard_structure():
    d = json.loads(render("grafana"))
    assert d["title"] == "Bog Trading - Production" and d["uid"] == "bog-trading"
    assert d["schemaVersion"] >= 39 and d["id"] is None
    assert "dashboard" not in d  # importable as is, not the HTTP API envelope of the guide
    tvars = {v["name"]: v for v in d["templating"]["list"]}
    assert tvars["datasource"]["type"] == "datasource" and tvars["datasource"]["query"] == "prometheus"
    rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
    assert rows == ["Latency", "Trading Activity", "Position & PnL", "System Health",
                    "Data Quality", "Safety Nets"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"]: p for p in d["panels"] if p["type"] != "row"}
    for t in ("Tick Processing Latency", "Strategy Calc Latency", "Execution Latency",
              "Signals/min by type", "Orders placed/min", "Fills/min", "Current Position",
              "Daily PnL", "Realized PnL", "Circuit Breaker", "Fill Queue Depth",
              "Position Corrections", "Feed Latency P99", "Sequence gaps/min",
              "Stale data incidents/min", "Journal writes", "Untrusted shared memory",
              "Unaccounted ticks", "Venue connection",
              "Core contention: run-queue wait per second",
              "Core contention: preemptions per second"):
        assert t in titles, t
    # in the Latency row: the engine hot thread's and the feed thread's wait, and the alert's
    # threshold (1 ms per second) as its red line
    core = titles["Core contention: run-queue wait per second"]
    assert core["gridPos"]["y"] < next(p["gridPos"]["y"] for p in d["panels"]
                                       if p["title"] == "Trading Activity")
    assert [t["expr"].split("{")[0] for t in core["targets"]] == [
        "rate(bog_engine_hot_thread_runqueue_wait_seconds_total",
        "rate(bog_feed_thread_runqueue_wait_seconds_total"]
    assert {"color": "red", "value": 0.001} in core["fieldConfig"]["defaults"]["thresholds"]["steps"]
    lat = titles["Tick Processing Latency"]
    assert [t["legendFormat"] for t in lat["targets"]][:2] == ["P50", "P99"]
    assert {"color": "red", "value": 1000} in lat["fieldConfig"]["defaults"]["thresholds"]["steps"]
    for p in titles.values():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0
        assert p["type"] in {"timeseries", "heatmap", "gauge", "stat"}
    # the latency SLA alert of the guide, as Grafana alert provisioning
    ga = yaml.safe_load(render("grafana-alerts"))
    rule = ga["groups"][0]["rules"][0]
    assert rule["title"] == "Latency SLA Violation" and rule["dashboardUid"] == d["uid"]
    assert rule["panelId"] == lat["id"]
    a, b, c = rule["data"]
    assert a["model"]["expr"] == "bog:tick_processing_ns:p50"
    assert a["relativeTimeRange"]["from"] == 300 and b["model"]["reducer"] == "mean"
    assert c["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [1000]}
