"""Health: one set of rules for ``GET /health`` and ``bogctl status``, and the /health document.

``judge(Facts)`` is the only place where health is decided; the monitor feeds it what it
reads at request time (latency over its last 60 s of history), ``bogctl status`` what it reads
from shared memory over its sampling window plus the monitor's firing alerts. The rules (the
guide's, corrected: see docs/monitoring.md):

- **down**: the feed or the engine is not running (stalled, crashed or absent);
- **degraded**, each with a one-line reason: the circuit breaker is not CLOSED; the fill queue
  is at or above 80 % of its capacity (the guide compared the raw depth with 0.8); fills were
  dropped; |position drift| >= 0.001 BTC (the guide forgot the absolute value); tick latency
  P99 > 10 us; market data is not FRESH (stale or offline: the engine has cancelled its
  quotes); trading is paused by bogctl; a critical alert is firing; the live venue is
  disconnected or its book is not whole (feed source ``lighter``); the monitor is down (only
  ``bogctl`` can tell);
- the execution gateway (only when one is expected: ``execution.mode`` dry-run or live, see
  ``bog.monitor.reader``; on paper none of this applies): **down** when bog-gateway is not
  running (a required process, like the feed and the engine: nothing can be quoted, and
  orders at the venue wait for the dead-man switch); **degraded** when, in live mode, its
  venue order session is down or the dead-man switch is not armed, or when the gateway's
  reconciliation finds |position drift| >= 0.001 BTC against the venue;
- **healthy** otherwise.

``/health`` answers 200 only when healthy, else 503; ``bogctl status`` exits 0 healthy,
1 degraded, 2 down.
"""

from __future__ import annotations

from dataclasses import dataclass

from bog.monitor.alerts import CRITICAL
from bog.shm.codes import BREAKER, EXEC_MODE, FEED_STATE, VENUE_DOWN
from bog.shm.layouts import BREAKER_STATES, FIXED, LATENCY_NS_EDGES

LATENCY_P99_MAX_NS = 10_000
FILL_QUEUE_MAX_RATIO = 0.8
POSITION_DRIFT_MAX_BTC = 0.001
LATENCY_WINDOW_S = 60.0

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"


@dataclass
class Facts:
    """What health is judged from; None = not known (e.g. the engine is not running)."""

    feed_up: bool
    engine_up: bool
    monitor_up: bool | None = None  # None: the monitor asks itself
    breaker: int | None = None  # BREAKER code
    fill_queue_ratio: float | None = None  # depth / capacity
    fills_dropped: int | None = None
    position_drift_btc: float | None = None
    tick_p99_ns: float | None = None
    feed_state: int | None = None  # FEED_STATE code
    paused: bool | None = None
    critical_alerts: tuple[str, ...] = ()
    venue: dict | None = None  # venue_doc() of a live venue feed, None for other sources
    gateway: dict | None = None  # gateway_doc() when a gateway is expected, None on paper


def _label(codes, value) -> str:
    v = int(value)
    return codes[v] if 0 <= v < len(codes) else f"UNKNOWN({v})"


def judge(f: Facts) -> tuple[str, list[str]]:
    """(status, problems): the health rules above, for /health and bogctl alike."""
    problems = [f"{name} is down" for name, up in
                (("feed", f.feed_up), ("engine", f.engine_up), ("monitor", f.monitor_up))
                if up is False]
    if f.breaker is not None and f.breaker != BREAKER.CLOSED:
        problems.append(f"circuit breaker {_label(BREAKER, f.breaker)}")
    if f.fill_queue_ratio is not None and f.fill_queue_ratio >= FILL_QUEUE_MAX_RATIO:
        problems.append(f"fill queue above {FILL_QUEUE_MAX_RATIO:.0%}")
    if f.fills_dropped:
        problems.append(f"{int(f.fills_dropped)} fills dropped")
    if f.position_drift_btc is not None and abs(f.position_drift_btc) >= POSITION_DRIFT_MAX_BTC:
        problems.append(f"position drift {f.position_drift_btc:+.6f} BTC")
    if f.tick_p99_ns is not None and f.tick_p99_ns > LATENCY_P99_MAX_NS:
        problems.append(f"tick latency P99 {f.tick_p99_ns:.0f} ns > {LATENCY_P99_MAX_NS / 1000:g} us")
    if f.feed_state is not None and f.feed_state != FEED_STATE.FRESH:
        problems.append(f"feed {_label(FEED_STATE, f.feed_state)}")
    if f.paused:
        problems.append("trading paused")
    if f.critical_alerts:
        problems.append("critical alert firing: " + ", ".join(f.critical_alerts))
    if f.venue is not None and f.feed_up:
        if not f.venue["connected"]:
            problems.append(f"venue disconnected ({f.venue['last_error']})")
        elif not f.venue["book_valid"]:
            problems.append("venue book not whole (resyncing)")
    g = f.gateway
    if g is not None:
        if not g["up"]:
            problems.append(f"gateway is down ({g['state']})")
        else:
            live = g["mode"] == EXEC_MODE[EXEC_MODE.LIVE]
            if live and not g["venue_connected"]:
                problems.append("gateway venue order connection down")
            if live and not g["dead_man_armed"]:
                problems.append("dead-man switch not armed at the venue")
            drift = g["position_drift_btc"]
            engine_said = (f.position_drift_btc is not None
                           and abs(f.position_drift_btc) >= POSITION_DRIFT_MAX_BTC)
            if drift is not None and abs(drift) >= POSITION_DRIFT_MAX_BTC and not engine_said:
                problems.append(f"venue position drift {drift:+.6f} BTC (gateway)")
    if not (f.feed_up and f.engine_up) or (g is not None and not g["up"]):
        return DOWN, problems
    return (DEGRADED if problems else HEALTHY), problems


