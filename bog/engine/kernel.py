"""The engine's per-tick path, compiled with numba: no allocation, logging or I/O per tick.

``engine_run`` polls the ticks ring and, for each new snapshot: sequence/gap checks,
staleness recovery, validation, circuit breaker, book update, paper fill matching, strategy,
risk checks, order placement, metrics. It runs in the engine's hot thread with the GIL released
and returns only when the mailbox says stop (or at ``stop_ns``, for tests and warm-up).

Anything Python must log or journal is appended to a local event buffer (``EV_*`` records)
instead of being done here. Local state (``ENGINE_STATE``), parameters (``ENGINE_PARAMS``)
and resting orders (``ORDER``) are process-local numpy records; metrics go to shared memory.
Fixed point x1e9 for prices and sizes; ns for times.
"""

from __future__ import annotations

import dataclasses
import math

import numba as nb
import numpy as np

from bog.config import Config
from bog.shm.atomics import (
    CLOCK_REALTIME,
    clock_ns,
    cpu_relax,
    load_acquire,
    sleep_ns,
    store_release,
)
from bog.shm.codes import (
    BREAKER,
    BREAKER_CAUSE,
    CANCEL_ALL_WHY,
    EXEC_MODE,
    FEED_STATE,
    FILL_MODEL,
    QUEUE_CANCELS,
    STRATEGY,
    TRIP,
)
from bog.shm.hist import bucket_index
from bog.shm.layouts import (
    FILL_LIQ_MAKER,
    FILL_LIQ_TAKER,
    FILL_WORDS,
    FIXED,
    FLAG_BOOK_INVALID,
    FLAG_FULL_SNAPSHOT,
    GAP_SIZE_EDGES,
    INTENT_CANCEL,
    INTENT_CANCEL_ALL,
    INTENT_PLACE,
    INTENT_WORDS,
    LATENCY_NS_EDGES,
    REJ_AFTER_STALE,
    REJ_CROSSED,
    REJ_DEPTH,
    REJ_FUTURE,
    REJ_JUMP,
    REJ_LOCKED,
    REJ_OLD,
    REJ_PRICE,
    REJ_SPREAD,
    RING_CAPACITY,
    RING_HEAD,
    RING_TAIL,
    RISK_BREAKER,
    RISK_GATEWAY,
    RISK_DISTANCE,
    RISK_MAX_ORDERS,
    RISK_PAUSED,
    RISK_POSITION,
    RISK_RATE,
    RISK_SIZE,
    SIG_CANCEL_ALL,
    SIG_NO_ACTION,
    SIG_QUOTE_BOTH,
    STALE_AGE_US_EDGES,
    TICK_SLOT,
    VENUE_EVENT_WORDS,
    VEV_ACKED,
    VEV_CANCELLED,
    VEV_EXPIRED,
    VEV_FILLED,
    VEV_REJECTED,
    VEV_RESET,
)
from bog.shm.ring import READ_OK, READ_TORN, fills_push, spsc_commit, spsc_push, ticks_read

# compile-time constants from the one definition of each code (bog/shm/codes.py)
BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN = BREAKER.CLOSED, BREAKER.HALF_OPEN, BREAKER.OPEN
FEED_FRESH, FEED_STALE, FEED_OFFLINE = FEED_STATE.FRESH, FEED_STATE.STALE, FEED_STATE.OFFLINE
STRAT_SIMPLE, STRAT_INVENTORY = STRATEGY.SIMPLE, STRATEGY.INVENTORY
MODE_PAPER = EXEC_MODE.PAPER
WHY_BREAKER, WHY_PAUSE, WHY_RISK, WHY_SHUTDOWN = (
    CANCEL_ALL_WHY.BREAKER, CANCEL_ALL_WHY.PAUSE, CANCEL_ALL_WHY.RISK, CANCEL_ALL_WHY.SHUTDOWN)
FILL_TRADE_THROUGH, FILL_QUEUE = FILL_MODEL.TRADE_THROUGH, FILL_MODEL.QUEUE
QC_PRO_RATA, QC_WORST_CASE = QUEUE_CANCELS.PRO_RATA, QUEUE_CANCELS.WORST_CASE

# Event buffer: 1-D int64 words. Words 0..7 are control (head written by the kernel thread,
# tail by the Python thread); event i lives at EV_WORDS * (1 + i % EVENT_CAPACITY):
# [type, ts_ns, a, b, c, d, e, f].
EV_WORDS = 8
EVENT_CAPACITY = 4096
EVC_HEAD, EVC_TAIL, EVC_DROPPED = 0, 1, 2
# Written by the Python thread: 1 = when the buffer (or the fill queue) is full the kernel waits
# for room instead of dropping (event time: a replay loses nothing, whatever its speed)
EVC_WAIT = 3

# Mailbox: 1-D int64 words written by the Python thread, read by the kernel (acquire loads)
MB_STOP = 0  # nonzero: engine_run returns
MB_POSITION = 1  # tracked position (fixed), published after each fill drain
MB_PAUSED = 2  # 1 = paused by bogctl
MB_RESET_SEQ = 3  # incremented per 'bogctl breaker reset'
MB_TRIP_SEQ = 4  # incremented per risk trip requested by Python (daily loss, journal failure)
MB_TRIP_REASON = 5
MB_CANCEL_ALL_SEQ = 6  # dry-run/live: incremented per venue-wide cancel-all Python asks for
MB_CANCEL_ALL_WHY = 7  # its CANCEL_ALL_WHY code (written before the seq)
MB_GATEWAY_DOWN = 8  # dry-run/live: 1 while bog-gateway is not up and connected (no quoting)
# live: a position correction (the venue's account differs from the tracked position) moves
# the executor's ledger by the same delta. MB_CORRECT_FIXED is the sum of every correction
# asked for (fixed), written before MB_CORRECT_SEQ is incremented; the kernel applies what it
# has not applied yet, so two requests between two mailbox reads are both taken.
MB_CORRECT_SEQ = 9
MB_CORRECT_FIXED = 10
MB_WORDS = 16
(EV_GAP, EV_BACKWARDS, EV_REJECT, EV_BREAKER, EV_STALE, EV_FRESH, EV_OFFLINE,
 EV_ORDER_SUBMIT, EV_ORDER_CANCEL, EV_FILL_DROPPED, EV_SIGNAL, EV_OVERRUN,
 EV_RISK_TRIP, EV_VENUE, EV_INTENT_DROPPED, EV_FILL_DUPLICATE, EV_TRADE_IDS_RESET,
 EV_CANCEL_ALL, EV_FILL) = range(19)
# EV_FILL (event time only): fill ``a`` was queued here, between the events around it, so the
# journal writes fills and order events in the kernel's order, whatever the drain timing
# breaker transition causes (EV_BREAKER c)
(CAUSE_MARKET, CAUSE_COOLDOWN, CAUSE_RECOVERED, CAUSE_HALF_OPEN_FAIL, CAUSE_RISK,
 CAUSE_MANUAL) = (BREAKER_CAUSE.MARKET, BREAKER_CAUSE.COOLDOWN, BREAKER_CAUSE.RECOVERED,
                  BREAKER_CAUSE.HALF_OPEN_FAIL, BREAKER_CAUSE.RISK, BREAKER_CAUSE.MANUAL)

# Risk trips that latch the breaker open until 'bogctl breaker reset'
TRIP_DAILY_LOSS, TRIP_FILLS_DROPPED, TRIP_POSITION_BREACH, TRIP_JOURNAL_FAILURE = (
    TRIP.DAILY_LOSS, TRIP.FILLS_DROPPED, TRIP.POSITION_BREACH, TRIP.JOURNAL_FAILURE)
TRIP_NAMES = TRIP

ORDER_EMPTY, ORDER_OPEN, ORDER_PARTIAL = 0, 1, 2
# execution.mode dry-run / live: an order's life follows the venue. WANT states are decided
# within one kernel pass and turned into intents by ``flush_intents`` at its end.
ORDER_PLACE_WANT, ORDER_PENDING, ORDER_CANCEL_WANT, ORDER_CANCELLING = 3, 4, 5, 6
TRADE_ID_SLOTS = 1 << 17  # venue trade ids applied (open addressing; + 1 word: the count)
NS_PER_DAY = 86_400 * 1_000_000_000  # the daily loss limit's day: 00:00 UTC of the fill time
IDLE_SPIN_NS = 1_000_000  # with idle back-off on: keep spinning this long after a tick
MAX_ORDERS = 64

ORDER = np.dtype(
    [
        ("state", "<i8"),
        ("order_id", "<i8"),
        ("side", "<i8"),  # +1 buy (bid), -1 sell (ask)
        ("price", "<i8"),  # fixed
        ("qty", "<i8"),  # remaining, fixed
        ("orig_qty", "<i8"),
        ("placed_ns", "<i8"),
        ("fillable_ns", "<i8"),  # ack + maker latency
        # queue fill model only (docs/replay.md "Fill models"); fixed point, -1 = not known
        ("q_joined", "<i8"),  # 1 once the order reached the venue and joined the queue
        ("q_ahead", "<i8"),  # size ahead of us at our price
        ("q_shown", "<i8"),  # displayed size at our price when last in view
        ("q_pend", "<i8"),  # traded at our price, not yet seen leaving the displayed size
    ]
)

