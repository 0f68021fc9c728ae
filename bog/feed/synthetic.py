"""Synthetic market: random-walk mid with volatility regimes, a 10-level book, trades.

Everything per update runs in one numba kernel (``synth_run``) that writes snapshots straight
into the ticks ring. Deterministic for a given seed. Optional fault injection (sequence gaps,
crossed/zero books, latency spikes); stalls are done by the feed process's housekeeping.

Prices and sizes are fixed point x1e9 (``FIXED``); times are ns (CLOCK_REALTIME).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from bog.config import FeedConfig
from bog.feed.publish import publish_snapshot
from bog.shm.atomics import CLOCK_REALTIME, clock_ns
from bog.shm.codes import FAULT
from bog.shm.layouts import (
    DEPTH,
    FIXED,
    FLAG_FULL_SNAPSHOT,
    TICK_SLOT,
)

SYNTH_PARAMS = np.dtype(
    [
        ("seed", "<i8"),
        ("interval_ns", "<i8"),  # 0 = as fast as possible
        ("market_id", "<i8"),
        ("tick_fixed", "<i8"),
        ("half_spread_ticks", "<i8"),
        ("level_size_fixed", "<i8"),
        ("full_every", "<i8"),
        ("gap_size", "<i8"),
        ("start_mid", "<f8"),
        ("sigma_per_update", "<f8"),  # log-return stdev per update, calm regime
        ("volatile_mult", "<f8"),
        ("switch_prob", "<f8"),  # per update
        ("trade_prob", "<f8"),
        ("sweep_depth_bps", "<f8"),
        ("latency_ns", "<f8"),
        ("p_gap", "<f8"),
        ("p_bad_book", "<f8"),
        ("p_latency_spike", "<f8"),
        ("latency_spike_ns", "<f8"),
    ]
)

SYNTH_STATE = np.dtype(
    [
        ("seeded", "<i8"),
        ("sequence", "<i8"),
        ("updates", "<i8"),
        ("volatile", "<i8"),
        ("next_due_ns", "<i8"),
        ("bad_book_toggle", "<i8"),
        ("mid", "<f8"),
    ]
)

FAULT_GAP, FAULT_STALL, FAULT_BAD_BOOK, FAULT_LATENCY = FAULT.GAP, FAULT.STALL, FAULT.BAD_BOOK, FAULT.LATENCY
SPIN_LIMIT_NS = 200_000  # wait longer than this in Python (sleep), shorter by spinning


def make_params(cfg: FeedConfig) -> np.ndarray:
    p = np.zeros(1, SYNTH_PARAMS)
    r = p[0]
    rate = cfg.rate_per_s
    r["seed"] = cfg.seed
    r["interval_ns"] = 0 if rate == 0 else int(round(1e9 / rate))
    r["market_id"] = cfg.market_id
    r["tick_fixed"] = max(1, int(round(cfg.tick_size_usd * FIXED)))
    r["half_spread_ticks"] = cfg.half_spread_ticks
    r["level_size_fixed"] = int(cfg.level_size_btc * FIXED)
    r["full_every"] = cfg.full_snapshot_every
    r["gap_size"] = cfg.fault_gap_size
    r["start_mid"] = cfg.start_price_usd
    nominal_rate = rate if rate > 0 else 200.0  # at max speed, keep the per-update dynamics
    r["sigma_per_update"] = cfg.volatility_bps_per_s * 1e-4 / math.sqrt(nominal_rate)
    r["volatile_mult"] = cfg.volatile_multiplier
    r["switch_prob"] = min(1.0, cfg.regime_switch_per_s / nominal_rate)
    r["trade_prob"] = cfg.trade_probability
    r["sweep_depth_bps"] = cfg.sweep_depth_bps
    r["latency_ns"] = cfg.latency_us * 1e3
    r["p_gap"] = cfg.fault_gap_probability
    r["p_bad_book"] = cfg.fault_bad_book_probability
    r["p_latency_spike"] = cfg.fault_latency_spike_probability
    r["latency_spike_ns"] = cfg.fault_latency_spike_us * 1e3
    return p


def make_state(cfg: FeedConfig) -> np.ndarray:
    s = np.zeros(1, SYNTH_STATE)
    s[0]["mid"] = cfg.start_price_usd
    return s


@nb.njit(cache=True, nogil=True)
def _fill_snapshot(p, s, slot, now_ns):
    """Advance the market one update and write it into ``slot`` (a TICK_SLOT record)."""
    # regime and mid
    if np.random.random() < p.switch_prob:
        s.volatile = 1 - s.volatile
    sigma = p.sigma_per_update * (p.volatile_mult if s.volatile else 1.0)
    s.mid = s.mid * math.exp(sigma * np.random.standard_normal())
    tick = p.tick_fixed
    mid_fixed = int(s.mid * FIXED)
    hs = p.half_spread_ticks
    if s.volatile:
        hs = hs * 2
    hs = max(1, int(hs * (0.6 + 0.8 * np.random.random())))
    bid = (mid_fixed // tick - hs) * tick
    ask = bid + 2 * hs * tick
    lvl = p.level_size_fixed
    slot.bid_px = bid
    slot.ask_px = ask
    slot.bid_sz = int(lvl * (0.2 + 1.6 * np.random.random()))
    slot.ask_sz = int(lvl * (0.2 + 1.6 * np.random.random()))
    s.updates += 1
    full = (s.updates % p.full_every) == 1 or p.full_every == 1
    if full:
        step = max(1, hs // 4) * tick
        for k in range(DEPTH):
            slot.bid_px_l[k] = bid - k * step
            slot.ask_px_l[k] = ask + k * step
            slot.bid_sz_l[k] = int(lvl * (0.5 + 1.5 * np.random.random()) * (1 + k * 0.3))
            slot.ask_sz_l[k] = int(lvl * (0.5 + 1.5 * np.random.random()) * (1 + k * 0.3))
        slot.bid_sz_l[0] = slot.bid_sz
        slot.ask_sz_l[0] = slot.ask_sz
        slot.flags = FLAG_FULL_SNAPSHOT
    else:
        slot.flags = 0
    # trades: a market order sweeping some depth beyond the touch
    if np.random.random() < p.trade_prob:
        depth = np.random.exponential(p.sweep_depth_bps) * 1e-4 * s.mid * FIXED
        extra = int(depth) // tick * tick
        if np.random.random() < 0.5:
            slot.trade_side = 1
            slot.trade_px = ask + extra
        else:
            slot.trade_side = -1
            slot.trade_px = bid - extra
        slot.trade_sz = max(tick, int(lvl * np.random.exponential(0.3)))
    else:
        slot.trade_side = 0
        slot.trade_px = 0
        slot.trade_sz = 0
    latency = p.latency_ns * (0.5 + np.random.exponential(0.5))
    slot.local_recv_ns = now_ns
    slot.exchange_ts_ns = now_ns - int(latency)
    slot.market_id = p.market_id
    slot.venue = p.market_id // 1_000_000


@nb.njit(cache=True, nogil=True)
def _inject_faults(p, s, slot, m):
    if p.p_gap > 0.0 and np.random.random() < p.p_gap:
        s.sequence += p.gap_size
        m.faults_injected_total[FAULT_GAP] += 1
    if p.p_bad_book > 0.0 and np.random.random() < p.p_bad_book:
        s.bad_book_toggle += 1
        if s.bad_book_toggle & 1:
            tmp = slot.bid_px  # crossed: bid above ask
            slot.bid_px = slot.ask_px
            slot.ask_px = tmp
        else:
            slot.bid_px = 0  # zero price
        m.faults_injected_total[FAULT_BAD_BOOK] += 1
    if p.p_latency_spike > 0.0 and np.random.random() < p.p_latency_spike:
        slot.exchange_ts_ns = slot.local_recv_ns - int(p.latency_spike_ns)
        m.faults_injected_total[FAULT_LATENCY] += 1


@nb.njit(cache=True, nogil=True)
def synth_run(params, state, staging, ctrl, words, metrics, stop_ns, max_updates):
    """Publish due updates until ``stop_ns`` or ``max_updates``; returns ns to wait (0 if done).

    Paced by ``interval_ns`` (0 = flat out). Waits shorter than SPIN_LIMIT_NS are spun here;
    longer ones are returned so the caller can sleep instead of burning the core.
    """
    p = params[0]
    s = state[0]
    m = metrics[0]
    slot = staging[0]
    sw = staging.view(np.int64)
    if s.seeded == 0:
        np.random.seed(p.seed)
        s.seeded = 1
    published = 0
    if s.next_due_ns == 0:
        s.next_due_ns = clock_ns(CLOCK_REALTIME)
    while published < max_updates:
        now = clock_ns(CLOCK_REALTIME)
        if now >= stop_ns:
            return 0
        if p.interval_ns > 0:
            wait = s.next_due_ns - now
            if wait > 0:
                if wait > SPIN_LIMIT_NS:
                    return wait
                continue
            s.next_due_ns += p.interval_ns
            if s.next_due_ns < now - 1_000_000_000:  # fell > 1 s behind (e.g. stalled): rebase
                s.next_due_ns = now
        _fill_snapshot(p, s, slot, now)
        s.sequence += 1
        _inject_faults(p, s, slot, m)
        slot.sequence = s.sequence
        publish_snapshot(ctrl, words, sw, slot, m)
        published += 1
    return 0


def new_staging() -> np.ndarray:
    return np.zeros(1, TICK_SLOT)
