"""Alerts the monitor evaluates itself, once a second, from shared memory.

These are the guide's "Alert Thresholds", so someone without Prometheus still gets them
(``GET /alerts``, ``/health``, the log). The same alerts, in PromQL, are shipped as
``bog/assets/alerts.yml``; a test keeps names, severities and ``for`` durations identical.

An alert is *pending* while its condition holds for less than its ``for`` duration and *firing*
after; it resolves as soon as the condition no longer holds (or its process is not readable:
``ProcessDown`` covers that). Each transition to firing and each resolution is logged once::

    ALERT FIRING CircuitBreakerTripped severity=critical value=2 threshold=2: Trading halted ...
    ALERT RESOLVED CircuitBreakerTripped severity=critical after 31.0s

and firings are counted (``bog_alert_firings_total``). Windows ("in the last minute") are
computed from the per-second history (``history.Window``), the way ``increase()`` would.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bog.monitor.history import History, Window
from bog.monitor.reader import Reading
from bog.shm.codes import BREAKER, EXEC_MODE, FEED_STATE
from bog.shm.layouts import FEED_LATENCY_US_EDGES, LATENCY_NS_EDGES, STALE_AGE_US_EDGES

log = logging.getLogger("bog.monitor")

CRITICAL = "critical"
WARNING = "warning"

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "==": operator.eq}

# Windows, seconds (the PromQL in alerts.yml uses the same)
LATENCY_WINDOW_S = 60.0  # rate(..._bucket[1m]) in the recording rules
MINUTE_S = 60.0
CORE_WINDOW_S = 300.0  # rate(...[5m]) of the engine hot thread's run-queue wait
HOUR_S = 3600.0


class Context:
    """What a rule's value function sees: the window at hand plus 'time since last change'."""

    def __init__(self, window: Window, changes: "ChangeTracker"):
        self.w = window
        self.changes = changes

    def quiet_s(self, process: str, field: str) -> float | None:
        return self.changes.quiet_s(process, field, self.w.now)


@dataclass(frozen=True)
class AlertRule:
    """One alert. ``value(ctx)`` -> number, None (no data: not active), or {label: number}."""

    name: str
    severity: str
    for_s: float
    op: str
    threshold: float | Callable[[Context], float | None]
    value: Callable[[Context], object]
    summary: str
    label: str | None = None  # label name of a multi-instance rule (its dict keys)

    def threshold_at(self, ctx: Context) -> float | None:
        t = self.threshold
        return t(ctx) if callable(t) else float(t)


def _sum(x) -> float | None:
    return None if x is None else float(x.sum())


def _abs(x):
    return None if x is None else abs(x)


def _limit(process: str, field: str, factor: float):
    """Threshold ``factor`` x a limit the process publishes (e.g. 0.9 x max position)."""
    def f(ctx: Context) -> float | None:
        v = ctx.w.gauge(process, field)
        return None if v is None or v <= 0 else factor * v
    f.field, f.factor = field, factor  # compared with the PromQL rules by a test
    return f


def _orders_without_fills(ctx: Context) -> float | None:
    w = ctx.w
    if not w.covers("engine", 30.0):
        return None
    fills = _sum(w.delta("engine", "fills_received_total", 30.0))
    orders = _sum(w.delta("engine", "orders_placed_total", 30.0))
    return None if fills is None or fills > 0 else orders


def _fill_queue_ratio(ctx: Context) -> float | None:
    r = ctx.w.now
    if r.fill_depth is None or not r.fill_capacity:
        return None
    return r.fill_depth / r.fill_capacity


def _stale(ctx: Context) -> float | None:
    """Age of stale data, us: the current age while the feed is stale or offline, else the
    upper bucket bound of the oldest stale incident that ended in the last minute (0: none)."""
    w = ctx.w
    state = w.gauge("engine", "feed_state")
    if state is None:
        return None
    if state >= FEED_STATE.STALE:
        return w.gauge("engine", "stale_age_us")
    b = w.hist_delta("engine", "stale_data_age_us", MINUTE_S)
    nz = np.nonzero(b)[0]
    if len(nz) == 0:
        return 0.0
    i = int(nz[-1])
    return float(STALE_AGE_US_EDGES[min(i, len(STALE_AGE_US_EDGES) - 1)])


