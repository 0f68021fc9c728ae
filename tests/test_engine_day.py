"""The engine's UTC day rollover, inside a running engine, with its clock injected.

A real EngineService (real shared memory, journal, hot thread running the kernel) runs in
this process; only the wall clock its housekeeping reads (``EngineService.clock_ns``) is
replaced, so the test crosses midnight without waiting for it."""

from __future__ import annotations

import os
import time

import numpy as np
import orjson
import pytest

from bog.config import build_config
from bog.engine import kernel as K
from bog.engine.journal import Journal
from bog.engine.position import NS_PER_DAY
from bog.engine.process import EngineService
from bog.shm.layouts import FILL, FILL_WORDS, FIXED
from bog.shm.ring import fills_push


def _engine(tmp_path, instance):
    cfg = build_config({
        "risk": {"max_daily_loss_usd": 10.0},
        "execution": {"journal_dir": str(tmp_path / "state")},
        "process": {"engine_core": -1, "engine_housekeeping_core": -1,
                    "engine_idle_sleep_us": 200.0},
    }, env={})
    return EngineService(cfg, instance)


def _fill(fill_id: int, fee_usd: float, ts_ns: int) -> np.ndarray:
    rec = np.zeros(1, FILL)
    r = rec[0]
    r["order_id"], r["ts_ns"], r["price"], r["qty"] = fill_id, ts_ns, 60_000 * FIXED, FIXED // 100
    r["fee_usd"], r["side"], r["liquidity"], r["fill_id"] = round(fee_usd * FIXED), 1, 0, fill_id
    return rec.view(np.int64).reshape(FILL_WORDS)


def test_utc_day_rollover_resets_daily_pnl_rearms_the_loss_trip_and_rotates(tmp_path, instance,
                                                                          monkeypatch):
    monkeypatch.delenv("BOG_STATE_DIR", raising=False)
    now = time.time_ns()
    # today: one fill whose fee (20 USD) is beyond the 10 USD daily loss limit
    jdir = tmp_path / "state" / instance
    j = Journal(str(jdir / "journal.jsonl"))
    j.fill(1, 1, 1, 60_000 * FIXED, FIXED // 100, 20 * FIXED, 0, now)
    j.close()
    svc = _engine(tmp_path, instance)
    try:
        svc.startup()
        m = svc.metrics.m[0]
        assert svc.tracker.daily_pnl == pytest.approx(-20.0)
        assert svc._loss_tripped  # started halted: a restart keeps a daily-loss halt
        trips = int(svc.mb[K.MB_TRIP_SEQ])

        midnight = (now // NS_PER_DAY + 1) * NS_PER_DAY
        svc.clock_ns = lambda: midnight + 1_000_000_000  # 00:00:01 UTC tomorrow
        svc.housekeeping()
        assert svc.tracker.daily_pnl == 0.0 and m["daily_pnl_usd"] == 0.0
        assert svc.tracker.realized_pnl == pytest.approx(-20.0)  # only the daily figure resets
        assert not svc._loss_tripped  # re-armed
        # the journal was rotated: the old day archived, the new file starts from a checkpoint
        archives = [p for p in os.listdir(jdir) if p.startswith("journal-")]
        assert len(archives) == 1
        first = orjson.loads((jdir / "journal.jsonl").read_bytes().splitlines()[0])
        assert first["type"] == "Checkpoint" and first["tracker"]["daily_pnl"] == 0.0

        # re-armed: a loss beyond the limit on the new day trips the breaker again
        assert fills_push(svc.fills.ctrl, svc.fills.words, _fill(2, 11.0, midnight + 2 * 10**9))
        svc.drain_fills()
        assert svc.tracker.daily_pnl == pytest.approx(-11.0)
        assert int(svc.mb[K.MB_TRIP_SEQ]) == trips + 1
        assert int(svc.mb[K.MB_TRIP_REASON]) == K.TRIP_DAILY_LOSS

        # the same day again: nothing more rolls or rotates
        svc.housekeeping()
        assert len([p for p in os.listdir(jdir) if p.startswith("journal-")]) == 1
        assert svc.tracker.daily_pnl == pytest.approx(-11.0)
    finally:
        svc.should_exit = True
        svc.shutdown()
