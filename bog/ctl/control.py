"""``bogctl breaker reset | pause | resume | reconcile``: requests through the engine's
owner-only shared-memory control block (never HTTP).

A request is only written to a live engine's block (its owner alive, the block READY, the
engine's heartbeat fresh): a dead engine's block is left behind by a crash and its successor
starts with a fresh one, so a request written there would be lost. Then bogctl waits for the
engine's acknowledgement (the ``*_applied`` words, written once the request took effect) and
says "applied" only then; without it the exit status is non-zero.
"""

from __future__ import annotations

import time

from bog.ctl.common import EXIT_DEGRADED, EXIT_NOT_RUNNING, CtlError, emit
from bog.monitor.reader import STALLED, STARTING, ShmReader
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.layouts import CONTROL, KIND_CONTROL

ACK_TIMEOUT_S = 5.0
POLL_S = 0.01


def register(sub, common) -> None:
    b = sub.add_parser("breaker", parents=[common], help="circuit breaker actions")
    b.add_argument("action", choices=("reset",))
    sub.add_parser("pause", parents=[common], help="stop quoting (cancels quotes; survives "
                   "an engine restart until 'bogctl resume')")
    sub.add_parser("resume", parents=[common], help="resume quoting")
    sub.add_parser("reconcile", parents=[common], help="reconcile position now")
    for verb in ("breaker", "pause", "resume", "reconcile"):
        p = sub.choices[verb]
        p.add_argument("--timeout", type=float, default=ACK_TIMEOUT_S,
                       help=f"seconds to wait for the engine's acknowledgement "
                       f"(default {ACK_TIMEOUT_S:g})")
        p.set_defaults(func=cmd_control)


def _not_running(args, why: str) -> CtlError:
    return CtlError(f"bogctl {_verb(args)}: the engine of instance {args.instance} is not "
                    f"running ({why}); nothing was changed. Start it ('bogctl start'); a "
                    "paused engine starts paused", EXIT_NOT_RUNNING)


def _verb(args) -> str:
    return "breaker reset" if args.cmd == "breaker" else args.cmd


def _owner(seg) -> tuple[int, int]:
    h = seg.header[0]
    return int(h["owner_pid"]), int(h["owner_start_ticks"])


def attach_live(args) -> seg_mod.Segment:
    """The control block of a live, responsive engine (waits ``--timeout`` while it starts)."""
    name = SegmentNames(args.instance).control
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            seg = seg_mod.attach(name, KIND_CONTROL, writable=True)
        except seg_mod.SegmentError as e:
            if "does not exist" in str(e):
                raise _not_running(args, f"no control block {name}")
            raise
        pid, start = _owner(seg)
        state = seg.state
        if not seg_mod.owner_alive(pid, start):
            seg.close(unlink=False)
            raise _not_running(args, f"{name} was left by pid {pid}, which is gone")
        if state == seg_mod.STATE_CLOSED:
            seg.close(unlink=False)
            raise _not_running(args, f"pid {pid} is shutting down")
        if state == seg_mod.STATE_READY:
            break
        seg.close(unlink=False)
        if time.monotonic() >= deadline:
            raise CtlError(f"bogctl {_verb(args)}: the engine (pid {pid}) is still starting; "
                           "nothing was changed - try again", EXIT_DEGRADED)
        time.sleep(0.1)
    reader = ShmReader(args.instance)
    try:
        info = reader.read().procs["engine"]
    finally:
        reader.close()
    why = None
    if info.pid != pid:
        why = f"its metrics block belongs to pid {info.pid or 'none'}, not to pid {pid}"
    elif info.state == STALLED:
        why = f"its heartbeat is {info.heartbeat_age_s:.1f} s old"
    elif info.state == STARTING:
        why = "it is not in its main loop"
    elif not info.up:
        why = f"it is {info.state}"
    if why:
        seg.close(unlink=False)
        raise CtlError(f"bogctl {_verb(args)}: the engine (pid {pid}) is not responding ({why});"
                       " nothing was changed", EXIT_NOT_RUNNING)
    return seg


def cmd_control(args, cfg) -> int:
    seg = attach_live(args)
    pid = _owner(seg)[0]
    ctl = seg.view(CONTROL)
    c = ctl[0]
    try:
        if args.cmd == "breaker":
            want = int(c["breaker_reset_requests"]) + 1
            c["breaker_reset_requests"] = want
            done = lambda: int(c["breaker_reset_applied"]) >= want  # noqa: E731
            msg = "circuit breaker reset: applied"
        elif args.cmd == "reconcile":
            want = int(c["reconcile_requests"]) + 1
            c["reconcile_requests"] = want
            done = lambda: int(c["reconcile_applied"]) >= want  # noqa: E731
            msg = "reconciliation: done"
        else:
            want = 1 if args.cmd == "pause" else 0
            c["pause_requested"] = want
            done = lambda: int(c["pause_applied"]) == want  # noqa: E731
            msg = "paused: quotes cancelled" if want else "resumed: quoting again"
        deadline = time.monotonic() + args.timeout
        while not done():
            if args.cmd == "breaker" and int(c["breaker_reset_refused"]) >= want:
                raise CtlError(
                    f"bogctl {_verb(args)}: refused by the engine (pid {pid}): journal writes "
                    "are failing, so it must not trade; free the journal's disk, then reset "
                    "again ('bogctl logs -p err' says why)", EXIT_DEGRADED)
            if not seg_mod.owner_alive(*_owner(seg)):
                raise CtlError(f"bogctl {_verb(args)}: the engine (pid {pid}) exited before "
                               "applying the request; check 'bogctl logs -p err'", EXIT_NOT_RUNNING)
            if time.monotonic() >= deadline:
                raise CtlError(
                    f"bogctl {_verb(args)}: the engine (pid {pid}) did not acknowledge within "
                    f"{args.timeout:g} s; the request stays in its control block and applies "
                    "when it catches up - check 'bogctl status' and 'bogctl logs'", EXIT_DEGRADED)
            time.sleep(POLL_S)
        persisted = bool(int(c["pause_persisted"]))
    finally:
        c = ctl = None
        seg.close(unlink=False)
    code = 0
    if args.cmd == "pause":
        if persisted:
            msg += "; paused (persisted): a restarted engine stays paused until 'bogctl resume'"
        else:
            msg += ("; NOT persisted (see 'bogctl logs -p err'): a restarted engine would "
                    "quote again")
            code = EXIT_DEGRADED
    elif args.cmd == "resume" and persisted:
        msg += ("; the persisted pause flag could not be removed (see 'bogctl logs -p err'): "
                "a restarted engine would start paused")
        code = EXIT_DEGRADED
    doc = {"ok": code == 0, "action": _verb(args), "applied": True, "engine_pid": pid,
           "message": msg}
    if args.cmd in ("pause", "resume"):
        doc["pause_persisted"] = persisted
    emit(args, doc, f"bogctl: {msg} (engine pid {pid}, instance {args.instance})")
    return code