ENGINE_PARAMS = np.dtype(
    [
        ("strategy", "<i8"),
        ("tick_fixed", "<i8"),
        ("order_size_fixed", "<i8"),
        ("max_position_fixed", "<i8"),
        ("min_order_fixed", "<i8"),
        ("max_order_fixed", "<i8"),
        ("max_open_orders", "<i8"),
        ("min_quote_interval_ns", "<i8"),
        ("requote_after_ns", "<i8"),
        ("maker_latency_ns", "<i8"),
        ("max_age_ns", "<i8"),
        ("max_future_ns", "<i8"),
        ("stale_after_ns", "<i8"),
        ("offline_after_ns", "<i8"),
        ("breaker_threshold", "<i8"),
        ("breaker_window_ns", "<i8"),
        ("breaker_cooldown_ns", "<i8"),
        ("breaker_successes", "<i8"),
        ("allow_locked", "<i8"),
        ("idle_sleep_ns", "<i8"),  # 0 = busy-poll; else sleep this long per idle poll
        ("slow_tick_every", "<i8"),  # fault injection: every Nth tick is slowed (0 = off)
        ("slow_tick_ns", "<i8"),
        ("fill_model_code", "<i8"),  # FILL_MODEL code (config execution.fill_model)
        ("queue_cancels_code", "<i8"),  # QUEUE_CANCELS code (config execution.queue_cancels)
        ("spread_bps", "<f8"),
        ("min_market_spread_bps", "<f8"),
        ("max_market_spread_bps", "<f8"),
        ("min_best_size_fixed", "<f8"),
        ("requote_bps", "<f8"),
        ("vol_alpha", "<f8"),
        ("vol_low_bps", "<f8"),
        ("vol_high_bps", "<f8"),
        ("skew_max_bps", "<f8"),
        ("skew_threshold", "<f8"),
        ("risk_aversion", "<f8"),
        ("order_intensity", "<f8"),
        ("horizon_s", "<f8"),
        ("target_inventory_fixed", "<f8"),
        ("max_price_distance_bps", "<f8"),
        ("max_spread_bps", "<f8"),
        ("max_price_change_bps", "<f8"),
        ("resume_max_move_bps", "<f8"),
        ("maker_fee_bps", "<f8"),
        ("taker_fee_bps", "<f8"),
        ("exec_mode", "<i8"),  # EXEC_MODE code: paper (simulated fills) or intents to bog-gateway
        ("max_daily_loss_usd", "<f8"),
    ]
)

ENGINE_STATE = np.dtype(
    [
        ("next_pos", "<i8"),  # next ticks-ring position to read
        ("first_live_pos", "<i8"),  # first position published after the engine attached
        ("published_before", "<i8"),  # sum of the final heads of the rings left (ring_detach)
        ("last_seq", "<i8"),
        ("have_seq", "<i8"),
        ("last_tick_ns", "<i8"),  # local time of the last new snapshot
        ("feed_state", "<i8"),
        ("after_stale", "<i8"),
        ("last_good_mid", "<f8"),
        ("vol_ewma_bps", "<f8"),
        ("var_per_s_bps2", "<f8"),
        ("last_vol_ns", "<i8"),
        ("bid", "<i8"),
        ("ask", "<i8"),
        ("mid", "<f8"),
        # quotes
        ("have_quotes", "<i8"),
        ("open_orders", "<i8"),  # resting orders (kept with every state change, never scanned)
        ("quote_mid", "<f8"),
        ("quote_ns", "<i8"),
        ("last_quote_update_ns", "<i8"),
        # positions (fixed): tracked (set by Python after draining fills) and ledger (executor)
        ("position_fixed", "<i8"),
        ("ledger_fixed", "<i8"),
        ("next_order_id", "<i8"),
        ("next_fill_id", "<i8"),
        # circuit breaker
        ("breaker", "<i8"),
        ("latched", "<i8"),
        ("failures", "<i8"),
        ("window_start_ns", "<i8"),
        ("opened_ns", "<i8"),
        ("half_open_ok", "<i8"),
        ("paused", "<i8"),
        ("reset_seen", "<i8"),  # last MB_RESET_SEQ applied
        ("trip_seen", "<i8"),  # last MB_TRIP_SEQ applied
        # execution gateway (dry-run / live)
        ("exec_mode", "<i8"),  # copy of the parameter (helpers without ``p`` need it)
        ("cancel_pending", "<i8"),  # orders in CANCEL_WANT or CANCELLING
        ("intents_pending", "<i8"),  # 1: some order is in a WANT state (flush_intents)
        ("cancel_all_want", "<i8"),  # CANCEL_ALL_WHY + 1 of a venue-wide cancel-all to send
        ("cancel_all_seen", "<i8"),  # last MB_CANCEL_ALL_SEQ applied
        ("correct_seen", "<i8"),  # last MB_CORRECT_SEQ applied
        ("correct_fixed", "<i8"),  # sum of the MB_CORRECT_FIXED corrections applied
        ("gateway_down", "<i8"),
        # event time (set by Python at ring attach, kernel parked): 1 = "now" is the data's
        # time (the ticks' local_recv_ns), never the clock; event_ns = that clock (monotonic)
        ("event_time", "<i8"),
        ("event_ns", "<i8"),
        ("last_tick_wall_ns", "<i8"),  # wall time of the last tick (idle back-off)
        # daily loss limit, on the executor's ledger at every fill (PositionTracker's rules)
        ("pnl_entry", "<f8"),  # average entry price of the ledger position
        ("daily_pnl", "<f8"),  # realized minus fees since 00:00 UTC of pnl_day
        ("pnl_day", "<i8"),  # UTC day of the last fill (-1 = none yet)
        ("loss_tripped", "<i8"),  # daily loss trip done (re-armed by a new day or a reset)
    ]
)


def make_params(cfg: Config) -> np.ndarray:
    p = np.zeros(1, ENGINE_PARAMS)
    r = p[0]
    s, k, v, b, x = cfg.strategy, cfg.risk, cfg.validation, cfg.breaker, cfg.execution
    # parameters named as in the config (same unit) are copied as they are; the rest below
    # are converted (fixed point, ns) or clamped
    for sec in (s, k, v, x):
        for f in dataclasses.fields(sec):
            if f.name in ENGINE_PARAMS.names:
                r[f.name] = getattr(sec, f.name)
    r["strategy"] = STRATEGY.index(s.name)
    r["tick_fixed"] = max(1, int(round(s.tick_size_usd * FIXED)))
    r["order_size_fixed"] = int(round(s.order_size_btc * FIXED))
    r["max_position_fixed"] = int(round(k.max_position_btc * FIXED))
    r["min_order_fixed"] = int(round(k.min_order_size_btc * FIXED))
    r["max_order_fixed"] = int(round(k.max_order_size_btc * FIXED))
    r["max_open_orders"] = min(k.max_open_orders, MAX_ORDERS)
    r["min_quote_interval_ns"] = int(k.min_quote_interval_ms * 1e6)
    r["requote_after_ns"] = int(s.requote_after_s * 1e9)
    r["maker_latency_ns"] = int(x.maker_latency_ms * 1e6)
    r["max_age_ns"] = int(v.max_age_ms * 1e6)
    r["max_future_ns"] = int(v.max_future_ms * 1e6)
    r["stale_after_ns"] = int(v.stale_after_ms * 1e6)
    r["offline_after_ns"] = int(v.offline_after_ms * 1e6)
    r["breaker_threshold"] = b.failure_threshold
    r["breaker_window_ns"] = int(b.window_s * 1e9)
    r["breaker_cooldown_ns"] = int(b.cooldown_s * 1e9)
    r["breaker_successes"] = b.half_open_successes
    r["idle_sleep_ns"] = int(cfg.process.engine_idle_sleep_us * 1e3)
    r["slow_tick_every"] = x.fault_slow_tick_every
    r["slow_tick_ns"] = int(x.fault_slow_tick_us * 1e3)
    r["fill_model_code"] = FILL_MODEL.index(x.fill_model)
    r["queue_cancels_code"] = QUEUE_CANCELS.index(x.queue_cancels)
    r["min_best_size_fixed"] = s.min_best_size_btc * FIXED
    r["target_inventory_fixed"] = s.target_inventory_btc * FIXED
    r["exec_mode"] = EXEC_MODE.index(x.mode)
    return p


def make_state() -> np.ndarray:
    st = np.zeros(1, ENGINE_STATE)
    st[0]["next_order_id"] = 1
    st[0]["next_fill_id"] = 1
    st[0]["pnl_day"] = -1
    return st


# ---- tick accounting ------------------------------------------------------------------------
# Every position of every ticks ring the engine attaches to is counted exactly once: read
# (ticks_total), lost (overwritten before it was read, or still unread when the ring was left)
# or skipped at attach (published before the engine attached). The read position only jumps on
# these paths, each of which counts what it jumps over: ``ring_attach`` and ``ring_detach``
# below (Python thread, kernel parked) and the overrun resync in ``engine_run``; so whenever
# the engine has caught up, published (sum of heads) = ticks + lost + skipped.


