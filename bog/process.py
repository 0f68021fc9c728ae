"""What every bog process shares: pinning, title, signals, systemd notify, lifecycle.

A process subclasses ``Service`` and reads top-down as its lifecycle:
``startup()`` -> ``main_loop()`` (hot work interleaved with ``housekeeping()``) -> ``shutdown()``.
The first SIGINT/SIGTERM asks for a graceful stop; a second one exits at once.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import socket
import sys
import time

import setproctitle

from bog.config import Config

log = logging.getLogger("bog")

# Signals that stop a process: SIGTERM from systemd/supervisor, SIGINT from Ctrl-C.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def sd_notify(message: str) -> bool:
    """Send one datagram to systemd's ``$NOTIFY_SOCKET`` (no libsystemd needed)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError as e:
        log.warning("sd_notify failed: %s", e)
        return False


def pin_to_core(core: int) -> int:
    """Pin this process to ``core``; returns the core, or -1 if not pinned (and says why)."""
    if core < 0:
        return -1
    ncpu = os.cpu_count() or 1
    allowed = os.sched_getaffinity(0)
    if core not in allowed:
        fallback = core % ncpu
        if fallback not in allowed:
            log.warning("CPU %d not available (allowed %s): not pinning", core, sorted(allowed))
            return -1
        log.warning("CPU %d not available on this %d-CPU machine: using CPU %d", core, ncpu, fallback)
        core = fallback
    os.sched_setaffinity(0, {core})
    return core


def http_status(url: str, timeout_s: float = 1.0) -> int | None:
    """HTTP status of GET ``url`` (e.g. the monitor's /health: 200 or 503), None if no answer."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def stop_child(p, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int | None:
    """Stop a child process (``subprocess.Popen``): ``sig``, then SIGKILL after ``timeout_s``.

    Returns its exit status (negative: killed by that signal)."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout_s)
        except Exception:  # subprocess.TimeoutExpired
            p.kill()
            p.wait()
    return p.returncode


def child_command() -> list[str]:
    """argv prefix that starts a bog process from this one (``+ ["feed", ...]``): this
    interpreter in isolated mode (``-I``), so neither the working directory nor
    ``$PYTHONPATH`` nor the user's site directory is on ``sys.path`` - a ``bog/`` folder
    where the command was run can never replace the installed package."""
    return [sys.executable, "-I", "-m", "bog.cli"]


def signal_pid(pid: int, sig: int, start_ticks: int = 0) -> bool:
    """Send ``sig`` to ``pid`` taken from systemd (MainPID), shared memory or /proc.

    Refuses pid <= 0 (ValueError): ``kill(0, ...)`` would signal our whole process group and
    a negative pid a whole group, which is never what a pid read from elsewhere means.
    Returns False, sending nothing, when the process is gone, a zombie, or - given its
    ``start_ticks`` (/proc/PID/stat field 22) - a different process that reuses the pid."""
    from bog.shm.segment import _proc_start_ticks

    if pid <= 0:
        raise ValueError(f"refusing to signal pid {pid}: not a process (0 or negative "
                         "would signal a whole process group)")
    ticks = _proc_start_ticks(pid)
    if ticks == 0 or (start_ticks and ticks != start_ticks):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def freeze_startup_objects() -> None:
    """Take what startup built (numba and its compiled kernels, numpy, the config, the mapped
    segments: ~100,000 objects that live until exit) out of the cyclic garbage collector, so a
    full collection in the running process scans only what the loop allocates since.

    Measured (issue 11): without it a full collection in the engine took 66-86 ms of the core
    its Python thread shares with the feed (the feed's ticks waited); with it, 0.11 ms."""
    gc.collect()
    gc.freeze()


def _rt_budget() -> str:
    """The kernel's limit on real-time tasks, as it reads here (for the warning below)."""
    try:
        with open("/proc/sys/kernel/sched_rt_runtime_us") as f:
            runtime = int(f.read())
        with open("/proc/sys/kernel/sched_rt_period_us") as f:
            period = int(f.read())
    except (OSError, ValueError):
        return "unknown real-time limit"
    if runtime < 0:
        return "sched_rt_runtime_us = -1: no limit (this core's kernel threads can starve)"
    return (f"real-time tasks get {runtime / 1000:.0f} ms of every {period / 1000:.0f} ms "
            f"(sched_rt_runtime_us); normal tasks get the rest, in one block")


