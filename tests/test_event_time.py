"""Event time in the engine kernel: on an event-time ring (a replay) "now" is the data's time.

The kernel runs in this process over numpy arrays (tests/harness.py), with historic
timestamps (2023) and wall-clock pauses between ticks that differ from the data's, so any
wall clock left in a decision shows. The cross-process behaviour (the replay feed marks its
ring, the engine follows it, the journal is byte-identical at any speed) is in
tests/test_replay_determinism.py."""

from __future__ import annotations

import numpy as np
import pytest
from harness import KernelHarness

from bog.engine import kernel as K
from bog.engine.position import NS_PER_DAY, PositionTracker
from bog.shm.codes import RISK
from bog.shm.layouts import FIXED

T = 1_700_000_000_000_000_000  # 2023-11-14: far older than validation.max_age_ms
MS = 1_000_000
BID, ASK = 59995.0, 60005.0


def tick(h, at_ms: float, bid=BID, ask=ASK, **kw):
    t = T + int(at_ms * MS)
    h.publish(bid, ask, exchange_ts_ns=t, recv_ns=t, **kw)
    h.run()


def test_now_is_the_data_time_for_validation_maker_latency_and_rate_limit():
    h = KernelHarness(execution={"maker_latency_ms": 5.0}, risk={"min_quote_interval_ms": 3.0})
    h.event_time()
    tick(h, 0)
    # 2023 data is not "too old": its age is judged against its own time
    assert int(h.m["ticks_accepted_total"]) == 1
    subs = h.events(K.EV_ORDER_SUBMIT)
    assert [e[1] for e in subs] == [T, T]  # placed at the data's time
    assert (int(h.m["event_first_ns"]), int(h.m["event_now_ns"])) == (T, T)
    bid, _ = h.quotes()
    # a sell sweeps to our bid 4 ms (data) after it was placed: inside the maker latency
    tick(h, 4, trade_px=bid, trade_side=-1, trade_sz=0.05)
    assert h.take_fills() == []
    # 5 ms after: fillable (on the wall clock only microseconds have passed), all of it
    tick(h, 5, trade_px=bid, trade_side=-1, trade_sz=0.2)
    fills = h.take_fills()
    assert [int(f["ts_ns"]) for f in fills] == [T + 5 * MS]
    # the filled side was requoted at 5 ms; a move 2 ms later is rate limited, 3 ms later not
    assert [e[1] for e in h.events(K.EV_ORDER_SUBMIT)] == [T + 5 * MS] * 2  # requoted
    tick(h, 7, BID + 40, ASK + 40)
    assert int(h.m["risk_rejections_total"][RISK.RATE]) == 1
    tick(h, 8, BID + 40, ASK + 40)
    assert int(h.m["risk_rejections_total"][RISK.RATE]) == 1
    subs = h.events(K.EV_ORDER_SUBMIT)
    assert subs and subs[-1][1] == T + 8 * MS


def test_staleness_is_judged_between_ticks_event_times_not_wall_idle():
    h = KernelHarness(validation={"stale_after_ms": 50.0, "offline_after_ms": 150.0})
    h.event_time()
    tick(h, 0)
    assert h.open_orders()
    h.run(idle_ns=300 * MS)  # 300 ms of wall-clock idle: event time stands still
    assert int(h.m["feed_state"]) == K.FEED_FRESH and h.open_orders()
    assert h.events(K.EV_STALE) == []
    tick(h, 200)  # the next update, 200 ms later in the data
    evs = h.events()
    when = {typ: [e[1] for e in evs if e[0] == typ] for typ in
            (K.EV_STALE, K.EV_OFFLINE, K.EV_FRESH, K.EV_ORDER_CANCEL)}
    # each transition at the event time it fell due, in order, then fresh at the tick
    assert when[K.EV_STALE] == [T + 50 * MS + 1]
    assert when[K.EV_OFFLINE] == [T + 150 * MS + 1]
    assert when[K.EV_FRESH] == [T + 200 * MS]
    assert when[K.EV_ORDER_CANCEL] == [T + 50 * MS + 1] * 2  # quotes pulled on stale data
    assert int(h.m["stale_data_total"]) == 1 and int(h.m["offline_total"]) == 1
    assert int(h.m["feed_state"]) == K.FEED_FRESH
    assert h.m["stale_data_age_us_sum"] == 200_000


