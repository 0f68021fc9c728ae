"""Strategy, validation, risk, breaker, gap and stale logic of the compiled engine kernel."""

from __future__ import annotations

import math
import time

import pytest
from harness import KernelHarness

from bog.engine import kernel as K
from bog.shm.layouts import (
    FIXED,
    REJECT_REASONS,
    RING_HEAD,
    RISK_POSITION,
    RISK_REASONS,
    SIG_NO_ACTION,
    SIG_QUOTE_BOTH,
)

MID = 60000.0
BID, ASK = MID - 5.0, MID + 5.0  # 1.67 bps market spread


def rej(h, reason):
    return int(h.m["ticks_rejected_total"][REJECT_REASONS.index(reason)])


def test_first_good_tick_quotes_both_sides_at_configured_spread():
    h = KernelHarness()
    h.publish(BID, ASK)
    h.run()
    bid, ask = h.quotes()
    assert int(h.m["signals_total"][SIG_QUOTE_BOTH]) == 1
    # 10 bps total around mid, bid rounded down and ask up to the 0.01 tick
    assert bid == pytest.approx(math.floor(MID * (1 - 5e-4) * 100) / 100)
    assert ask == pytest.approx(math.ceil(MID * (1 + 5e-4) * 100) / 100)
    assert int(h.m["orders_placed_total"][0]) == 1 and int(h.m["orders_placed_total"][1]) == 1
    assert h.m["spread_bps"] == pytest.approx(10.0 / MID * 1e4)


def test_quotes_persist_while_mid_moves_less_than_requote_threshold():
    h = KernelHarness()
    h.publish(BID, ASK)
    h.run()
    first = h.quotes()
    h.publish(BID + 6, ASK + 6)  # 1 bps move
    h.run()
    assert h.quotes() == first
    assert int(h.m["signals_total"][SIG_NO_ACTION]) == 1
    h.publish(BID + 32, ASK + 32)  # 5.3 bps move: requote (not through our ask)
    h.run()
    assert h.quotes() != first
    assert int(h.m["orders_cancelled_total"]) == 2


def test_market_trading_through_a_resting_bid_fills_it_at_the_order_price():
    h = KernelHarness()
    h.publish(BID, ASK)
    h.run()
    bid, _ = h.quotes()
    h.publish(bid - 10, bid - 0.5)  # best ask at/below our bid
    h.run()
    fills = h.take_fills()
    assert len(fills) == 1
    f = fills[0]
    assert int(f["side"]) == 1 and int(f["price"]) == round(bid * FIXED)
    assert int(f["qty"]) == round(0.1 * FIXED)
    # maker fee 0.2 bps of notional
    assert int(f["fee_usd"]) == pytest.approx(bid * 0.1 * 0.2e-4 * FIXED, abs=2)
    assert int(h.st["ledger_fixed"]) == round(0.1 * FIXED)
    assert int(h.m["fills_generated_total"]) == 1


def test_sell_trade_sweeping_to_our_bid_fills_partially_by_trade_size():
    h = KernelHarness()
    h.publish(BID, ASK)
    h.run()
    bid, _ = h.quotes()
    h.publish(BID, ASK, trade_px=bid, trade_side=-1, trade_sz=0.03)
    h.run()
    fills = h.take_fills()
    assert [int(f["qty"]) for f in fills] == [round(0.03 * FIXED)]
    assert h.open_orders()[0]["qty"] == pytest.approx(0.07)


def test_maker_latency_delays_fills():
    h = KernelHarness(execution={"maker_latency_ms": 10_000.0})
    h.publish(BID, ASK)
    h.run()
    bid, _ = h.quotes()
    h.publish(bid - 10, bid - 0.5)
    h.run()
    assert h.take_fills() == []


def test_near_position_limit_only_the_reducing_side_is_quoted():
    h = KernelHarness()
    h.set_position(0.95)
    h.publish(BID, ASK)
    h.run()
    bid, ask = h.quotes()
    assert bid is None and ask is not None
    assert int(h.m["signals_total"][SIG_QUOTE_BOTH]) == 1  # strategy wanted both
    assert int(h.m["risk_rejections_total"][RISK_POSITION]) == 1
    assert [e[2] for e in h.events(K.EV_SIGNAL)] == [SIG_QUOTE_BOTH]


