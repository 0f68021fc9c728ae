"""Process discovery for the local supervisor: ``bog run`` and its children, pid checks."""

from __future__ import annotations

import os
import signal

from bog.ctl.common import wait
from bog.process import signal_pid
from bog.monitor.reader import ShmReader


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def find_supervisors(instance: str) -> list[int]:
    """PIDs of ``bog run`` supervisors of ``instance`` (``python -m bog.cli run`` or ``bog run``)."""
    out = []
    for pid in _pids():
        argv = _cmdline(pid)
        if "run" not in argv:
            continue
        i = argv.index("run")
        prog = argv[i - 1] if i > 0 else ""
        if prog != "bog.cli" and os.path.basename(prog) != "bog":
            continue
        inst = "default"
        for j, a in enumerate(argv):
            if a == "--instance" and j + 1 < len(argv):
                inst = argv[j + 1]
            elif a.startswith("--instance="):
                inst = a.split("=", 1)[1]
        if inst == instance:
            out.append(pid)
    return out


def child_pid(parent: int, process: str) -> int:
    for pid in _pids():
        if _ppid(pid) == parent and (_cmdline(pid)[:1] or [""])[0].startswith(f"bog-{process}"):
            return pid
    return 0


def shm_pid(instance: str, process: str) -> int:
    """PID of a live feed/engine/gateway from its metrics block, 0 if none."""
    reader = ShmReader(instance)
    try:
        info = reader.read().procs.get(process)  # the gateway only when its segment exists
    finally:
        reader.close()
    return info.pid if info is not None and info.rec is not None else 0  # rec: owner alive


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:][:1] != b"Z"
    except OSError:
        return False


def terminate(pids: list[int], timeout_s: float) -> list[int]:
    """SIGTERM, wait, SIGTERM again (the supervisor's 'kill now'); returns those still alive."""
    for pid in pids:
        try:
            signal_pid(pid, signal.SIGTERM)
        except ValueError:
            pass
    if not wait(lambda: not any(alive(p) for p in pids), timeout_s):
        for pid in pids:
            try:
                signal_pid(pid, signal.SIGTERM)
            except ValueError:
                pass
        wait(lambda: not any(alive(p) for p in pids), 10)
    return [p for p in pids if alive(p)]
