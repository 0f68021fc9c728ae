"""A thread's scheduling counters from /proc: how long it waited for its CPU, how often it was
preempted.

The engine's hot thread busy-polls its core, so any other task the kernel runs there makes
it (and every tick) wait; the same goes for the feed's thread. Two cumulative counters say
so: the time the thread was runnable but not running (``/proc/PID/task/TID/schedstat``,
second field, ns) and its involuntary context switches (``nonvoluntary_ctxt_switches`` in
``status``). ``thread_sched`` reads them (``bog bench`` too); ``SchedPublisher`` copies them
into a metrics block from housekeeping, at most once per period, never from a hot path.

Cost of one ``thread_sched`` read (open, read and parse both files): ~32 us on the 2-vCPU test
VM (``python bog/schedstat.py`` measures it), i.e. ~0.003% of a core at once a second.
"""

from __future__ import annotations

import os
import time

RUNQUEUE_WAIT_FIELD = "thread_runqueue_wait_ns_total"  # layouts.py _SCHED_FIELDS
PREEMPTIONS_FIELD = "thread_preemptions_total"


def thread_sched(pid: int, tid: int | None = None) -> dict[str, int]:
    """``voluntary_switches``, ``involuntary_switches`` and ``runqueue_wait_ns`` (time runnable
    but waiting for a CPU) of thread ``tid`` of ``pid`` (its main thread by default), all
    cumulative since the thread started. Empty when the thread is gone or this system has no
    such files (not Linux, no CONFIG_SCHED_INFO)."""
    base = f"/proc/{pid}/task/{tid or pid}"
    out = {}
    try:
        with open(base + "/status", "rb") as f:
            for ln in f:
                if ln.startswith(b"voluntary_ctxt_switches:"):
                    out["voluntary_switches"] = int(ln.split()[1])
                elif ln.startswith(b"nonvoluntary_ctxt_switches:"):
                    out["involuntary_switches"] = int(ln.split()[1])
        with open(base + "/schedstat", "rb") as f:
            out["runqueue_wait_ns"] = int(f.read().split()[1])  # run ns, wait ns, timeslices
    except (OSError, IndexError, ValueError):
        return {}
    if len(out) != 3:
        return {}
    return out


class SchedPublisher:
    """Copies one thread's run-queue wait and involuntary switches into a metrics record
    (``thread_runqueue_wait_ns_total``, ``thread_preemptions_total``): ``poll()`` from
    housekeeping reads /proc at most once per ``period_s``. A failed read (thread gone, no
    /proc) leaves the counters as they were."""

    def __init__(self, rec, tid: int, period_s: float = 1.0, clock=time.monotonic):
        self.rec = rec  # the process's metrics record (MetricsBlock.m[0])
        self.pid = os.getpid()
        self.tid = tid
        self.period_s = period_s
        self.clock = clock
        self._next = 0.0  # the first poll reads at once

    def poll(self) -> bool:
        """Publish if a period has passed; True when the counters were read and written."""
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.period_s
        c = thread_sched(self.pid, self.tid)
        if not c:
            return False
        self.rec[RUNQUEUE_WAIT_FIELD] = c["runqueue_wait_ns"]
        self.rec[PREEMPTIONS_FIELD] = c["involuntary_switches"]
        return True


if __name__ == "__main__":  # the cost of one read, as quoted above
    import threading

    tid, n = threading.get_native_id(), 2000
    thread_sched(os.getpid(), tid)
    t0 = time.perf_counter()
    for _ in range(n):
        thread_sched(os.getpid(), tid)
    print(f"thread_sched: {(time.perf_counter() - t0) / n * 1e6:.1f} us per read")