def ring_attach(st_arr, m_arr, head: int) -> int:
    """Start reading a ticks ring whose head is ``head`` at its newest snapshot; the earlier
    positions are counted as skipped. Returns their number. Only with the kernel parked."""
    st, m = st_arr[0], m_arr[0]
    start = max(int(head) - 1, 0)
    st["next_pos"] = start
    st["first_live_pos"] = int(head)  # the snapshot at ``start`` predates the engine: not timed
    st["have_seq"] = 0  # a new ring (or feed epoch): sequence tracking starts over
    m["ticks_skipped_at_attach_total"] += start
    return start


def ring_detach(st_arr, m_arr, head: int) -> int:
    """Leave the current ticks ring, whose final head is ``head``: positions not read yet are
    counted as lost, the head joins ``published_before``. Returns the number lost. Only with
    the kernel parked."""
    st, m = st_arr[0], m_arr[0]
    unread = max(int(head) - int(st["next_pos"]), 0)
    m["ring_lost_ticks_total"] += unread
    st["published_before"] += int(head)
    st["next_pos"] = 0
    return unread


class Buffers:
    """Process-local arrays the kernel works in (allocated once at start-up)."""

    def __init__(self):
        self.snap = np.zeros(1, TICK_SLOT)
        self.snap_words = self.snap.view(np.int64)
        self.orders = np.zeros(MAX_ORDERS, ORDER)
        self.fill = np.zeros(FILL_WORDS, np.int64)
        self.events = np.zeros((EVENT_CAPACITY + 1) * EV_WORDS, np.int64)
        self.mailbox = np.zeros(MB_WORDS, np.int64)
        self.intent = np.zeros(INTENT_WORDS, np.int64)  # staging of one intent
        self.vev = np.zeros(VENUE_EVENT_WORDS, np.int64)  # copy of one venue event
        self.trade_ids = np.zeros(TRADE_ID_SLOTS + 1, np.int64)


class Exec:
    """The engine's execution rings as the kernel sees them: the order-intent ring it writes
    and the venue-event ring it reads (dry-run / live). On paper both are empty stand-ins."""

    def __init__(self):
        self.ictrl, self.iwords = _empty_ring(INTENT_WORDS)
        self.vctrl, self.vwords = _empty_ring(VENUE_EVENT_WORDS)


def _empty_ring(words: int):
    ctrl = np.zeros(8, np.int64)
    ctrl[RING_CAPACITY] = 1
    return ctrl, np.zeros(words, np.int64)


# ---- small helpers -------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True, inline="always")
def _event(st, events, typ, ts, a, b, c, d):
    """Append an event for the Python thread (SPSC); counted and dropped when full."""
    head = events[EVC_HEAD]
    cap = events.shape[0] // EV_WORDS - 1
    while head - load_acquire(events, EVC_TAIL) >= cap:
        if load_acquire(events, EVC_WAIT) == 0:
            events[EVC_DROPPED] += 1
            return
        cpu_relax()  # event time: the Python thread drains within a millisecond
    base = EV_WORDS * (1 + head % cap)
    events[base] = typ
    events[base + 1] = ts
    events[base + 2] = a
    events[base + 3] = b
    events[base + 4] = c
    events[base + 5] = d
    store_release(events, EVC_HEAD, head + 1)


@nb.njit(cache=True, nogil=True, inline="always")
def _want_cancel_all(st, why):
    """dry-run/live: a venue-wide cancel-all goes out at the end of this kernel pass."""
    if st.exec_mode != MODE_PAPER and st.cancel_all_want == 0:
        st.cancel_all_want = why + 1
        st.intents_pending = 1


@nb.njit(cache=True, nogil=True)
def _breaker_set(st, m, events, new_state, now, cause):
    old = st.breaker
    if old == new_state:
        return
    st.breaker = new_state
    m.circuit_breaker_state = new_state
    if new_state == BREAKER_OPEN:
        st.opened_ns = now
        m.circuit_breaker_trips_total += 1
        _want_cancel_all(st, WHY_BREAKER)
    if new_state == BREAKER_HALF_OPEN:
        st.half_open_ok = 0
    if new_state == BREAKER_CLOSED:
        st.failures = 0
        st.window_start_ns = now
    _event(st, events, EV_BREAKER, now, old, new_state, cause, st.latched)


@nb.njit(cache=True, nogil=True)
def breaker_failure(st, p, m, events, now):
    """A market anomaly: counts towards opening; any failure while half-open reopens."""
    if st.breaker == BREAKER_HALF_OPEN:
        _breaker_set(st, m, events, BREAKER_OPEN, now, CAUSE_HALF_OPEN_FAIL)
    elif st.breaker == BREAKER_CLOSED:
        if now - st.window_start_ns > p.breaker_window_ns:
            st.window_start_ns = now
            st.failures = 0
        st.failures += 1
        if st.failures >= p.breaker_threshold:
            _breaker_set(st, m, events, BREAKER_OPEN, now, CAUSE_MARKET)


@nb.njit(cache=True, nogil=True)
def breaker_success(st, p, m, events, now):
    if st.breaker == BREAKER_HALF_OPEN:
        st.half_open_ok += 1
        if st.half_open_ok >= p.breaker_successes:
            _breaker_set(st, m, events, BREAKER_CLOSED, now, CAUSE_RECOVERED)


@nb.njit(cache=True, nogil=True)
def breaker_poll(st, p, m, events, now):
    """Open -> Half-Open after the cooldown, unless a risk trip latched it."""
    if st.breaker == BREAKER_OPEN and st.latched == 0 and now - st.opened_ns >= p.breaker_cooldown_ns:
        _breaker_set(st, m, events, BREAKER_HALF_OPEN, now, CAUSE_COOLDOWN)


@nb.njit(cache=True, nogil=True)
def trip(st, m, events, now, reason):
    """Risk trip: latch the breaker open until a manual reset."""
    first = st.latched == 0
    st.latched = 1
    if first:
        _event(st, events, EV_RISK_TRIP, now, reason, 0, 0, 0)
        _want_cancel_all(st, WHY_RISK)
    if st.breaker != BREAKER_OPEN:
        _breaker_set(st, m, events, BREAKER_OPEN, now, CAUSE_RISK)
    m.circuit_breaker_latched = 1  # after the state: a reader never sees latched-but-closed


# ---- validation ----------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def validate(snap, st, p, now):
    """-1 if the snapshot is tradable, else a REJ_* reason."""
    bid = snap.bid_px
    ask = snap.ask_px
    if bid <= 0 or ask <= 0:
        return REJ_PRICE
    if bid > ask:
        return REJ_CROSSED
    if bid == ask and p.allow_locked == 0:
        return REJ_LOCKED
    mid = 0.5 * (bid + ask)
    if (ask - bid) / mid * 1e4 > p.max_spread_bps:
        return REJ_SPREAD
    ts = snap.exchange_ts_ns
    if ts != 0:
        if now - ts > p.max_age_ns:
            return REJ_OLD
        if ts - now > p.max_future_ns:
            return REJ_FUTURE
    if st.last_good_mid > 0.0:
        move_bps = abs(mid / FIXED - st.last_good_mid) / st.last_good_mid * 1e4
        if st.after_stale == 1 and move_bps > p.resume_max_move_bps:
            return REJ_AFTER_STALE
        if move_bps > p.max_price_change_bps:
            return REJ_JUMP
    if snap.flags & FLAG_FULL_SNAPSHOT:
        # depth checks only on full snapshots (incrementals carry only the top)
        for k in range(snap.bid_px_l.shape[0]):
            bp = snap.bid_px_l[k]
            bs = snap.bid_sz_l[k]
            ap = snap.ask_px_l[k]
            asz = snap.ask_sz_l[k]
            if bp < 0 or ap < 0 or bs < 0 or asz < 0:
                return REJ_DEPTH
            if (bp > 0 and bs == 0) or (ap > 0 and asz == 0):
                return REJ_DEPTH
            if k > 0:
                if bp > 0 and bp >= snap.bid_px_l[k - 1]:
                    return REJ_DEPTH
                if ap > 0 and ap <= snap.ask_px_l[k - 1]:
                    return REJ_DEPTH
    return -1


