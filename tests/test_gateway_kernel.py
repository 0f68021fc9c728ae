"""execution.mode dry-run / live through the compiled engine kernel: placements and cancels
become order intents, the order table follows venue events, venue fills reach the fill queue
once per trade id, and breaker/pause/risk trips send a venue-wide cancel-all.

The rings are in-process numpy arrays (the kernel sees only arrays); the engine <-> gateway
path with real processes and real shared memory is in tests/test_gateway_process.py."""

from __future__ import annotations

import numpy as np
import pytest

from bog.engine import kernel as K
from bog.shm.codes import CANCEL_ALL_WHY, INTENT, LIQUIDITY, RISK, TRIP, VENUE_EVENT
from bog.shm.layouts import (
    FIXED,
    INTENT_REC,
    INTENT_WORDS,
    RING_CAPACITY,
    RING_HEAD,
    VENUE_EVENT_REC,
    VENUE_EVENT_WORDS,
)
from bog.shm.ring import spsc_commit, spsc_peek_into, spsc_push
from harness import KernelHarness


class Live(KernelHarness):
    """A kernel harness in dry-run/live mode with real (in-process) gateway rings."""

    def __init__(self, mode="live", intent_cap=64, **kw):
        super().__init__(**kw, execution={"maker_latency_ms": 0.0, "mode": mode})
        self.ex.ictrl = np.zeros(8, np.int64)
        self.ex.ictrl[RING_CAPACITY] = intent_cap
        self.ex.iwords = np.zeros(intent_cap * INTENT_WORDS, np.int64)
        self.ex.vctrl = np.zeros(8, np.int64)
        self.ex.vctrl[RING_CAPACITY] = 64
        self.ex.vwords = np.zeros(64 * VENUE_EVENT_WORDS, np.int64)
        self.mail(K.MB_GATEWAY_DOWN, 0)

    def intents(self):
        out = np.zeros((256, INTENT_WORDS), np.int64)
        n = spsc_peek_into(self.ex.ictrl, self.ex.iwords, out)
        spsc_commit(self.ex.ictrl, n)
        return list(out[:n].view(INTENT_REC).reshape(-1))

    def venue(self, kind, coi, **f):
        e = np.zeros(1, VENUE_EVENT_REC)
        e[0]["kind"] = kind
        e[0]["client_order_index"] = coi
        for k, v in f.items():
            e[0][k] = v
        assert spsc_push(self.ex.vctrl, self.ex.vwords, e.view(np.int64))

    def states(self):
        return {int(o["order_id"]): int(o["state"]) for o in self.buf.orders
                if o["state"] != K.ORDER_EMPTY}


def test_paper_mode_writes_no_intent_and_fills_on_paper():
    h = KernelHarness()
    h.ex.ictrl = np.zeros(8, np.int64)
    h.ex.ictrl[RING_CAPACITY] = 64
    h.ex.iwords = np.zeros(64 * INTENT_WORDS, np.int64)
    h.publish(59995.0, 60005.0)
    h.run()
    assert len(h.open_orders()) == 2
    assert int(h.ex.ictrl[RING_HEAD]) == 0 and int(h.m["intents_total"].sum()) == 0
    h.publish(59890.0, 59900.0)  # the market trades through our bid: a paper fill
    h.run()
    assert len(h.take_fills()) == 1


def test_quotes_become_place_intents_and_rest_once_acked():
    h = Live()
    h.publish(59995.0, 60005.0)
    h.run()
    places = h.intents()
    assert [int(i["kind"]) for i in places] == [INTENT.PLACE, INTENT.PLACE]
    assert sorted(int(i["side"]) for i in places) == [-1, 1]
    assert all(int(i["qty"]) == round(0.1 * FIXED) and int(i["intent_ns"]) > 0 for i in places)
    assert set(h.states().values()) == {K.ORDER_PENDING}
    assert h.fill_depth() == 0
    for i in places:
        h.venue(VENUE_EVENT.ACKED, int(i["client_order_index"]), order_index=7)
    h.run(idle_ns=1)
    acked = [oid for oid, s in h.states().items() if s == K.ORDER_OPEN]
    assert sorted(acked) == sorted(int(i["client_order_index"]) for i in places)
    assert int(h.m["venue_events_total"][VENUE_EVENT.ACKED]) == 2
    # the market trades through our bid: no paper fill in dry-run/live (fills come from
    # the venue)
    h.publish(59890.0, 59900.0)
    h.run()
    assert h.fill_depth() == 0 and int(h.m["fills_generated_total"]) == 0