def test_long_inventory_skews_both_quotes_down():
    flat = KernelHarness()
    flat.publish(BID, ASK)
    flat.run()
    long_ = KernelHarness()
    long_.set_position(0.6)
    long_.publish(BID, ASK)
    long_.run()
    fb, fa = flat.quotes()
    lb, la = long_.quotes()
    assert lb < fb and la < fa
    assert fa - la > fb - lb  # the ask moves fully, the bid half


def test_inventory_strategy_shifts_reservation_price_against_inventory():
    def quotes(pos):
        h = KernelHarness(strategy={"name": "inventory"})
        h.set_position(pos)
        t0 = time.time_ns() - 4 * 10**9
        for i in range(30):  # build a volatility estimate: ticks 100 ms apart (exchange time)
            d = 3.0 * (1 if i % 2 else -1)
            h.publish(BID + d, ASK + d, exchange_ts_ns=t0 + i * 100_000_000)
            h.run()
            h.st["have_quotes"] = 0
        h.publish(BID, ASK, exchange_ts_ns=t0 + 30 * 100_000_000)
        h.run()
        b, a = h.quotes()
        return (b + a) / 2, a - b

    mid_flat, spread_flat = quotes(0.0)
    mid_long, spread_long = quotes(0.3)
    mid_short, _ = quotes(-0.3)
    assert mid_long < mid_flat < mid_short
    assert spread_long == pytest.approx(spread_flat, abs=0.05)
    assert spread_flat >= MID * 10e-4 * 0.99  # never tighter than the configured spread


@pytest.mark.parametrize(
    "bid,ask,kwargs,reason",
    [
        (0.0, ASK, {}, "zero_or_negative_price"),
        (-1.0, ASK, {}, "zero_or_negative_price"),
        (ASK, BID, {}, "crossed_book"),
        (MID, MID, {}, "locked_book"),
        (MID - 4000, MID + 4000, {}, "spread_too_wide"),
        (BID, ASK, {"ts_offset_s": -10}, "too_old"),
        (BID, ASK, {"ts_offset_s": 10}, "in_future"),
        (BID, ASK, {"full": True, "levels": ((BID, BID + 1), (1.0, 1.0), (), ())}, "bad_depth"),
        (BID, ASK, {"full": True, "levels": ((BID, BID - 1), (1.0, 0.0), (), ())}, "bad_depth"),
    ],
)
def test_invalid_snapshots_are_rejected_with_reason_and_not_traded(bid, ask, kwargs, reason):
    h = KernelHarness()
    if "ts_offset_s" in kwargs:  # relative to now, not to collection time
        kwargs = {"exchange_ts_ns": time.time_ns() + kwargs["ts_offset_s"] * 10**9}
    h.publish(bid, ask, **kwargs)
    h.run()
    assert rej(h, reason) == 1
    assert int(h.m["ticks_accepted_total"]) == 0
    assert h.open_orders() == []
    assert int(h.m["ticks_total"]) == 1
    ev = h.events(K.EV_REJECT)
    assert ev and ev[0][2] == REJECT_REASONS.index(reason)


def test_incremental_updates_skip_depth_checks():
    """Incrementals carry only the top of book: their (stale) depth words are not checked.

    The same depth words are rejected on a full snapshot first, so the test fails if the
    full-snapshot guard in ``kernel.validate`` is removed."""
    h = KernelHarness()
    garbage = ((BID, BID + 1, BID + 2), (1.0, 0.0, 1.0), (ASK, ASK), (0.0, 0.0))
    h.publish(BID, ASK, full=True, levels=garbage)
    h.run()
    assert rej(h, "bad_depth") == 1 and int(h.m["ticks_accepted_total"]) == 0
    assert h.staging[0]["bid_sz_l"][1] == 0  # the slot words an incremental leaves in place
    h.publish(BID, ASK)  # incremental: same depth words, flag clear
    h.publish(BID + 1, ASK + 1)
    h.run()
    assert rej(h, "bad_depth") == 1 and int(h.m["ticks_accepted_total"]) == 2