# ---- strategy ------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def strategy_quote(st, p, snap, now, out):
    """Decide quotes. ``out`` int64[2] receives bid/ask prices (fixed). Returns SIG_*."""
    bid = snap.bid_px
    ask = snap.ask_px
    mid = 0.5 * (bid + ask) / FIXED
    spread_bps = (ask - bid) / FIXED / mid * 1e4
    if (bid <= 0 or ask <= 0 or bid >= ask or spread_bps > p.max_market_spread_bps
            or spread_bps < p.min_market_spread_bps
            or min(snap.bid_sz, snap.ask_sz) < p.min_best_size_fixed):
        return SIG_CANCEL_ALL
    if st.have_quotes == 1:
        moved_bps = abs(mid - st.quote_mid) / st.quote_mid * 1e4
        if moved_bps < p.requote_bps and now - st.quote_ns < p.requote_after_ns:
            return SIG_NO_ACTION
    maxpos = float(p.max_position_fixed)
    # the executor's own ledger (every fill at once), never the drained position: what the
    # strategy decides must not depend on when the Python thread drains the fill queue
    pos = float(st.ledger_fixed)
    if p.strategy == STRAT_INVENTORY:
        # Avellaneda-Stoikov: reservation price and optimal spread from the measured variance
        var_h = max(st.var_per_s_bps2, 0.01) * p.horizon_s  # bps^2 over the horizon
        gamma = p.risk_aversion
        q = (pos - p.target_inventory_fixed) / max(float(p.order_size_fixed), 1.0)
        reservation_bps = -q * gamma * var_h
        half_bps = 0.5 * (gamma * var_h + 2.0 / gamma * math.log(1.0 + gamma / p.order_intensity))
        # never tighter than the configured spread; stay inside the risk price band
        limit = 0.9 * p.max_price_distance_bps
        half_bps = min(max(half_bps, 0.5 * p.spread_bps), limit)
        reservation_bps = min(max(reservation_bps, -(limit - half_bps)), limit - half_bps)
        bid_off = reservation_bps - half_bps
        ask_off = reservation_bps + half_bps
    else:
        vol = st.vol_ewma_bps
        mult = 1.0
        if p.vol_high_bps > p.vol_low_bps:
            mult = 1.0 + min(max((vol - p.vol_low_bps) / (p.vol_high_bps - p.vol_low_bps), 0.0), 1.0)
        elif vol >= p.vol_high_bps:
            mult = 2.0
        half_bps = 0.5 * p.spread_bps * mult
        util = pos / maxpos if maxpos > 0 else 0.0
        skew = 0.0
        if abs(util) > p.skew_threshold and p.skew_threshold < 1.0:
            skew = p.skew_max_bps * min((abs(util) - p.skew_threshold) / (1.0 - p.skew_threshold), 1.0)
        if util > 0:  # long: lower both quotes, the ask fully, the bid half
            bid_off = -half_bps - 0.5 * skew
            ask_off = half_bps - skew
        else:  # short: raise both, the bid fully, the ask half
            bid_off = -half_bps + skew
            ask_off = half_bps + 0.5 * skew
    tick = p.tick_fixed
    bid_px = int(math.floor(mid * (1.0 + bid_off * 1e-4) * FIXED / tick)) * tick  # round down
    ask_px = int(math.ceil(mid * (1.0 + ask_off * 1e-4) * FIXED / tick)) * tick  # round up
    if ask_px <= bid_px:
        ask_px = bid_px + tick
    out[0] = bid_px
    out[1] = ask_px
    return SIG_QUOTE_BOTH


# ---- paper execution -----------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def _emit_fill(st, p, m, orders, i, qty, now, liquidity, fill, fctrl, fwords, events):
    o = orders[i]
    fee_bps = p.taker_fee_bps if liquidity == FILL_LIQ_TAKER else p.maker_fee_bps
    notional = o.price / FIXED * qty / FIXED
    fill[0] = o.order_id
    fill[1] = now
    fill[2] = o.price
    fill[3] = qty
    fill[4] = int(round(notional * fee_bps * 1e-4 * FIXED))
    fill[5] = o.side
    fill[6] = liquidity
    fill[7] = st.next_fill_id
    st.next_fill_id += 1
    o.qty -= qty
    o.state = ORDER_EMPTY if o.qty == 0 else ORDER_PARTIAL
    loss_trip = _daily_pnl(st, p, o.side, qty, o.price, fill[4], now)
    st.ledger_fixed += o.side * qty  # the executor's own ledger, drop or not
    m.fills_generated_total += 1
    m.last_fill_ns = now
    pushed = fills_push(fctrl, fwords, fill)
    while not pushed and st.event_time != 0 and load_acquire(events, EVC_WAIT) != 0:
        cpu_relax()  # event time: wait for the Python thread to drain (never drop)
        pushed = fills_push(fctrl, fwords, fill)
    if not pushed:
        m.fills_dropped_total += 1
        _event(st, events, EV_FILL_DROPPED, now, o.order_id, o.side, qty, o.price)
        trip(st, m, events, now, TRIP_FILLS_DROPPED)
    elif st.event_time != 0:
        _event(st, events, EV_FILL, now, fill[7], 0, 0, 0)
    if loss_trip:
        trip(st, m, events, now, TRIP_DAILY_LOSS)
    if o.state == ORDER_EMPTY:
        st.open_orders -= 1
        st.have_quotes = 0  # requote the filled side at the next tick (rate limit permitting)


@nb.njit(cache=True, nogil=True)
def _daily_pnl(st, p, side, qty, price_fixed, fee_fixed, now):
    """The daily loss limit on the executor's ledger, at the fill (``PositionTracker``'s
    arithmetic, in the same order: the same fills give the same figure). Called before the
    ledger takes the fill; True if this fill takes the day's PnL to the limit (once a day,
    re-armed by a new UTC day of fill time or a breaker reset)."""
    day = now // NS_PER_DAY
    if day != st.pnl_day:
        st.pnl_day = day
        st.daily_pnl = 0.0
        st.loss_tripped = 0
    price = price_fixed / FIXED
    pos = st.ledger_fixed
    pnl = 0.0
    if pos == 0 or (pos > 0) == (side > 0):
        held = abs(pos)
        st.pnl_entry = (st.pnl_entry * held + price * qty) / (held + qty)
    else:
        closing = min(qty, abs(pos))
        direction = 1 if pos > 0 else -1
        pnl = (price - st.pnl_entry) * direction * closing / FIXED
        if qty > closing:
            st.pnl_entry = price
        elif pos + side * qty == 0:
            st.pnl_entry = 0.0
    st.daily_pnl += pnl - fee_fixed / FIXED
    if st.loss_tripped == 0 and st.daily_pnl <= -p.max_daily_loss_usd:
        st.loss_tripped = 1
        return True
    return False


@nb.njit(cache=True, nogil=True)
def match_fills(st, p, m, orders, snap, now, fill, fctrl, fwords, events):
    """Fill resting orders the market traded through (after the maker latency)."""
    if p.fill_model_code == FILL_QUEUE:
        match_fills_queue(st, p, m, orders, snap, now, fill, fctrl, fwords, events)
        return
    for i in range(orders.shape[0]):
        o = orders[i]
        if o.state == ORDER_EMPTY or now < o.fillable_ns:
            continue
        qty = 0
        if o.side > 0:
            if snap.ask_px > 0 and snap.ask_px <= o.price:
                qty = o.qty  # the book moved through our bid
            elif snap.trade_side < 0 and snap.trade_px > 0 and snap.trade_px <= o.price:
                qty = min(o.qty, snap.trade_sz)  # a sell swept down to our bid
        else:
            if snap.bid_px > 0 and snap.bid_px >= o.price:
                qty = o.qty
            elif snap.trade_side > 0 and snap.trade_px >= o.price:
                qty = min(o.qty, snap.trade_sz)
        if qty > 0:
            _emit_fill(st, p, m, orders, i, qty, now, FILL_LIQ_MAKER, fill, fctrl, fwords,
                       events)


@nb.njit(cache=True, nogil=True)
def shown_at(snap, side, price):
    """Size this tick displays at ``price`` on the side an order of ``side`` rests on (bids
    for a buy): 0 if no level is there (a new level), -1 if the tick cannot tell (the price is
    beyond the displayed depth, or the depth words are not this tick's: an incremental update
    carries only the top of book, so its depth is used only when its level 0 is the top)."""
    if side > 0:
        best = snap.bid_px
        if price > best:
            return 0  # better than the best bid: nobody is there
        if price == best:
            return snap.bid_sz
        if (snap.flags & FLAG_FULL_SNAPSHOT) == 0 and (
                snap.bid_px_l[0] != best or snap.bid_sz_l[0] != snap.bid_sz):
            return -1
        for k in range(snap.bid_px_l.shape[0]):
            lp = snap.bid_px_l[k]
            if lp <= 0:
                return -1  # end of the displayed depth
            if lp == price:
                return snap.bid_sz_l[k]
            if lp < price:
                return 0  # between two displayed levels: empty
        return -1
    best = snap.ask_px
    if price < best:
        return 0
    if price == best:
        return snap.ask_sz
    if (snap.flags & FLAG_FULL_SNAPSHOT) == 0 and (
            snap.ask_px_l[0] != best or snap.ask_sz_l[0] != snap.ask_sz):
        return -1
    for k in range(snap.ask_px_l.shape[0]):
        lp = snap.ask_px_l[k]
        if lp <= 0:
            return -1
        if lp == price:
            return snap.ask_sz_l[k]
        if lp > price:
            return 0
    return -1


@nb.njit(cache=True, nogil=True)
def _queue_join(o, snap):
    """The order reaches the venue: it joins behind the size displayed at its price."""
    shown = shown_at(snap, o.side, o.price)
    o.q_joined = 1
    o.q_ahead = shown  # -1: not in view yet; set when it first is
    o.q_shown = shown
    o.q_pend = 0


