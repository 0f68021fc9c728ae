"""Position/PnL tracking and exact recovery from the journal (unit and property tests)."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bog.engine.journal import Journal, recover
from bog.engine.position import NS_PER_DAY, PositionTracker
from bog.shm.layouts import FIXED

DAY0 = 20_000 * NS_PER_DAY


def test_round_trip_realizes_price_difference_minus_fees():
    t = PositionTracker()
    t.apply_fill(1, FIXED // 10, 60000.0, 0.12, DAY0)
    t.apply_fill(-1, FIXED // 10, 60010.0, 0.12, DAY0 + 1)
    assert t.position_fixed == 0 and t.entry_price == 0.0
    assert t.realized_pnl == pytest.approx(1.0 - 0.24)
    assert t.daily_pnl == pytest.approx(t.realized_pnl)
    assert t.trades == 2 and t.volume_usd == pytest.approx(12001.0)


def test_weighted_entry_and_flip_resets_entry():
    t = PositionTracker()
    t.apply_fill(1, FIXED, 100.0, 0.0, DAY0)
    t.apply_fill(1, FIXED, 110.0, 0.0, DAY0)
    assert t.entry_price == pytest.approx(105.0)
    t.apply_fill(-1, 3 * FIXED, 120.0, 0.0, DAY0)  # close 2 at +15 each, open 1 short
    assert t.position_fixed == -FIXED and t.entry_price == 120.0
    assert t.realized_pnl == pytest.approx(30.0)


def test_daily_pnl_resets_on_a_new_utc_day_but_realized_does_not():
    t = PositionTracker()
    t.apply_fill(1, FIXED, 100.0, 0.0, DAY0)
    t.apply_fill(-1, FIXED, 90.0, 0.0, DAY0 + 10)
    assert t.daily_pnl == pytest.approx(-10.0)
    t.apply_fill(1, FIXED, 100.0, 1.0, DAY0 + NS_PER_DAY)
    assert t.daily_pnl == pytest.approx(-1.0) and t.realized_pnl == pytest.approx(-11.0)


def test_invalid_fill_is_refused():
    with pytest.raises(ValueError):
        PositionTracker().apply_fill(0, FIXED, 1.0, 0.0, DAY0)
    with pytest.raises(ValueError):
        PositionTracker().apply_fill(1, 0, 1.0, 0.0, DAY0)


fills = st.lists(
    st.tuples(st.sampled_from([1, -1]), st.integers(1, 5 * FIXED),
              st.integers(50_000 * FIXED, 70_000 * FIXED), st.integers(0, 10 * FIXED)),
    min_size=1, max_size=60)


@given(fills)
@settings(max_examples=200, deadline=None)
def test_position_is_exact_sum_and_flat_book_pnl_is_cash_flow(fs):
    t = PositionTracker()
    cash = 0.0
    for i, (side, qty, px, fee) in enumerate(fs):
        t.apply_fill(side, qty, px / FIXED, fee / FIXED, DAY0 + i)
        cash += -side * qty / FIXED * px / FIXED - fee / FIXED
    assert t.position_fixed == sum(s * q for s, q, _, _ in fs)
    # realized + unrealized at any mark equals the cash flow marked at that price
    mark = 60_000.0
    total = t.realized_pnl + t.unrealized(mark) if t.position_fixed else t.realized_pnl
    assert total == pytest.approx(cash + t.position_fixed / FIXED * mark, rel=1e-9, abs=1e-4)


@given(fills)
@settings(max_examples=100, deadline=None)
def test_recovery_from_journal_is_bit_exact(tmp_path_factory, fs):
    path = str(tmp_path_factory.mktemp("j") / "journal.jsonl")
    live = PositionTracker()
    j = Journal(path)
    import time

    now = time.time_ns()
    for i, (side, qty, px, fee) in enumerate(fs):
        j.fill(i + 1, 100 + i, side, px, qty, fee, 0, now + i)
        live.apply_fill(side, qty, px / FIXED, fee / FIXED, now + i)
        if i % 7 == 3:
            j.event({"type": "OrderCancel", "order_id": 500 + i, "ts_ms": 0, "ts_ns": 0})
    j.close()
    rec = recover(path)
    t = rec.tracker
    assert (t.position_fixed, t.entry_price, t.realized_pnl, t.daily_pnl, t.trades) == (
        live.position_fixed, live.entry_price, live.realized_pnl, live.daily_pnl, live.trades)
    assert rec.last_fill_id == len(fs) and rec.malformed == []


def test_journal_is_owner_only_and_recovery_skips_malformed_and_duplicate_lines(tmp_path):
    path = tmp_path / "state" / "inst" / "journal.jsonl"
    j = Journal(str(path))
    j.fill(1, 1, 1, 100 * FIXED, FIXED, 0, 0, DAY0)
    j.fill(1, 1, 1, 100 * FIXED, FIXED, 0, 0, DAY0)  # written twice around a crash
    j.fill(2, 2, -1, 110 * FIXED, FIXED, 0, 0, DAY0 + 1)
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"type": "Fill", "fill_id": 3, "side": "bu\n')  # torn last line
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o700  # parents too
    rec = recover(str(path))
    assert rec.fills == 2 and rec.malformed == [4]
    assert rec.tracker.realized_pnl == pytest.approx(10.0)


def test_rotation_archives_the_journal_and_recovery_continues_from_the_checkpoint(tmp_path):
    import time

    path = str(tmp_path / "journal.jsonl")
    live = PositionTracker()
    j = Journal(path)
    now = time.time_ns()
    fid = 0

    def fill(side, qty, px, fee):
        nonlocal fid
        fid += 1
        px_fixed = round(px * FIXED)
        j.fill(fid, 100 + fid, side, px_fixed, qty, fee, 0, now + fid)
        live.apply_fill(side, qty, px_fixed / FIXED, fee / FIXED, now + fid)

    fill(1, FIXED // 3, 60_000.123, 7)
    fill(-1, FIXED // 7, 60_010.5, 3)
    archive = j.rotate(live, fid, 100 + fid)
    fill(1, FIXED // 9, 59_990.25, 5)
    j.close()
    rec = recover(path)
    t = rec.tracker
    assert (t.position_fixed, t.entry_price, t.realized_pnl, t.daily_pnl, t.trades,
            t.volume_usd, t.fees_usd) == (live.position_fixed, live.entry_price,
                                          live.realized_pnl, live.daily_pnl, live.trades,
                                          live.volume_usd, live.fees_usd)
    assert rec.checkpoints == 1 and rec.fills == 1 and rec.last_fill_id == 3
    assert os.path.exists(archive) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # the archive alone still recovers the state as it was at rotation
    assert recover(archive).fills == 2
    lines = open(path).read().splitlines()
    assert len(lines) == 2 and '"Checkpoint"' in lines[0]