def test_price_jump_is_rejected():
    h = KernelHarness()
    h.publish(BID, ASK)
    h.publish(BID * 1.1, ASK * 1.1)
    h.run()
    assert rej(h, "price_jump") == 1


def test_breaker_opens_on_repeated_anomalies_recovers_via_half_open():
    h = KernelHarness(breaker={"failure_threshold": 3, "cooldown_s": 0.05, "half_open_successes": 2})
    h.publish(BID, ASK)
    h.run()
    assert h.open_orders()
    for _ in range(3):
        h.publish(ASK, BID)  # crossed
    h.run()
    assert int(h.st["breaker"]) == K.BREAKER_OPEN and int(h.m["circuit_breaker_state"]) == 2
    assert int(h.m["circuit_breaker_trips_total"]) == 1
    h.run(idle_ns=1_000_000)  # open: resting quotes are cancelled
    assert h.open_orders() == []
    time.sleep(0.06)
    h.run(idle_ns=1_000_000)
    assert int(h.st["breaker"]) == K.BREAKER_HALF_OPEN
    h.publish(BID, ASK)
    h.run()
    assert int(h.st["breaker"]) == K.BREAKER_HALF_OPEN
    h.publish(BID, ASK)
    h.run()
    assert int(h.st["breaker"]) == K.BREAKER_CLOSED
    transitions = [(e[2], e[3]) for e in h.events(K.EV_BREAKER)]
    assert transitions == [(0, 2), (2, 1), (1, 0)]


def test_failure_while_half_open_reopens():
    h = KernelHarness(breaker={"failure_threshold": 1, "cooldown_s": 0.01})
    h.publish(BID, ASK)
    h.publish(ASK, BID)
    h.run()
    time.sleep(0.02)
    h.run(idle_ns=1_000_000)
    assert int(h.st["breaker"]) == K.BREAKER_HALF_OPEN
    h.publish(ASK, BID)
    h.run()
    assert int(h.st["breaker"]) == K.BREAKER_OPEN
    assert int(h.m["circuit_breaker_trips_total"]) == 2


def test_fill_queue_overflow_drops_counts_and_latches_breaker():
    h = KernelHarness(fill_capacity=1)
    h.publish(BID, ASK)
    h.run()
    bid, _ = h.quotes()
    h.publish(bid - 10, bid - 0.5)  # our bid fills -> queue now full (nobody drains)
    h.run()
    assert h.fill_depth() == 1 and int(h.m["fills_dropped_total"]) == 0
    _, ask = h.quotes()  # requoted lower around the new mid
    h.publish(ask + 0.5, ask + 10)  # the market goes back up through our new ask
    h.run()
    assert int(h.m["fills_generated_total"]) == 2
    assert int(h.m["fills_dropped_total"]) == 1
    assert h.fill_depth() == 1
    assert int(h.st["ledger_fixed"]) == 0  # the executor's ledger saw both fills
    assert int(h.st["latched"]) == 1 and int(h.st["breaker"]) == K.BREAKER_OPEN
    assert h.events(K.EV_FILL_DROPPED)
    # latched: no recovery through half-open, even after the cooldown
    h.run(idle_ns=1_000_000)
    assert int(h.st["breaker"]) == K.BREAKER_OPEN and h.open_orders() == []


def test_sequence_gaps_duplicates_and_backwards_jumps_are_counted():
    h = KernelHarness()
    for seq in (1, 2, 5, 5, 6, 3, 4):
        h.publish(BID, ASK, seq=seq)
    h.run()
    assert int(h.m["sequence_gaps_total"]) == 1
    assert int(h.m["sequence_gap_ticks_total"]) == 2
    assert int(h.m["sequence_duplicates_total"]) == 1
    assert int(h.m["sequence_backwards_total"]) == 1
    assert int(h.m["sequence_gap_size_bucket"].sum()) == 1
    gap = h.events(K.EV_GAP)
    assert [(e[2], e[3], e[4]) for e in gap] == [(2, 5, 2)]


