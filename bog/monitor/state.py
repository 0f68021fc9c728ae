"""The monitor's state: the reader, the per-second history, the alerts and the registry.

Everything runs on the event loop's one thread (HTTP handlers are ``async def`` and never
await while reading), so nothing here needs a lock.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, ProcessCollector

from bog.monitor.alerts import AlertEngine
from bog.monitor.collector import BogCollector
from bog.monitor.history import History, Window
from bog.monitor.reader import Reading, ShmReader


class MonitorState:
    def __init__(self, instance: str, started_ns: int | None = None,
                 exec_mode: str = "paper"):
        self.instance = instance
        self.started_ns = started_ns or time.time_ns()
        self.heartbeat_ns = self.started_ns  # the monitor's own housekeeping beat
        self.pid = os.getpid()
        self.core = -1  # set by the service once pinned
        self.exec_mode = exec_mode  # the configured execution.mode (is a gateway expected?)
        self.reader = ShmReader(instance, exec_mode=exec_mode)
        self.history = History()
        self.alerts = AlertEngine(history=self.history)
        self.collector = BogCollector(self)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)  # the monitor's own CPU and memory

    def read(self) -> Reading:
        return self.reader.read()

    def window(self) -> Window:
        """A window ending at a fresh read (for /health)."""
        return Window(self.history, self.read())

    def sample(self) -> Reading:
        """Housekeeping, once a second: record a reading and evaluate the alerts on it."""
        r = self.read()
        self.history.add(r)
        self.alerts.evaluate(r)
        return r

    def close(self) -> None:
        self.reader.close()
