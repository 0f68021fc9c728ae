"""systemd: the units' state, start/stop/restart through systemctl, ``bogctl install-units``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bog.config import load_config
from bog.ctl.common import CtlError, emit


def register(sub, common) -> None:
    i = sub.add_parser("install-units", parents=[common], help="render the systemd units")
    i.add_argument("--prefix", default="/", help="install root (default /: /etc/systemd/system, "
                   "then systemd-sysusers and daemon-reload)")
    i.add_argument("--venv", help="venv with bin/bog (default: this one)")
    i.add_argument("--user", default="bog", help="system user the processes run as")
    i.add_argument("--watchdog-sec", type=float, default=10.0, help="WatchdogSec= (default 10)")
    i.add_argument("--systemd-version", type=int, help="target systemd (default: the local one)")
    i.add_argument("--print", action="store_true", help="print the files, write nothing")
    i.add_argument("--no-reload", action="store_true", help="write only (no sysusers, no reload)")
    i.set_defaults(func=cmd_install_units, needs_config=False)


def systemd_units_state() -> dict | None:
    """ActiveState/SubState/MainPID/NRestarts of each bog unit, None without the units
    (bog-gateway.service only where it is installed: execution.mode dry-run / live)."""
    from bog.units import ALL_PROCESSES, PROCESSES, TARGET, unit_name, units_installed

    if not units_installed():
        return None
    out = {}
    for unit in [TARGET] + [unit_name(p) for p in ALL_PROCESSES]:
        r = subprocess.run(["systemctl", "show", "-p",
                            "LoadState,ActiveState,SubState,MainPID,NRestarts", unit],
                           capture_output=True, text=True)
        kv = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        if unit not in [TARGET] + [unit_name(p) for p in PROCESSES] \
                and kv.get("LoadState") != "loaded":
            continue  # paper: no gateway unit
        out[unit] = {"active": kv.get("ActiveState", "?"), "sub": kv.get("SubState", "?"),
                     "main_pid": int(kv.get("MainPID", "0") or 0),
                     "restarts": int(kv.get("NRestarts", "0") or 0)}
    return out


def systemctl(args, verb: str) -> int:
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
    emit(args, {"ok": True, "via": "systemctl", "unit": unit, "action": verb},
         f"bogctl: {' '.join(cmd)}: done (check with 'bogctl status'; logs: 'bogctl logs')")
    return 0


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
