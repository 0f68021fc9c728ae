"""``bogctl``: look at and steer a running bog from the local machine.

    bogctl status [--json]                    one screen, read straight from shared memory;
                                              exit 0 healthy, 1 degraded, 2 not running
    bogctl start|stop|restart [PROCESS]       systemctl on bog-trading.target / bog-PROCESS
                                              when the units are installed, else the local
                                              supervisor (``bog run``)
    bogctl logs [--pattern P] [--since T] [-p err] [-f] [--process P] [-n N] [--json]
                                              journalctl when the units are installed, else
                                              logs/bog.log; P: circuit-breaker fills-dropped
                                              position-correction sequence-gap stale-data
                                              signals critical, or any text
    bogctl alerts [--json]                    the monitor's alerts; exit 0 none firing, 1 firing
    bogctl metrics [--grep TEXT ...] [--json] the monitor's /metrics, filtered
    bogctl breaker reset                      close a latched circuit breaker
    bogctl pause | resume                     stop / restart quoting (quotes are cancelled)
    bogctl reconcile                          run a position reconciliation now
    bogctl config prometheus|alerts|rules|alertmanager|grafana|grafana-alerts   print the shipped assets
    bogctl install-units [--prefix DIR] [--config F] [--instance N] [--user U] [--print]
                                              render the systemd units for this venv

Common options: ``--instance`` (default ``$BOG_INSTANCE`` or ``default``), ``--config``
(default ``$BOG_CONFIG``, else ``/etc/bog/bog.toml`` if it exists, else built-in defaults;
it gives the monitor's address), ``--json``.

Control actions go through the owner-only shared-memory control block: only the user that
runs bog (or root) can use them, and there is no HTTP control surface at all. Output has no
colour when piped (or with NO_COLOR set). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np


def _numba_cache_fallback() -> None:
    """Let bogctl import bog's numba modules as any user, from a read-only install.

    ``@njit(cache=True)`` fails at import ("no locator available") when neither the source
    tree's ``__pycache__`` nor the user's cache directory is writable - e.g. the installed
    venv run by an operator account, or ``nobody``. bogctl runs no kernel, so a private
    throw-away cache directory is enough.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    shm_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shm")
    pycache = os.path.join(shm_dir, "__pycache__")
    if os.access(pycache if os.path.isdir(pycache) else shm_dir, os.W_OK):
        return
    import atexit
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="bogctl-numba-")
    os.environ["NUMBA_CACHE_DIR"] = d
    atexit.register(shutil.rmtree, d, True)


_numba_cache_fallback()

from bog.config import ConfigError, load_config  # noqa: E402  (after the cache fallback)
from bog.monitor.assets import NAMES  # noqa: E402
from bog.shm import SegmentNames  # noqa: E402
from bog.shm import segment as seg_mod  # noqa: E402
from bog.monitor.reader import ShmReader  # noqa: E402
from bog.process import child_command, http_status, signal_pid  # noqa: E402
from bog.shm.layouts import (  # noqa: E402
    FEED_LATENCY_US_EDGES,
    BREAKER_STATES,
    CONTROL,
    FEED_STATES,
    KIND_CONTROL,
    LATENCY_NS_EDGES,
    SIDES,
    SIGNAL_ACTIONS,
)
from bog.shm.metrics import ENGINE, FEED, histogram_quantile  # noqa: E402

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_NOT_RUNNING = 0, 1, 2
def _monitor_up(cfg) -> dict:
    url = f"http://{cfg.monitor.host}:{cfg.monitor.port}/health"
    code = http_status(url)  # 503 = up but degraded
    return {"up": True, "url": url, "http_status": code} if code else {"up": False, "url": url}


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
    reader = ShmReader(instance)
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
    out["processes"]["monitor"] = _monitor_up(cfg)
    f1, f2 = r1.rec(FEED), r2.rec(FEED)
    if f2 is not None:
        f1 = f2 if f1 is None else f1
        out["feed"] = {
            "messages_per_s": round((int(f2["messages_total"]) - int(f1["messages_total"])) / dt, 1),
            "last_sequence": int(f2["last_sequence"]),
            "feed_latency_us_p99": _q(0.99, f2["feed_latency_us_bucket"], "feed"),
        }
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


