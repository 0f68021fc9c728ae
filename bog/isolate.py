"""Keep the rest of the machine off the engine's core for a while (``bog bench --isolate``).

The engine's hot thread busy-polls its core; any other task the scheduler runs there preempts
it, and every tick published meanwhile waits (measured: the machine's own agents and kernel
threads took the engine core for 1-20 ms at a time, ``bog bench --sched-trace``). On a
production box that core is kept clean for good: ``isolcpus=``/``nohz_full=`` on the kernel
command line, or systemd's ``AllowedCPUs=`` on ``system.slice``, ``user.slice`` and
``init.scope`` (docs/operations.md). This module does the same for the length of a benchmark
step, so the two setups can be measured back to back on the same machine: every task whose
CPU affinity allows it loses the engine core, and gets its exact previous affinity back
afterwards.

It needs root (``sched_setaffinity`` on other users' tasks) and is never used by the pipeline
itself. Tasks that refuse (per-CPU kernel threads, pinned to that core by design) are left
where they are and counted; tasks started during the window inherit their parent's reduced
affinity and are not restored.
"""

from __future__ import annotations

import os


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
        for pid, tid in _tasks():
            if pid in self.keep or (self.only is not None and pid not in self.only):
                continue
            try:
                mask = os.sched_getaffinity(tid)
            except OSError:
                continue
            if self.core not in mask or len(mask) < 2:
                continue
            try:
                os.sched_setaffinity(tid, mask - {self.core})
            except OSError:
                self.refused += 1
                continue
            self.saved[tid] = mask
            self.moved += 1
        return self

    def __exit__(self, *exc) -> None:
        for tid, mask in self.saved.items():
            try:
                os.sched_setaffinity(tid, mask)
            except OSError:  # the task ended
                pass
        self.saved.clear()