def test_breaker_cooldown_runs_in_event_time():
    h = KernelHarness(validation={"max_spread_bps": 20.0},
                      breaker={"failure_threshold": 2, "cooldown_s": 0.05,
                               "half_open_successes": 1})
    h.event_time()
    tick(h, 0)
    tick(h, 1, BID, BID + 200)  # too wide: failures
    tick(h, 2, BID, BID + 200)
    assert int(h.st["breaker"]) == K.BREAKER_OPEN
    h.run(idle_ns=100 * MS)  # wall time passes the cooldown; event time does not
    tick(h, 30)
    assert int(h.st["breaker"]) == K.BREAKER_OPEN
    tick(h, 52)  # 50 ms after it opened, in the data: half-open, then closed by this good tick
    moves = [(e[1], e[2], e[3]) for e in h.events(K.EV_BREAKER)]
    assert moves == [(T + 2 * MS, K.BREAKER_CLOSED, K.BREAKER_OPEN),
                     (T + 52 * MS, K.BREAKER_OPEN, K.BREAKER_HALF_OPEN),
                     (T + 52 * MS, K.BREAKER_HALF_OPEN, K.BREAKER_CLOSED)]


def test_fills_are_marked_in_the_event_stream_in_event_time_only():
    for event_time in (False, True):
        h = KernelHarness()
        if event_time:
            h.event_time()
        h.publish(BID, ASK)
        h.run()
        bid, _ = h.quotes()
        h.publish(BID, ASK, trade_px=bid, trade_side=-1, trade_sz=0.05)
        h.run()
        fills = h.take_fills()
        marks = [e[2] for e in h.events(K.EV_FILL)]
        assert marks == ([int(f["fill_id"]) for f in fills] if event_time else [])


@pytest.mark.parametrize("event_time", [False, True])
def test_daily_loss_trips_in_the_kernel_at_the_fill(event_time):
    # maker fee 1 %: the first fill (0.1 BTC at ~60000) costs ~60 USD, beyond the 10 USD limit
    h = KernelHarness(risk={"max_daily_loss_usd": 10.0}, execution={"maker_fee_bps": 100.0})
    if event_time:
        h.event_time()
    tick(h, 0) if event_time else (h.publish(BID, ASK), h.run())
    bid, _ = h.quotes()
    if event_time:
        tick(h, 1, trade_px=bid, trade_side=-1, trade_sz=0.05)
    else:
        h.publish(BID, ASK, trade_px=bid, trade_side=-1, trade_sz=0.05)
        h.run()
    fills = h.take_fills()
    assert len(fills) == 1
    trips = h.events(K.EV_RISK_TRIP)
    # tripped by the kernel at the fill, stamped with the fill's time: no Python involved
    assert [(e[1], e[2]) for e in trips] == [(int(fills[0]["ts_ns"]), K.TRIP_DAILY_LOSS)]
    assert int(h.st["latched"]) == 1 and int(h.st["breaker"]) == K.BREAKER_OPEN
    assert h.open_orders() == []
    assert h.st["daily_pnl"] == -int(fills[0]["fee_usd"]) / FIXED


def test_kernel_daily_pnl_is_the_position_trackers_bit_for_bit():
    """The same fills give the same daily PnL in the kernel as in PositionTracker (the
    journal's), trip once a day at the limit, and roll at 00:00 UTC of the fill time."""
    h = KernelHarness(risk={"max_daily_loss_usd": 50.0})
    st, p = h.state[0], h.params[0]
    t = PositionTracker()
    rng = np.random.default_rng(3)
    ts = T
    trips = []
    for i in range(400):
        side = int(rng.choice([1, -1]))
        qty = int(rng.integers(1, 50)) * FIXED // 100
        price = int(rng.integers(59_000 * 100, 61_000 * 100)) * FIXED // 100
        fee = int(rng.integers(0, 20_000_000))
        ts += int(rng.integers(1, 600)) * 1_000_000_000  # up to 10 min apart: days roll
        if K._daily_pnl(st, p, side, qty, price, fee, ts):
            trips.append(ts // NS_PER_DAY)
        st["ledger_fixed"] += side * qty
        t.apply_fill(side, qty, price / FIXED, fee / FIXED, ts)
        assert st["daily_pnl"] == t.daily_pnl and st["pnl_entry"] == t.entry_price, i
        assert int(st["pnl_day"]) == t.day
    assert len(set(trips)) == len(trips)  # at most once a day
    days_beyond = {d for d in range(T // NS_PER_DAY, ts // NS_PER_DAY + 1)}
    assert trips and set(trips) <= days_beyond