@nb.njit(cache=True, nogil=True)
def match_fills_queue(st, p, m, orders, snap, now, fill, fctrl, fwords, events):
    """Queue-position fills (docs/replay.md "Fill models"): an order fills only once the
    size ahead of it at its price is gone, by what trades at its price after that; a book
    through its price or a trade beyond it fills it in full."""
    for i in range(orders.shape[0]):
        o = orders[i]
        if o.state == ORDER_EMPTY or now < o.fillable_ns:
            continue
        side = o.side
        price = o.price
        # the book moved through our price: everything ahead of us went first, so did we
        if (side > 0 and snap.ask_px > 0 and snap.ask_px <= price) or (
                side < 0 and snap.bid_px > 0 and snap.bid_px >= price):
            _emit_fill(st, p, m, orders, i, o.qty, now, FILL_LIQ_MAKER, fill, fctrl, fwords,
                       events)
            continue
        if o.q_joined == 0:
            # reached the venue (maker latency) since the last tick: joins behind what this
            # tick displays; this tick's trade printed before it arrived
            _queue_join(o, snap)
            continue
        # trades: an aggressor hitting our side at our price eats the queue ahead, then us;
        # one printing beyond our price took our whole level, us included
        qty = 0
        tp = snap.trade_px
        if tp > 0 and snap.trade_sz > 0 and (
                (side > 0 and snap.trade_side < 0) or (side < 0 and snap.trade_side > 0)):
            if (side > 0 and tp < price) or (side < 0 and tp > price):
                qty = o.qty
            elif tp == price and o.q_ahead >= 0:
                v = snap.trade_sz
                eaten = min(o.q_ahead, v)
                o.q_ahead -= eaten
                qty = min(o.qty, v - eaten)
                o.q_pend += v - qty  # displayed size that traded
        # cancellations: the displayed size shrank by more than what traded there
        shown = shown_at(snap, side, price)
        if shown >= 0:
            if o.q_ahead < 0:
                o.q_ahead = shown  # comes into view: behind all of it
            else:
                drop = o.q_shown - shown
                if drop > 0:
                    explained = min(drop, o.q_pend)
                    o.q_pend -= explained
                    cancelled = drop - explained
                    level = o.q_shown - explained  # ahead + behind us before the cancels
                    if cancelled > 0 and level > 0 and p.queue_cancels_code == QC_PRO_RATA:
                        # our share of the cancels: ahead / (ahead + behind), rounded down
                        cut = int(float(cancelled) * float(o.q_ahead) / float(level))
                        o.q_ahead -= min(cut, o.q_ahead)
                # worst case (and any rule): never more ahead of us than is displayed
                if o.q_ahead > shown:
                    o.q_ahead = shown
            o.q_shown = shown
            if o.q_pend > shown:
                o.q_pend = shown  # the displayed size cannot drop by more than it shows
        if qty > 0:
            _emit_fill(st, p, m, orders, i, qty, now, FILL_LIQ_MAKER, fill, fctrl, fwords,
                       events)


@nb.njit(cache=True, nogil=True)
def cancel_all(st, m, orders, events, now):
    st.have_quotes = 0
    if st.open_orders - st.cancel_pending == 0:
        return 0  # the common case: nothing rests (or every cancel is on its way), no scan
    if st.exec_mode != MODE_PAPER:
        return _cancel_all_venue(st, m, orders, events, now)
    n = 0
    for i in range(orders.shape[0]):
        o = orders[i]
        if o.state != ORDER_EMPTY:
            _event(st, events, EV_ORDER_CANCEL, now, o.order_id, o.side, o.price, o.qty)
            o.state = ORDER_EMPTY
            m.orders_cancelled_total += 1
            n += 1
    st.open_orders = 0
    m.open_orders = 0
    return n


@nb.njit(cache=True, nogil=True)
def _cancel_all_venue(st, m, orders, events, now):
    """dry-run/live: ask the venue to cancel every order (``flush_intents`` sends the
    cancels); an order stays in the table until the venue confirms, so its fills still find
    it. An order not sent yet is simply dropped."""
    n = 0
    for i in range(orders.shape[0]):
        o = orders[i]
        s = o.state
        if s == ORDER_PLACE_WANT:
            o.state = ORDER_EMPTY
            st.open_orders -= 1
            n += 1
        elif s == ORDER_OPEN or s == ORDER_PARTIAL or s == ORDER_PENDING:
            _event(st, events, EV_ORDER_CANCEL, now, o.order_id, o.side, o.price, o.qty)
            o.state = ORDER_CANCEL_WANT
            st.cancel_pending += 1
            st.intents_pending = 1
            m.orders_cancelled_total += 1
            n += 1
    m.open_orders = st.open_orders
    return n


@nb.njit(cache=True, nogil=True)
def _intent(st, m, events, ictrl, iwords, ib, kind, coi, side, price, qty, now, reason):
    ib[0] = kind
    ib[1] = coi
    ib[2] = side
    ib[3] = price
    ib[4] = qty
    ib[5] = now
    ib[6] = reason
    ib[7] = ictrl[RING_HEAD] + 1
    if spsc_push(ictrl, iwords, ib):
        m.intents_total[kind] += 1
        return True
    m.intents_dropped_total += 1
    _event(st, events, EV_INTENT_DROPPED, now, kind, coi, side, ictrl[RING_CAPACITY])
    return False


@nb.njit(cache=True, nogil=True)
def flush_intents(st, m, orders, events, ictrl, iwords, ib, now):
    """dry-run/live: turn this pass's decisions into intents, in order: a venue-wide
    cancel-all, then single cancels, then placements. No allocation: one staging array.
    An intent the full ring refuses is counted and dropped: a cancel stays wanted (retried
    next pass), a placement is forgotten (the next quote update places again)."""
    st.intents_pending = 0
    if st.cancel_all_want != 0:
        why = st.cancel_all_want - 1
        if _intent(st, m, events, ictrl, iwords, ib, INTENT_CANCEL_ALL, 0, 0, 0, 0, now, why):
            st.cancel_all_want = 0
            _event(st, events, EV_CANCEL_ALL, now, why, st.open_orders, 0, 0)
            for i in range(orders.shape[0]):
                o = orders[i]
                if (o.state == ORDER_OPEN or o.state == ORDER_PARTIAL
                        or o.state == ORDER_PENDING):
                    o.state = ORDER_CANCELLING
                    st.cancel_pending += 1
                elif o.state == ORDER_CANCEL_WANT:
                    o.state = ORDER_CANCELLING
                elif o.state == ORDER_PLACE_WANT:
                    o.state = ORDER_EMPTY
                    st.open_orders -= 1
        else:
            st.intents_pending = 1
    if st.open_orders == 0:
        m.open_orders = 0
        return
    for i in range(orders.shape[0]):
        o = orders[i]
        if o.state == ORDER_CANCEL_WANT:
            if _intent(st, m, events, ictrl, iwords, ib, INTENT_CANCEL, o.order_id, o.side,
                       0, 0, now, 0):
                o.state = ORDER_CANCELLING
            else:
                st.intents_pending = 1
    for i in range(orders.shape[0]):
        o = orders[i]
        if o.state == ORDER_PLACE_WANT:
            if _intent(st, m, events, ictrl, iwords, ib, INTENT_PLACE, o.order_id, o.side,
                       o.price, o.qty, now, 0):
                o.state = ORDER_PENDING
            else:
                o.state = ORDER_EMPTY
                st.open_orders -= 1
                st.have_quotes = 0
    m.open_orders = st.open_orders


@nb.njit(cache=True, nogil=True)
def _free_order(st, o):
    if o.state == ORDER_CANCEL_WANT or o.state == ORDER_CANCELLING:
        st.cancel_pending -= 1
    o.state = ORDER_EMPTY
    st.open_orders -= 1


@nb.njit(cache=True, nogil=True)
def _find_order(orders, coi):
    for i in range(orders.shape[0]):
        if orders[i].state != ORDER_EMPTY and orders[i].order_id == coi:
            return i
    return -1


@nb.njit(cache=True, nogil=True)
def trade_id_seen(tids, tid):
    """True if venue trade ``tid`` was applied already; else records it. The table is
    process-local, seeded at start with the trade ids of the journal (and of fills a dead
    engine left queued), so a redelivered trade is never applied twice."""
    mask = tids.shape[0] - 2  # slots: a power of two; the last word is the count
    h = ((tid ^ (tid >> 29)) * 0x5BD1E995) & mask
    while True:
        v = tids[h]
        if v == tid:
            return True
        if v == 0:
            tids[h] = tid
            tids[mask + 1] += 1
            return False
        h = (h + 1) & mask