def test_requote_cancels_then_places_and_slots_free_on_venue_confirmation():
    h = Live()
    h.publish(59995.0, 60005.0)
    h.run()
    first = h.intents()
    for i in first:
        h.venue(VENUE_EVENT.ACKED, int(i["client_order_index"]))
    h.publish(60095.0, 60105.0)  # moved > requote_bps: cancel + replace
    h.run()
    second = h.intents()
    assert [int(i["kind"]) for i in second] == [INTENT.CANCEL] * 2 + [INTENT.PLACE] * 2
    old = {int(i["client_order_index"]) for i in first}
    assert {int(i["client_order_index"]) for i in second[:2]} == old
    st = h.states()
    assert all(st[o] == K.ORDER_CANCELLING for o in old) and len(st) == 4
    h.venue(VENUE_EVENT.CANCELLED, min(old))
    h.venue(VENUE_EVENT.EXPIRED, max(old))
    h.run(idle_ns=1)
    assert set(h.states()) == {int(i["client_order_index"]) for i in second[2:]}
    assert int(h.st["cancel_pending"]) == 0 and int(h.st["open_orders"]) == 2


def test_venue_fill_reaches_the_fill_queue_once_per_trade_id():
    h = Live()
    h.publish(59995.0, 60005.0)
    h.run()
    bid = next(i for i in h.intents() if int(i["side"]) > 0)
    coi = int(bid["client_order_index"])
    h.venue(VENUE_EVENT.ACKED, coi)
    fill = dict(trade_id=9001, price=int(bid["price"]), qty=round(0.04 * FIXED),
                fee_usd=123, liquidity=LIQUIDITY.MAKER, side=1, ts_ns=5)
    h.venue(VENUE_EVENT.FILLED, coi, **fill)
    h.venue(VENUE_EVENT.FILLED, coi, **fill)  # redelivered (reconnect): ignored
    h.run(idle_ns=1)
    fills = h.take_fills()
    assert len(fills) == 1
    f = fills[0]
    assert (int(f["trade_id"]), int(f["order_id"]), int(f["qty"]), int(f["side"]),
            int(f["fee_usd"])) == (9001, coi, round(0.04 * FIXED), 1, 123)
    assert int(h.m["venue_fills_duplicate_total"]) == 1
    assert len(h.events(K.EV_FILL_DUPLICATE)) == 1
    assert int(h.st["ledger_fixed"]) == round(0.04 * FIXED)
    assert h.states()[coi] == K.ORDER_PARTIAL
    # the rest fills: the slot is free
    h.venue(VENUE_EVENT.FILLED, coi, **dict(fill, trade_id=9002, qty=round(0.06 * FIXED)))
    h.run(idle_ns=1)
    assert coi not in h.states() and len(h.take_fills()) == 1


def test_a_venue_fill_beyond_the_daily_loss_limit_trips_in_the_kernel():
    """Live, the kernel applies the daily loss limit at the venue's fill, as at a paper fill:
    the trip (and the venue cancel-all) does not wait for the Python thread's drain, and the
    kernel's daily PnL is PositionTracker's, bit for bit."""
    from bog.engine.position import PositionTracker

    h = Live(risk={"max_daily_loss_usd": 10.0})
    h.publish(59995.0, 60005.0)
    h.run()
    orders = {int(i["side"]): int(i["client_order_index"]) for i in h.intents()}
    for coi in orders.values():
        h.venue(VENUE_EVENT.ACKED, coi)
    qty = round(0.1 * FIXED)
    fills = [dict(trade_id=1, price=round(60000.0 * FIXED), qty=qty, fee_usd=round(0.5 * FIXED),
                  liquidity=LIQUIDITY.MAKER, side=1, ts_ns=1_000),
             # bought 0.1 at 60,000, sold at 59,900: -10 USD, plus 1 USD of fees: beyond -10
             dict(trade_id=2, price=round(59900.0 * FIXED), qty=qty, fee_usd=round(0.5 * FIXED),
                  liquidity=LIQUIDITY.MAKER, side=-1, ts_ns=2_000)]
    h.venue(VENUE_EVENT.FILLED, orders[1], **fills[0])
    h.run(idle_ns=1)
    assert not h.events(K.EV_RISK_TRIP)  # -0.5 USD: within the limit
    h.intents()
    h.venue(VENUE_EVENT.FILLED, orders[-1], **fills[1])
    h.run(idle_ns=1)
    assert [int(e[2]) for e in h.events(K.EV_RISK_TRIP)] == [TRIP.DAILY_LOSS]
    assert int(h.st["loss_tripped"]) == 1
    assert any(int(i["kind"]) == INTENT.CANCEL_ALL for i in h.intents())
    t = PositionTracker()
    for f in fills:
        t.apply_fill(f["side"], f["qty"], f["price"] / FIXED, f["fee_usd"] / FIXED, f["ts_ns"])
    assert float(h.st["daily_pnl"]) == t.daily_pnl == -11.0


def test_trade_ids_seeded_from_the_journal_are_never_applied_again():
    h = Live()
    K.trade_id_seen(h.buf.trade_ids, 777)  # as the engine seeds it from the journal
    h.venue(VENUE_EVENT.FILLED, 3, trade_id=777, price=60000 * FIXED, qty=FIXED // 100,
            side=1)
    h.run(idle_ns=1)
    assert h.fill_depth() == 0 and int(h.m["venue_fills_duplicate_total"]) == 1


@pytest.mark.parametrize("how, why", [("pause", CANCEL_ALL_WHY.PAUSE),
                                      ("trip", CANCEL_ALL_WHY.RISK),
                                      ("breaker", CANCEL_ALL_WHY.BREAKER)])
