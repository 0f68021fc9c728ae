"""Paper fill models of the engine kernel (docs/replay.md "Fill models"), hand-computed.

Every scenario quotes a 0.1 BTC bid at 59,970 (5 bps under a 60,000 mid; the quotes stay put
while the mid moves, ``requote_bps`` is out of the way) and then publishes 10-level books and
trades tick by tick. The expected fills, as (tick, side, quantity), are worked out by hand in
the comments: tick 0 is the book the order is placed on, a fill's time is the time of the tick
that produced it. Sizes in BTC.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from harness import KernelHarness

from bog.config import ConfigError, build_config
from bog.engine import kernel as K
from bog.shm.layouts import DEPTH, FILL_LIQ_MAKER, FIXED, FLAG_FULL_SNAPSHOT, TICK_SLOT

P = 59970.0  # our bid
SELL, BUY = -1, 1
STILL = {"requote_bps": 1000.0, "requote_after_s": 3600.0, "skew_max_bps": 0.0}


class Scenario:
    def __init__(self, model: str, cancels: str = "pro-rata", latency_ms: float = 0.0,
                 short: bool = False):
        self.h = KernelHarness(strategy=STILL, execution={
            "fill_model": model, "queue_cancels": cancels, "maker_latency_ms": latency_ms})
        if short:
            self.h.set_position(-0.95)  # near the limit: only the bid (which reduces it) rests
        self.tick = -1
        self.fills: list[tuple[int, int, float]] = []

    def book(self, bids, asks=((60030.0, 0.5),), trade=None):
        """A full 10-level snapshot: the given levels [(price, size)] first, then levels
        10 USD apart; ``trade`` = (aggressor side, price, size). Runs the kernel on it."""
        bl, al = list(bids), list(asks)
        while len(bl) < DEPTH:
            bl.append((bl[-1][0] - 10.0, 1.0))
        while len(al) < DEPTH:
            al.append((al[-1][0] + 10.0, 1.0))
        kw = {}
        if trade:
            kw = {"trade_side": trade[0], "trade_px": trade[1], "trade_sz": trade[2]}
        levels = ([p for p, _ in bl], [s for _, s in bl], [p for p, _ in al], [s for _, s in al])
        self.h.publish(bl[0][0], al[0][0], bid_sz=bl[0][1], ask_sz=al[0][1], full=True,
                       levels=levels, **kw)
        assert self.h.run() == 1
        self.tick += 1
        assert int(self.h.m["ticks_accepted_total"]) == self.tick + 1
        now = int(self.h.m["last_tick_ns"])
        for f in self.h.take_fills():
            assert int(f["ts_ns"]) == now  # filled at this tick
            assert int(f["liquidity"]) == FILL_LIQ_MAKER
            self.fills.append((self.tick, int(f["side"]), int(f["qty"]) / FIXED))
        return self

    def bid(self):
        rows = [o for o in self.h.buf.orders if o["state"] != K.ORDER_EMPTY and o["side"] > 0]
        assert len(rows) == 1
        return rows[0]

    def ahead(self) -> float:
        return int(self.bid()["q_ahead"]) / FIXED

    def placed_at_p(self):
        assert self.h.quotes()[0] == P
        return self


def top(size):
    """Our price is the best bid, with ``size`` displayed."""
    return [(P, size)]


# ---- a new level: nobody ahead -----------------------------------------------------------
@pytest.mark.parametrize("model", ["queue", "trade-through"])
def test_a_new_level_inside_the_spread_fills_from_the_first_trade_at_its_price(model):
    s = Scenario(model)
    s.book([(59960.0, 0.5)], [(60040.0, 0.5)]).placed_at_p()  # 59970 is not displayed
    if model == "queue":
        assert s.ahead() == 0.0
    s.book([(59960.0, 0.5)], [(60040.0, 0.5)], trade=(SELL, P, 0.04))  # tick 1
    s.book([(59960.0, 0.5)], [(60040.0, 0.5)], trade=(SELL, P, 0.3))  # tick 2: the rest
    # nobody ahead: both models fill by the traded size
    assert s.fills == [(1, BUY, 0.04), (2, BUY, 0.06)]


# ---- joining behind the displayed size; trades eat the queue, then us ----------------------
def _behind_displayed(s):
    s.book(top(0.5)).placed_at_p()  # tick 0: ahead 0.5
    s.book(top(0.5), trade=(SELL, P, 0.3))  # 1: eats 0.3 of the queue (book not updated yet)
    s.book(top(0.2))  # 2: the book shows what traded: not a cancel
    s.book(top(0.2), trade=(SELL, P, 0.25))  # 3: 0.2 ahead, then 0.05 of us
    s.book([(59960.0, 0.5)], trade=(SELL, P, 0.02))  # 4: our level alone: 0.02
    s.book([(59960.0, 0.5)], trade=(SELL, 59965.0, 0.001))  # 5: swept beyond us: the rest
    return s


def test_queue_joins_behind_the_displayed_size_and_trades_eat_it_before_us():
    s = Scenario("queue").book(top(0.5)).placed_at_p()
    assert s.ahead() == 0.5
    s.book(top(0.5), trade=(SELL, P, 0.3))
    assert s.ahead() == pytest.approx(0.2) and s.fills == []
    s.book(top(0.2))
    assert s.ahead() == pytest.approx(0.2)  # explained by the trade: no cancel inferred
    s.book(top(0.2), trade=(SELL, P, 0.25))
    assert s.fills == [(3, BUY, 0.05)] and s.ahead() == 0.0  # partial: 0.05 left over
    assert s.bid()["qty"] / FIXED == pytest.approx(0.05)
    s.book([(59960.0, 0.5)], trade=(SELL, P, 0.02))
    s.book([(59960.0, 0.5)], trade=(SELL, 59965.0, 0.001))
    assert s.fills == [(3, BUY, 0.05), (4, BUY, 0.02), (5, BUY, 0.03)]


def test_trade_through_fills_the_same_ticks_earlier_and_more():
    s = _behind_displayed(Scenario("trade-through"))
    # 1: 0.3 traded at our price fills all 0.1 (requoted at 59970 on the same tick);
    # 3: 0.25 fills the new 0.1 (requoted again); 4: 0.02; 5: 0.001 printed through it
    assert s.fills == [(1, BUY, 0.1), (3, BUY, 0.1), (4, BUY, 0.02), (5, BUY, 0.001)]


# ---- trades reported before the book shows them --------------------------------------------
@pytest.mark.parametrize("book_after_trade", [False, True])
def test_a_drop_explained_by_trades_at_our_price_is_not_a_cancel(book_after_trade):
    """A trade tick may carry the book from before the trade (trades merged into book
    snapshots) or after it: either way 0.2 traded is not also 0.2 cancelled."""
    s = Scenario("queue", "pro-rata").book(top(0.5)).placed_at_p()
    s.book(top(0.3 if book_after_trade else 0.5), trade=(SELL, P, 0.2))  # ahead 0.3
    s.book(top(0.3))
    # as a cancel it would have cut 0.2 * 0.3 / 0.5 = 0.12 more: 0.18 ahead
    assert s.ahead() == pytest.approx(0.3)
    s.book(top(0.3), trade=(SELL, P, 0.35))  # 0.3 ahead, then 0.05 of us
    assert s.fills == [(3, BUY, 0.05)]


# ---- cancellations: pro rata or worst case ---------------------------------------------------
@pytest.mark.parametrize("rule,ahead,fills", [
    # pro rata: 0.4 cancelled of 0.8 displayed, 0.5 of it ahead: 0.4 * 0.5 / 0.8 = 0.25 ahead
    # of us go; 0.3 traded then eats 0.25 and fills 0.05, 0.2 more fills the other 0.05
    ("pro-rata", 0.25, [(3, BUY, 0.05), (4, BUY, 0.05)]),
    # worst case: the cancels came from behind us, as far as they can: 0.4 displayed is all
    # ahead; 0.3 traded leaves 0.1 ahead, 0.2 more eats it and fills our 0.1
    ("worst-case", 0.4, [(4, BUY, 0.1)]),
    # trade-through (docs/replay.md's worked example): each trade fills the quote in full
    # (requoted at 59970 after the first)
    (None, None, [(3, BUY, 0.1), (4, BUY, 0.1)]),
])
def test_cancellations_shrink_the_queue_ahead_pro_rata_or_not_at_all(rule, ahead, fills):
    s = Scenario("queue" if rule else "trade-through", rule or "pro-rata")
    s.book(top(0.5)).placed_at_p()  # 0.5 ahead
    s.book(top(0.8))  # 0.3 joined behind us
    if rule:
        assert s.ahead() == 0.5
    s.book(top(0.4))  # 0.4 cancelled, no trade
    if rule:
        assert s.ahead() == pytest.approx(ahead)
    s.book(top(0.4), trade=(SELL, P, 0.3))
    s.book(top(0.1), trade=(SELL, P, 0.2))
    assert s.fills == fills


def test_a_level_emptied_without_trades_puts_us_at_the_front_under_both_rules():
    for rule in ("pro-rata", "worst-case"):
        s = Scenario("queue", rule).book(top(0.5)).placed_at_p()
        s.book([(59960.0, 0.5)])  # everyone at 59970 cancelled: we are the best bid
        assert s.ahead() == 0.0
        s.book([(59960.0, 0.5)], trade=(SELL, P, 0.07))
        assert s.fills == [(2, BUY, 0.07)], rule


# ---- the price moves away and comes back -----------------------------------------------------
@pytest.mark.parametrize("rule,fills", [
    # back in view with 0.4 where 0.8 was last seen: 0.4 cancelled meanwhile; pro rata
    # 0.4 * 0.5 / 0.8 = 0.25 of it was ahead: 0.25 left, 0.3 traded fills 0.05
    ("pro-rata", [(4, BUY, 0.05)]),
    ("worst-case", []),  # 0.4 ahead: 0.3 traded does not reach us
])
def test_queue_position_survives_the_price_moving_away_and_back(rule, fills):
    s = Scenario("queue", rule, short=True).book(top(0.5)).placed_at_p()
    s.book([(59990.0, 0.5), (59980.0, 0.5), (P, 0.8)], [(60050.0, 0.5)])  # 1: level 3, 0.8
    assert s.ahead() == 0.5
    up = [(60170.0 - 10 * k, 0.5) for k in range(DEPTH)]  # 2: 59970 beyond the 10 levels
    s.book(up, [(60230.0, 0.5)])
    assert s.ahead() == 0.5 and s.bid()["q_shown"] / FIXED == 0.8  # unknown: unchanged
    s.book(top(0.4))  # 3: back at the top
    s.book(top(0.4), trade=(SELL, P, 0.3))  # 4
    assert s.fills == fills


def test_an_order_placed_beyond_the_displayed_depth_joins_behind_its_level_once_in_view():
    s = Scenario("queue")
    deep = [(59995.0 - 2.5 * k, 0.5) for k in range(DEPTH)]  # down to 59972.5: 59970 unseen
    s.book(deep, [(60005.0, 0.5)]).placed_at_p()
    assert int(s.bid()["q_ahead"]) == -1  # not known yet
    s.book(deep, [(60005.0, 0.5)], trade=(SELL, P, 0.2))  # unknown queue: no fill
    s.book([(59980.0, 0.5), (P, 0.3)], [(60020.0, 0.5)])  # 2: in view, 0.3 there
    assert s.ahead() == pytest.approx(0.3)
    s.book([(59980.0, 0.5), (P, 0.3)], [(60020.0, 0.5)], trade=(SELL, P, 0.35))
    assert s.fills == [(3, BUY, 0.05)]


# ---- the book trades through our price -------------------------------------------------------
@pytest.mark.parametrize("model", ["queue", "trade-through"])
def test_a_book_through_our_price_fills_in_full_whatever_the_queue(model):
    s = Scenario(model).book(top(5.0)).placed_at_p()  # 5 BTC ahead
    s.book([(59900.0, 0.5)], [(59965.0, 0.5)])  # best ask below our bid
    assert s.fills == [(1, BUY, 0.1)]


@pytest.mark.parametrize("model,fills", [
    ("queue", [(1, BUY, 0.1)]),  # beyond our price: our whole level traded, us included
    ("trade-through", [(1, BUY, 0.01)]),  # the printed size only
])
def test_a_trade_beyond_our_price_sweeps_our_level(model, fills):
    s = Scenario(model).book(top(5.0)).placed_at_p()
    s.book(top(5.0), trade=(SELL, 59960.0, 0.01))
    assert s.fills == fills


def test_a_trade_on_the_other_side_or_at_a_worse_price_does_not_touch_the_queue():
    s = Scenario("queue").book(top(0.5)).placed_at_p()
    s.book(top(0.5), trade=(BUY, P, 0.3))  # a buyer at our bid's price: not hitting bids
    s.book(top(0.5), trade=(SELL, 59975.0, 0.3))  # above our bid: does not reach it
    assert s.ahead() == 0.5 and s.fills == []


# ---- maker latency: the order joins the queue when it reaches the venue ---------------------
def test_with_maker_latency_the_order_joins_behind_the_book_it_arrives_at():
    s = Scenario("queue", latency_ms=1000.0).book(top(0.5)).placed_at_p()
    assert int(s.bid()["q_joined"]) == 0  # in flight
    s.book(top(0.5), trade=(SELL, P, 0.6))  # before it arrives: no fill
    assert int(s.bid()["q_joined"]) == 0 and s.fills == []
    time.sleep(1.1)
    s.book(top(0.3), trade=(SELL, P, 0.6))  # arrives: behind the 0.3 shown; trade before it
    assert int(s.bid()["q_joined"]) == 1 and s.ahead() == pytest.approx(0.3) and s.fills == []
    s.book(top(0.3), trade=(SELL, P, 0.35))
    assert s.fills == [(3, BUY, 0.05)]


# ---- what a tick displays at a price ---------------------------------------------------------
def _slot(full=True, stale_depth=False):
    r = np.zeros(1, TICK_SLOT)[0]
    r["bid_px"], r["bid_sz"] = 100 * FIXED, 3 * FIXED
    r["ask_px"], r["ask_sz"] = 102 * FIXED, 4 * FIXED
    for k in range(5):  # 5 levels displayed, 1 USD apart, sizes 3+k / 4+k; none at 97
        r["bid_px_l"][k] = (100 - k - (1 if k >= 3 else 0)) * FIXED
        r["bid_sz_l"][k] = (3 + k) * FIXED
        r["ask_px_l"][k] = (102 + k) * FIXED
        r["ask_sz_l"][k] = (4 + k) * FIXED
    if stale_depth:
        r["bid_sz_l"][0] = r["ask_sz_l"][0] = 9 * FIXED  # level 0 is not this tick's top
    r["flags"] = FLAG_FULL_SNAPSHOT if full else 0
    return r


@pytest.mark.parametrize("side,price,full,stale,shown", [
    (BUY, 100, True, False, 3),  # the best bid
    (BUY, 101, True, False, 0),  # inside the spread: a new level
    (BUY, 99, True, False, 4),  # level 1
    (BUY, 97, True, False, 0),  # between displayed levels (98, 96): empty
    (BUY, 95, True, False, 7),  # the last level shown
    (BUY, 94, True, False, -1),  # beyond the displayed depth: not known
    (SELL, 102, True, False, 4),
    (SELL, 101, True, False, 0),
    (SELL, 104, True, False, 6),
    (SELL, 107, True, False, -1),
    (BUY, 99, False, False, 4),  # incremental whose depth is this tick's (level 0 = top)
    (BUY, 99, False, True, -1),  # incremental with depth words from an earlier snapshot
    (BUY, 100, False, True, 3),  # ... its top of book is still known
    (SELL, 103, False, True, -1),
    (BUY, 99, True, True, 4),  # a full snapshot's depth is trusted as it is
])
def test_displayed_size_at_a_price(side, price, full, stale, shown):
    got = K.shown_at(_slot(full, stale), side, price * FIXED)
    assert got == (shown * FIXED if shown >= 0 else -1)


# ---- configuration ---------------------------------------------------------------------------
def test_fill_model_config_defaults_and_bad_values():
    cfg = build_config({}, env={})
    assert (cfg.execution.fill_model, cfg.execution.queue_cancels) == ("trade-through",
                                                                       "pro-rata")
    p = K.make_params(build_config({"execution": {"fill_model": "queue",
                                                  "queue_cancels": "worst-case"}}, env={}))
    assert (int(p[0]["fill_model_code"]), int(p[0]["queue_cancels_code"])) == (
        K.FILL_QUEUE, K.QC_WORST_CASE)
    env = build_config({}, env={"BOG_EXECUTION_FILL_MODEL": "queue"})
    assert env.execution.fill_model == "queue"
    with pytest.raises(ConfigError) as e:
        build_config({"execution": {"fill_model": "fifo"}}, env={})
    assert str(e.value) == ("execution.fill_model = 'fifo' (config): allowed values are "
                            "trade-through, queue")
    with pytest.raises(ConfigError) as e:
        build_config({"execution": {"queue_cancels": "optimistic"}}, env={})
    assert str(e.value) == ("execution.queue_cancels = 'optimistic' (config): allowed values "
                            "are pro-rata, worst-case")