@nb.njit(cache=True, nogil=True)
def apply_venue_event(st, p, m, orders, ev, fill, fctrl, fwords, tids, events, now):
    """One venue event (VENUE_EVENT_REC words in ``ev``): the order table follows the venue;
    a fill reaches the fill queue (journal, position) once per venue trade id."""
    kind = ev[0]
    coi = ev[1]
    m.venue_events_total[kind] += 1
    if kind == VEV_RESET:
        # the gateway (re)started and cancelled everything at the venue
        for i in range(orders.shape[0]):
            orders[i].state = ORDER_EMPTY
        st.open_orders = 0
        st.cancel_pending = 0
        st.have_quotes = 0
        m.open_orders = 0
        _event(st, events, EV_VENUE, now, kind, 0, 0, 0)
        return
    i = _find_order(orders, coi)
    if kind == VEV_FILLED:
        tid = ev[4]
        if tid > 0 and trade_id_seen(tids, tid):
            m.venue_fills_duplicate_total += 1
            _event(st, events, EV_FILL_DUPLICATE, now, tid, coi, ev[6], ev[5])
            return
        if tids[tids.shape[0] - 1] * 2 > tids.shape[0]:
            # half full: start over (the venue only redelivers recent trades)
            n = tids[tids.shape[0] - 1]
            tids[:] = 0
            trade_id_seen(tids, tid)
            _event(st, events, EV_TRADE_IDS_RESET, now, n, 0, 0, 0)
        qty = ev[6]
        side = ev[9]
        fill[0] = coi
        fill[1] = ev[2]
        fill[2] = ev[5]
        fill[3] = qty
        fill[4] = ev[7]
        fill[5] = side
        fill[6] = ev[8]
        fill[7] = st.next_fill_id
        fill[8] = tid
        st.next_fill_id += 1
        # the daily loss limit at the venue's fill, as at a paper fill (before the ledger
        # takes it; the UTC day of the venue's fill time, as PositionTracker rolls it)
        loss_trip = _daily_pnl(st, p, side, qty, ev[5], ev[7], ev[2])
        st.ledger_fixed += side * qty
        m.fills_generated_total += 1
        m.last_fill_ns = now
        if not fills_push(fctrl, fwords, fill):
            m.fills_dropped_total += 1
            _event(st, events, EV_FILL_DROPPED, now, coi, side, qty, ev[5])
            trip(st, m, events, now, TRIP_FILLS_DROPPED)
        if st.ledger_fixed > p.max_position_fixed or st.ledger_fixed < -p.max_position_fixed:
            trip(st, m, events, now, TRIP_POSITION_BREACH)
        if loss_trip:
            trip(st, m, events, now, TRIP_DAILY_LOSS)
        if i >= 0:
            o = orders[i]
            o.qty -= qty
            if o.qty <= 0:
                _free_order(st, o)
                st.have_quotes = 0  # requote the filled side
            elif o.state == ORDER_OPEN or o.state == ORDER_PENDING:
                o.state = ORDER_PARTIAL
        else:
            m.venue_events_unknown_order_total += 1
        m.open_orders = st.open_orders
        return
    _event(st, events, EV_VENUE, now, kind, coi, ev[3], ev[10])
    if i < 0:
        m.venue_events_unknown_order_total += 1
        return
    o = orders[i]
    if kind == VEV_ACKED:
        if o.state == ORDER_PENDING:
            o.state = ORDER_OPEN
    elif kind == VEV_REJECTED or kind == VEV_CANCELLED or kind == VEV_EXPIRED:
        _free_order(st, o)
        if kind != VEV_CANCELLED or st.cancel_pending == 0:
            st.have_quotes = 0  # an order we did not cancel is gone: quote again
    m.open_orders = st.open_orders


@nb.njit(cache=True, nogil=True)
def drain_venue_events(st, p, m, orders, vctrl, vwords, vb, fill, fctrl, fwords, tids,
                       events, now):
    """Apply every venue event queued (consumer of the venue-event ring). Each one leaves the
    ring only after it was applied (its fill queued), so a crash in between redelivers it to
    the next engine, whose trade-id table (seeded from the journal) drops the duplicate."""
    nw = vb.shape[0]
    cap = vctrl[RING_CAPACITY]
    n = 0
    while True:
        head = load_acquire(vctrl, RING_HEAD)
        tail = vctrl[RING_TAIL]
        if tail >= head:
            return n
        base = (tail % cap) * nw
        for k in range(nw):
            vb[k] = vwords[base + k]
        apply_venue_event(st, p, m, orders, vb, fill, fctrl, fwords, tids, events, now)
        spsc_commit(vctrl, 1)
        n += 1


@nb.njit(cache=True, nogil=True)
def cancel_all_orders(st_arr, m_arr, orders, events, now):
    """``cancel_all`` callable from Python (shutdown, tests)."""
    return cancel_all(st_arr[0], m_arr[0], orders, events, now)


@nb.njit(cache=True, nogil=True)
def cancel_all_venue(st_arr, m_arr, orders, events, ictrl, iwords, ib, now, why):
    """dry-run/live, kernel parked (shutdown): a venue-wide cancel-all intent now."""
    st = st_arr[0]
    st.cancel_all_want = why + 1
    flush_intents(st, m_arr[0], orders, events, ictrl, iwords, ib, now)
    return st.cancel_all_want == 0


@nb.njit(cache=True, nogil=True)
def _place(st, p, m, orders, side, price, qty, now, snap, fill, fctrl, fwords, events):
    for i in range(orders.shape[0]):
        o = orders[i]
        if o.state == ORDER_EMPTY:
            if p.exec_mode != MODE_PAPER:
                # dry-run/live: an intent for bog-gateway at the end of this pass; the order
                # rests once the venue acknowledges it, and fills come from the venue
                o.state = ORDER_PLACE_WANT
                st.intents_pending = 1
                st.open_orders += 1
                o.order_id = st.next_order_id
                st.next_order_id += 1
                o.side = side
                o.price = price
                o.qty = qty
                o.orig_qty = qty
                o.placed_ns = now
                o.fillable_ns = now
                m.orders_placed_total[0 if side > 0 else 1] += 1
                _event(st, events, EV_ORDER_SUBMIT, now, o.order_id, side, price, qty)
                return True
            o.state = ORDER_OPEN
            st.open_orders += 1
            o.order_id = st.next_order_id
            st.next_order_id += 1
            o.side = side
            o.price = price
            o.qty = qty
            o.orig_qty = qty
            o.placed_ns = now
            o.fillable_ns = now + p.maker_latency_ns
            if p.fill_model_code == FILL_QUEUE:
                o.q_joined = 0
                if p.maker_latency_ns == 0:
                    _queue_join(o, snap)  # at the venue at once: behind this tick's book
            m.orders_placed_total[0 if side > 0 else 1] += 1
            _event(st, events, EV_ORDER_SUBMIT, now, o.order_id, side, price, qty)
            # an order priced through the market executes at once, as a taker
            if (side > 0 and snap.ask_px <= price) or (side < 0 and snap.bid_px >= price):
                _emit_fill(st, p, m, orders, i, qty, now, FILL_LIQ_TAKER, fill, fctrl, fwords,
                           events)
            return True
    return False


@nb.njit(cache=True, nogil=True)
def execute(st, p, m, orders, snap, now, action, quote, fill, fctrl, fwords, events):
    """Risk checks, then cancel/replace the quotes. Returns the number of order changes."""
    if st.breaker == BREAKER_OPEN or st.paused == 1:
        if action == SIG_QUOTE_BOTH:
            m.risk_rejections_total[RISK_PAUSED if st.paused == 1 else RISK_BREAKER] += 1
        return cancel_all(st, m, orders, events, now)
    if st.gateway_down == 1:  # dry-run/live: nobody would send the orders
        if action == SIG_QUOTE_BOTH:
            m.risk_rejections_total[RISK_GATEWAY] += 1
        return cancel_all(st, m, orders, events, now)
    if action == SIG_NO_ACTION:
        return 0
    if action == SIG_CANCEL_ALL:
        return cancel_all(st, m, orders, events, now)
    # quote update: rate limit first (keep the existing quotes if too soon)
    if now - st.last_quote_update_ns < p.min_quote_interval_ns:
        m.risk_rejections_total[RISK_RATE] += 1
        return 0
    size = p.order_size_fixed
    if size < p.min_order_fixed or size > p.max_order_fixed:
        m.risk_rejections_total[RISK_SIZE] += 1
        return cancel_all(st, m, orders, events, now)
    mid = st.mid * FIXED
    want_bid = True
    want_ask = True
    bid_px = quote[0]
    ask_px = quote[1]
    if abs(bid_px - mid) / mid * 1e4 > p.max_price_distance_bps:
        want_bid = False
        m.risk_rejections_total[RISK_DISTANCE] += 1
    if abs(ask_px - mid) / mid * 1e4 > p.max_price_distance_bps:
        want_ask = False
        m.risk_rejections_total[RISK_DISTANCE] += 1
    # position limit (executor's ledger, which includes fills not yet drained): near it,
    # quote only the side that reduces the position
    pos = st.ledger_fixed
    if pos + size > p.max_position_fixed:
        if want_bid:
            m.risk_rejections_total[RISK_POSITION] += 1
        want_bid = False
    if pos - size < -p.max_position_fixed:
        if want_ask:
            m.risk_rejections_total[RISK_POSITION] += 1
        want_ask = False
    changes = cancel_all(st, m, orders, events, now)
    if (1 if want_bid else 0) + (1 if want_ask else 0) > p.max_open_orders:
        m.risk_rejections_total[RISK_MAX_ORDERS] += 1
        return changes
    st.last_quote_update_ns = now
    st.have_quotes = 1
    st.quote_mid = st.mid
    st.quote_ns = now
    if want_bid:
        _place(st, p, m, orders, 1, bid_px, size, now, snap, fill, fctrl, fwords, events)
        changes += 1
    if want_ask:
        _place(st, p, m, orders, -1, ask_px, size, now, snap, fill, fctrl, fwords, events)
        changes += 1
    return changes


