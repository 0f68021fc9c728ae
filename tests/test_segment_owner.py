"""Who owns a segment: a dead owner whose pid now belongs to another process is dead."""

from __future__ import annotations

import subprocess
import sys

from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.ring import TicksRing


def test_pid_reused_by_another_process_counts_as_a_dead_owner(instance):
    """The header's owner pid is alive but is another process (its start time differs):
    the segment is stale and a new owner replaces it instead of refusing to start."""
    names = SegmentNames(instance)
    subprocess.run(
        [sys.executable, "-c",
         "import os\nfrom bog.shm.ring import TicksRing\n"
         f"r = TicksRing.create({names.ticks!r}, 16)\nr.segment.mark_ready()\nos._exit(9)"],
        check=False, timeout=60)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        seg = seg_mod.attach(names.ticks, None, writable=True)
        h = seg.header[0]
        dead_start = int(h["owner_start_ticks"])
        h["owner_pid"] = other.pid  # the dead owner's pid, reused by a live process
        assert seg_mod.owner_alive(other.pid, seg_mod._proc_start_ticks(other.pid))
        assert seg_mod._proc_start_ticks(other.pid) != dead_start  # started after it died
        seg.close(unlink=False)
        assert not seg_mod.owner_alive(other.pid, dead_start)
        new = TicksRing.create(names.ticks, 16)  # replaces it: no "owned by running process"
        assert int(new.segment.header[0]["owner_pid"]) != other.pid
        new.close()
    finally:
        other.kill()
        other.wait(10)