def set_realtime(priority: int, busy_poll: bool = False) -> bool:
    """SCHED_FIFO at ``priority``; under systemd the unit sets it (CPUSchedulingPolicy=).

    ``busy_poll``: the thread never sleeps. The kernel then still runs the core's other
    normal tasks (per-CPU kernel threads at least), but in throttled blocks: measured on
    Linux 6.18, a SCHED_FIFO busy-polling engine thread stopped for 50 ms every second (its
    run-queue wait went from 1 ms to 250 ms per 5 s), far worse than normal scheduling on a
    core kept free of other tasks. It is applied as configured, with a warning saying so."""
    if priority <= 0:
        return False
    applied = False
    try:
        if (os.sched_getscheduler(0) == os.SCHED_FIFO
                and os.sched_getparam(0).sched_priority >= priority):
            log.info("real-time scheduling SCHED_FIFO priority %d (set by the service manager)",
                     os.sched_getparam(0).sched_priority)
            applied = True
    except OSError:
        pass
    if not applied:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            log.info("real-time scheduling SCHED_FIFO priority %d", priority)
            applied = True
        except (PermissionError, OSError) as e:
            log.warning("cannot set SCHED_FIFO priority %d: %s (continuing with normal "
                        "scheduling)", priority, e)
            return False
    if busy_poll:
        log.warning("SCHED_FIFO on a busy-polling thread: %s, so this thread is stopped in "
                    "blocks of up to tens of ms whenever any normal task waits for its core "
                    "(measured: 50 ms every second); keeping other tasks off the core is "
                    "better (engine_realtime_priority = 0; docs/operations.md \"Engine core\")",
                    _rt_budget())
    return True


class Service:
    """Base lifecycle for feed, engine and monitor."""

    name = "service"  # feed | engine | monitor

    def __init__(self, cfg: Config, instance: str):
        self.cfg = cfg
        self.instance = instance
        self.should_exit = False
        self.force_exit = False
        self.core = -1
        self.started_ns = time.time_ns()
        self._watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        self._last_watchdog = 0.0

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> int:
        setproctitle.setproctitle(f"bog-{self.name}")
        # A hung process killed by systemd's watchdog (SIGABRT) or a crash in native code
        # leaves its Python stack on stderr, i.e. in the journal.
        if not faulthandler.is_enabled():
            faulthandler.enable()
        self.install_signal_handlers()
        try:
            self.startup()
        except Exception as e:  # startup errors are user errors far more often than bugs
            log.critical("bog-%s failed to start: %s", self.name, e)
            log.debug("startup traceback", exc_info=True)
            self.shutdown()
            return 1
        freeze_startup_objects()
        sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=running")
        log.info("bog-%s running (pid %d, core %d, instance %s)", self.name, os.getpid(),
                 self.core, self.instance)
        code = 0
        try:
            self.main_loop()
        except Exception:
            log.critical("bog-%s crashed in main loop", self.name, exc_info=True)
            code = 1
        sd_notify("STOPPING=1")
        self.shutdown()
        log.info("bog-%s stopped", self.name)
        return code

    def startup(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def main_loop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def shutdown(self) -> None:  # pragma: no cover - overridden
        pass

    # -- helpers --------------------------------------------------------------------------
    def pin(self, core: int) -> None:
        self.core = pin_to_core(core)

    def watchdog(self) -> None:
        """Feed systemd's watchdog from housekeeping (only when WatchdogSec= is set)."""
        if not self._watchdog_usec:
            return
        now = time.monotonic()
        # every quarter of WatchdogSec (not half): a loaded machine can delay one ping by
        # more than WatchdogSec/2, and a ping is one datagram
        if now - self._last_watchdog >= self._watchdog_usec / 4e6:
            self._last_watchdog = now
            sd_notify("WATCHDOG=1")

    def install_signal_handlers(self) -> None:
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self.handle_exit)

    def handle_exit(self, sig, frame) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
            log.warning("bog-%s: second interrupt, exiting now", self.name)
            sys.exit(1)
        self.should_exit = True