def test_stale_then_offline_then_fresh_with_age_recorded():
    h = KernelHarness(validation={"stale_after_ms": 20.0, "offline_after_ms": 60.0})
    h.publish(BID, ASK)
    h.run()
    assert h.open_orders()
    h.run(idle_ns=40_000_000)
    assert int(h.m["feed_state"]) == K.FEED_STALE and int(h.m["stale_data_total"]) == 1
    assert h.open_orders() == []  # no quotes left on stale data
    h.run(idle_ns=40_000_000)
    assert int(h.m["feed_state"]) == K.FEED_OFFLINE and int(h.m["offline_total"]) == 1
    h.publish(BID, ASK)
    h.run()
    assert int(h.m["feed_state"]) == K.FEED_FRESH
    assert int(h.m["stale_data_age_us_bucket"].sum()) == 1
    assert h.m["stale_data_age_us_sum"] >= 60_000


def test_first_tick_after_stale_skipped_if_price_moved_too_far():
    h = KernelHarness(validation={"stale_after_ms": 10.0, "resume_max_move_bps": 200.0,
                                  "max_price_change_bps": 5000.0})
    h.publish(BID, ASK)
    h.run()
    h.run(idle_ns=20_000_000)
    h.publish(BID * 1.03, ASK * 1.03)  # 300 bps
    h.publish(BID * 1.03, ASK * 1.03)
    h.run()
    assert rej(h, "moved_after_stale") == 1
    assert int(h.m["ticks_accepted_total"]) == 2  # the next one trades


def test_ring_overrun_is_detected_counted_and_resynced():
    h = KernelHarness(ring_capacity=8)
    for _ in range(20):
        h.publish(BID, ASK)
    h.run()
    assert int(h.m["ring_overruns_total"]) == 1
    assert int(h.m["ring_lost_ticks_total"]) == 19
    assert int(h.m["ticks_total"]) == 1  # resynced to the newest
    assert int(h.m["sequence_gaps_total"]) == 0  # not double counted as a feed gap


def test_paused_cancels_and_blocks_quotes():
    h = KernelHarness()
    h.publish(BID, ASK)
    h.run()
    h.mail(K.MB_PAUSED, 1)
    h.publish(BID + 100, ASK + 100)
    h.run()
    assert h.open_orders() == []
    assert int(h.m["risk_rejections_total"][RISK_REASONS.index("paused")]) >= 1


def test_latency_histograms_count_every_accepted_tick():
    h = KernelHarness()
    for i in range(50):
        h.publish(BID + i * 0.01, ASK + i * 0.01)
    h.run()
    assert int(h.m["tick_processing_ns_bucket"].sum()) == 50
    assert int(h.m["strategy_calc_ns_bucket"].sum()) == 50
    assert int(h.m["execution_ns_bucket"].sum()) == 50
    assert int(h.m["feed_to_decision_ns_bucket"].sum()) == 50
    assert h.m["tick_processing_max_ns"] > 0
    assert int(h.m["signals_total"].sum()) == 50


def test_stage_breakdown_times_every_tick_published_after_attach_only():
    """handoff/copy stage histograms and the max gauges (issue 11): every tick read is
    copied and timed, except the snapshot published before the engine attached (the engine
    starts at the newest one), whose age is the engine's start-up, not a hand-off."""
    h = KernelHarness()
    h.publish(BID, ASK)  # published before the engine attaches
    time.sleep(0.2)
    K.ring_attach(h.state, h.metrics, int(h.tctrl[RING_HEAD]))
    for i in range(5):
        h.publish(BID + i * 0.01, ASK + i * 0.01)
    h.run()
    assert int(h.m["ticks_total"]) == 6
    assert int(h.m["stage_copy_ns_bucket"].sum()) == 6
    assert int(h.m["stage_handoff_ns_bucket"].sum()) == 5
    assert int(h.m["feed_to_decision_ns_bucket"].sum()) == 5
    for f in ("stage_copy_max_ns", "stage_handoff_max_ns", "feed_to_decision_max_ns"):
        assert 0 < int(h.m[f]) < 200_000_000, f  # the pre-attach snapshot is >= 200 ms old
    assert h.m["stage_handoff_max_ns"] <= h.m["feed_to_decision_max_ns"]