def _untrusted(ctx: Context) -> float | None:
    """Segments refused as untrusted by the engine, the feed and the gateway. (The monitor's
    own refusals are logged CRITICAL where they happen; the Prometheus rule counts them too.)"""
    seen = [v for v in (ctx.w.gauge(p, "shm_untrusted_total")
                        for p in ("engine", "feed", "gateway")) if v is not None]
    return sum(seen) if seen else None


def _engine_core_wait(ctx: Context) -> float | None:
    """Seconds per second the engine's hot thread waited for its core over 5 minutes
    (``rate(bog_engine_hot_thread_runqueue_wait_seconds_total[5m])``)."""
    r = ctx.w.rate("engine", "thread_runqueue_wait_ns_total", CORE_WINDOW_S)
    return None if r is None else r / 1e9


def _process_down(ctx: Context) -> dict[str, float]:
    """Feed and engine (``bog_up{process=~"feed|engine"}``); the gateway has GatewayDown."""
    return {p: 0.0 if info.up else 1.0 for p, info in ctx.w.now.procs.items()
            if p in ("feed", "engine")}


def _gateway_up(ctx: Context) -> float | None:
    """1/0 while a gateway is expected (dry-run/live; ``bog_up{process="gateway"}``), None on
    paper: no gateway expected, nothing to say."""
    info = ctx.w.now.procs.get("gateway")
    return None if info is None else (1.0 if info.up else 0.0)


def _dead_man_armed(ctx: Context) -> float | None:
    """The dead-man switch, in live mode only (dry-run sends nothing: nothing to arm)."""
    if ctx.w.gauge("gateway", "mode") != EXEC_MODE.LIVE:
        return None
    return ctx.w.gauge("gateway", "dead_man_armed")


