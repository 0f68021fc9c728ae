"""Where the monitor listens, published in shared memory (``/bog.<instance>.monitor``).

The monitor's port can come from the config, ``bog run --port P`` or ``bog monitor --port P``;
only the monitor knows which one won. At startup it writes the address it bound (host, port,
pid) into a small owner-only segment and unlinks it on shutdown, so ``bogctl status``,
``alerts`` and ``metrics`` find it without being told the port. Like every segment, it also
makes a second monitor of the same instance refuse to start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.layouts import KIND_MONITOR, MONITOR


@dataclass(frozen=True)
class MonitorAddress:
    host: str
    port: int
    pid: int

    def url(self, path: str = "") -> str:
        return base_url(self.host, self.port) + path


def base_url(host: str, port: int) -> str:
    """``http://host:port`` to reach a monitor listening on host:port from this machine."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def publish(instance: str, host: str, port: int, pid: int) -> seg_mod.Segment:
    """Create the address segment (the monitor owns it: ``close()`` unlinks it)."""
    seg = seg_mod.create(SegmentNames(instance).monitor, KIND_MONITOR, MONITOR.itemsize)
    rec = seg.view(MONITOR)[0]
    rec["pid"], rec["port"], rec["started_ns"] = pid, port, time.time_ns()
    rec["host"] = host.encode("ascii", "replace")[: MONITOR["host"].itemsize]
    del rec
    seg.mark_ready()
    return seg


def lookup(instance: str) -> MonitorAddress | None:
    """The address a live monitor of ``instance`` published, None if there is none.

    Raises SegmentError when the segment exists but cannot be read (e.g. another user's)."""
    try:
        seg = seg_mod.attach(SegmentNames(instance).monitor, KIND_MONITOR)
    except seg_mod.SegmentError as e:
        if "does not exist" in str(e):
            return None
        raise
    try:
        h = seg.header[0]
        if seg.state != seg_mod.STATE_READY or not seg_mod.owner_alive(
                int(h["owner_pid"]), int(h["owner_start_ticks"])):
            return None  # starting, stopping, or left behind by a crashed monitor
        rec = seg.view(MONITOR)[0].copy()
    finally:
        h = None
        seg.close(unlink=False)
    return MonitorAddress(rec["host"].decode("ascii", "replace"), int(rec["port"]),
                          int(rec["pid"]))