def test_pause_risk_trip_and_breaker_open_send_one_venue_cancel_all(how, why):
    h = Live(breaker={"failure_threshold": 1})
    h.publish(59995.0, 60005.0)
    h.run()
    for i in h.intents():
        h.venue(VENUE_EVENT.ACKED, int(i["client_order_index"]))
    if how == "pause":
        h.mail(K.MB_PAUSED, 1)
    elif how == "trip":
        h.mail(K.MB_TRIP_REASON, TRIP.DAILY_LOSS)
        h.mail(K.MB_TRIP_SEQ, 1)
    else:
        h.publish(60006.0, 60005.0)  # crossed book: one failure opens the breaker
    h.run(idle_ns=2_000_000)
    ca = [i for i in h.intents() if int(i["kind"]) == INTENT.CANCEL_ALL]
    assert len(ca) == 1 and int(ca[0]["reason"]) == why
    assert set(h.states().values()) == {K.ORDER_CANCELLING}
    h.publish(59996.0, 60006.0)
    h.run(idle_ns=1_000_000)
    assert h.intents() == []  # nothing more while paused / open
    h.venue(VENUE_EVENT.RESET, 0)
    h.run(idle_ns=1)
    assert h.states() == {} and int(h.st["cancel_pending"]) == 0


def test_gateway_down_means_no_quotes():
    h = Live()
    h.mail(K.MB_GATEWAY_DOWN, 1)
    h.publish(59995.0, 60005.0)
    h.run()
    assert h.intents() == [] and h.states() == {}
    assert int(h.m["risk_rejections_total"][RISK.GATEWAY]) == 1


def test_a_full_intent_ring_is_counted_and_the_order_not_kept():
    h = Live(intent_cap=1)
    h.publish(59995.0, 60005.0)
    h.run()
    assert int(h.m["intents_dropped_total"]) == 1
    assert len(h.events(K.EV_INTENT_DROPPED)) == 1
    assert len(h.states()) == 1  # the one that went out; the dropped one is forgotten


def test_cancel_all_venue_at_shutdown():
    h = Live()
    h.publish(59995.0, 60005.0)
    h.run()
    h.intents()
    assert K.cancel_all_venue(h.state, h.metrics, h.buf.orders, h.buf.events, h.ex.ictrl,
                              h.ex.iwords, h.buf.intent, 1, CANCEL_ALL_WHY.SHUTDOWN)
    ca = h.intents()
    assert [(int(i["kind"]), int(i["reason"])) for i in ca] == [
        (INTENT.CANCEL_ALL, CANCEL_ALL_WHY.SHUTDOWN)]


def test_live_position_correction_moves_the_ledger_through_the_mailbox():
    """A live PositionCorrection (the engine's reconcile) asks the kernel to move its ledger by
    the same delta: MB_CORRECT_FIXED (sum of every correction asked) before MB_CORRECT_SEQ.
    Two requests between two mailbox reads are both applied, a seq seen is never applied
    twice; the corrected ledger is what the position limit guards."""
    h = Live(risk={"max_position_btc": 0.01})
    h.publish(59995.0, 60005.0)
    h.run()
    assert int(h.st["ledger_fixed"]) == 0
    h.mail(K.MB_CORRECT_FIXED, 3_000_000)  # +0.003 BTC
    h.mail(K.MB_CORRECT_SEQ, 1)
    h.run(idle_ns=1)
    assert int(h.st["ledger_fixed"]) == 3_000_000
    h.run(idle_ns=1)  # read again: nothing new
    assert int(h.st["ledger_fixed"]) == 3_000_000
    # two more before the kernel reads: -0.001 then +0.0005 (sum asked: 0.0025)
    h.mail(K.MB_CORRECT_FIXED, 2_000_000)
    h.mail(K.MB_CORRECT_SEQ, 2)
    h.mail(K.MB_CORRECT_FIXED, 2_500_000)
    h.mail(K.MB_CORRECT_SEQ, 3)
    h.run(idle_ns=1)
    assert int(h.st["ledger_fixed"]) == 2_500_000
    assert not h.events(K.EV_RISK_TRIP)
    # beyond the position limit: the next tick trips on the corrected ledger
    h.mail(K.MB_CORRECT_FIXED, 12_500_000)
    h.mail(K.MB_CORRECT_SEQ, 4)
    h.run(idle_ns=1)
    h.publish(59996.0, 60006.0)
    h.run()
    assert any(e[2] == TRIP.POSITION_BREACH for e in h.events(K.EV_RISK_TRIP))


def test_paper_ignores_position_correction_requests():
    """Paper: the ledger is the truth (the tracker is corrected to it), never the reverse."""
    h = KernelHarness()
    h.publish(59995.0, 60005.0)
    h.run()
    h.mail(K.MB_CORRECT_FIXED, 3_000_000)
    h.mail(K.MB_CORRECT_SEQ, 1)
    h.run(idle_ns=1)
    assert int(h.st["ledger_fixed"]) == 0
