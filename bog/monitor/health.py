"""``GET /health``: the guide's health document, computed from a fresh read.

Fields are the guide's (``status``, ``tick_latency_p99_ns``, ``circuit_breaker``,
``fill_queue_depth``, ``position_drift``) plus ``processes`` and ``alerts`` (firing). The
guide's rules, corrected (see docs/monitoring.md):

- latency: P99 of the ticks of the last 60 s (not since start) < 10 us;
- breaker: CLOSED;
- fill queue: depth / capacity < 0.8 (the guide compared the raw depth with 0.8);
- position: |drift| < 0.001 BTC (the guide forgot the absolute value);
- and no critical alert firing.

``status`` is ``healthy`` (HTTP 200), ``degraded`` (503) or ``down`` (503: the feed or the
engine is not running; the values it cannot know are null).
"""

from __future__ import annotations

from bog.monitor.alerts import CRITICAL
from bog.shm.codes import BREAKER, VENUE_DOWN
from bog.shm.layouts import BREAKER_STATES, LATENCY_NS_EDGES

LATENCY_P99_MAX_NS = 10_000
FILL_QUEUE_MAX_RATIO = 0.8
POSITION_DRIFT_MAX_BTC = 0.001
LATENCY_WINDOW_S = 60.0

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"


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
    down = not all(info.up for info in r.procs.values())
    ok = (
        (p99 is None or p99 < LATENCY_P99_MAX_NS)
        and breaker == BREAKER.CLOSED
        and ratio is not None and ratio < FILL_QUEUE_MAX_RATIO
        and drift is not None and abs(drift) < POSITION_DRIFT_MAX_BTC
        and not any(a.rule.severity == CRITICAL for a in firing)
        and (venue is None or venue["book_valid"])
    )
    status = DOWN if down else (HEALTHY if ok else DEGRADED)

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