def _q(q, buckets, kind):
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
    for unit, u in (s.get("systemd") or {}).items():
        lines.append(f"  {unit:<20} {u['active']}/{u['sub']}  main pid {u['main_pid']}  "
                     f"restarts {u['restarts']}")
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


def systemd_units_state() -> dict | None:
    """ActiveState/SubState/MainPID/NRestarts of each bog unit, None without the units."""
    from bog.units import PROCESSES, TARGET, unit_name, units_installed

    if not units_installed():
        return None
    out = {}
    for unit in [TARGET] + [unit_name(p) for p in PROCESSES]:
        r = subprocess.run(["systemctl", "show", "-p", "ActiveState,SubState,MainPID,NRestarts",
                            unit], capture_output=True, text=True)
        kv = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        out[unit] = {"active": kv.get("ActiveState", "?"), "sub": kv.get("SubState", "?"),
                     "main_pid": int(kv.get("MainPID", "0") or 0),
                     "restarts": int(kv.get("NRestarts", "0") or 0)}
    return out


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

    print(render(args.what, instance=args.instance, port=cfg.monitor.port,
                 strategy=cfg.strategy.name), end="")
    return 0


class CtlError(RuntimeError):
    """A user-facing failure: printed as one line, exit status 2 unless given."""

    def __init__(self, msg: str, code: int = EXIT_NOT_RUNNING):
        super().__init__(msg)
        self.code = code


# -- start | stop | restart ----------------------------------------------------------------------
def _out(args, doc: dict, text: str) -> None:
    print(json.dumps(doc) if args.json else text)


def _systemctl(args, verb: str) -> int:
    from bog.units import TARGET, unit_name

    unit = unit_name(args.process) if args.process else TARGET
    cmd = ["systemctl", verb, unit]
    r = subprocess.run(cmd, capture_output=True, text=True)
    ok = r.returncode == 0
    err = r.stderr.strip()
    if not ok:
        hint = ""
        if "Access denied" in err or "authentication" in err.lower() or "permission" in err.lower():
            hint = " - run as root (sudo bogctl ...)"
        msg = f"bogctl {verb}: {' '.join(cmd)} failed: {err or 'exit %d' % r.returncode}{hint}"
        if args.json:
            print(json.dumps({"ok": False, "via": "systemctl", "unit": unit, "action": verb,
                              "error": err}))
        else:
            print(msg, file=sys.stderr)
        return r.returncode or 1
    _out(args, {"ok": True, "via": "systemctl", "unit": unit, "action": verb},
         f"bogctl: {' '.join(cmd)}: done (check with 'bogctl status'; logs: 'bogctl logs')")
    return 0


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def find_supervisors(instance: str) -> list[int]:
    """PIDs of ``bog run`` supervisors of ``instance`` (``python -m bog.cli run`` or ``bog run``)."""
    out = []
    for pid in _pids():
        argv = _cmdline(pid)
        if "run" not in argv:
            continue
        i = argv.index("run")
        prog = argv[i - 1] if i > 0 else ""
        if prog != "bog.cli" and os.path.basename(prog) != "bog":
            continue
        inst = "default"
        for j, a in enumerate(argv):
            if a == "--instance" and j + 1 < len(argv):
                inst = argv[j + 1]
            elif a.startswith("--instance="):
                inst = a.split("=", 1)[1]
        if inst == instance:
            out.append(pid)
    return out


def _child_pid(parent: int, process: str) -> int:
    for pid in _pids():
        if _ppid(pid) == parent and (_cmdline(pid)[:1] or [""])[0].startswith(f"bog-{process}"):
            return pid
    return 0


def _shm_pid(instance: str, process: str) -> int:
    """PID of a live feed/engine from its metrics block, 0 if none."""
    reader = ShmReader(instance)
    try:
        info = reader.read().procs[process]
    finally:
        reader.close()
    return info.pid if info.rec is not None else 0  # rec only while the owner is alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:][:1] != b"Z"
    except OSError:
        return False


