"""Recompute a replay report's trading figures from the journal, independently of
``bog.replayreport`` (cash flows instead of the PositionTracker), and compare.

A module of its own (not conftest) so that test files can import it by a unique name."""

from __future__ import annotations

import pytest

from bog.shm.layouts import FIXED


def check_report_against_journal(rep: dict, recs: list[dict], first_ns: int,
                                 last_ns: int) -> None:
    """``recs``: this run's journal records; ``first_ns``/``last_ns``: the event times of the
    first and last row the engine processed (known from the replayed file)."""
    fills = [d for d in recs if d["type"] == "Fill"]
    assert rep["fills"] == len(fills)
    assert rep["fills_by_side"] == {s: sum(d["side"] == s for d in fills) for s in ("buy", "sell")}
    for liq in ("maker", "taker"):
        assert rep["fills_by_liquidity"].get(liq, 0) == sum(d["liquidity"] == liq for d in fills)
    assert rep["volume_usd"] == pytest.approx(sum(d["price"] * d["qty"] for d in fills))
    assert rep["fees_usd"] == pytest.approx(sum(d["fee_usd"] for d in fills))
    assert rep["orders"] == {s: sum(d["type"] == "OrderSubmit" and d["side"] == s for d in recs)
                             for s in ("buy", "sell")}
    assert rep["cancels"] == sum(d["type"] == "OrderCancel" for d in recs)

    # position, inventory, equity path and realized PnL (average cost), from cash flows
    pos = 0  # fixed
    cash = fees = 0.0
    entry = realized = 0.0
    peak = dd = 0.0
    max_inv = 0
    for d in fills:
        side = 1 if d["side"] == "buy" else -1
        q, px = d["qty_fixed"], d["price_fixed"] / FIXED
        if pos == 0 or (pos > 0) == (side > 0):
            entry = (entry * abs(pos) + px * q) / (abs(pos) + q)
        else:
            closing = min(q, abs(pos))
            realized += (px - entry) * (1 if pos > 0 else -1) * closing / FIXED
            if q > closing:
                entry = px
        pos += side * q
        cash -= side * px * q / FIXED
        fees += d["fee_usd"]
        max_inv = max(max_inv, abs(pos))
        equity = cash - fees + pos / FIXED * px  # marked at the fill price
        peak = max(peak, equity)
        dd = max(dd, peak - equity)
    mid = rep["last_mid_usd"]
    final = cash - fees + pos / FIXED * mid
    dd = max(dd, max(peak, final) - final)
    assert rep["final_position_btc"] == pytest.approx(pos / FIXED)
    assert rep["final_position_value_usd"] == pytest.approx(pos / FIXED * mid)
    assert rep["realized_pnl_usd"] == pytest.approx(realized - fees, abs=1e-6)
    assert rep["realized_pnl_usd"] + rep["unrealized_pnl_usd"] == pytest.approx(final, abs=1e-6)
    assert rep["max_inventory_btc"] == pytest.approx(max_inv / FIXED)
    assert rep["max_drawdown_usd"] == pytest.approx(dd, abs=1e-6)

    # the breaker: trips and time in each state (event time) from the Breaker records
    moves = [d for d in recs if d["type"] == "Breaker"]
    assert rep["breaker_trips"] == sum(d["to"] == "OPEN" and d["from"] != "OPEN" for d in moves)
    assert (rep["event_start_ns"], rep["event_end_ns"]) == (first_ns, last_ns)
    spent = {"CLOSED": 0, "HALF_OPEN": 0, "OPEN": 0}
    state, since = "CLOSED", first_ns
    for d in moves:
        t = max(d["ts_ns"], first_ns)
        spent[state] += t - since
        state, since = d["to"], t
    spent[state] += last_ns - since
    assert rep["breaker_time_s"] == pytest.approx(
        {"closed": spent["CLOSED"] / 1e9, "half_open": spent["HALF_OPEN"] / 1e9,
         "open": spent["OPEN"] / 1e9}, abs=1e-9)
    assert sum(rep["breaker_time_s"].values()) == pytest.approx((last_ns - first_ns) / 1e9)
