"""Keep the rest of the machine off the engine's core for a while (``bog bench --isolate``).

The engine's hot thread busy-polls its core; any other task the scheduler runs there preempts
it, and every tick published meanwhile waits (measured: the machine's own agents and kernel
threads took the engine core for 1-20 ms at a time, ``bog bench --sched-trace``). On a
production box that core is kept clean for good: ``isolcpus=``/``nohz_full=`` on the kernel
command line, or systemd's ``CPUAffinity=`` (docs/operations.md "Engine core"). This module does the same for the length of a benchmark
step, so the two setups can be measured back to back on the same machine: every task whose
CPU affinity allows it loses the engine core, and gets its exact previous affinity back
afterwards.

It needs root (``sched_setaffinity`` on other users' tasks) and is never used by the pipeline
itself. Tasks that refuse (per-CPU kernel threads, pinned to that core by design) are left
where they are and counted; tasks started during the window inherit their parent's reduced
affinity and are not restored.

Killed with SIGKILL, the bench cannot restore anything itself: the affinities it changed are
kept in ``/run/bog-isolate/PID.json`` (a root-owned 0700 directory) for the length of the
block, and the next isolation first restores those of a dead bench (a task whose affinity is
still the reduced one it set), then removes the record.
"""

from __future__ import annotations

import json
import logging
import os
import stat

log = logging.getLogger("bog")
RECORD_DIR = "/run/bog-isolate"


class IsolationError(RuntimeError):
    """No task could be moved off the core (not root); the message says so."""


def _tasks():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                yield int(pid), int(tid)
        except OSError:  # gone meanwhile
            continue


class CoreIsolation:
    """``with CoreIsolation(core, keep_pids={os.getpid()}):`` - nothing but what is started
    inside (and the processes in ``keep_pids``) may run on ``core`` during the block."""

    def __init__(self, core: int, keep_pids: set[int] | None = None,
                 only_pids: set[int] | None = None):
        self.core = core
        self.keep = set(keep_pids or ())
        self.only = None if only_pids is None else set(only_pids)  # tests: these processes only
        self.saved: dict[int, set[int]] = {}
        self.moved = 0
        self.refused = 0  # per-CPU kernel threads, or not ours to move (not root)

    def __enter__(self) -> "CoreIsolation":
        restore_leftovers()
        plan: dict[int, set[int]] = {}
        for pid, tid in _tasks():
            if pid in self.keep or (self.only is not None and pid not in self.only):
                continue
            try:
                mask = os.sched_getaffinity(tid)
            except OSError:
                continue
            if self.core in mask and len(mask) >= 2:
                plan[tid] = mask
        _write_record(self.core, plan)  # before any change: a SIGKILL from here on is undone
        for tid, mask in plan.items():
            try:
                os.sched_setaffinity(tid, mask - {self.core})
            except OSError:
                self.refused += 1
                continue
            self.saved[tid] = mask
            self.moved += 1
        return self

    def __exit__(self, *exc) -> None:
        _restore(self.core, self.saved)
        self.saved.clear()
        try:
            os.unlink(_record_path(os.getpid()))
        except OSError:
            pass


def _record_path(pid: int) -> str:
    return os.path.join(RECORD_DIR, f"{pid}.json")


def _trusted_dir() -> bool:
    """The record directory is a real directory of this user, mode 0700 (not a link, not
    writable by anyone else); else it is neither read nor written, and that is logged."""
    st = os.lstat(RECORD_DIR)
    if (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and stat.S_IMODE(st.st_mode) == 0o700):
        return True
    log.critical("bench --isolate: %s is not a directory of uid %d with mode 0700: its "
                 "records are not trusted, nothing read from or written to it (remove it)",
                 RECORD_DIR, os.geteuid())
    return False


def _write_record(core: int, saved: dict[int, set[int]]) -> None:
    try:
        os.makedirs(RECORD_DIR, mode=0o700, exist_ok=True)
        if not _trusted_dir():
            return
        tmp = _record_path(os.getpid()) + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"core": core, "saved": {str(t): sorted(m) for t, m in saved.items()}}, f)
        os.replace(tmp, _record_path(os.getpid()))
    except OSError as e:  # a read-only /run: isolation still works, only not crash-safe
        log.warning("bench --isolate: cannot keep a restore record in %s (%s): a SIGKILL "
                    "would leave tasks off the core", RECORD_DIR, e)


def _restore(core: int, saved: dict[int, set[int]]) -> int:
    """Give each task its saved affinity back if it still has the reduced one; returns how
    many were restored."""
    n = 0
    for tid, mask in saved.items():
        try:
            if os.sched_getaffinity(tid) == mask - {core}:
                os.sched_setaffinity(tid, mask)
                n += 1
        except OSError:  # the task ended
            pass
    return n


def restore_leftovers() -> int:
    """Restore what a killed bench left isolated (its record names a pid that is gone). Only a
    directory this user owns, mode 0700, is trusted: another user's record is never read."""
    if not os.path.lexists(RECORD_DIR) or not _trusted_dir():
        return 0
    n = 0
    for name in os.listdir(RECORD_DIR):
        pid = name.removesuffix(".json")
        if not name.endswith(".json") or not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        path = os.path.join(RECORD_DIR, name)
        try:
            with open(path) as f:
                rec = json.load(f)
            saved = {int(t): set(m) for t, m in rec["saved"].items()}
            n += _restore(int(rec["core"]), saved)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error("bench --isolate: unreadable restore record %s (%s): removed", path, e)
        os.unlink(path)
    if n:
        log.warning("bench --isolate: restored the CPU affinity of %d tasks left off the "
                    "engine core by a bench that was killed", n)
    return n