# ---- per tick ------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def process_tick(st, p, m, snap, orders, quote, fill, fctrl, fwords, events, now, t0):
    """One snapshot. ``now`` is the engine's time (the wall clock, or the tick's event time
    on an event-time ring); ``t0`` the wall clock when the slot was read (latency only)."""
    m.ticks_total += 1
    m.last_tick_ns = t0
    seq = snap.sequence
    if st.have_seq == 0:
        # a new ring, or a resync after an overrun: the data jumped; the first tick may
        # re-base the price like the first tick after stale data (else every later tick of a
        # market that moved meanwhile would be rejected as a price jump)
        st.after_stale = 1
    else:
        if seq == st.last_seq:
            m.sequence_duplicates_total += 1
            return
        if seq < st.last_seq:
            m.sequence_backwards_total += 1
            _event(st, events, EV_BACKWARDS, now, st.last_seq, seq, 0, 0)
        elif seq > st.last_seq + 1:
            gap = seq - st.last_seq - 1
            m.sequence_gaps_total += 1
            m.sequence_gap_ticks_total += gap
            m.sequence_gap_size_bucket[bucket_index(GAP_SIZE_EDGES, gap)] += 1
            m.sequence_gap_size_sum += gap
            _event(st, events, EV_GAP, now, st.last_seq, seq, gap, 0)
            st.after_stale = 1  # updates are missing: the price may have moved meanwhile
    st.last_seq = seq
    st.have_seq = 1
    # recovering from stale data: record how old the data had become
    if st.feed_state != FEED_FRESH:
        age_us = (now - st.last_tick_ns) // 1000
        m.stale_data_age_us_bucket[bucket_index(STALE_AGE_US_EDGES, age_us)] += 1
        m.stale_data_age_us_sum += age_us
        _event(st, events, EV_FRESH, now, age_us, st.feed_state, 0, 0)
        st.feed_state = FEED_FRESH
        m.feed_state = FEED_FRESH
        st.after_stale = 1
    st.last_tick_ns = now
    m.stale_age_us = 0.0
    if snap.flags & FLAG_BOOK_INVALID:
        # the feed's book lost continuity (venue gap, crossed, disconnect): no quotes until
        # the next valid snapshot; the marker carries no prices and is not validated
        cancel_all(st, m, orders, events, now)
        _record_tick(m, snap, t0, t0, t0)
        return
    breaker_poll(st, p, m, events, now)
    reason = validate(snap, st, p, now)
    st.after_stale = 0
    if reason >= 0:
        m.ticks_rejected_total[reason] += 1
        _event(st, events, EV_REJECT, now, reason, snap.bid_px, snap.ask_px, seq)
        if reason != REJ_AFTER_STALE and reason != REJ_OLD and reason != REJ_FUTURE:
            breaker_failure(st, p, m, events, now)
        if reason == REJ_AFTER_STALE:
            st.last_good_mid = 0.5 * (snap.bid_px + snap.ask_px) / FIXED  # accept new level
        _record_tick(m, snap, t0, t0, t0)
        return
    m.ticks_accepted_total += 1
    breaker_success(st, p, m, events, now)
    # book
    st.bid = snap.bid_px
    st.ask = snap.ask_px
    mid = 0.5 * (snap.bid_px + snap.ask_px) / FIXED
    if st.last_good_mid > 0.0:
        ret_bps = (mid - st.last_good_mid) / st.last_good_mid * 1e4
        st.vol_ewma_bps = p.vol_alpha * abs(ret_bps) + (1.0 - p.vol_alpha) * st.vol_ewma_bps
        # variance per second in market (exchange) time, so bursts and replays at any speed
        # estimate the same volatility; 1 ms floor against identical timestamps
        ts = snap.exchange_ts_ns if snap.exchange_ts_ns > 0 else now
        dt_s = max((ts - st.last_vol_ns) * 1e-9, 1e-3)
        st.var_per_s_bps2 = p.vol_alpha * ret_bps * ret_bps / dt_s + (1.0 - p.vol_alpha) * st.var_per_s_bps2
    st.last_vol_ns = snap.exchange_ts_ns if snap.exchange_ts_ns > 0 else now
    st.last_good_mid = mid
    st.mid = mid
    m.mid_price_usd = mid
    m.spread_bps = (snap.ask_px - snap.bid_px) / FIXED / mid * 1e4
    m.volatility_bps = st.vol_ewma_bps
    # fills first: resting orders meet the new market (paper; dry-run/live: from the venue)
    if p.exec_mode == MODE_PAPER:
        match_fills(st, p, m, orders, snap, now, fill, fctrl, fwords, events)
    if st.ledger_fixed > p.max_position_fixed or st.ledger_fixed < -p.max_position_fixed:
        trip(st, m, events, now, TRIP_POSITION_BREACH)
    t1 = clock_ns(CLOCK_REALTIME)
    if p.slow_tick_every > 0 and m.ticks_total % p.slow_tick_every == 0:
        while clock_ns(CLOCK_REALTIME) - t1 < p.slow_tick_ns:  # fault injection: slow strategy
            cpu_relax()
    # wall clock: the strategy and execution each read it; event time: the tick's time
    action = strategy_quote(st, p, snap, now if st.event_time != 0 else t1, quote)
    t2 = clock_ns(CLOCK_REALTIME)
    ts2 = now if st.event_time != 0 else t2
    changes = execute(st, p, m, orders, snap, ts2, action, quote, fill, fctrl, fwords, events)
    m.signals_total[action] += 1
    m.last_signal_ns = t2
    if changes > 0:  # logged only when orders changed: no line per unchanged tick
        _event(st, events, EV_SIGNAL, ts2, action, quote[0], quote[1], seq)
    m.open_orders = st.open_orders
    _record_tick(m, snap, t0, t1, t2)


@nb.njit(cache=True, nogil=True)
def _record_tick(m, snap, t0, t1, t2):
    t3 = clock_ns(CLOCK_REALTIME)
    total = t3 - t0
    m.tick_processing_ns_bucket[bucket_index(LATENCY_NS_EDGES, total)] += 1
    m.tick_processing_ns_sum += total
    if total > m.tick_processing_max_ns:
        m.tick_processing_max_ns = total
    if t2 > t0:
        m.strategy_calc_ns_bucket[bucket_index(LATENCY_NS_EDGES, t2 - t1)] += 1
        m.strategy_calc_ns_sum += t2 - t1
        m.execution_ns_bucket[bucket_index(LATENCY_NS_EDGES, t3 - t2)] += 1
        m.execution_ns_sum += t3 - t2
    if snap.local_publish_ns > 0:
        f2d = t3 - snap.local_publish_ns
        if f2d >= 0:
            m.feed_to_decision_ns_bucket[bucket_index(LATENCY_NS_EDGES, f2d)] += 1
            m.feed_to_decision_ns_sum += f2d
            if f2d > m.feed_to_decision_max_ns:
                m.feed_to_decision_max_ns = f2d


@nb.njit(cache=True, nogil=True)
def _record_read(m, snap, th, t0):
    """Stage breakdown of the read: feed publish stamp -> head seen (``th``, the read of this
    position starts; includes any backlog wait), and the slot copy (``th`` -> ``t0``)."""
    if snap.local_publish_ns > 0:
        ho = th - snap.local_publish_ns
        if ho >= 0:
            m.stage_handoff_ns_bucket[bucket_index(LATENCY_NS_EDGES, ho)] += 1
            m.stage_handoff_ns_sum += ho
            if ho > m.stage_handoff_max_ns:
                m.stage_handoff_max_ns = ho
    cp = t0 - th
    m.stage_copy_ns_bucket[bucket_index(LATENCY_NS_EDGES, cp)] += 1
    m.stage_copy_ns_sum += cp
    if cp > m.stage_copy_max_ns:
        m.stage_copy_max_ns = cp


@nb.njit(cache=True, nogil=True)
def apply_mailbox(st, m, orders, events, mb, now):
    """Requests from the Python thread (bogctl control, risk trips, tracked position, live
    position corrections)."""
    st.position_fixed = load_acquire(mb, MB_POSITION)
    paused = load_acquire(mb, MB_PAUSED)
    if paused != st.paused:
        st.paused = paused
        m.paused = paused
        if paused == 1:
            _want_cancel_all(st, WHY_PAUSE)
            cancel_all(st, m, orders, events, now)
    if st.exec_mode != MODE_PAPER:
        st.gateway_down = load_acquire(mb, MB_GATEWAY_DOWN)
        ca = load_acquire(mb, MB_CANCEL_ALL_SEQ)
        if ca != st.cancel_all_seen:
            st.cancel_all_seen = ca
            _want_cancel_all(st, load_acquire(mb, MB_CANCEL_ALL_WHY))
            cancel_all(st, m, orders, events, now)
        cs = load_acquire(mb, MB_CORRECT_SEQ)
        if cs != st.correct_seen:
            st.correct_seen = cs
            total = load_acquire(mb, MB_CORRECT_FIXED)
            delta = total - st.correct_fixed
            st.correct_fixed = total
            if delta != 0:
                # the venue's position, corrected for by Python (journaled there): the
                # strategy's skew and the position limit (checked at every tick) see it
                st.ledger_fixed += delta
                if st.ledger_fixed == 0:
                    st.pnl_entry = 0.0  # PositionTracker.correct's rule
    reset = load_acquire(mb, MB_RESET_SEQ)
    if reset != st.reset_seen:
        st.reset_seen = reset
        st.latched = 0
        st.loss_tripped = 0  # re-armed: the next fill beyond the limit trips again
        st.failures = 0
        st.window_start_ns = now
        if st.breaker != BREAKER_CLOSED:
            _breaker_set(st, m, events, BREAKER_CLOSED, now, CAUSE_MANUAL)
        else:
            _event(st, events, EV_BREAKER, now, BREAKER_CLOSED, BREAKER_CLOSED, CAUSE_MANUAL, 0)
        m.circuit_breaker_latched = 0
    tr = load_acquire(mb, MB_TRIP_SEQ)
    if tr != st.trip_seen:
        st.trip_seen = tr
        trip(st, m, events, now, load_acquire(mb, MB_TRIP_REASON))