RULES: tuple[AlertRule, ...] = (
    # -- the guide's alerting_rules.yml --------------------------------------------------------
    AlertRule("CircuitBreakerTripped", CRITICAL, 0, "==", BREAKER.OPEN,
              lambda c: c.w.gauge("engine", "circuit_breaker_state"),
              "Trading halted - circuit breaker OPEN"),
    AlertRule("FillQueueOverflow", CRITICAL, 0, ">", 0,
              lambda c: c.w.gauge("engine", "fills_dropped_total"),
              "Fills dropped - position tracking corrupted"),
    AlertRule("ExtremeLatency", CRITICAL, 30, ">", 10_000,
              lambda c: c.w.quantile(0.99, "engine", "tick_processing_ns", LATENCY_NS_EDGES,
                                     LATENCY_WINDOW_S),
              "P99 latency > 10us"),
    AlertRule("PositionLimitNear", WARNING, 10, ">", _limit("engine", "max_position_btc", 0.9),
              lambda c: _abs(c.w.gauge("engine", "position_btc")),
              "Position near limit (> 90% of max position)"),
    AlertRule("DailyLossNear", WARNING, 30, "<", _limit("engine", "max_daily_loss_usd", -0.8),
              lambda c: c.w.gauge("engine", "daily_pnl_usd"),
              "Daily loss near limit (> 80% of max daily loss)"),
    AlertRule("SequenceGapStorm", WARNING, 60, ">", 5,
              lambda c: c.w.delta("engine", "sequence_gaps_total", MINUTE_S),
              "Frequent sequence gaps (> 5/min)"),
    AlertRule("NoFills", WARNING, 0, ">", 60,
              lambda c: c.quiet_s("engine", "fills_received_total"),
              "No fills for 60s"),
    # -- the guide's other thresholds ------------------------------------------------------------
    AlertRule("TickLatencyP50High", WARNING, 30, ">", 1_000,
              lambda c: c.w.quantile(0.5, "engine", "tick_processing_ns", LATENCY_NS_EDGES,
                                     LATENCY_WINDOW_S),
              "P50 tick latency > 1us"),
    AlertRule("SlowTick", CRITICAL, 0, ">", 0,
              lambda c: c.w.count_above("engine", "tick_processing_ns", LATENCY_NS_EDGES,
                                        100_000, LATENCY_WINDOW_S),
              "A tick took > 100us in the last minute"),
    AlertRule("NoSignals", WARNING, 0, ">", 10,
              lambda c: c.quiet_s("engine", "signals_total"),
              "No signals for 10s"),
    AlertRule("OrdersWithoutFills", WARNING, 0, ">", 0, _orders_without_fills,
              "Orders placed but no fills for 30s"),
    AlertRule("DailyLossLimit", CRITICAL, 0, "<", _limit("engine", "max_daily_loss_usd", -1.0),
              lambda c: c.w.gauge("engine", "daily_pnl_usd"),
              "Daily loss limit reached (should be circuit broken)"),
    AlertRule("FeedLatencyHigh", WARNING, 30, ">", 1_000,
              lambda c: c.w.quantile(0.99, "feed", "feed_latency_us", FEED_LATENCY_US_EDGES,
                                     LATENCY_WINDOW_S),
              "Feed latency P99 > 1ms"),
    AlertRule("StaleData", WARNING, 0, ">", 100, _stale,
              "Stale market data (age > 100us): feed stale or offline now, or in the last minute"),
    AlertRule("FillQueueHigh", WARNING, 5, ">", 0.8, _fill_queue_ratio,
              "Fill queue > 80% full"),
    AlertRule("PositionCorrectionsHigh", WARNING, 0, ">", 5,
              lambda c: c.w.delta("engine", "position_corrections_total", HOUR_S),
              "More than 5 position corrections in the last hour"),
    AlertRule("ProcessDown", CRITICAL, 10, ">", 0, _process_down,
              "A bog process is not running", label="process"),
    # -- bog's own safety nets -----------------------------------------------------------------
    AlertRule("JournalWriteFailing", CRITICAL, 0, "==", 1,
              lambda c: c.w.gauge("engine", "journal_write_failing"),
              "Journal writes failing - trading halted, fills held in the queue"),
    AlertRule("UntrustedSharedMemory", CRITICAL, 0, ">", 0, _untrusted,
              "Shared memory of another user or mode refused (possible spoofing)"),
    AlertRule("TickAccountingBroken", WARNING, 30, ">", 0,
              lambda c: _abs(c.w.gauge("engine", "ring_unaccounted_ticks")),
              "Ticks neither processed, lost nor skipped (published != accounted)"),
    AlertRule("EngineCoreContended", WARNING, 600, ">", 0.001, _engine_core_wait,
              "Another task runs on the engine core (hot thread waits > 1ms/s for its core)"),
    # -- execution gateway (dry-run / live; no gateway series on paper: never active) ---------
    AlertRule("GatewayDown", CRITICAL, 10, "==", 0, _gateway_up,
              "bog-gateway is not running (dry-run/live): no quoting, orders at the venue "
              "rely on the dead-man switch"),
    AlertRule("VenueOrderConnectionDown", CRITICAL, 10, "==", 0,
              lambda c: c.w.gauge("gateway", "connected"),
              "The gateway's venue order session is down: orders cannot be placed or cancelled"),
    AlertRule("VenueRejectsRising", WARNING, 60, ">", 5,
              lambda c: c.w.delta("gateway", "rejects_total", MINUTE_S),
              "Venue rejects rising (> 5/min)"),
    AlertRule("PositionDriftHigh", CRITICAL, 15, ">=", 0.001,
              lambda c: _abs(c.w.gauge("gateway", "position_drift_btc")),
              "Position drift against the venue >= 0.001 BTC"),
    AlertRule("DeadManNotArmed", CRITICAL, 30, "==", 0, _dead_man_armed,
              "Dead-man switch not armed at the venue (live): orders would outlive bog"),
)
RULES_BY_NAME = {r.name: r for r in RULES}


class ChangeTracker:
    """When did a counter last change? For 'no fills for 60 s' independent of sampling.

    Initialised from the block's own ``last_fill_ns``/``last_signal_ns`` when the monitor first
    sees a process (it may have started long before the monitor), else the process start.
    """

    INITIAL = {"fills_received_total": "last_fill_ns", "signals_total": "last_signal_ns"}

    def __init__(self):
        self._state: dict[tuple[str, str], tuple[int, float, int]] = {}

    def update(self, r: Reading) -> None:
        for (process, fld) in list(self._state) + [
            ("engine", f) for f in self.INITIAL if ("engine", f) not in self._state
        ]:
            rec = r.rec(process)
            if rec is None:
                continue
            start = int(rec["start_ns"])
            value = float(rec[fld].sum()) if rec[fld].ndim else float(rec[fld])
            old = self._state.get((process, fld))
            if old is None or old[0] != start:
                init = int(rec[self.INITIAL[fld]]) if fld in self.INITIAL else 0
                changed = max(init, start) if (init or start) else r.wall_ns
                self._state[(process, fld)] = (start, value, changed)
            elif value != old[1]:
                self._state[(process, fld)] = (start, value, r.wall_ns)

    def quiet_s(self, process: str, fld: str, now: Reading) -> float | None:
        rec = now.rec(process)
        st = self._state.get((process, fld))
        if rec is None or st is None or st[0] != int(rec["start_ns"]):
            return None
        return max((now.wall_ns - st[2]) / 1e9, 0.0)


