"""Who took the CPU from bog's threads: a scheduler trace (tracefs ``sched_switch``).

``bog bench --sched-trace`` wraps each measurement window in a trace of the kernel's
``sched_switch`` events for the threads that carry the tail (the feed's thread and the engine's
hot thread). Each time one of them is switched out while still runnable (``prev_state=R``:
preempted, not sleeping) the trace names the task that took its CPU and, when the thread is
switched back in, how long it was off. Per thread it reports the preemptions, the time lost,
and, per preempting task (by command name), the count, the total and the longest.

This answers what the scheduling counters (``/proc/.../status``, ``schedstat``) cannot: whether
the time goes to bog's own threads (the engine's Python thread on the feed's core), to the
machine's agents and kernel threads, or to the hypervisor (that one shows as nothing: the
thread is never switched out, the vCPU simply stops; ``bog bench --floor`` measures it).

It needs root (tracefs at /sys/kernel/tracing, writable). It uses its own trace instance
(``instances/bog-bench-PID``): the machine's global tracing settings are not touched, and the
instance is removed afterwards. The trace is kept in the kernel's buffer during the window
(nothing is read while measuring); 8 MiB per CPU holds minutes of switches of two threads.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

TRACEFS = "/sys/kernel/tracing"
BUFFER_KB = 8192  # per CPU; a switch event takes ~64 bytes

# sched_switch as the kernel formats it (trace output, one line per event)
_SWITCH = re.compile(
    r"\[(?P<cpu>\d+)\]\s+\S+\s+(?P<ts>\d+\.\d+): sched_switch: prev_comm=(?P<pcomm>.*?) "
    r"prev_pid=(?P<ppid>\d+) prev_prio=\d+ prev_state=(?P<pstate>\S+) ==> "
    r"next_comm=(?P<ncomm>.*?) next_pid=(?P<npid>\d+) next_prio=\d+")


class SchedTraceError(RuntimeError):
    """The trace cannot run here (not root, no tracefs); the message says which and how."""


@dataclass
class Preemptor:
    count: int = 0
    total_ns: int = 0
    max_ns: int = 0

    def add(self, off_ns: int) -> None:
        self.count += 1
        self.total_ns += off_ns
        self.max_ns = max(self.max_ns, off_ns)


@dataclass
class ThreadReport:
    """One traced thread over the window."""

    tid: int
    preemptions: int = 0
    preempted_ns: int = 0
    max_preempted_ns: int = 0
    sleeps: int = 0  # switched out voluntarily (waiting, sleeping): not time taken from it
    by: dict = field(default_factory=dict)  # preempting command -> Preemptor

    def add(self, comm: str, off_ns: int) -> None:
        self.preemptions += 1
        self.preempted_ns += off_ns
        self.max_preempted_ns = max(self.max_preempted_ns, off_ns)
        self.by.setdefault(comm, Preemptor()).add(off_ns)

    def as_dict(self, top: int = 6) -> dict:
        ranked = sorted(self.by.items(), key=lambda kv: -kv[1].total_ns)
        return {"tid": self.tid, "preemptions": self.preemptions,
                "preempted_us": self.preempted_ns // 1000,
                "max_preempted_us": self.max_preempted_ns // 1000, "sleeps": self.sleeps,
                "by": [{"comm": c, "count": p.count, "total_us": p.total_ns // 1000,
                        "max_us": p.max_ns // 1000} for c, p in ranked[:top]]}


def preempting_command(comm: str, own: dict[int, str], pid: int) -> str:
    """The name a preemptor is reported under: bog's own threads by their role (``feed``,
    ``engine:hot``), anything else by its command name with per-CPU suffixes folded
    (``kworker/1:1`` -> ``kworker``), so the table names kinds of tasks, not instances."""
    if pid in own:
        return "bog " + own[pid]
    return comm.split("/", 1)[0]


def analyse(lines, tids: dict[str, int], own: dict[int, str] | None = None) -> dict[str, dict]:
    """Turn ``sched_switch`` trace lines into a report per traced thread.

    ``tids`` maps a role (``feed``, ``engine_hot``) to the thread id traced; ``own`` names
    other bog threads (tid -> role) so they are reported as bog's. A preemption runs from the
    switch that takes a traced thread off its CPU while runnable to the switch that puts it
    back; it is charged to the task that took the CPU."""
    own = dict(own or {})
    for role, tid in tids.items():
        own.setdefault(tid, role)
    reports = {role: ThreadReport(tid) for role, tid in tids.items()}
    by_tid = {tid: reports[role] for role, tid in tids.items()}
    off: dict[int, tuple[int, str | None]] = {}  # tid -> (switched out at ns, preemptor or None)
    for line in lines:
        m = _SWITCH.search(line)
        if m is None:
            continue
        ts = int(round(float(m["ts"]) * 1e9))
        prev, nxt = int(m["ppid"]), int(m["npid"])
        if prev in by_tid:
            if m["pstate"].startswith("R"):  # R or R+ (preempted), not a sleep
                off[prev] = (ts, preempting_command(m["ncomm"], own, nxt))
            else:
                by_tid[prev].sleeps += 1
                off[prev] = (ts, None)
        if nxt in by_tid and nxt in off:
            t0, who = off.pop(nxt)
            if who is not None:
                by_tid[nxt].add(who, ts - t0)
    return {role: r.as_dict() for role, r in reports.items()}


class SchedTrace:
    """A private tracefs instance recording ``sched_switch`` for a set of threads.

    ``start()`` before the window, ``stop()`` after it (returns the per-thread report);
    ``close()`` removes the instance (also on error)."""

    def __init__(self, tids: dict[str, int], own: dict[int, str] | None = None,
                 root: str = TRACEFS):
        self.tids = {k: v for k, v in tids.items() if v > 0}
        self.own = own or {}
        self.dir = os.path.join(root, "instances", f"bog-bench-{os.getpid()}")
        self._root = root

    def _write(self, rel: str, value: str) -> None:
        with open(os.path.join(self.dir, rel), "w") as f:
            f.write(value)

    def start(self) -> None:
        if not self.tids:
            raise SchedTraceError("sched trace: no thread to trace")
        if not os.path.isdir(os.path.join(self._root, "instances")):
            self._mount()
        self._remove_stale()
        try:
            os.mkdir(self.dir)
        except FileExistsError:
            pass
        except OSError as e:
            raise SchedTraceError(f"sched trace: cannot create a trace instance in "
                                  f"{self._root}/instances ({e.strerror}; it needs root)") from e
        try:
            self._write("tracing_on", "0")
            self._write("buffer_size_kb", str(BUFFER_KB))
            pids = sorted(self.tids.values())
            flt = " || ".join(f"prev_pid == {p} || next_pid == {p}" for p in pids)
            self._write("events/sched/sched_switch/filter", flt)
            self._write("events/sched/sched_switch/enable", "1")
            self._write("trace", "")
            self._write("tracing_on", "1")
        except OSError as e:
            self.close()
            raise SchedTraceError(f"sched trace: cannot set up the trace instance ({e})") from e

    def _remove_stale(self) -> None:
        """Instances left by a bench that was killed (its pid gone): removed, so they do not
        keep tracing (and holding their buffers) for ever."""
        base = os.path.join(self._root, "instances")
        for name in os.listdir(base):
            pid = name.removeprefix("bog-bench-")
            if name.startswith("bog-bench-") and pid.isdigit() and not os.path.exists(
                    f"/proc/{pid}"):
                try:
                    os.rmdir(os.path.join(base, name))
                except OSError:
                    pass

    def _mount(self) -> None:
        """tracefs is not mounted (a fresh boot without debugfs users): mount it, as root."""
        how = f"mount -t tracefs nodev {self._root}"
        if os.geteuid() != 0:
            raise SchedTraceError(f"sched trace: tracefs not mounted at {self._root} and this is "
                                  f"not root (it needs root: {how})")
        r = subprocess.run(["mount", "-t", "tracefs", "nodev", self._root],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0 or not os.path.isdir(os.path.join(self._root, "instances")):
            raise SchedTraceError(f"sched trace: tracefs not available at {self._root} "
                                  f"({how}: {r.stderr.strip() or 'no instances/'})")

    def stop(self) -> dict[str, dict]:
        self._write("tracing_on", "0")
        with open(os.path.join(self.dir, "trace")) as f:
            return analyse(f, self.tids, self.own)

    def close(self) -> None:
        try:
            self._write("tracing_on", "0")
            self._write("events/sched/sched_switch/enable", "0")
        except OSError:
            pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass
