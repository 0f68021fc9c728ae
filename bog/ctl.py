"""``bogctl``: look at and steer a running bog from the local machine.

    bogctl status [--json] [--instance N]     one screen, read straight from shared memory;
                                              exit 0 healthy, 1 degraded, 2 not running
    bogctl breaker reset                      close a latched circuit breaker
    bogctl pause | resume                     stop / restart quoting (quotes are cancelled)
    bogctl reconcile                          run a position reconciliation now
    bogctl config prometheus|alerts|rules|alertmanager|grafana   print the shipped assets

Control actions go through the owner-only shared-memory control block: only the user that
runs bog can use them, and there is no HTTP control surface at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

from bog.config import ConfigError, load_config
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.layouts import (
    BREAKER_STATES,
    CONTROL,
    FEED_STATES,
    KIND_CONTROL,
    LATENCY_NS_EDGES,
    SIDES,
    SIGNAL_ACTIONS,
)
from bog.shm.metrics import ENGINE, FEED, MetricsBlock, histogram_quantile
from bog.shm.ring import FillQueue

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_NOT_RUNNING = 0, 1, 2
HEARTBEAT_STALE_S = 5.0


def _read_block(names: SegmentNames, process: str):
    try:
        blk = MetricsBlock.attach(names.metrics(process), process)
    except seg_mod.SegmentError as e:
        return None, None, str(e)
    h = blk.segment.header[0]
    alive = seg_mod.owner_alive(int(h["owner_pid"]), int(h["owner_start_ticks"]))
    return blk, alive, None


def _process_info(rec, alive: bool, now_ns: int) -> dict:
    hb_age = (now_ns - int(rec["heartbeat_ns"])) / 1e9
    up = bool(alive and int(rec["running"]) == 1 and hb_age < HEARTBEAT_STALE_S)
    return {
        "up": up,
        "pid": int(rec["pid"]),
        "core": int(rec["core"]),
        "uptime_s": round((now_ns - int(rec["start_ns"])) / 1e9, 1) if up else 0.0,
        "heartbeat_age_s": round(hb_age, 3),
    }


def _monitor_up(cfg) -> dict:
    url = f"http://{cfg.monitor.host}:{cfg.monitor.port}/health"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            return {"up": True, "url": url, "http_status": r.status}
    except urllib.error.HTTPError as e:  # 503 = up but degraded
        return {"up": True, "url": url, "http_status": e.code}
    except OSError:
        return {"up": False, "url": url}


def collect_status(instance: str, cfg, sample_s: float = 0.5) -> dict:
    names = SegmentNames(instance)
    eng, eng_alive, eng_err = _read_block(names, ENGINE)
    feed, feed_alive, feed_err = _read_block(names, FEED)
    try:
        out: dict = {"instance": instance, "processes": {}}
        e1 = eng.snapshot() if eng else None
        f1 = feed.snapshot() if feed else None
        t1 = time.monotonic()
        if sample_s > 0 and (eng or feed):
            time.sleep(sample_s)
        now_ns = time.time_ns()
        e2 = eng.snapshot() if eng else None
        f2 = feed.snapshot() if feed else None
        dt = max(time.monotonic() - t1, 1e-9)
        procs = out["processes"]
        procs["feed"] = _process_info(f2, feed_alive, now_ns) if feed else {"up": False, "error": feed_err}
        procs["engine"] = _process_info(e2, eng_alive, now_ns) if eng else {"up": False, "error": eng_err}
        procs["monitor"] = _monitor_up(cfg)
        if feed:
            out["feed"] = {
                "messages_per_s": round((int(f2["messages_total"]) - int(f1["messages_total"])) / dt, 1),
                "last_sequence": int(f2["last_sequence"]),
                "feed_latency_us_p99": _q(0.99, f2["feed_latency_us_bucket"], "feed"),
            }
        if eng:
            e = e2
            lat = e["tick_processing_ns_bucket"]
            depth = cap = 0
            try:
                fq = FillQueue.attach(names.fills)
                depth, cap = fq.depth, fq.capacity
                fq.close(unlink=False)
            except seg_mod.SegmentError:
                cap = int(e["fill_queue_capacity"])
            out["engine"] = {
                "ticks_total": int(e["ticks_total"]),
                "ticks_per_s": round((int(e2["ticks_total"]) - int(e1["ticks_total"])) / dt, 1),
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
                "fill_queue_depth": depth,
                "fill_queue_capacity": cap,
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
                "tick_latency_ns_max": int(e["tick_processing_max_ns"]),
            }
        out["status"], out["problems"] = _judge(out)
        return out
    finally:
        for blk in (eng, feed):
            if blk is not None:
                blk.close(unlink=False)


def _q(q, buckets, kind):
    from bog.shm.layouts import FEED_LATENCY_US_EDGES

    edges = LATENCY_NS_EDGES if kind == "lat" else FEED_LATENCY_US_EDGES
    v = histogram_quantile(q, buckets, edges)
    return None if v != v else round(v, 1)


def _judge(out: dict) -> tuple[str, list[str]]:
    p = out["processes"]
    if not p["engine"]["up"] and not p["feed"]["up"]:
        return "not running", ["feed and engine are not running"]
    problems = [f"{name} is down" for name in ("feed", "engine", "monitor") if not p[name]["up"]]
    e = out.get("engine")
    if e:
        if e["circuit_breaker"] != "CLOSED":
            problems.append(f"circuit breaker {e['circuit_breaker']}")
        if e["fill_queue_capacity"] and e["fill_queue_depth"] / e["fill_queue_capacity"] >= 0.8:
            problems.append("fill queue above 80%")
        if e["fills_dropped"]:
            problems.append(f"{e['fills_dropped']} fills dropped")
        if abs(e["position_drift_btc"]) >= 0.001:
            problems.append(f"position drift {e['position_drift_btc']:+.6f} BTC")
        if e["tick_latency_ns_p99"] is not None and e["tick_latency_ns_p99"] > 10_000:
            problems.append(f"tick latency P99 {e['tick_latency_ns_p99']:.0f} ns > 10 us")
        if e["feed_state"] != "FRESH":
            problems.append(f"feed {e['feed_state']}")
        if e["paused"]:
            problems.append("trading paused")
    return ("healthy" if not problems else "degraded"), problems


def _fmt_status(s: dict, color: bool) -> str:
    def c(text, code):
        return f"\033[{code}m{text}\033[0m" if color else text

    status = s["status"]
    head = c(status.upper(), {"healthy": "32", "degraded": "33"}.get(status, "31"))
    lines = [f"bog instance {s['instance']}: {head}"]
    for p in s["problems"]:
        lines.append(f"  ! {p}")
    lines.append("processes:")
    for name, p in s["processes"].items():
        if name == "monitor":
            lines.append(f"  {name:<8} {'up' if p['up'] else 'DOWN':<5} {p['url']}")
        elif p["up"]:
            lines.append(f"  {name:<8} up    pid {p['pid']:<7} core {p['core']:<3} uptime {p['uptime_s']:.0f} s")
        else:
            lines.append(f"  {name:<8} DOWN  {p.get('error', 'not responding')}")
    f = s.get("feed")
    if f:
        lines.append(f"feed:     {f['messages_per_s']:.0f} msg/s  seq {f['last_sequence']}  "
                     f"latency P99 {f['feed_latency_us_p99']} us")
    e = s.get("engine")
    if e:
        sig = sum(e["signals"].values())
        lines += [
            f"engine:   {e['ticks_per_s']:.0f} ticks/s  ({e['ticks_total']} total)  "
            f"tick latency P50 {e['tick_latency_ns_p50']} ns  P99 {e['tick_latency_ns_p99']} ns  "
            f"max {e['tick_latency_ns_max']} ns",
            f"trading:  signals {sig}  orders bid {e['orders_placed']['bid']} ask "
            f"{e['orders_placed']['ask']}  fills bid {e['fills']['bid']} ask {e['fills']['ask']}  "
            f"open {e['open_orders']}",
            f"position: {e['position_btc']:+.4f} BTC (max {e['max_position_btc']})  entry "
            f"{e['entry_price_usd']:.2f}  realized {e['realized_pnl_usd']:+.2f} USD  daily "
            f"{e['daily_pnl_usd']:+.2f} USD (limit -{e['max_daily_loss_usd']:.0f})",
            f"safety:   breaker {e['circuit_breaker']}{' (latched)' if e['circuit_breaker_latched'] else ''}"
            f"{'  PAUSED' if e['paused'] else ''}  fill queue {e['fill_queue_depth']}/"
            f"{e['fill_queue_capacity']}  dropped fills {e['fills_dropped']}  drift "
            f"{e['position_drift_btc']:+.6f}  corrections {e['position_corrections']}",
            f"data:     feed {e['feed_state']} (age {e['stale_age_ms']} ms)  gaps "
            f"{e['sequence_gaps']}  stale incidents {e['stale_incidents']}  lost ticks "
            f"{e['ring_lost_ticks']}  spread {e['spread_bps']} bps  mid {e['mid_price_usd']:.2f}",
        ]
    return "\n".join(lines)


def _control(instance: str):
    name = SegmentNames(instance).control
    seg = seg_mod.attach(name, KIND_CONTROL, writable=True)
    return seg, seg.view(CONTROL)


def cmd_status(args, cfg) -> int:
    s = collect_status(args.instance, cfg)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(_fmt_status(s, color=sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
    return {"healthy": EXIT_HEALTHY, "degraded": EXIT_DEGRADED}.get(s["status"], EXIT_NOT_RUNNING)


def cmd_control(args, cfg) -> int:
    seg, ctl = _control(args.instance)
    try:
        c = ctl[0]
        if args.cmd == "breaker":
            c["breaker_reset_requests"] += 1
            msg = "circuit breaker reset requested"
        elif args.cmd == "pause":
            c["pause_requested"] = 1
            msg = "pause requested (quotes will be cancelled)"
        elif args.cmd == "resume":
            c["pause_requested"] = 0
            msg = "resume requested"
        else:
            c["reconcile_requests"] += 1
            msg = "reconciliation requested"
    finally:
        ctl = None
        seg.close(unlink=False)
    if args.json:
        print(json.dumps({"ok": True, "action": args.cmd, "message": msg}))
    else:
        print(f"bogctl: {msg} (instance {args.instance}); the engine applies it within "
              f"{cfg.process.housekeeping_ms:.0f} ms - check with 'bogctl status'")
    return 0


def cmd_config(args, cfg) -> int:
    from bog.monitor.assets import render

    print(render(args.what, instance=args.instance, port=cfg.monitor.port), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bogctl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--instance", default="default")
    common.add_argument("--config", help="the TOML config bog runs with (for ports)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("status", parents=[common], help="one-screen status; exit 0/1/2")
    b = sub.add_parser("breaker", parents=[common], help="circuit breaker actions")
    b.add_argument("action", choices=("reset",))
    sub.add_parser("pause", parents=[common], help="stop quoting (cancels quotes)")
    sub.add_parser("resume", parents=[common], help="resume quoting")
    sub.add_parser("reconcile", parents=[common], help="reconcile position now")
    c = sub.add_parser("config", parents=[common], help="print shipped Prometheus/Grafana assets")
    c.add_argument("what", choices=("prometheus", "alerts", "rules", "alertmanager", "grafana"))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        seg_mod.validate_instance(args.instance)
        cfg = load_config(args.config)
        if args.cmd == "status":
            return cmd_status(args, cfg)
        if args.cmd in ("breaker", "pause", "resume", "reconcile"):
            return cmd_control(args, cfg)
        if args.cmd == "config":
            return cmd_config(args, cfg)
    except (ConfigError, seg_mod.SegmentError) as e:
        print(f"bogctl {args.cmd}: {e}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except BrokenPipeError:
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
