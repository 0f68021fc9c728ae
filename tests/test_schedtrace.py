"""Tail-latency tooling: the scheduler trace (``bog bench --sched-trace``), keeping other tasks
off the engine's core (``bog bench --isolate``) and the frozen startup heap.

The trace test runs the kernel's real tracefs on real processes (it needs root: as a non-root
user it checks the refusal names what is missing instead)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from bog.isolate import CoreIsolation
from bog.schedtrace import SchedTrace, SchedTraceError, analyse

# real sched_switch lines (format of Linux 6.x trace output); 100 = the feed, 200 = the engine's
# hot thread, 300 = the engine's Python thread
TRACE = textwrap.dedent("""\
    # tracer: nop
        bog-feed-100   [000] d..2. 25181.000100: sched_switch: prev_comm=bog-feed prev_pid=100 prev_prio=120 prev_state=R ==> next_comm=bog-engine next_pid=300 next_prio=120
      bog-engine-300   [000] d..2. 25181.000112: sched_switch: prev_comm=bog-engine prev_pid=300 prev_prio=120 prev_state=S ==> next_comm=bog-feed next_pid=100 next_prio=120
        bog-feed-100   [000] d..2. 25181.001000: sched_switch: prev_comm=bog-feed prev_pid=100 prev_prio=120 prev_state=R+ ==> next_comm=tokio-rt-worker next_pid=75 next_prio=120
    tokio-rt-worker-75 [000] d..2. 25181.003000: sched_switch: prev_comm=tokio-rt-worker prev_pid=75 prev_prio=120 prev_state=S ==> next_comm=bog-feed next_pid=100 next_prio=120
      bog-engine-200   [001] d..2. 25181.004000: sched_switch: prev_comm=bog-engine prev_pid=200 prev_prio=120 prev_state=R ==> next_comm=kworker/1:1 next_pid=17 next_prio=120
     kworker/1:1-17    [001] d..2. 25181.004010: sched_switch: prev_comm=kworker/1:1 prev_pid=17 prev_prio=120 prev_state=I ==> next_comm=bog-engine next_pid=200 next_prio=120
      bog-engine-200   [001] d..2. 25181.005000: sched_switch: prev_comm=bog-engine prev_pid=200 prev_prio=120 prev_state=R ==> next_comm=kworker/1:0 next_pid=18 next_prio=120
     kworker/1:0-18    [001] d..2. 25181.005030: sched_switch: prev_comm=kworker/1:0 prev_pid=18 prev_prio=120 prev_state=I ==> next_comm=bog-engine next_pid=200 next_prio=120
        bog-feed-100   [000] d..2. 25181.006000: sched_switch: prev_comm=bog-feed prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
         <idle>-0      [000] d..2. 25181.007000: sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=bog-feed next_pid=100 next_prio=120
    """)


def test_analyse_charges_each_preemption_to_the_task_that_took_the_cpu():
    rep = analyse(TRACE.splitlines(), {"feed": 100, "engine_hot": 200},
                  own={300: "engine:main"})
    feed, hot = rep["feed"], rep["engine_hot"]
    # two preemptions (12 us by the engine's own Python thread, 2 ms by the machine's agent);
    # the sleep (prev_state=S) is not time taken from it
    assert feed["preemptions"] == 2 and feed["sleeps"] == 1
    assert feed["preempted_us"] == 12 + 2000 and feed["max_preempted_us"] == 2000
    assert feed["by"] == [
        {"comm": "tokio-rt-worker", "count": 1, "total_us": 2000, "max_us": 2000},
        {"comm": "bog engine:main", "count": 1, "total_us": 12, "max_us": 12}]
    # per-CPU kernel threads are reported as one kind
    assert hot["preemptions"] == 2 and hot["sleeps"] == 0
    assert hot["by"] == [{"comm": "kworker", "count": 2, "total_us": 40, "max_us": 30}]


def _spinner(core: int) -> subprocess.Popen:
    code = (f"import os; os.sched_setaffinity(0, {{{core}}}); print('ok', flush=True)\n"
            "while True: pass\n")
    p = subprocess.Popen([sys.executable, "-I", "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ok"
    return p


def test_real_trace_names_the_process_that_preempted_a_spinning_thread():
    """Two real processes spin on one core: the trace must charge each one's lost time to the
    other, by name, and find no preemption of a thread that sleeps."""
    core = max(os.sched_getaffinity(0))
    a, b = _spinner(core), _spinner(core)
    try:
        trace = SchedTrace({"a": a.pid})
        if os.geteuid() != 0:
            with pytest.raises(SchedTraceError, match="root"):
                trace.start()
            return
        trace.start()  # (mounts tracefs if it is not yet)
        trace.close()
        # an instance left by a bench killed with -9 (its pid gone) is removed at the next start
        stale = "/sys/kernel/tracing/instances/bog-bench-999999999"
        os.mkdir(stale)
        trace.start()
        try:
            assert not os.path.exists(stale)
            time.sleep(1.0)
            rep = trace.stop()["a"]
        finally:
            trace.close()
    finally:
        for p in (a, b):
            p.kill()
            p.wait(10)
    assert rep["tid"] == a.pid
    # sharing a core half and half: preempted many times, for a large part of the second
    assert rep["preemptions"] >= 5 and rep["preempted_us"] >= 100_000, rep
    top = rep["by"][0]
    assert top["comm"] == "python" or top["comm"].startswith("python"), rep
    assert top["total_us"] >= rep["preempted_us"] // 2
    # the private trace instance is gone again
    assert not any(d.startswith("bog-bench-") for d in os.listdir(
        "/sys/kernel/tracing/instances"))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to isolate one")
def test_core_isolation_moves_other_tasks_off_the_core_and_restores_them():
    core = max(os.sched_getaffinity(0))
    other = subprocess.Popen(["sleep", "60"])
    pinned = subprocess.Popen([sys.executable, "-I", "-c",
                               f"import os, time; os.sched_setaffinity(0, {{{core}}}); "
                               "print('ok', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert pinned.stdout.readline().strip() == "ok"
        before = os.sched_getaffinity(other.pid)
        assert core in before and len(before) >= 2
        # (limited to these processes: the test must not move the machine's other tasks)
        with CoreIsolation(core, keep_pids={os.getpid()},
                           only_pids={os.getpid(), other.pid, pinned.pid}) as iso:
            assert iso.moved == 1
            assert os.sched_getaffinity(other.pid) == before - {core}
            # a task pinned to that core alone stays (moving it would break its pinning), and
            # the kept process (the bench) keeps the core for the processes it starts
            assert os.sched_getaffinity(pinned.pid) == {core}
            assert core in os.sched_getaffinity(0)
        assert os.sched_getaffinity(other.pid) == before
    finally:
        for p in (other, pinned):
            p.kill()
            p.wait(10)


def test_service_freezes_its_startup_objects_out_of_the_garbage_collector():
    """A full collection in a running bog process scans only what its loop allocated: what
    startup built is frozen (the engine's first full collection took 86 ms before)."""
    code = textwrap.dedent("""\
        import gc, sys
        from bog.config import Config
        from bog.process import Service

        class S(Service):
            name = "probe"
            def startup(self):
                import numpy  # a startup that builds a heap, as the engine's does
            def main_loop(self):
                print(gc.get_freeze_count(), flush=True)

        sys.exit(S(Config(), "probe").run())
        """)
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) > 10_000, r.stdout


