"""Fixtures of the monitor tests (helpers live in monsupport.py: importable by name)."""

from __future__ import annotations

import pytest
from monsupport import FakeOwners, MonitorProc, mon_instance


@pytest.fixture
def owners():
    made = []

    def make(**kw) -> FakeOwners:
        o = FakeOwners(mon_instance(), **kw)
        made.append(o)
        return o

    yield make
    for o in made:
        o.close()


@pytest.fixture
def monitor(tmp_path):
    made = []

    def start(instance: str, **kw) -> MonitorProc:
        m = MonitorProc(tmp_path, instance, **kw)
        made.append(m)
        return m.wait_ready()

    yield start
    for m in made:
        m.stop()
