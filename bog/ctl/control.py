"""``bogctl breaker reset | pause | resume | reconcile``: requests through the engine's
owner-only shared-memory control block (never HTTP)."""

from __future__ import annotations

import json

from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.layouts import CONTROL, KIND_CONTROL


def register(sub, common) -> None:
    b = sub.add_parser("breaker", parents=[common], help="circuit breaker actions")
    b.add_argument("action", choices=("reset",))
    sub.add_parser("pause", parents=[common], help="stop quoting (cancels quotes)")
    sub.add_parser("resume", parents=[common], help="resume quoting")
    sub.add_parser("reconcile", parents=[common], help="reconcile position now")
    for verb in ("breaker", "pause", "resume", "reconcile"):
        sub.choices[verb].set_defaults(func=cmd_control)


def _control(instance: str):
    name = SegmentNames(instance).control
    seg = seg_mod.attach(name, KIND_CONTROL, writable=True)
    return seg, seg.view(CONTROL)


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