def health(state) -> tuple[int, dict]:
    """(HTTP status code, document)."""
    w = state.window()
    r = w.now
    p99 = w.quantile(0.99, "engine", "tick_processing_ns", LATENCY_NS_EDGES, LATENCY_WINDOW_S)
    breaker = w.gauge("engine", "circuit_breaker_state")
    drift = w.gauge("engine", "position_drift_btc")
    ratio = (r.fill_depth / r.fill_capacity) if r.fill_depth is not None and r.fill_capacity \
        else None
    firing = state.alerts.firing()
    venue = venue_doc(r.procs["feed"].rec) if "feed" in r.procs else None
    gateway = gateway_doc(r.procs.get("gateway"), r.wall_ns, state.exec_mode)
    status, problems = judge(Facts(
        feed_up=r.procs["feed"].up, engine_up=r.procs["engine"].up,
        breaker=None if breaker is None else int(breaker), fill_queue_ratio=ratio,
        fills_dropped=w.gauge("engine", "fills_dropped_total"),
        position_drift_btc=drift, tick_p99_ns=p99,
        feed_state=w.gauge("engine", "feed_state"), paused=w.gauge("engine", "paused"),
        critical_alerts=tuple(a.key for a in firing if a.rule.severity == CRITICAL),
        venue=venue, gateway=gateway))

    procs = {p: info.to_json(r.wall_ns) for p, info in r.procs.items()}
    procs["monitor"] = {
        "state": "up",
        "up": True,
        "pid": state.pid,
        "core": state.core,
        "uptime_s": round((r.wall_ns - state.started_ns) / 1e9, 3),
        "heartbeat_age_s": round(max(r.wall_ns - state.heartbeat_ns, 0) / 1e9, 3),
        "restarts": 0,
    }
    doc = {
        "status": status,
        "problems": problems,
        "tick_latency_p99_ns": None if p99 is None else int(round(p99)),
        "circuit_breaker": "UNKNOWN" if breaker is None or not 0 <= breaker < len(BREAKER_STATES)
        else BREAKER_STATES[int(breaker)],
        "fill_queue_depth": None if ratio is None else round(ratio, 6),
        "position_drift": drift,
        "processes": procs,
        "alerts": [a.to_json() for a in firing],
    }
    if venue is not None:
        doc["venue"] = venue
    if gateway is not None:
        doc["gateway"] = gateway
    return (200 if status == HEALTHY else 503), doc


def venue_doc(rec) -> dict | None:
    """The live venue connection (feed.source = "lighter"): up, since when, and why it went
    down last; None for the synthetic and replay sources."""
    if rec is None or not int(rec["venue_enabled"]):
        return None
    err = int(rec["venue_last_error"])
    since = float(rec["venue_connected_since_s"])
    return {
        "connected": bool(rec["venue_connected"]),
        "book_valid": bool(rec["venue_book_valid"]),
        "connected_since_s": since if since > 0 else None,
        "reconnects": int(rec["venue_reconnects_total"]),
        "last_error": VENUE_DOWN[err] if 0 <= err < len(VENUE_DOWN) else str(err),
        "last_error_ns": int(rec["venue_last_error_ns"]) or None,
        "last_frame_age_s": round(float(rec["venue_last_frame_age_s"]), 3),
        "market_index": int(rec["venue_market_index"]),
    }


def gateway_doc(info, now_ns: int, configured_mode: str = "paper") -> dict | None:
    """The execution gateway's state for /health and bogctl status; None when no gateway is
    expected (paper). ``info`` is the reader's ProcessInfo of the gateway (or None)."""
    if info is None:
        return None
    rec = info.rec
    doc = {"up": info.up, "state": info.state, "mode": configured_mode}
    if rec is None:
        return doc
    mode = int(rec["mode"])
    expiry_ns = int(rec["dead_man_expiry_ns"])
    pos_ns = int(rec["venue_position_ns"])
    since = float(rec["connected_since_s"])
    doc.update({
        "mode": EXEC_MODE[mode] if 0 <= mode < len(EXEC_MODE) else str(mode),
        "network": "mainnet" if int(rec["mainnet"]) else "testnet",
        "venue_connected": bool(rec["connected"]),
        "connected_since_s": since if since > 0 else None,
        "reconnects": int(rec["reconnects_total"]),
        "engine_attached": bool(rec["engine_attached"]),
        "dead_man_armed": bool(rec["dead_man_armed"]),
        "dead_man_expiry_ns": expiry_ns or None,
        "dead_man_expires_in_s": round((expiry_ns - now_ns) / 1e9, 3) if expiry_ns else None,
        "inflight_orders": int(rec["inflight_orders"]),
        "open_orders": int(rec["open_orders"]),
        "position_drift_btc": float(rec["position_drift_btc"]) if pos_ns else None,
        "venue_position_btc": int(rec["venue_position_fixed"]) / FIXED if pos_ns else None,
        "venue_position_age_s": round((now_ns - pos_ns) / 1e9, 3) if pos_ns else None,
        "intents_sent": int(rec["intents_sent_total"]),
        "intents_refused": int(rec["intents_refused_total"].sum()),
        "venue_rejects": int(rec["rejects_total"]),
        "nonce_refetches": int(rec["nonce_refetches_total"]),
        "rate_limited": int(rec["rate_limited_total"]),
        "events_dropped": int(rec["events_dropped_total"]),
    })
    return doc