def test_realtime_on_a_busy_polling_thread_is_applied_with_a_warning_naming_the_stalls(caplog):
    """SCHED_FIFO on the engine's polling thread made it stop 50 ms every second here: bog
    still applies what is configured, and says what it costs (or why it could not)."""
    import logging
    import threading

    from bog.process import set_realtime

    out = {}

    def probe():  # its own thread: the test's thread keeps normal scheduling
        out["ok"] = set_realtime(1, busy_poll=True)
        out["policy"] = os.sched_getscheduler(0)
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))

    with caplog.at_level(logging.INFO, logger="bog"):
        t = threading.Thread(target=probe)
        t.start()
        t.join(10)
    text = caplog.text
    if out["ok"]:
        assert out["policy"] == os.SCHED_FIFO
        assert "SCHED_FIFO on a busy-polling thread" in text and "sched_rt_runtime_us" in text
        assert "50 ms every second" in text
    else:
        assert "cannot set SCHED_FIFO priority 1" in text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bog"):
        assert set_realtime(0, busy_poll=True) is False  # 0 = normal scheduling, nothing said
    assert caplog.text == ""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to isolate one")
def test_an_isolation_killed_with_sigkill_is_undone_by_the_next_one(caplog):
    """A bench killed with -9 inside --isolate cannot restore anything: its record (root-only
    directory) lets the next isolation give the tasks their affinity back. A record directory
    another user could have written is never trusted."""
    import signal

    from bog.isolate import RECORD_DIR, restore_leftovers

    assert os.geteuid() == 0, "the suite runs as root here (/run/bog-isolate)"
    core = max(os.sched_getaffinity(0))
    other = subprocess.Popen(["sleep", "60"])
    before = os.sched_getaffinity(other.pid)
    assert core in before
    code = (f"import os, time\nfrom bog.isolate import CoreIsolation\n"
            f"with CoreIsolation({core}, keep_pids={{os.getpid()}}, only_pids={{{other.pid}}}):\n"
            "    print('in', flush=True)\n    time.sleep(60)\n")
    bench = subprocess.Popen([sys.executable, "-I", "-c", code], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert bench.stdout.readline().strip() == "in"
        record = os.path.join(RECORD_DIR, f"{bench.pid}.json")
        assert os.path.exists(record)
        assert os.sched_getaffinity(other.pid) == before - {core}
        bench.send_signal(signal.SIGKILL)
        bench.wait(10)
        assert os.sched_getaffinity(other.pid) == before - {core}  # nobody restored it
        os.chmod(RECORD_DIR, 0o755)  # as if another user could write there: not trusted
        with caplog.at_level("CRITICAL", logger="bog"):
            assert restore_leftovers() == 0
        assert "records are not trusted" in caplog.text and os.path.exists(record)
        from bog.isolate import _record_path, _write_record

        _write_record(core, {other.pid: before})  # nor written there
        assert not os.path.exists(_record_path(os.getpid()))
        os.chmod(RECORD_DIR, 0o700)
        assert restore_leftovers() == 1
        assert os.sched_getaffinity(other.pid) == before and not os.path.exists(record)
    finally:
        if os.path.isdir(RECORD_DIR):
            os.chmod(RECORD_DIR, 0o700)
        for p in (bench, other):
            p.kill()
            p.wait(10)
