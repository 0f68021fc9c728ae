"""Read the feed's, engine's and gateway's shared memory, read-only, following their restarts.

The monitor never writes shared memory. It follows four segments of one instance: the feed's,
the engine's and the gateway's metrics blocks and the engine's fill queue (for its depth).

The gateway (``bog-gateway``) runs only in execution mode dry-run or live. A reading lists it
among its processes (so it is exported, judged by ``/health`` and alerted on) only when it is
*expected*: the configured ``execution.mode`` is not paper, or the running engine says it is
not paper (``exec_mode`` in its block: a monitor started with another config still knows), or
a gateway segment is there at all. On paper, with no gateway, a reading has feed and engine
only: nothing about a gateway, so nothing says "down". Processes come and
go, so every read first checks that the mapping is still the live segment
(``Segment.replaced_or_closed``, one ``stat``) and re-attaches when it is not. ``restarts`` is
the count the owner wrote into its segment header (the supervisor's restart count under
``bog run``, else the crashed owners it replaced), so it does not depend on this monitor
having seen every restart; the last value read is kept while the process is down.
A segment of an untrusted user (or not mode 0600) is never read: the refusal is logged once
(CRITICAL) and counted (``untrusted_total``).

A ``read()`` costs a few microseconds per process: a ``stat``, a ``/proc/PID/stat`` read (is the
owner alive?) and a ~1.5 KB copy of the block. It is done at every scrape and every second by
the sampler.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from bog.shm import SegmentNames
from bog.shm.layouts import STATE_READY
from bog.shm.codes import EXEC_MODE
from bog.shm.metrics import ALL_PROCESSES, ENGINE, GATEWAY, PROCESSES, MetricsBlock
from bog.shm.ring import FillQueue
from bog.shm.segment import SegmentError, UntrustedSegmentError, owner_alive

log = logging.getLogger("bog.monitor")

# Process states (``ProcessInfo.state``)
UP = "up"  # owner alive, in its main loop, heartbeat fresh
STALLED = "stalled"  # owner alive but its heartbeat is older than HEARTBEAT_STALE_S
STARTING = "starting"  # owner alive, not yet (or no longer) in its main loop
CRASHED = "crashed"  # segment left READY by an owner that no longer exists
ABSENT = "absent"  # no segment: never started, or stopped cleanly (its segment is unlinked)

HEARTBEAT_STALE_S = 5.0  # housekeeping beats every ~100 ms; 50x that is a stuck process


@dataclass
class ProcessInfo:
    """What the monitor knows about one process at one instant."""

    process: str
    state: str
    pid: int = 0
    start_ns: int = 0
    heartbeat_age_s: float | None = None
    core: int = -1
    epoch: int = 0
    restarts: int = 0
    rec: np.void | None = None  # private copy of the metrics block; None unless owner alive

    @property
    def up(self) -> bool:
        return self.state == UP

    def uptime_s(self, now_ns: int) -> float | None:
        return (now_ns - self.start_ns) / 1e9 if self.rec is not None and self.start_ns else None

    def to_json(self, now_ns: int) -> dict:
        up = self.uptime_s(now_ns)
        return {
            "state": self.state,
            "up": self.up,
            "pid": self.pid or None,
            "core": self.core if self.rec is not None else None,
            "uptime_s": None if up is None else round(up, 3),
            "heartbeat_age_s": None if self.heartbeat_age_s is None
            else round(self.heartbeat_age_s, 3),
            "restarts": self.restarts,
        }


@dataclass
class Reading:
    """One read of everything: per-process info and the fill queue."""

    wall_ns: int  # time.time_ns() at the read
    mono_s: float  # time.monotonic() at the read
    procs: dict[str, ProcessInfo]
    fill_depth: int | None  # None when the engine's fill queue is not there
    fill_capacity: int | None

    def rec(self, process: str) -> np.void | None:
        info = self.procs.get(process)  # the gateway is absent from a paper reading
        return None if info is None else info.rec


class _Follow:
    """One segment followed across owner restarts: ``get()`` returns a live handle or None."""

    def __init__(self, name: str, opener):
        self.name = name
        self._open = opener
        self.handle = None
        self.epoch = 0  # epoch of the last segment attached (survives detaching)
        self.restarts = 0  # header.restarts of the last segment read (survives detaching)
        self.error: str | None = None  # why the last attach failed (e.g. permission denied)

    def get(self):
        h = self.handle
        if h is not None and h.segment.replaced_or_closed():
            self._drop()
        if self.handle is None:
            try:
                h = self._open(self.name)
            except UntrustedSegmentError as e:
                self.error = str(e)
                if e.first:
                    log.critical("%s", e)
                return None
            except SegmentError as e:
                self.error = str(e)
                return None
            self.error = None
            if h.segment.state != STATE_READY:  # being created, or closing: try next time
                h.close(unlink=False)
                return None
            self.handle = h
            self.epoch = h.segment.epoch
        self.restarts = h.segment.restarts
        return self.handle

    def _drop(self) -> None:
        h, self.handle = self.handle, None
        try:
            h.close(unlink=False)
        except Exception:  # pragma: no cover - a reader's close only unmaps
            log.debug("closing %s", self.name, exc_info=True)

    def close(self) -> None:
        if self.handle is not None:
            self._drop()


def _owner(segment) -> tuple[int, int]:
    h = segment.header[0]
    return int(h["owner_pid"]), int(h["owner_start_ticks"])


class ShmReader:
    """Follows one instance's metrics blocks and fill queue; ``read()`` snapshots them."""

    def __init__(self, instance: str, heartbeat_stale_s: float = HEARTBEAT_STALE_S,
                 exec_mode: str = EXEC_MODE[EXEC_MODE.PAPER]):
        names = SegmentNames(instance)
        self.instance = instance
        self.heartbeat_stale_s = heartbeat_stale_s
        self.exec_mode = exec_mode  # the configured execution.mode
        self._blocks = {
            p: _Follow(names.metrics(p), lambda n, p=p: MetricsBlock.attach(n, p))
            for p in ALL_PROCESSES
        }
        self._fills = _Follow(names.fills, FillQueue.attach)

    def read(self) -> Reading:
        now_ns = time.time_ns()
        procs = {p: self._read_process(p, now_ns) for p in PROCESSES}
        gw = self._read_process(GATEWAY, now_ns)
        if self.gateway_expected(procs[ENGINE], gw):
            procs[GATEWAY] = gw
        depth = cap = None
        if procs["engine"].rec is not None:
            q = self._fills.get()
            if q is not None and owner_alive(*_owner(q.segment)):
                depth, cap = q.depth, q.capacity
        return Reading(now_ns, time.monotonic(), procs, depth, cap)

    def gateway_expected(self, engine: ProcessInfo, gateway: ProcessInfo) -> bool:
        """Is bog-gateway a required process now? (see the module's docstring)"""
        if self.exec_mode != EXEC_MODE[EXEC_MODE.PAPER] or gateway.state != ABSENT:
            return True
        return engine.rec is not None and int(engine.rec["exec_mode"]) != EXEC_MODE.PAPER

    def _read_process(self, process: str, now_ns: int) -> ProcessInfo:
        follow = self._blocks[process]
        block = follow.get()
        if block is None:
            return ProcessInfo(process, ABSENT, epoch=follow.epoch,
                               restarts=self._restarts(process))
        pid, start_ticks = _owner(block.segment)
        if not owner_alive(pid, start_ticks):
            return ProcessInfo(process, CRASHED, pid=pid, epoch=follow.epoch,
                               restarts=self._restarts(process))
        rec = block.snapshot()
        start_ns = int(rec["start_ns"])
        hb = int(rec["heartbeat_ns"])
        hb_age = (now_ns - hb) / 1e9 if hb else None
        if not int(rec["running"]):
            state = STARTING
        elif hb_age is None or hb_age > self.heartbeat_stale_s:
            state = STALLED
        else:
            state = UP
        return ProcessInfo(process, state, pid=pid, start_ns=start_ns, heartbeat_age_s=hb_age,
                           core=int(rec["core"]), epoch=follow.epoch,
                           restarts=self._restarts(process), rec=rec)

    def attach_error(self, process: str) -> str | None:
        """Why ``process``'s segment could not be attached at the last read, if it could not."""
        return self._blocks[process].error

    def _restarts(self, process: str) -> int:
        return self._blocks[process].restarts

    def close(self) -> None:
        for f in self._blocks.values():
            f.close()
        self._fills.close()
