"""``bogctl start | stop | restart``: systemctl when the units are installed, else the local
supervisor (``bog run``) started in the background."""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import time

from bog.ctl.common import CtlError, emit, log_directory, wait
from bog.ctl.procs import child_pid, find_supervisors, shm_pid, terminate
from bog.ctl.systemd import systemctl
from bog.monitor import address
from bog.monitor.reader import ShmReader
from bog.process import child_command, http_status, signal_pid


def register(sub, common) -> None:
    for verb in ("start", "stop", "restart"):
        p = sub.add_parser(verb, parents=[common],
                           help=f"{verb} bog (systemctl if the units are installed)")
        p.add_argument("process", nargs="?", choices=("feed", "engine", "monitor", "gateway"))
        p.add_argument("--timeout", type=float, default=120.0,
                       help="seconds to wait for the processes (local supervisor)")
        p.set_defaults(func=cmd_lifecycle)


def _local_start(args, cfg) -> int:
    inst = args.instance
    if args.process:
        raise CtlError(f"bogctl start {args.process}: without systemd units the local "
                       f"supervisor runs all {'three' if _paper(cfg) else 'four'} processes: use "
                       "'bogctl start' (or "
                       f"'bogctl restart {args.process}' while it runs)")
    sups = find_supervisors(inst)
    if sups:
        emit(args, {"ok": True, "via": "supervisor", "action": "start", "pid": sups[0],
                    "already_running": True},
             f"bogctl: bog is already running (supervisor pid {sups[0]}, instance {inst})")
        return 0
    running = [p for p in ("feed", "engine", "gateway") if shm_pid(inst, p)]
    if running:
        raise CtlError(f"bogctl start: {' and '.join(running)} of instance {inst} already run "
                       "outside a supervisor (started by hand?): stop them first ('bogctl stop')")
    log_dir = log_directory(cfg)
    os.makedirs(log_dir, mode=0o700, exist_ok=True)
    out_path = os.path.join(log_dir, "bog-run.out")
    argv = child_command() + ["run", "--instance", inst]  # -I: never imports from the cwd
    if args.config_path:
        argv += ["--config", os.path.abspath(args.config_path)]
    env = dict(os.environ, BOG_LOG_STDERR="0", BOG_LOG_DIR=log_dir)
    with open(out_path, "ab") as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)

    t0 = time.time()
    mode = cfg.execution.mode if cfg is not None else "paper"
    state = wait_up(inst, p, args.timeout, mode)
    if p.poll() is not None or any(v != "up" for v in state.values()):
        down = [f"{name} {why}" for name, why in state.items() if why != "up"]
        errors = _error_lines(log_dir, inst, t0)
        failed = sorted({e.ident for e in errors if e.ident != "bog-supervisor"})
        if p.poll() is None:
            msg = (f"bog did not come up within {args.timeout:.0f} s (supervisor pid {p.pid} "
                   f"still trying; {', '.join(down)})")
        else:
            what = f"{' and '.join(failed)} failed" if failed else "it failed"
            msg = f"{what}: bog run exited with status {p.returncode}"
        tail = "\n".join(e.raw for e in errors[-6:]) or _tail(out_path, 8) or _tail(
            os.path.join(log_dir, "bog.log"), 8)
        raise CtlError(f"bogctl start: {msg}; last errors (logs in {log_dir}/bog.log):\n{tail}", 1)
    emit(args, {"ok": True, "via": "supervisor", "action": "start", "pid": p.pid,
                "processes": state},
         f"bogctl: bog started: {', '.join(list(state)[:-1])} and {list(state)[-1]} up "
         f"(supervisor pid {p.pid}, instance {inst}); logs in {log_dir}/bog.log")
    return 0


def _paper(cfg) -> bool:
    return cfg is None or cfg.execution.mode == "paper"


def pipeline_state(instance: str, exec_mode: str = "paper") -> dict[str, str]:
    """"up", or why not, for each process: feed, engine and (dry-run/live) gateway from shared
    memory, the monitor from the address it published and its /health answering."""
    reader = ShmReader(instance, exec_mode=exec_mode)
    try:
        procs = reader.read().procs
    finally:
        reader.close()
    state = {p: "up" if info.up else info.state for p, info in procs.items()}
    addr = address.lookup(instance)
    if addr is None:
        state["monitor"] = "not listening"
    elif http_status(addr.url("/health"), 0.5) is None:
        state["monitor"] = f"not answering at {addr.url('/health')}"
    else:
        state["monitor"] = "up"
    return state


def wait_up(instance: str, supervisor: subprocess.Popen, timeout_s: float,
            exec_mode: str = "paper") -> dict[str, str]:
    """Poll until every process is up, the supervisor exited, or ``timeout_s`` passed."""
    state: dict[str, str] = {}

    def done():
        nonlocal state
        if supervisor.poll() is not None:
            return True
        state = pipeline_state(instance, exec_mode)
        return all(v == "up" for v in state.values())

    wait(done, timeout_s)
    return state


def _error_lines(log_dir: str, instance: str, since_ts: float) -> list:
    """This instance's log entries at priority err or worse since ``since_ts``."""
    from bog import logview as lv

    try:
        return [e for e in lv.file_entries(log_dir) if e.instance == instance
                and e.ts >= since_ts - 1 and e.priority <= 3]
    except lv.LogError:
        return []


def _tail(path: str, n: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(collections.deque(f, n)).rstrip()
    except OSError:
        return ""


def _local_stop(args, cfg) -> int:
    inst = args.instance
    sups = find_supervisors(inst)
    if args.process and sups:
        raise CtlError(f"bogctl stop {args.process}: the local supervisor would restart it; "
                       "stop everything with 'bogctl stop' (or install the systemd units)")
    if sups:
        targets = sups
    else:
        names = [args.process] if args.process else ["gateway", "engine", "feed"]
        targets = [pid for pid in (shm_pid(inst, n) for n in names if n != "monitor") if pid]
        if not targets:
            emit(args, {"ok": True, "via": "supervisor", "action": "stop", "was_running": False},
                 f"bogctl: bog is not running (instance {inst})")
            return 0
    left = terminate(targets, 30)
    if left:
        raise CtlError(f"bogctl stop: pid {', '.join(map(str, left))} did not stop; "
                       f"kill -9 {' '.join(map(str, left))}", 1)
    emit(args, {"ok": True, "via": "supervisor", "action": "stop", "pids": targets},
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
    old = child_pid(sups[0], args.process)
    if not old:
        raise CtlError(f"bogctl restart {args.process}: bog-{args.process} is not running under "
                       f"supervisor pid {sups[0]} (it restarts it by itself after a back-off)")
    signal_pid(old, signal.SIGTERM)

    def new():
        pid = child_pid(sups[0], args.process)
        if not pid or pid == old:
            return 0
        if args.process == "monitor":
            return pid
        return pid if shm_pid(inst, args.process) == pid else 0

    pid = wait(new, args.timeout) and new()
    if not pid:
        raise CtlError(f"bogctl restart {args.process}: no new bog-{args.process} within "
                       f"{args.timeout:.0f} s (see 'bogctl logs -p err')", 1)
    emit(args, {"ok": True, "via": "supervisor", "action": "restart", "process": args.process,
                "old_pid": old, "pid": pid},
         f"bogctl: bog-{args.process} restarted (pid {old} -> {pid})")
    return 0


def cmd_lifecycle(args, cfg) -> int:
    from bog.units import units_installed

    if units_installed():
        return systemctl(args, args.cmd)
    return {"start": _local_start, "stop": _local_stop, "restart": _local_restart}[args.cmd](args, cfg)
