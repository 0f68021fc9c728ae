"""``bogctl status``: one screen read straight from shared memory (exit 0/1/2)."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from bog.ctl.common import EXIT_DEGRADED, EXIT_HEALTHY, EXIT_NOT_RUNNING
from bog.ctl.monitor import monitor_up
from bog.ctl.systemd import systemd_units_state
from bog.monitor.health import Facts, gateway_doc, judge, venue_doc
from bog.monitor.reader import ShmReader
from bog.shm.codes import BREAKER, FEED_STATE
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.layouts import (
    BREAKER_STATES,
    CONTROL,
    KIND_CONTROL,
    FEED_LATENCY_US_EDGES,
    FEED_STATES,
    LATENCY_NS_EDGES,
    SIDES,
    SIGNAL_ACTIONS,
)
from bog.shm.metrics import ENGINE, FEED, histogram_quantile


def register(sub, common) -> None:
    p = sub.add_parser("status", parents=[common], help="one-screen status; exit 0/1/2")
    p.set_defaults(func=cmd_status)


def _process_json(info, now_ns: int, attach_error: str | None) -> dict:
    doc = info.to_json(now_ns)
    if not info.up:
        doc["error"] = attach_error if info.state == "absent" and attach_error else {"absent": "not running", "crashed": f"crashed (pid {info.pid} is gone)",
                        "stalled": "stalled: heartbeat stopped", "starting": "starting"
                        }.get(info.state, info.state)
    return doc


def collect_status(instance: str, cfg, sample_s: float = 0.5) -> dict:
    """Two reads of shared memory ``sample_s`` apart (the monitor's ShmReader: the same
    process states, up/stalled/crashed/absent, as /health)."""
    mode = cfg.execution.mode if cfg is not None else "paper"
    reader = ShmReader(instance, exec_mode=mode)
    try:
        r1 = reader.read()
        if sample_s > 0 and any(p.rec is not None for p in r1.procs.values()):
            time.sleep(sample_s)
        r2 = reader.read()
        errors = {p: reader.attach_error(p) for p in r2.procs}
    finally:
        reader.close()
    dt = max(r2.mono_s - r1.mono_s, 1e-9)
    out: dict = {"instance": instance, "processes": {
        p: _process_json(info, r2.wall_ns, errors[p]) for p, info in r2.procs.items()}}
    out["processes"]["monitor"] = monitor_up(instance, cfg)
    f1, f2 = r1.rec(FEED), r2.rec(FEED)
    if f2 is not None:
        f1 = f2 if f1 is None else f1
        out["feed"] = {
            "messages_per_s": round((int(f2["messages_total"]) - int(f1["messages_total"])) / dt, 1),
            "last_sequence": int(f2["last_sequence"]),
            "feed_latency_us_p99": _q(0.99, f2["feed_latency_us_bucket"], "feed"),
        }
        venue = venue_doc(f2)  # a live venue feed (source lighter), else None
        if venue is not None:
            out["venue"] = venue
    gw = gateway_doc(r2.procs.get("gateway"), r2.wall_ns, mode)  # None on paper
    if gw is not None:
        out["gateway"] = gw
    e1, e = r1.rec(ENGINE), r2.rec(ENGINE)
    if e is not None:
        e1 = e if e1 is None else e1
        # latency over the sampling window when it saw enough ticks (so one slow moment
        # long ago does not mark the engine degraded forever), else since engine start
        lat = (e["tick_processing_ns_bucket"].astype(np.int64)
               - e1["tick_processing_ns_bucket"].astype(np.int64))
        window = f"last {dt:.1f} s"
        if lat.sum() < 100:
            lat, window = e["tick_processing_ns_bucket"], "since engine start"
        out["engine"] = {
            "ticks_total": int(e["ticks_total"]),
            "ticks_per_s": round((int(e["ticks_total"]) - int(e1["ticks_total"])) / dt, 1),
            "signals": {a: int(v) for a, v in zip(SIGNAL_ACTIONS, e["signals_total"])},
            "orders_placed": {s: int(v) for s, v in zip(SIDES, e["orders_placed_total"])},
            "fills": {s: int(v) for s, v in zip(SIDES, e["fills_received_total"])},
            "open_orders": int(e["open_orders"]),
            "position_btc": float(e["position_btc"]),
            "max_position_btc": float(e["max_position_btc"]),
            "entry_price_usd": float(e["entry_price_usd"]),
            "realized_pnl_usd": float(e["realized_pnl_usd"]),
            "daily_pnl_usd": float(e["daily_pnl_usd"]),
            "max_daily_loss_usd": float(e["max_daily_loss_usd"]),
            "circuit_breaker": BREAKER_STATES[int(e["circuit_breaker_state"])],
            "circuit_breaker_latched": bool(e["circuit_breaker_latched"]),
            "paused": bool(e["paused"]),
            "pause_persisted": _pause_persisted(instance),
            "fill_queue_depth": r2.fill_depth or 0,
            "fill_queue_capacity": r2.fill_capacity or int(e["fill_queue_capacity"]),
            "fills_dropped": int(e["fills_dropped_total"]),
            "position_drift_btc": float(e["position_drift_btc"]),
            "position_corrections": int(e["position_corrections_total"]),
            "sequence_gaps": int(e["sequence_gaps_total"]),
            "ring_lost_ticks": int(e["ring_lost_ticks_total"]),
            "feed_state": FEED_STATES[int(e["feed_state"])],
            "stale_incidents": int(e["stale_data_total"]),
            "stale_age_ms": round(float(e["stale_age_us"]) / 1000, 1),
            "spread_bps": round(float(e["spread_bps"]), 3),
            "mid_price_usd": float(e["mid_price_usd"]),
            "tick_latency_ns_p50": _q(0.5, lat, "lat"),
            "tick_latency_ns_p99": _q(0.99, lat, "lat"),
            "tick_latency_window": window,
            "tick_latency_ns_max": int(e["tick_processing_max_ns"]),
        }
    out["status"], out["problems"] = _judge(out)
    return out


def _pause_persisted(instance: str) -> bool | None:
    """Whether the live engine keeps its pause in its state directory (None: unknown)."""
    try:
        seg = seg_mod.attach(SegmentNames(instance).control, KIND_CONTROL)
    except seg_mod.SegmentError:
        return None
    try:
        h = seg.header[0]
        if not seg_mod.owner_alive(int(h["owner_pid"]), int(h["owner_start_ticks"])):
            return None
        return bool(int(seg.view(CONTROL)[0]["pause_persisted"]))
    finally:
        h = None
        seg.close(unlink=False)


def _q(q, buckets, kind):
    edges = LATENCY_NS_EDGES if kind == "lat" else FEED_LATENCY_US_EDGES
    v = histogram_quantile(q, buckets, edges)
    return None if v != v else round(v, 1)


def _judge(out: dict) -> tuple[str, list[str]]:
    """The same rules as /health (``bog.monitor.health.judge``), on what bogctl read."""
    p = out["processes"]
    e = out.get("engine") or {}
    cap = e.get("fill_queue_capacity")
    return judge(Facts(
        feed_up=p["feed"]["up"], engine_up=p["engine"]["up"], monitor_up=p["monitor"]["up"],
        breaker=BREAKER.index(e["circuit_breaker"]) if e else None,
        fill_queue_ratio=e["fill_queue_depth"] / cap if cap else None,
        fills_dropped=e.get("fills_dropped"),
        position_drift_btc=e.get("position_drift_btc"),
        tick_p99_ns=e.get("tick_latency_ns_p99"),
        feed_state=FEED_STATE.index(e["feed_state"]) if e else None,
        paused=e.get("paused"),
        critical_alerts=tuple(p["monitor"].get("critical_alerts") or ()),
        venue=out.get("venue"), gateway=out.get("gateway")))


def _paused_text(e: dict) -> str:
    if not e["paused"]:
        return ""
    return "  PAUSED (persisted)" if e.get("pause_persisted") else "  PAUSED"


def _fmt_status(s: dict, color: bool) -> str:
    def c(text, code):
        return f"\033[{code}m{text}\033[0m" if color else text

    status = s["status"]
    procs = s["processes"]
    text = status.upper()
    if status == "down" and not procs["feed"]["up"] and not procs["engine"]["up"]:
        text = "NOT RUNNING"  # nothing of the pipeline is up (exit 2)
    head = c(text, {"healthy": "32", "degraded": "33"}.get(status, "31"))
    lines = [f"bog instance {s['instance']}: {head}"]
    for p in s["problems"]:
        lines.append(f"  ! {p}")
    lines.append("processes:")
    for name, p in s["processes"].items():
        if name == "monitor":
            pid = f"pid {p['pid']:<7} " if p.get("pid") else ""
            lines.append(f"  {name:<8} {'up' if p['up'] else 'DOWN':<5} {pid}{p['url']}")
        elif p["up"]:
            lines.append(f"  {name:<8} up    pid {p['pid']:<7} core {p['core']:<3} uptime {p['uptime_s']:.0f} s")
        else:
            lines.append(f"  {name:<8} DOWN  {p.get('error', 'not responding')}")
    for unit, u in (s.get("systemd") or {}).items():
        lines.append(f"  {unit:<20} {u['active']}/{u['sub']}  main pid {u['main_pid']}  "
                     f"restarts {u['restarts']}")
    v = s.get("venue")
    if v:
        since = v["connected_since_s"]
        err = (f"last down: {v['last_error']} at "
               f"{time.strftime('%H:%M:%S', time.gmtime(v['last_error_ns'] / 1e9))}"
               if v["last_error_ns"] else "never down")
        if v["connected"]:
            up_for = f" ({time.time() - since:.0f} s)" if since else ""
            book = "" if v["book_valid"] else ", book resyncing"
            lines.append(f"venue:    connected{up_for}{book}, {v['reconnects']} reconnects, {err}")
        else:
            lines.append(f"venue:    DOWN: {v['last_error']} (last frame "
                         f"{v['last_frame_age_s']:.1f} s ago), {v['reconnects']} reconnects, "
                         "reconnecting")
    g = s.get("gateway")
    if g and g.get("network"):  # the gateway's block was readable
        lines.append(_gateway_line(g))
    f = s.get("feed")
    if f:
        lines.append(f"feed:     {f['messages_per_s']:.0f} msg/s  seq {f['last_sequence']}  "
                     f"latency P99 {f['feed_latency_us_p99']} us")
    e = s.get("engine")
    if e:
        sig = sum(e["signals"].values())
        lines += [
            f"engine:   {e['ticks_per_s']:.0f} ticks/s  ({e['ticks_total']} total)  "
            f"tick latency ({e['tick_latency_window']}) P50 {e['tick_latency_ns_p50']} ns  "
            f"P99 {e['tick_latency_ns_p99']} ns  "
            f"max {e['tick_latency_ns_max']} ns",
            f"trading:  signals {sig}  orders bid {e['orders_placed']['bid']} ask "
            f"{e['orders_placed']['ask']}  fills bid {e['fills']['bid']} ask {e['fills']['ask']}  "
            f"open {e['open_orders']}",
            f"position: {e['position_btc']:+.4f} BTC (max {e['max_position_btc']})  entry "
            f"{e['entry_price_usd']:.2f}  realized {e['realized_pnl_usd']:+.2f} USD  daily "
            f"{e['daily_pnl_usd']:+.2f} USD (limit -{e['max_daily_loss_usd']:.0f})",
            f"safety:   breaker {e['circuit_breaker']}{' (latched)' if e['circuit_breaker_latched'] else ''}"
            f"{_paused_text(e)}  fill queue {e['fill_queue_depth']}/"
            f"{e['fill_queue_capacity']}  dropped fills {e['fills_dropped']}  drift "
            f"{e['position_drift_btc']:+.6f}  corrections {e['position_corrections']}",
            f"data:     feed {e['feed_state']} (age {e['stale_age_ms']} ms)  gaps "
            f"{e['sequence_gaps']}  stale incidents {e['stale_incidents']}  lost ticks "
            f"{e['ring_lost_ticks']}  spread {e['spread_bps']} bps  mid {e['mid_price_usd']:.2f}",
        ]
    return "\n".join(lines)


def _gateway_line(g: dict) -> str:
    if g["dead_man_armed"]:
        left = g["dead_man_expires_in_s"]
        dm = f"dead-man armed ({left:.0f} s left)" if left is not None else "dead-man armed"
    else:
        dm = "dead-man NOT armed" if g["mode"] == "live" else "dead-man off (dry-run)"
    venue = "venue connected" if g["venue_connected"] else "venue DOWN"
    drift = g["position_drift_btc"]
    drift = "drift n/a" if drift is None else f"drift {drift:+.6f}"
    return (f"gateway:  {g['mode']} on {g['network']}  {venue}  {dm}  in flight "
            f"{g['inflight_orders']}  open {g['open_orders']}  {drift}  sent "
            f"{g['intents_sent']}  refused {g['intents_refused']}  rejects {g['venue_rejects']}"
            f"{'' if g['engine_attached'] else '  engine NOT attached'}")


def cmd_status(args, cfg) -> int:
    s = collect_status(args.instance, cfg)
    units = systemd_units_state()
    if units is not None:
        s["systemd"] = units
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(_fmt_status(s, color=sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
    return {"healthy": EXIT_HEALTHY, "degraded": EXIT_DEGRADED}.get(s["status"], EXIT_NOT_RUNNING)
