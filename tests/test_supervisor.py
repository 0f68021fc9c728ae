"""The ``bog run`` supervisor's restart policy, on real (trivial) child processes."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

from bog.config import build_config
from bog.supervisor import BACKOFF_MAX_S, Child, Supervisor


def test_crashing_child_is_restarted_with_exponential_back_off():
    """A child that keeps exiting is restarted after 1 s, 2 s, 4 s, ... (capped), not in a
    tight loop; each restart is counted."""
    args = SimpleNamespace(instance="suptest", config=None, no_monitor=True, port=None)
    sup = Supervisor(build_config({}, env={}), args)
    starts: list[float] = []

    class Recorder(subprocess.Popen):
        def __init__(self, *a, **k):
            starts.append(time.monotonic())
            super().__init__(*a, **k)

    crash = Child("crasher", [sys.executable, "-I", "-c", "raise SystemExit(3)"],
                  ready=lambda p: True)
    sup.children = [crash]
    import bog.supervisor as supmod

    real_popen = supmod.subprocess.Popen
    supmod.subprocess.Popen = Recorder
    try:
        sup._start(crash, wait=False)
        end = time.monotonic() + 30
        while time.monotonic() < end and len(starts) < 4:
            sup._watch()
            time.sleep(0.05)
    finally:
        supmod.subprocess.Popen = real_popen
        if crash.proc is not None:
            crash.proc.wait(10)
    assert len(starts) == 4, starts  # first start + 3 restarts
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # each gap is the child's (short) life plus the back-off, which doubles
    for gap, backoff in zip(gaps, (1.0, 2.0, 4.0)):
        assert gap >= backoff, (gaps, backoff)
    assert crash.restarts == 3
    assert crash.backoff_s == min(8.0, BACKOFF_MAX_S)
