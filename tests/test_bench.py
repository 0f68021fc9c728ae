"""`bog bench` runs the real processes (default busy-poll engine) and reports figures.

Figures are printed, not asserted against thresholds (that would be a timed test); this checks
the benchmark works and its numbers are coherent."""

from __future__ import annotations

import json
import os
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
    # the stage breakdown: every stage of a tick's life was measured, and is coherent
    from bog.bench import STAGES, _le, format_report

    for step in (slow, fast):
        g = step["stages_ns"]
        for name, _, _ in STAGES:
            assert 0 < g[name]["p50"] <= g[name]["p99"], (name, g[name])
            assert g[name]["max_since_start"] > 0, name
        # the decision stage is the tick processing time, and no stage outlasts the whole path
        assert g["decision"]["p50"] == step["tick_processing_ns"]["p50"]
        fd = step["feed_to_decision_ns"]
        assert 0 < fd["p50"] <= fd["p99"] <= fd["p99.9"] <= fd["max_since_start"]
        assert g["handoff"]["max_since_start"] <= fd["max_since_start"]
        assert fd["window_max_le"] is not None and g["decision"]["window_max_le"] is not None
        assert g["p99_owner"] in ("handoff", "copy", "decision")
        assert g["max_owner"] in ("handoff", "copy", "decision")
        # scheduling counters of the feed and of the engine's hot thread, over the window
        for who in ("feed", "engine_hot"):
            sc = step["sched"][who]
            assert {"voluntary_switches", "involuntary_switches", "minor_faults",
                    "major_faults", "runqueue_wait_ns"} <= set(sc), (who, sc)
            assert all(v >= 0 for v in sc.values()), (who, sc)
    assert slow["sched"]["feed"]["voluntary_switches"] > 0
    out = format_report(rep)
    assert "P99 owner / max owner" in out and "rq-wait" in out
    assert "slowest tick after warm-up, ns" in out
    assert f"200: {_le(slow['stages_ns']['decision']['window_max_le'])}" in out


def test_bench_isolate_and_sched_trace_measure_each_rate_both_ways():
    """--isolate measures each rate as the machine is, then with the engine core kept free of
    other tasks; --sched-trace names who preempted the feed and the hot thread. Both need root
    (the suite runs as root here; as another user the bench must refuse clearly)."""
    r = subprocess.run([sys.executable, "-m", "bog.cli", "bench", "--quick", "--json",
                        "--isolate", "--sched-trace"], capture_output=True, text=True, timeout=300)
    assert os.geteuid() == 0, "the suite runs as root here; see the next test for other users"
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    steps = rep["steps"]
    assert [s["rate_target_per_s"] for s in steps] == [200, 200, 1_000_000, 1_000_000]
    assert ["isolated" in s for s in steps] == [False, True, False, True]
    for s in steps[1::2]:
        assert s["isolated"]["core"] == 1 and s["isolated"]["tasks_moved"] > 0
    for s in steps:
        assert s["processed_per_s"] > 0
        p = s["preemptions"]
        assert set(p) == {"feed", "engine_hot"}
        for t in p.values():
            assert t["tid"] > 0 and t["preemptions"] >= 0 and t["preempted_us"] >= 0
            assert sum(b["total_us"] for b in t["by"]) <= t["preempted_us"]
    # at 200/s the feed sleeps between updates: the trace sees it switched out voluntarily
    assert steps[0]["preemptions"]["feed"]["sleeps"] > 50
    # at 1,000,000/s the feed spins on the core it shares with the engine's Python thread,
    # which preempts it (every 1 ms)
    busy = steps[2]["preemptions"]["feed"]
    assert busy["preemptions"] > 0 and any(b["comm"] == "bog engine:main" for b in busy["by"])
    from bog.bench import format_report

    out = format_report(rep)
    assert "200 iso" in out and "who took the CPU" in out and "bog engine:main" in out
    # the tasks moved off the engine core got their affinity back (pid 1 was one of them)
    assert 1 in os.sched_getaffinity(1)


def test_bench_root_only_options_refuse_other_users_in_one_line():
    """As another user (a real user switch: nobody), --sched-trace and --isolate refuse at
    once, naming what needs root, before starting anything."""
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-I", "-m", "bog.cli", "bench", "--quick",
                        "--sched-trace", "--isolate"], capture_output=True, text=True,
                       timeout=120, cwd="/")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip() == ("bog bench: --sched-trace and --isolate need root (the "
                                "kernel's tracefs; moving other users' tasks off the engine "
                                "core)"), r.stderr[-2000:]


def test_bench_floor_measures_a_cross_core_hand_off():
    r = subprocess.run([sys.executable, "-m", "bog.cli", "bench", "--floor", "--quick", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    busy, slow = rep["runs"]
    assert busy["round_trips"] == 200_000 and slow["round_trips"] == 1_000
    for run in (busy, slow):
        for k in ("one_way_ns", "round_trip_half_ns"):
            q = run[k]
            assert q["samples"] == run["round_trips"]
            assert 0 < q["p50"] <= q["p99"] <= q["p99.9"] <= q["max"], (k, q)
    from bog.bench import machine  # noqa: F401  (the report names the machine)
    from bog.shm.floor import format_floor

    out = format_floor(rep)
    assert f"{busy['one_way_ns']['p50']}/{busy['one_way_ns']['p99']}" in out


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


def test_bench_replay_reports_stream_rate_first_tick_and_memory():
    r = subprocess.run([sys.executable, "-m", "bog.cli", "bench", "--replay", "--rows", "20000",
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["rows"] == 20_000 and rep["stream"]["rows"] == 20_000
    assert rep["stream"]["rows_per_s"] > 0 and rep["stream"]["mb_per_s"] > 0
    e = rep["end_to_end"]
    assert e["complete"] and e["lost"] == 0
    assert e["rows_published"] == e["rows_processed"] == 20_000
    assert 0 < e["feed_ready_s"] <= e["first_tick_s"] and e["processed_per_s"] > 0
    assert all(v and v > 10 for v in e["peak_rss_mb"].values())  # MB, read from /proc
    assert rep["targets"]["processed_per_s"] == 2_500_000
    from bog.benchreplay import format_replay

    text = format_replay(rep)
    for word in ("stream", "processed", "first tick", "peak RSS", "target"):
        assert word in text
