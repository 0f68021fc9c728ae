"""Monitor fixtures: shared memory owned by the test, and the real monitor as a subprocess.

``FakeOwners`` creates the feed's and engine's metrics blocks and the fill queue exactly as
the processes do (same layouts, same segment names), marks them ready and beats their
heartbeats from a thread, so the monitor under test sees "running" processes whose values the
test sets field by field. ``MonitorProc`` runs ``bog monitor`` as its own process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import cleanup_segments, free_port, unique_instance, wait_for

from bog.process import stop_child
from bog.shm import SegmentNames
from bog.shm.metrics import MetricsBlock
from bog.shm.ring import FillQueue

ROOT = Path(__file__).resolve().parents[2]


def mon_instance() -> str:
    return unique_instance("m")


# one implementation of these for every test suite (tests/support.py)
port_free = free_port
unlink_all = cleanup_segments
until = wait_for


def need(binary: str) -> str:
    """Path of a Debian monitoring binary; fails (does not skip) when it is missing."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not installed: run ./scripts/setup --test (installs the Debian "
                    "packages prometheus and prometheus-alertmanager)")
    return path


class FakeOwners:
    """The test plays feed and engine (and the gateway when asked): it owns their metrics
    blocks and the fill queue."""

    def __init__(self, instance: str, fill_capacity: int = 64, processes=("feed", "engine")):
        self.instance = instance
        self.names = SegmentNames(instance)
        self.blocks: dict[str, MetricsBlock] = {}
        self.fills: FillQueue | None = None
        for p in processes:
            self.start(p, fill_capacity)
        self._stop = threading.Event()
        self.beating = True
        self._t = threading.Thread(target=self._beat, daemon=True)
        self._t.start()

    def start(self, process: str, fill_capacity: int = 64) -> MetricsBlock:
        b = MetricsBlock.create(self.names.metrics(process), process)
        m = b.m[0]
        now = time.time_ns()
        m["pid"], m["start_ns"], m["heartbeat_ns"], m["core"], m["running"] = (
            os.getpid(), now, now, -1, 1)
        if process == "gateway":  # a healthy dry-run gateway unless the test says otherwise
            m["mode"], m["connected"], m["engine_attached"] = 1, 1, 1
        if process == "engine":
            m["max_position_btc"] = 1.0
            m["max_daily_loss_usd"] = 5000.0
            m["fill_queue_capacity"] = fill_capacity
            self.fills = FillQueue.create(self.names.fills, fill_capacity)
            self.fills.segment.mark_ready()
        b.segment.mark_ready()
        self.blocks[process] = b
        return b

    def stop(self, process: str) -> None:
        """Clean shutdown of one process: its segments are closed and unlinked."""
        b = self.blocks.pop(process)
        b.close()
        if process == "engine" and self.fills is not None:
            self.fills.close()
            self.fills = None

    def m(self, process: str = "engine"):
        return self.blocks[process].m[0]

    def set(self, process: str = "engine", **fields) -> None:
        m = self.m(process)
        for k, v in fields.items():
            m[k] = v

    def set_fill_depth(self, depth: int) -> None:
        from bog.shm.layouts import RING_HEAD, RING_TAIL

        self.fills.ctrl[RING_TAIL] = 0
        self.fills.ctrl[RING_HEAD] = depth

    def _beat(self) -> None:
        while not self._stop.wait(0.1):
            if not self.beating:
                continue
            now = time.time_ns()
            for b in list(self.blocks.values()):
                try:
                    b.m[0]["heartbeat_ns"] = now
                except (TypeError, ValueError):  # block closed under us
                    pass

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        for p in list(self.blocks):
            self.stop(p)
        unlink_all(self.instance)


class MonitorProc:
    """``bog monitor`` for one instance on a free port, logs in ``tmp``."""

    def __init__(self, tmp: Path, instance: str, port: int | None = None, extra=(),
                 config: str = "", preexec_fn=None):
        self.instance = instance
        self.port = port or port_free()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = tmp / f"logs-{instance}"
        cfg = tmp / f"monitor-{instance}.toml"
        cfg.write_text(config)
        env = dict(os.environ, BOG_LOG_DIR=str(self.log_dir), PYTHONUNBUFFERED="1")
        for k in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
            env.pop(k, None)
        self.out_path = tmp / f"monitor-{instance}.out"
        self._out = open(self.out_path, "ab")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bog.cli", "monitor", "--instance", instance,
             "--config", str(cfg), "--port", str(self.port), *extra],
            env=env, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=preexec_fn)

    def wait_ready(self, timeout=30.0) -> "MonitorProc":
        def up():
            if self.p.poll() is not None:
                raise AssertionError(f"bog monitor exited {self.p.returncode}:\n{self.output()}")
            try:
                httpx.get(self.url + "/health", timeout=1.0)
                return True
            except httpx.HTTPError:
                return False
        until(up, timeout, what="monitor answering")
        return self

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5.0, **kw)

    def json(self, path: str):
        return self.get(path).json()

    def output(self) -> str:
        self._out.flush()
        return self.out_path.read_text(errors="replace")

    def log(self) -> str:
        p = self.log_dir / "bog.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout=15.0) -> int:
        code = stop_child(self.p, sig, timeout)
        self._out.close()
        return code