def test_position_breach_latches_breaker():
    h = KernelHarness(risk={"max_position_btc": 0.15})
    h.set_position(0.1)
    h.publish(BID, ASK)
    h.run()
    _, ask = h.quotes()
    assert h.quotes()[0] is None  # 0.1 + 0.1 > 0.15: no bid
    # a fill that takes us through the limit can only come from a manual state change here
    h.st["ledger_fixed"] = round(0.2 * FIXED)
    h.publish(BID, ASK)
    h.run()
    assert int(h.st["latched"]) == 1
    assert [e[2] for e in h.events(K.EV_RISK_TRIP)] == [K.TRIP_POSITION_BREACH]


def test_mailbox_reset_closes_a_latched_breaker_and_trip_latches_it():
    h = KernelHarness()
    h.publish(BID, ASK)
    h.run()
    h.mail(K.MB_TRIP_REASON, K.TRIP_DAILY_LOSS)
    h.mail(K.MB_TRIP_SEQ, 1)
    h.run(idle_ns=1_000_000)
    assert int(h.st["latched"]) == 1 and int(h.m["circuit_breaker_state"]) == 2
    assert int(h.m["circuit_breaker_latched"]) == 1 and h.open_orders() == []
    assert [e[2] for e in h.events(K.EV_RISK_TRIP)] == [K.TRIP_DAILY_LOSS]
    h.mail(K.MB_RESET_SEQ, 1)
    h.run(idle_ns=1_000_000)
    assert int(h.st["latched"]) == 0 and int(h.m["circuit_breaker_state"]) == 0
    assert int(h.m["circuit_breaker_latched"]) == 0
    ev = h.events(K.EV_BREAKER)
    assert (ev[-1][2], ev[-1][3], ev[-1][4]) == (K.BREAKER_OPEN, K.BREAKER_CLOSED, K.CAUSE_MANUAL)
    h.publish(BID + 40, ASK + 40)
    h.run()
    assert h.open_orders()  # quoting again


def test_mailbox_stop_returns_from_the_kernel():
    h = KernelHarness()
    h.mail(K.MB_STOP, 1)
    t = time.monotonic()
    h._call(time.time_ns() + 10 * 10**9)  # would idle for 10 s without the stop word
    assert time.monotonic() - t < 1.0


def test_event_buffer_overflow_is_counted_not_blocking():
    h = KernelHarness(validation={"max_spread_bps": 0.1}, breaker={"failure_threshold": 10**6})
    for _ in range(K.EVENT_CAPACITY + 50):
        h.publish(BID, ASK)  # every snapshot rejected: one event each
        h.run()
    assert int(h.m["log_events_dropped_total"]) >= 50
    assert int(h.m["ticks_rejected_total"].sum()) == K.EVENT_CAPACITY + 50


def test_slow_tick_fault_injection_lands_in_latency_histograms():
    h = KernelHarness(execution={"fault_slow_tick_every": 2, "fault_slow_tick_us": 30.0})
    for i in range(10):
        h.publish(BID + i * 0.01, ASK + i * 0.01)
    h.run()
    from bog.shm.layouts import LATENCY_NS_EDGES

    above_20us = int(h.m["tick_processing_ns_bucket"][list(LATENCY_NS_EDGES).index(20_000) + 1:].sum())
    assert above_20us == 5
    assert int(h.m["strategy_calc_ns_bucket"][list(LATENCY_NS_EDGES).index(20_000) + 1:].sum()) == 5


# ---- risk checks, each with its check switched on and the rest out of the way ---------------
def risk(h, reason):
    return int(h.m["risk_rejections_total"][RISK_REASONS.index(reason)])