def _wait(pred, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def _log_dir(cfg) -> str:
    return os.path.abspath(os.environ.get("BOG_LOG_DIR") or cfg.process.log_dir or "logs")


def _local_start(args, cfg) -> int:
    inst = args.instance
    if args.process:
        raise CtlError(f"bogctl start {args.process}: without systemd units the local "
                       "supervisor runs all three processes: use 'bogctl start' (or "
                       f"'bogctl restart {args.process}' while it runs)")
    sups = find_supervisors(inst)
    if sups:
        _out(args, {"ok": True, "via": "supervisor", "action": "start", "pid": sups[0],
                    "already_running": True},
             f"bogctl: bog is already running (supervisor pid {sups[0]}, instance {inst})")
        return 0
    running = [p for p in ("feed", "engine") if _shm_pid(inst, p)]
    if running:
        raise CtlError(f"bogctl start: {' and '.join(running)} of instance {inst} already run "
                       "outside a supervisor (started by hand?): stop them first ('bogctl stop')")
    log_dir = _log_dir(cfg)
    os.makedirs(log_dir, mode=0o700, exist_ok=True)
    out_path = os.path.join(log_dir, "bog-run.out")
    argv = child_command() + ["run", "--instance", inst]  # -I: never imports from the cwd
    if args.config_path:
        argv += ["--config", os.path.abspath(args.config_path)]
    env = dict(os.environ, BOG_LOG_STDERR="0", BOG_LOG_DIR=log_dir)
    with open(out_path, "ab") as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)

    def up():
        return p.poll() is not None or (_shm_pid(inst, "feed") and _shm_pid(inst, "engine"))

    _wait(up, args.timeout)
    if p.poll() is not None or not (_shm_pid(inst, "feed") and _shm_pid(inst, "engine")):
        tail = _tail(out_path, 8) or _tail(os.path.join(log_dir, "bog.log"), 8)
        if p.poll() is None:
            msg = f"bog did not come up within {args.timeout:.0f} s (supervisor pid {p.pid} still trying)"
        else:
            msg = f"bog run exited with status {p.returncode}"
        raise CtlError(f"bogctl start: {msg}; last output:\n{tail}", 1)
    _out(args, {"ok": True, "via": "supervisor", "action": "start", "pid": p.pid},
         f"bogctl: bog started (supervisor pid {p.pid}, instance {inst}); logs in {log_dir}/bog.log")
    return 0


