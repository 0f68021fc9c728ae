"""`bog bench` runs the real processes (default busy-poll engine) and reports figures.

Figures are printed, not asserted against thresholds (that would be a timed test); this checks
the benchmark works and its numbers are coherent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bench_quick_reports_measured_figures():
    r = subprocess.run([sys.executable, "-m", "bog.cli", "bench", "--quick", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["machine"]["cpus"] >= 1 and rep["method"]
    slow, fast = rep["steps"]
    assert slow["rate_target_per_s"] == 200 and fast["rate_target_per_s"] == 1_000_000
    for step in (slow, fast):
        assert step["processed_per_s"] > 0 and step["published_per_s"] > 0
        t = step["tick_processing_ns"]
        assert 0 < t["p50"] <= t["p99"] <= t["p99.9"]
        assert step["feed_to_decision_ns"]["p50"] > 0
        assert step["cpu_percent"]["engine"] > 0
    assert slow["lost_ticks"] == 0 and slow["zero_loss"]
    assert rep["sustained_zero_loss_ticks_per_s"] >= slow["processed_per_s"]


def test_bench_scrape_mode_reports_engine_latency_with_and_without_scrapes():
    r = subprocess.run([sys.executable, "-m", "bog.cli", "bench", "--scrape", "--quick", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    none, slow, burst = rep["scrape_load"]
    assert (none["scrapes_per_s"], slow["scrapes_per_s"], burst["scrapes_per_s"]) == (0, 1, 100)
    assert none["scrapes"] == 0 and slow["scrapes"] >= 3 and burst["scrapes"] >= 100
    assert 0 < burst["scrape_ms"]["p50"] <= burst["scrape_ms"]["p99"]
    for phase in (none, slow, burst):
        assert phase["ticks"] > 0 and phase["tick_processing_ns"]["p50"] > 0
    assert burst["monitor_cpu_percent"] > 0


def test_bench_health_under_load_reports_latency_of_a_legitimate_client():
    r = subprocess.run([sys.executable, "-m", "bog.cli", "bench", "--health-under-load", "--quick",
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["idle_connections"] == 1224 and rep["active_clients"] == 1000 and rep["method"]
    quiet, loaded, after = rep["phases"]
    for phase in (quiet, loaded, after):
        assert phase["requests"] > 0 and sum(phase["statuses"].values()) == phase["requests"]
        lat = phase["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert loaded["load"]["requests_per_s"] > 0  # the hammering clients were answered too
    assert loaded["load"]["idle_open"] > 0
    assert "bog_monitor_connections_accepted_total" in loaded["monitor_counters_delta"]
    from bog.bench import format_health

    out = format_health(rep)  # the human-readable report prints the same figures
    assert f"{loaded['latency_ms']['p50']}/{loaded['latency_ms']['p99']}" in out