def test_quote_rate_limit_keeps_quotes_until_the_interval_has_passed():
    # quotes 10 bps from mid, so a 6.7 bps move triggers a requote without filling them
    h = KernelHarness(risk={"min_quote_interval_ms": 200.0}, strategy={"spread_bps": 20.0})
    h.publish(BID, ASK)
    h.run()
    first = h.quotes()
    h.publish(BID + 40, ASK + 40)  # 6.7 bps: the strategy wants a requote at once
    h.run()
    assert risk(h, "rate_limit") == 1
    assert h.quotes() == first and int(h.m["orders_cancelled_total"]) == 0
    time.sleep(0.25)
    h.publish(BID + 41, ASK + 41)
    h.run()
    assert h.quotes() != first and risk(h, "rate_limit") == 1


def test_order_size_outside_the_risk_limits_places_nothing():
    # config validation refuses such a size, so set the kernel parameter directly: the
    # kernel's own check is the last line of defence against a bad parameter block
    h = KernelHarness()
    h.params[0]["max_order_fixed"] = h.params[0]["order_size_fixed"] - 1
    h.publish(BID, ASK)
    h.run()
    assert risk(h, "order_size") == 1 and h.open_orders() == []


def test_quotes_further_from_mid_than_the_price_distance_are_not_placed():
    h = KernelHarness(risk={"max_price_distance_bps": 4.0})  # quotes are 5 bps from mid
    h.publish(BID, ASK)
    h.run()
    assert risk(h, "price_distance") == 2 and h.open_orders() == []
    ok = KernelHarness(risk={"max_price_distance_bps": 6.0})
    ok.publish(BID, ASK)
    ok.run()
    assert risk(ok, "price_distance") == 0 and len(ok.open_orders()) == 2


def test_max_open_orders_blocks_placing_beyond_it():
    # the config floor is 2 (one quote per side); the kernel must still refuse a third
    # resting order if the parameter says 1, so set it directly
    h = KernelHarness()
    h.params[0]["max_open_orders"] = 1
    h.publish(BID, ASK)
    h.run()
    assert risk(h, "max_orders") == 1 and h.open_orders() == []


def test_volatility_widens_the_simple_spread_up_to_twice():
    def spread_after(swing: float) -> tuple[float, float]:
        h = KernelHarness()
        t0 = time.time_ns() - 4 * 10**9
        for i in range(30):
            d = swing * (1 if i % 2 else -1)
            h.publish(BID + d, ASK + d, exchange_ts_ns=t0 + i * 100_000_000)
            h.run()
            h.st["have_quotes"] = 0  # requote on every tick
        b, a = h.quotes()
        return (a - b) / ((a + b) / 2) * 1e4, float(h.m["volatility_bps"])

    calm, calm_vol = spread_after(0.5)  # ~0.17 bps returns: below vol_low_bps
    wild, wild_vol = spread_after(300.0)  # ~100 bps returns: above vol_high_bps
    assert calm_vol < 10.0 < 50.0 < wild_vol
    assert calm == pytest.approx(10.0, abs=0.1)
    assert wild == pytest.approx(20.0, abs=0.1)


def test_first_tick_after_a_gap_rebases_a_moved_price_instead_of_rejecting_it_forever():
    """Updates missed (a gap, an overrun) while the market moved 10%: the first tick after the
    gap is skipped and re-bases the price (as after stale data); the next ones trade. Without
    the re-base every later tick would be a 'price_jump' and the breaker would open."""
    h = KernelHarness()
    h.publish(BID, ASK)
    h.run()
    h.publish(BID * 1.1, ASK * 1.1, seq=h.seq + 5)  # 4 updates missing
    h.publish(BID * 1.1 + 1, ASK * 1.1 + 1)
    h.publish(BID * 1.1 + 2, ASK * 1.1 + 2)
    h.run()
    assert int(h.m["sequence_gaps_total"]) == 1
    assert rej(h, "moved_after_stale") == 1 and rej(h, "price_jump") == 0
    assert int(h.m["ticks_accepted_total"]) == 3
    assert int(h.st["breaker"]) == K.BREAKER_CLOSED
    # without a gap the same move is still a rejected jump
    j = KernelHarness()
    j.publish(BID, ASK)
    j.publish(BID * 1.1, ASK * 1.1)
    j.run()
    assert rej(j, "price_jump") == 1
