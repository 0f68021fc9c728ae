"""Another task on a pipeline core shows in the metrics: the engine's hot thread's and the
feed's thread's run-queue wait and preemptions, read from /proc (bog/schedstat.py) by each
process's housekeeping and exported by the monitor (docs/monitoring.md).

Contention is made for real: a CPU-spinning process pinned to the core under test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from support import FAST, merge, wait_for

from bog.bench import sched_counters
from bog.schedstat import SchedPublisher, thread_sched
from bog.shm.layouts import ENGINE_METRICS

SPIN = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"


class Spinner:
    """A process that spins on ``core`` (at ``nice``) until stopped; always stopped by the
    test's ``finally``."""

    def __init__(self, core: int, nice: int = 0):
        self.p = subprocess.Popen([sys.executable, "-I", "-c", SPIN, str(core)],
                                  preexec_fn=(lambda: os.nice(nice)) if nice else None,
                                  stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)


def _cpu_ns(pid: int) -> int:
    """utime + stime of ``pid`` from /proc/PID/stat (another file than thread_sched reads)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) * 10**9 // os.sysconf("SC_CLK_TCK")


def test_thread_sched_reads_the_wait_and_preemptions_of_a_starved_thread():
    """A nice-19 spinner sharing its core with a nice-0 spinner runs ~1.5% of the time: it
    waits far longer than it runs (the wait is schedstat's 2nd field, not its 1st, the run
    time) and every switch away from it is involuntary (it never sleeps)."""
    core = max(os.sched_getaffinity(0))
    hog = starved = None
    try:
        hog = Spinner(core)
        starved = Spinner(core, nice=19)
        time.sleep(0.2)
        first = thread_sched(starved.pid)
        assert set(first) == {"voluntary_switches", "involuntary_switches", "runqueue_wait_ns"}
        cpu0 = _cpu_ns(starved.pid)
        time.sleep(1.5)
        last = thread_sched(starved.pid)
        cpu1 = _cpu_ns(starved.pid)
    finally:
        for s in (starved, hog):
            if s is not None:
                s.stop()
    waited = last["runqueue_wait_ns"] - first["runqueue_wait_ns"]
    ran = cpu1 - cpu0
    assert waited > 500_000_000, (waited, ran)  # of 1.5 s
    assert waited > 5 * ran, (waited, ran)
    assert last["involuntary_switches"] - first["involuntary_switches"] >= 5, (first, last)
    # bog bench's counters are the same reading plus faults (one parser: bog/schedstat.py)
    assert thread_sched(os.getpid()).keys() <= sched_counters(os.getpid()).keys()


def test_publisher_reads_once_per_period_and_keeps_counters_when_the_thread_is_gone():
    rec = np.zeros(1, ENGINE_METRICS)[0]
    now = [100.0]
    pub = SchedPublisher(rec, threading.get_native_id(), period_s=1.0, clock=lambda: now[0])
    assert pub.poll()
    wait_ns = int(rec["thread_runqueue_wait_ns_total"])
    assert thread_sched(os.getpid(), threading.get_native_id())["runqueue_wait_ns"] >= wait_ns
    now[0] += 0.5
    assert not pub.poll()  # not again within the period
    now[0] += 0.6
    assert pub.poll()
    assert int(rec["thread_runqueue_wait_ns_total"]) >= wait_ns
    assert int(rec["thread_preemptions_total"]) >= 0 < int(rec["thread_runqueue_wait_ns_total"])

    done = threading.Thread(target=lambda: None)
    done.start()
    gone = done.native_id
    done.join()
    rec["thread_runqueue_wait_ns_total"], rec["thread_preemptions_total"] = 123, 45
    pub = SchedPublisher(rec, gone, clock=lambda: now[0])
    wait_for(lambda: not os.path.exists(f"/proc/{os.getpid()}/task/{gone}"), 5,
             what="the finished thread to leave /proc")
    assert not pub.poll()  # no exception, nothing written
    assert (int(rec["thread_runqueue_wait_ns_total"]), int(rec["thread_preemptions_total"])) \
        == (123, 45)
    assert thread_sched(os.getpid(), gone) == {}


@pytest.mark.slow
def test_a_task_on_the_engine_and_feed_cores_shows_in_their_counters(pipeline_factory):
    """A real pipeline at 20,000 ticks/s (the hot thread busy, not idle-sleeping), then a
    spinner pinned to the engine's core and one to the feed's: the engine's hot-thread and
    the feed's thread run-queue wait and preemptions grow, and never go down."""
    pl = pipeline_factory(merge(FAST, {"feed": {"rate_per_s": 20_000.0}}))
    pl.start_all()
    eng = wait_for(lambda: (lambda m: m if int(m["ticks_total"]) > 10_000
                            and int(m["hot_tid"]) > 0 else None)(pl.metrics()), 60,
                   what="ticks flowing")
    engine_core = int(eng["core"])
    feed_core = int(pl.metrics("feed")["core"])
    assert engine_core >= 0 and feed_core >= 0
    assert int(eng["hot_tid"]) != int(eng["pid"])  # the hot thread, not the main thread

    def counters():
        e, f = pl.metrics(), pl.metrics("feed")
        return (int(e["thread_runqueue_wait_ns_total"]), int(e["thread_preemptions_total"]),
                int(f["thread_runqueue_wait_ns_total"]), int(f["thread_preemptions_total"]))

    before = counters()
    spinners = []
    seen = [before]
    try:
        spinners.append(Spinner(engine_core))
        if feed_core != engine_core:
            spinners.append(Spinner(feed_core))

        def grown():
            c = counters()
            seen.append(c)
            return (c[0] - before[0] >= 50_000_000 and c[1] - before[1] >= 10
                    and c[2] - before[2] >= 10_000_000 and c[3] - before[3] >= 10)
        wait_for(grown, 30, interval=0.2, what="engine and feed thread counters to grow "
                 "with a spinner on their cores")
    finally:
        for s in spinners:
            s.stop()
    for a, b in zip(seen, seen[1:]):  # monotone (cumulative counters)
        assert all(y >= x for x, y in zip(a, b)), (a, b)
    assert all(v > 0 for v in seen[-1])
    assert all(p.alive() for p in pl.procs.values())