def _tail(path: str, n: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(collections.deque(f, n)).rstrip()
    except OSError:
        return ""


def _terminate(pids: list[int], timeout_s: float) -> list[int]:
    """SIGTERM, wait, SIGTERM again (the supervisor's 'kill now'); returns those still alive."""
    for pid in pids:
        try:
            signal_pid(pid, signal.SIGTERM)
        except ValueError:
            pass
    if not _wait(lambda: not any(_alive(p) for p in pids), timeout_s):
        for pid in pids:
            try:
                signal_pid(pid, signal.SIGTERM)
            except ValueError:
                pass
        _wait(lambda: not any(_alive(p) for p in pids), 10)
    return [p for p in pids if _alive(p)]


def _local_stop(args, cfg) -> int:
    inst = args.instance
    sups = find_supervisors(inst)
    if args.process and sups:
        raise CtlError(f"bogctl stop {args.process}: the local supervisor would restart it; "
                       "stop everything with 'bogctl stop' (or install the systemd units)")
    if sups:
        targets = sups
    else:
        names = [args.process] if args.process else ["feed", "engine"]
        targets = [pid for pid in (_shm_pid(inst, n) for n in names if n != "monitor") if pid]
        if not targets:
            _out(args, {"ok": True, "via": "supervisor", "action": "stop", "was_running": False},
                 f"bogctl: bog is not running (instance {inst})")
            return 0
    left = _terminate(targets, 30)
    if left:
        raise CtlError(f"bogctl stop: pid {', '.join(map(str, left))} did not stop; "
                       f"kill -9 {' '.join(map(str, left))}", 1)
    _out(args, {"ok": True, "via": "supervisor", "action": "stop", "pids": targets},
         f"bogctl: bog stopped (instance {inst}, pid {', '.join(map(str, targets))})")
    return 0


def _local_restart(args, cfg) -> int:
    if not args.process:
        quiet = argparse.Namespace(**{**vars(args), "json": True})
        with open(os.devnull, "w") as devnull:
            saved, sys.stdout = sys.stdout, devnull
            try:
                _local_stop(quiet, cfg)
            finally:
                sys.stdout = saved
        return _local_start(args, cfg)
    inst = args.instance
    sups = find_supervisors(inst)
    if not sups:
        raise CtlError(f"bogctl restart {args.process}: no local supervisor runs instance {inst} "
                       "(start it with 'bogctl start')")
    old = _child_pid(sups[0], args.process)
    if not old:
        raise CtlError(f"bogctl restart {args.process}: bog-{args.process} is not running under "
                       f"supervisor pid {sups[0]} (it restarts it by itself after a back-off)")
    signal_pid(old, signal.SIGTERM)

    def new():
        pid = _child_pid(sups[0], args.process)
        if not pid or pid == old:
            return 0
        if args.process == "monitor":
            return pid
        return pid if _shm_pid(inst, args.process) == pid else 0

    pid = _wait(new, args.timeout) and new()
    if not pid:
        raise CtlError(f"bogctl restart {args.process}: no new bog-{args.process} within "
                       f"{args.timeout:.0f} s (see 'bogctl logs -p err')", 1)
    _out(args, {"ok": True, "via": "supervisor", "action": "restart", "process": args.process,
                "old_pid": old, "pid": pid},
         f"bogctl: bog-{args.process} restarted (pid {old} -> {pid})")
    return 0


def cmd_lifecycle(args, cfg) -> int:
    from bog.units import units_installed

    if units_installed():
        return _systemctl(args, args.cmd)
    return {"start": _local_start, "stop": _local_stop, "restart": _local_restart}[args.cmd](args, cfg)


# -- logs -------------------------------------------------------------------------------------
def cmd_logs(args, cfg) -> int:
    from bog import logview as lv
    from bog.units import PROCESSES, TARGET, unit_name, units_installed

    prio = lv.parse_priority(args.priority) if args.priority else None
    since_ts = lv.parse_since(args.since) if args.since else None
    use_journal = args.source == "journal" or (args.source == "auto" and units_installed())
    if use_journal:
        units = [unit_name(args.process)] if args.process else (
            [unit_name(p) for p in PROCESSES] + [TARGET])
        cmd = lv.journal_command(units, args.since, args.priority, args.follow, args.lines)
        entries = lv.journal_entries(cmd)
        since_ts = None  # journalctl applied it (and understands more forms than we do)
    elif args.follow:
        log_dir = _log_dir(cfg)
        old = list(lv.file_entries(log_dir)) if lv.log_files(log_dir) else []
        n = args.lines if args.lines is not None else 10
        last = list(lv.select(old, args.pattern, since_ts, prio))[-n:] if n > 0 else []
        entries = _chain(last, lv.follow_file(log_dir))
        since_ts = None
    else:
        entries = lv.file_entries(_log_dir(cfg))
    if not use_journal:  # one bog.log may hold several instances' lines
        entries = (e for e in entries if e.instance in (None, args.instance)
                   and (not args.process or e.ident == f"bog-{args.process}"))
    selected = lv.select(entries, args.pattern, since_ts, prio)
    if args.lines and not args.follow:
        selected = iter(collections.deque(selected, args.lines))
    n = 0
    for e in selected:
        print(json.dumps(e.to_json()) if args.json else e.raw, flush=args.follow)
        n += 1
    return 0 if n else 1


def _chain(first, rest):
    yield from first
    yield from rest


# -- alerts and metrics (from the monitor) -------------------------------------------------------
def _monitor_url(args, cfg, path: str) -> str:
    if args.url:
        return args.url.rstrip("/") + path
    host = cfg.monitor.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.monitor.port}{path}"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5.0) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise CtlError(f"the monitor does not answer at {url} ({reason}): is bog-monitor "
                       "running ('bogctl status')? Another port: --config or --url")