@dataclass
class AlertState:
    rule: AlertRule
    label_value: str | None
    value: float | None = None
    threshold: float | None = None
    pending_since_mono: float | None = None
    firing: bool = False
    since_ns: int = 0  # wall time it started firing (or pending)

    @property
    def key(self) -> str:
        if self.rule.label is None:
            return self.rule.name
        return f"{self.rule.name}{{{self.rule.label}={self.label_value}}}"

    @property
    def labels(self) -> dict[str, str]:
        return {} if self.rule.label is None else {self.rule.label: self.label_value}

    def to_json(self) -> dict:
        return {
            "name": self.rule.name,
            "key": self.key,
            "severity": self.rule.severity,
            "state": "firing" if self.firing else "pending",
            "since": _iso(self.since_ns),
            "value": _num(self.value),
            "threshold": _num(self.threshold),
            "for_s": self.rule.for_s,
            "summary": self.rule.summary,
            "labels": self.labels,
        }


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns // 1_000_000 % 1000:03d}Z"


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _fmt(v) -> str:
    if v is None:
        return "none"
    return f"{v:.6g}"


@dataclass
class AlertEngine:
    """Evaluates ``rules`` against readings; keeps pending/firing state and counts."""

    rules: tuple[AlertRule, ...] = RULES
    history: History = field(default_factory=History)
    states: dict[str, AlertState] = field(default_factory=dict)
    firings_total: dict[str, int] = field(default_factory=dict)  # rule name -> count
    changes: ChangeTracker = field(default_factory=ChangeTracker)
    evaluations: int = 0

    def __post_init__(self):
        for r in self.rules:
            self.firings_total.setdefault(r.name, 0)

    def evaluate(self, now: Reading) -> None:
        """Evaluate every rule at ``now`` (call after adding ``now`` to the history)."""
        self.changes.update(now)
        ctx = Context(Window(self.history, now), self.changes)
        seen = set()
        for rule in self.rules:
            try:
                raw = rule.value(ctx)
                thr = rule.threshold_at(ctx)
            except Exception:  # a bug in one rule must not stop the others or the monitor
                log.exception("alert rule %s failed", rule.name)
                continue
            items = raw.items() if isinstance(raw, dict) else [(None, raw)]
            for label_value, v in items:
                v = None if v is None else float(v)
                st = self._state(rule, label_value)
                seen.add(st.key)
                st.value, st.threshold = v, thr
                active = (v is not None and thr is not None and not math.isnan(v)
                          and _OPS[rule.op](v, thr))
                self._step(st, active, now)
        for key in [k for k in self.states if k not in seen]:
            self._step(self.states[key], False, now)
        self.evaluations += 1

    def _state(self, rule: AlertRule, label_value) -> AlertState:
        key = rule.name if rule.label is None else f"{rule.name}{{{rule.label}={label_value}}}"
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = AlertState(rule, label_value)
        return st

    def _step(self, st: AlertState, active: bool, now: Reading) -> None:
        rule = st.rule
        if not active:
            if st.firing:
                lasted = (now.wall_ns - st.since_ns) / 1e9
                log.info("ALERT RESOLVED %s severity=%s after %.1fs", st.key, rule.severity,
                         lasted)
            st.firing = False
            st.pending_since_mono = None
            return
        if st.pending_since_mono is None:
            st.pending_since_mono = now.mono_s
            st.since_ns = now.wall_ns
        if not st.firing and now.mono_s - st.pending_since_mono >= rule.for_s - 1e-6:
            st.firing = True
            st.since_ns = now.wall_ns
            self.firings_total[rule.name] += 1
            level = logging.ERROR if rule.severity == CRITICAL else logging.WARNING
            log.log(level, "ALERT FIRING %s severity=%s value=%s threshold=%s: %s", st.key,
                    rule.severity, _fmt(st.value), _fmt(st.threshold), rule.summary)

    # -- views ---------------------------------------------------------------------------------
    def firing(self) -> list[AlertState]:
        return sorted((s for s in self.states.values() if s.firing),
                      key=lambda s: (s.rule.severity != CRITICAL, s.since_ns))

    def pending(self) -> list[AlertState]:
        return sorted((s for s in self.states.values()
                       if s.pending_since_mono is not None and not s.firing),
                      key=lambda s: s.since_ns)
