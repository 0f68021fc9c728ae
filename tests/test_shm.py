"""Shared-memory segments, the seqlock ticks ring and the fill queue, over real POSIX shm."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numba as nb
import numpy as np
import pytest

from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.atomics import load_acquire
from bog.shm.layouts import FILL, FILL_WORDS, RING_HEAD, TICK_SLOT, TICK_SLOT_WORDS
from bog.shm.metrics import ENGINE, MetricsBlock
from bog.shm.ring import (
    READ_OK,
    READ_OVERWRITTEN,
    READ_TORN,
    FillQueue,
    TicksRing,
    fills_commit,
    fills_peek_into,
    fills_push,
    ticks_publish,
    ticks_read,
)

HERE = Path(__file__).parent


def test_segments_are_owner_only_and_unlinked_on_close(instance):
    names = SegmentNames(instance)
    ring = TicksRing.create(names.ticks, 16)
    path = Path("/dev/shm") / names.ticks.lstrip("/")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == os.getuid()
    ring.close()
    assert not path.exists()


def test_live_owner_is_never_replaced(instance):
    names = SegmentNames(instance)
    ring = TicksRing.create(names.ticks, 16)
    child = subprocess.run(
        [sys.executable, "-c",
         f"from bog.shm.ring import TicksRing\nTicksRing.create({names.ticks!r}, 16)"],
        capture_output=True, text=True)
    assert child.returncode != 0
    assert "owned by running process" in child.stderr and str(os.getpid()) in child.stderr
    ring.close()


def test_crashed_owner_segment_is_replaced_with_new_epoch(instance):
    names = SegmentNames(instance)
    # a process creates the segment, writes into it and dies without cleaning up
    subprocess.run(
        [sys.executable, "-c",
         "import os\nfrom bog.shm.ring import TicksRing\n"
         f"r = TicksRing.create({names.ticks!r}, 16)\nr.segment.mark_ready()\n"
         "r.ctrl[0] = 12345\nos._exit(9)"], check=False)
    old = TicksRing.attach(names.ticks)
    assert old.head == 12345
    old_epoch = old.epoch
    old.close(unlink=False)
    new = TicksRing.create(names.ticks, 16)
    assert new.head == 0  # fresh, not reused garbage
    assert new.epoch > old_epoch
    new.close()


def test_attach_errors_are_clear(instance):
    names = SegmentNames(instance)
    with pytest.raises(seg_mod.SegmentError, match="does not exist"):
        TicksRing.attach(names.ticks)
    blk = MetricsBlock.create(names.engine_metrics, ENGINE)
    with pytest.raises(seg_mod.SegmentError, match="kind"):
        TicksRing.attach(names.engine_metrics)
    blk.close()
    with pytest.raises(seg_mod.SegmentError, match="invalid instance"):
        SegmentNames("../etc")


def test_readonly_attach_cannot_write(instance):
    names = SegmentNames(instance)
    ring = TicksRing.create(names.ticks, 16)
    ro = TicksRing.attach(names.ticks)
    with pytest.raises(ValueError):
        ro.ctrl[0] = 1
    ro.close()
    ring.close()


def test_ring_read_reports_overwritten_slot_instead_of_newer_data():
    ctrl = np.zeros(8, np.int64)
    ctrl[2] = 4
    words = np.zeros(4 * TICK_SLOT_WORDS, np.int64)
    st = np.zeros(1, TICK_SLOT)
    for i in range(6):
        st[0]["sequence"] = i
        ticks_publish(ctrl, words, st.view(np.int64))
    out = np.zeros(TICK_SLOT_WORDS, np.int64)
    assert ticks_read(ctrl, words, 5, out) == READ_OK
    assert out.view(TICK_SLOT)[0]["sequence"] == 5
    assert ticks_read(ctrl, words, 1, out) == READ_OVERWRITTEN  # now holds position 5
    words[(5 % 4) * TICK_SLOT_WORDS] += 1  # generation odd: writer mid-update
    assert ticks_read(ctrl, words, 5, out) == READ_TORN


@nb.njit(cache=True)
def _stress_read(ctrl, words, out, n_reads):
    ok = torn = lapped = bad = 0
    while ok + lapped < n_reads:
        head = load_acquire(ctrl, RING_HEAD)
        pos = head - 1
        r = ticks_read(ctrl, words, pos, out)
        if r == READ_TORN:
            torn += 1
            continue
        if r == READ_OVERWRITTEN:
            lapped += 1
            continue
        ok += 1
        for k in range(2, TICK_SLOT_WORDS):
            if out[k] != pos * 1000 + k:
                bad += 1
                break
    return ok, torn, lapped, bad


def test_seqlock_never_yields_a_torn_read_across_processes(instance):
    """A writer process hammers a 4-slot ring; this process reads the newest slot 2M times.

    Every accepted read must be internally consistent (all words from one position)."""
    name = SegmentNames(instance).ticks
    w = subprocess.Popen([sys.executable, str(HERE / "stress_writer.py"), name, "6"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline().strip() == "ready"
        ring = TicksRing.attach(name)
        out = np.zeros(TICK_SLOT_WORDS, np.int64)
        ok, torn, lapped, bad = _stress_read(ring.ctrl, ring.words, out, 2_000_000)
        ring.close(unlink=False)
        assert w.wait(30) == 0
        published = int(w.stdout.read().split()[-1])
    finally:
        if w.poll() is None:
            w.kill()
    assert bad == 0, f"{bad} torn reads accepted"
    assert ok > 0 and published > 1_000_000
    # contention really happened: the reader saw the writer mid-update or lapping it
    assert torn + lapped > 0


def test_fill_queue_bounded_fifo_with_peek_commit(instance):
    q = FillQueue.create(SegmentNames(instance).fills, 3)
    f = np.zeros(FILL_WORDS, np.int64)
    results = []
    for i in range(5):
        f[7] = i + 1
        results.append(fills_push(q.ctrl, q.words, f))
    assert results == [True, True, True, False, False]
    assert q.depth == 3
    out = np.zeros((8, FILL_WORDS), np.int64)
    n = fills_peek_into(q.ctrl, q.words, out)
    assert n == 3 and q.depth == 3  # peek does not consume
    assert list(out[:n].view(FILL).reshape(-1)["fill_id"]) == [1, 2, 3]
    fills_commit(q.ctrl, 2)
    assert q.depth == 1
    f[7] = 9
    assert fills_push(q.ctrl, q.words, f)  # wraps around
    n = fills_peek_into(q.ctrl, q.words, out)
    assert list(out[:n].view(FILL).reshape(-1)["fill_id"]) == [3, 9]
    q.close()


def test_metrics_block_is_readable_by_another_process(instance):
    names = SegmentNames(instance)
    blk = MetricsBlock.create(names.engine_metrics, ENGINE)
    blk.m[0]["ticks_total"] = 777
    blk.m[0]["tick_processing_ns_bucket"][3] = 5
    blk.segment.mark_ready()
    code = (f"from bog.shm.metrics import MetricsBlock\n"
            f"b = MetricsBlock.attach({names.engine_metrics!r}, 'engine')\n"
            "s = b.snapshot(); print(int(s['ticks_total']), int(s['tick_processing_ns_bucket'].sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["777", "5"]
    blk.close()