def cmd_alerts(args, cfg) -> int:
    url = _monitor_url(args, cfg, "/alerts")
    code, body = _get(url)
    if code != 200:
        raise CtlError(f"GET {url}: HTTP {code}")
    doc = json.loads(body)
    firing, pending = doc.get("firing", []), doc.get("pending", [])
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"bog instance {doc.get('instance', args.instance)}: {len(firing)} firing, "
              f"{len(pending)} pending")
        for a in firing + pending:
            val = a.get("value")
            val = "" if val is None else f"  value {val:g}" if isinstance(val, (int, float)) else f"  value {val}"
            print(f"  {a['state'].upper():<8} {a['severity']:<9} {a['name']:<24} since "
                  f"{a['since']}{val}  {a['summary']}")
    return 1 if firing else 0


def cmd_metrics(args, cfg) -> int:
    url = _monitor_url(args, cfg, "/metrics")
    code, body = _get(url)
    if code != 200:
        raise CtlError(f"GET {url}: HTTP {code}")
    text = body.decode()
    greps = args.grep or []
    if args.json:
        from prometheus_client.parser import text_string_to_metric_families

        out = []
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if not greps or any(g in s.name for g in greps):
                    out.append({"name": s.name, "labels": s.labels, "value": s.value})
        print(json.dumps(out, indent=1))
        return 0 if out else 1
    lines = [ln for ln in text.splitlines() if not greps or any(g in ln for g in greps)]
    print("\n".join(lines))
    return 0 if lines else 1


# -- install-units ------------------------------------------------------------------------------
def cmd_install_units(args, cfg) -> int:
    from bog import units as U

    config = os.path.abspath(args.config_path or "/etc/bog/bog.toml")
    venv = os.path.abspath(args.venv or sys.prefix)
    if not os.path.exists(os.path.join(venv, "bin", "bog")):
        raise CtlError(f"bogctl install-units: {venv}/bin/bog not found: pass the venv bog is "
                       "installed in with --venv")
    cfg = load_config(config if os.path.exists(config) else None, env={})
    version = args.systemd_version or U.systemd_version() or 252
    opts = U.UnitOptions(venv=venv, config=config, cfg=cfg, instance=args.instance,
                         user=args.user, watchdog_s=args.watchdog_sec, systemd_version=version,
                         ncpu=os.cpu_count() or 0)
    files = U.render_units(opts)
    U.check_visible(opts, files)  # a venv under /tmp (PrivateTmp=) etc.: UnitPathError
    if args.print:
        for rel, text in files.items():
            print(f"### {rel}\n{text}")
        return 0
    prefix = os.path.abspath(args.prefix)
    try:
        written = U.write_units(files, prefix)
    except PermissionError as e:
        raise CtlError(f"bogctl install-units: permission denied writing {e.filename}: run as "
                       "root (sudo bogctl install-units) or render elsewhere with --prefix DIR")
    except OSError as e:
        raise CtlError(f"bogctl install-units: cannot write {e.filename}: {e.strerror}")
    warnings = []
    if prefix == "/" and not args.no_reload:
        warnings = U.activate(prefix, args.user, venv, config)
    if args.json:
        print(json.dumps({"ok": True, "written": written, "warnings": warnings}))
    else:
        for w in written:
            print(f"wrote {w}")
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        if prefix == "/":
            print("next: systemctl enable --now bog-trading.target   (status: bogctl status; "
                  "logs: journalctl -u bog-trading.slice)")
    return 0