@nb.njit(cache=True, nogil=True)
def idle(st, p, m, orders, events, now):
    """No new snapshot: track staleness (Fresh -> Stale -> Offline) and the breaker."""
    if st.last_tick_ns == 0:
        st.last_tick_ns = now  # age counts from engine start until the first snapshot
    age = now - st.last_tick_ns
    m.stale_age_us = age / 1000.0
    if st.feed_state == FEED_FRESH and age > p.stale_after_ns:
        st.feed_state = FEED_STALE
        m.feed_state = FEED_STALE
        m.stale_data_total += 1
        _event(st, events, EV_STALE, now, age // 1000, 0, 0, 0)
        cancel_all(st, m, orders, events, now)  # never leave quotes on stale data
    elif st.feed_state == FEED_STALE and age > p.offline_after_ns:
        st.feed_state = FEED_OFFLINE
        m.feed_state = FEED_OFFLINE
        m.offline_total += 1
        _event(st, events, EV_OFFLINE, now, age // 1000, 0, 0, 0)
    breaker_poll(st, p, m, events, now)
    if st.paused == 1 or st.breaker == BREAKER_OPEN:
        cancel_all(st, m, orders, events, now)


@nb.njit(cache=True, nogil=True)
def event_gap(st, p, m, orders, events, now):
    """Event time, before the tick at ``now``: what the idle loop does between ticks on the
    wall clock (Fresh -> Stale -> Offline, quotes cancelled, breaker cooldown) happens here,
    each at the event time it fell due, judged between the ticks' times."""
    if st.last_tick_ns == 0:
        return  # no tick yet: the event clock starts with the first one
    t = st.last_tick_ns + p.stale_after_ns + 1
    if st.feed_state == FEED_FRESH and t <= now:
        idle(st, p, m, orders, events, t)
    t = st.last_tick_ns + p.offline_after_ns + 1
    if st.feed_state == FEED_STALE and t <= now:
        idle(st, p, m, orders, events, t)


@nb.njit(cache=True, nogil=True)
def engine_run(st_arr, p_arr, m_arr, tctrl, twords, snap_arr, snap_words, orders, quote,
               fill, fctrl, fwords, events, mb, rpos, stop_ns, ictrl, iwords, ib, vctrl, vwords,
               vb, tids):
    """Process ticks until ``stop_ns`` or until the mailbox says stop.

    ``rpos`` is a 1-word int64 view of the engine metrics' ``ring_read_pos``: after copying a
    slot out of the ring the new read position is published there with a release store, so a
    replay feed waiting on it never overwrites a slot not read yet (docs/replay.md).

    ``ictrl/iwords`` (order-intent ring, ``ib`` its staging record) and ``vctrl/vwords``
    (venue-event ring, ``vb`` one record, ``tids`` the applied trade ids) are the execution
    gateway's rings (execution.mode dry-run / live; empty stand-ins on paper): venue events
    are applied before each tick and each idle poll, and each pass's orders and cancels
    become intents at its end (``flush_intents``).

    On an event-time ring (``st.event_time``, a replay) "now" is the tick's ``local_recv_ns``
    (the recorded receive time; kept monotonic in ``st.event_ns``), and between ticks time
    stands still; the wall clock only stamps the latency histograms (docs/replay.md).

    Runs in the engine's hot thread (GIL released) while the Python thread drains fills and
    events concurrently. Returns the number of ticks processed.
    """
    st = st_arr[0]
    p = p_arr[0]
    m = m_arr[0]
    snap = snap_arr[0]
    cap = tctrl[RING_CAPACITY]
    st.exec_mode = p.exec_mode
    n = 0
    while True:
        head = load_acquire(tctrl, RING_HEAD)
        if st.next_pos < head:
            if head - st.next_pos > cap:
                lost = head - 1 - st.next_pos
                m.ring_overruns_total += 1
                m.ring_lost_ticks_total += lost
                _event(st, events, EV_OVERRUN, clock_ns(CLOCK_REALTIME), lost, st.next_pos, head, 0)
                st.next_pos = head - 1
                st.have_seq = 0  # counted as lost ticks here, not again as a sequence gap
                store_release(rpos, 0, st.next_pos)
            th = clock_ns(CLOCK_REALTIME)  # head seen: the read of next_pos starts
            status = ticks_read(tctrl, twords, st.next_pos, snap_words)
            if status == READ_TORN:
                m.torn_reads_total += 1
                cpu_relax()
                continue
            if status != READ_OK:
                # lapped while copying: position next_pos + cap is (being) published, so the
                # head passes next_pos + cap and the overrun branch counts and resyncs
                continue
            if st.next_pos < st.first_live_pos:
                # published before the engine attached (it starts at the newest snapshot):
                # its age is the engine's start-up, not a hand-off; processed, not timed
                snap.local_publish_ns = 0
            st.next_pos += 1
            store_release(rpos, 0, st.next_pos)  # the slot is copied: the feed may reuse it
            t0 = clock_ns(CLOCK_REALTIME)
            _record_read(m, snap, th, t0)
            now = t0
            if st.event_time != 0:
                if snap.local_recv_ns > st.event_ns:
                    st.event_ns = snap.local_recv_ns
                now = st.event_ns
                if m.event_first_ns == 0:
                    m.event_first_ns = now
                m.event_now_ns = now
                event_gap(st, p, m, orders, events, now)
            apply_mailbox(st, m, orders, events, mb, now)
            if load_acquire(vctrl, RING_HEAD) != vctrl[RING_TAIL]:
                drain_venue_events(st, p, m, orders, vctrl, vwords, vb, fill, fctrl, fwords,
                                   tids, events, now)
            process_tick(st, p, m, snap, orders, quote, fill, fctrl, fwords, events, now, t0)
            if st.event_time != 0 and (st.paused == 1 or st.breaker == BREAKER_OPEN):
                # what the idle loop does right after a tick on the wall clock, done with the
                # tick: whether an idle pass comes between two ticks depends on the speed
                cancel_all(st, m, orders, events, now)
            if st.intents_pending != 0:
                # intent times are wall clock (the gateway measures intent -> sent with them)
                flush_intents(st, m, orders, events, ictrl, iwords, ib, t0)
                ti = clock_ns(CLOCK_REALTIME) - t0  # tick read -> its intents in the ring
                m.tick_to_intent_ns_bucket[bucket_index(LATENCY_NS_EDGES, ti)] += 1
                m.tick_to_intent_ns_sum += ti
            st.last_tick_wall_ns = t0
            n += 1
            if t0 >= stop_ns or load_acquire(mb, MB_STOP) != 0:
                m.log_events_dropped_total = events[EVC_DROPPED]
                return n
        else:
            # caught up (next_pos == head): every published position must be accounted for
            m.ring_unaccounted_ticks = (st.published_before + head - np.int64(m.ticks_total)
                                        - np.int64(m.ring_lost_ticks_total)
                                        - np.int64(m.ticks_skipped_at_attach_total))
            now = clock_ns(CLOCK_REALTIME)
            if st.event_time == 0:
                apply_mailbox(st, m, orders, events, mb, now)
                if load_acquire(vctrl, RING_HEAD) != vctrl[RING_TAIL]:
                    drain_venue_events(st, p, m, orders, vctrl, vwords, vb, fill, fctrl, fwords,
                                       tids, events, now)
                idle(st, p, m, orders, events, now)
                last_tick = st.last_tick_ns
            else:
                # event time stands still between ticks: no staleness (event_gap judges it
                # at the next tick), only the controls (pause, reset, trips) apply
                apply_mailbox(st, m, orders, events, mb, st.event_ns)
                if load_acquire(vctrl, RING_HEAD) != vctrl[RING_TAIL]:
                    drain_venue_events(st, p, m, orders, vctrl, vwords, vb, fill, fctrl, fwords,
                                       tids, events, st.event_ns)
                if st.paused == 1 or st.breaker == BREAKER_OPEN:
                    cancel_all(st, m, orders, events, st.event_ns)
                last_tick = st.last_tick_wall_ns
            if st.intents_pending != 0:
                flush_intents(st, m, orders, events, ictrl, iwords, ib, now)
            if now >= stop_ns or load_acquire(mb, MB_STOP) != 0:
                m.log_events_dropped_total = events[EVC_DROPPED]
                return n
            if p.idle_sleep_ns > 0 and now - last_tick > IDLE_SPIN_NS:
                sleep_ns(p.idle_sleep_ns)  # idle back-off (config), never between busy ticks
            else:
                cpu_relax()
