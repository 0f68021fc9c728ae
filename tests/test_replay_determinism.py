"""Replay is deterministic: the same file and config give a byte-identical journal at
``--speed 1``, ``--speed 50`` and ``--speed max``, two runs each, with real processes
(``bog run --feed replay ... --report``), because the engine reads event time
(docs/replay.md, "Event time and determinism").

What is compared: every journal line after this run's ``EngineStart`` record. That record is
the run's identity (the engine's pid and the wall-clock time it started) and is the only
record that carries the wall clock or the machine in a replay; it is left out by that rule,
everything after it (orders, acks, cancels, fills, breaker transitions) is compared byte for
byte. Besides, every figure of the report that comes from the data (not wall time, latency or
throughput) must be equal.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import orjson
from replay_figures import check_report_against_journal
from support import FAST, merge

T0_US = 1_700_000_000_000_000
ROWS = 3000  # 1 ms apart: 3 s of event time (plus the gap)
WIDE_AT = (1000, 1004)  # rows with a spread beyond validation.max_spread_bps: breaker opens
GAP_AT, GAP_MS = 2000, 200  # no update for 200 ms of event time: Stale, then Offline

# every time-dependent parameter is at the data's scale (milliseconds), so that any wall
# clock left in the engine changes the decisions between speeds
CONFIG = {
    "strategy": {"spread_bps": 1.0, "min_market_spread_bps": 0.0, "requote_bps": 0.5,
                 "order_size_btc": 0.01, "requote_after_s": 0.05},
    "risk": {"min_quote_interval_ms": 3.0, "max_position_btc": 0.05},
    "execution": {"maker_latency_ms": 5.0},
    "validation": {"max_spread_bps": 20.0, "stale_after_ms": 50.0, "offline_after_ms": 150.0},
    "breaker": {"failure_threshold": 3, "window_s": 0.1, "cooldown_s": 0.05,
                "half_open_successes": 2},
    "feed": {"ring_capacity": 256},
}

# report fields that are wall time, latency or throughput (the machine, not the data)
WALL_FIELDS = {"wall_time_s", "ticks_per_s", "tick_latency_p50_ns", "tick_latency_p99_ns",
               "speed"}


def write_market(path: Path) -> tuple[int, int]:
    """A seeded market oscillating by +-8 USD around 30000 with noise, 5 levels, one burst of
    too-wide books and one 200 ms gap. Returns the first and last timestamps (ns)."""
    rng = np.random.default_rng(8)
    cols = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for k in range(5):
        cols += [f"asks[{k}].price", f"asks[{k}].amount", f"bids[{k}].price",
                 f"bids[{k}].amount"]
    lines = [",".join(cols)]
    ts = T0_US
    walk = 0.0
    stamps = []
    for i in range(ROWS):
        ts += 1000 + (GAP_MS * 1000 if i == GAP_AT else 0)
        walk += rng.normal(0.0, 0.3)
        mid = 30000.0 + 8.0 * math.sin(2 * math.pi * i / 250) + walk
        bid = math.floor(mid * 2) / 2
        ask = bid + (100.0 if WIDE_AT[0] <= i < WIDE_AT[1] else 0.5)
        f = ["deribit", "BTC-PERPETUAL", str(ts), str(ts + 700)]
        for k in range(5):
            f += [f"{ask + k * 0.5:.1f}", f"{1 + k}.25", f"{bid - k * 0.5:.1f}", f"{2 + k}.5"]
        lines.append(",".join(f))
        stamps.append(ts * 1000)
    path.write_text("\n".join(lines) + "\n")
    return stamps[0], stamps[-1]


def run_once(pipeline_factory, path: Path, speed: str, tmp: Path, k: int):
    pl = pipeline_factory(merge(FAST, CONFIG))
    report = tmp / f"report-{speed}-{k}.json"
    argv = pl.argv("run", "--no-monitor", "--feed", "replay", "--replay-file", str(path),
                   "--speed", speed, "--report", str(report))
    r = subprocess.run(argv, env=pl.env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = pl.journal_path().read_bytes().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if orjson.loads(line)["type"] == "EngineStart"]
    assert len(starts) == 1  # a fresh state directory: one run, one EngineStart
    return b"".join(lines[starts[0] + 1:]), orjson.loads(report.read_bytes()), pl.log_text()


def test_same_file_same_journal_at_any_speed_run_after_run(tmp_path, pipeline_factory):
    path = tmp_path / "market.csv"
    first_ns, last_ns = write_market(path)
    runs = {}
    for speed in ("1", "50", "max"):
        for k in range(2):
            runs[(speed, k)] = run_once(pipeline_factory, path, speed, tmp_path, k)

    journal, report, log = runs[("max", 0)]
    recs = [orjson.loads(line) for line in journal.splitlines()]
    # the file exercises what depends on time: quotes, fills of both sides (after the maker
    # latency), the breaker opening and closing again, the feed going stale and offline
    fills = [d for d in recs if d["type"] == "Fill"]
    assert {d["side"] for d in fills} == {"buy", "sell"} and len(fills) >= 10
    assert any(d["liquidity"] == "maker" for d in fills)
    moves = [(d["from"], d["to"], d["cause"]) for d in recs if d["type"] == "Breaker"]
    assert ("CLOSED", "OPEN", "market") in moves and ("HALF_OPEN", "CLOSED", "recovered") in moves
    assert "feed STALE" in log and "feed OFFLINE" in log
    # every journal timestamp is event time, inside the data's span
    assert all(first_ns <= d["ts_ns"] <= last_ns for d in recs), "a wall-clock stamp"
    assert report["event_start_ns"] == first_ns and report["event_end_ns"] == last_ns
    assert report["rows_processed"] == ROWS and report["lost"] == 0
    # and the report agrees with this journal (the breaker's time in each state included)
    check_report_against_journal(report, recs, first_ns, last_ns)
    assert report["breaker_time_s"]["open"] > 0 and report["breaker_time_s"]["half_open"] > 0

    figures = {k: v for k, v in report.items() if k not in WALL_FIELDS}
    for key, (j, rep, _) in runs.items():
        assert j == journal, f"journal of speed {key[0]} run {key[1]} differs from speed max run 0"
        assert {k: v for k, v in rep.items() if k not in WALL_FIELDS} == figures, key