# -- parser and main ---------------------------------------------------------------------------
def default_config_path() -> str | None:
    """``$BOG_CONFIG``, else ``/etc/bog/bog.toml`` if it exists (the units' config), else None."""
    env = os.environ.get("BOG_CONFIG")
    if env:
        return env
    return "/etc/bog/bog.toml" if os.path.exists("/etc/bog/bog.toml") else None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bogctl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--instance", default=os.environ.get("BOG_INSTANCE", "default"))
    common.add_argument("--config", help="the TOML config bog runs with (for ports); default "
                        "$BOG_CONFIG, else /etc/bog/bog.toml if present")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("status", parents=[common], help="one-screen status; exit 0/1/2")
    for verb in ("start", "stop", "restart"):
        p = sub.add_parser(verb, parents=[common],
                           help=f"{verb} bog (systemctl if the units are installed)")
        p.add_argument("process", nargs="?", choices=("feed", "engine", "monitor"))
        p.add_argument("--timeout", type=float, default=120.0,
                       help="seconds to wait for the processes (local supervisor)")
    p = sub.add_parser("logs", parents=[common], help="bog's log lines (journal or logs/bog.log)")
    p.add_argument("--pattern", action="append", default=[],
                   help="|".join(["circuit-breaker", "fills-dropped", "position-correction",
                                  "sequence-gap", "stale-data", "signals", "critical"])
                   + " or any text; repeat for OR")
    p.add_argument("--since", help="e.g. '10 minutes ago', '-1h', 'today', '2026-11-25 10:00'")
    p.add_argument("-p", "--priority", help="at most this syslog priority: err, warning, ... or 0-7")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, help="only the last N matching lines")
    p.add_argument("--process", choices=("feed", "engine", "monitor"))
    p.add_argument("--source", choices=("auto", "journal", "file"), default="auto",
                   help="auto: the journal when the systemd units are installed")
    p = sub.add_parser("alerts", parents=[common], help="the monitor's alerts; exit 1 if firing")
    p.add_argument("--url", help="monitor base URL (default from the config)")
    p = sub.add_parser("metrics", parents=[common], help="the monitor's /metrics")
    p.add_argument("--grep", action="append", help="only lines containing TEXT (repeat for OR)")
    p.add_argument("--url", help="monitor base URL (default from the config)")
    b = sub.add_parser("breaker", parents=[common], help="circuit breaker actions")
    b.add_argument("action", choices=("reset",))
    sub.add_parser("pause", parents=[common], help="stop quoting (cancels quotes)")
    sub.add_parser("resume", parents=[common], help="resume quoting")
    sub.add_parser("reconcile", parents=[common], help="reconcile position now")
    c = sub.add_parser("config", parents=[common], help="print shipped Prometheus/Grafana assets")
    c.add_argument("what", choices=NAMES, help="which asset: " + ", ".join(NAMES))
    i = sub.add_parser("install-units", parents=[common], help="render the systemd units")
    i.add_argument("--prefix", default="/", help="install root (default /: /etc/systemd/system, "
                   "then systemd-sysusers and daemon-reload)")
    i.add_argument("--venv", help="venv with bin/bog (default: this one)")
    i.add_argument("--user", default="bog", help="system user the processes run as")
    i.add_argument("--watchdog-sec", type=float, default=10.0, help="WatchdogSec= (default 10)")
    i.add_argument("--systemd-version", type=int, help="target systemd (default: the local one)")
    i.add_argument("--print", action="store_true", help="print the files, write nothing")
    i.add_argument("--no-reload", action="store_true", help="write only (no sysusers, no reload)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "install-units":
        args.config_path = args.config or "/etc/bog/bog.toml"
    else:
        args.config_path = args.config or default_config_path()
    try:
        seg_mod.validate_instance(args.instance)
        if args.cmd == "install-units":
            return cmd_install_units(args, None)
        cfg = load_config(args.config_path)
        seg_mod.set_shm_owner(cfg.process.shm_owner)
        if args.cmd == "status":
            return cmd_status(args, cfg)
        if args.cmd in ("start", "stop", "restart"):
            return cmd_lifecycle(args, cfg)
        if args.cmd == "logs":
            return cmd_logs(args, cfg)
        if args.cmd == "alerts":
            return cmd_alerts(args, cfg)
        if args.cmd == "metrics":
            return cmd_metrics(args, cfg)
        if args.cmd in ("breaker", "pause", "resume", "reconcile"):
            return cmd_control(args, cfg)
        if args.cmd == "config":
            return cmd_config(args, cfg)
    except CtlError as e:
        msg = str(e)
        print(msg if msg.startswith("bogctl") else f"bogctl {args.cmd}: {msg}", file=sys.stderr)
        return e.code
    except (ConfigError, seg_mod.SegmentError, ValueError) as e:
        print(f"bogctl {args.cmd}: {e}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except PermissionError as e:
        print(f"bogctl {args.cmd}: permission denied: {e.filename or e}: bog's shared memory, "
              "state and logs belong to the user bog runs as; run bogctl as that user "
              "(sudo -u bog bogctl ...) or as root", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bogctl logs | head`: stop quietly, as grep does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
