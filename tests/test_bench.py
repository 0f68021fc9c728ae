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
