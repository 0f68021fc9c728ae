"""Shared-memory segments, the seqlock ticks ring and the fill queue, over real POSIX shm."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
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


# -- trust: segments of other users, wrong modes, zombies, restart counts --------------------
# A real second user (`nobody`) writes the squatting segment straight into /dev/shm (a POSIX
# shared-memory object is a file there): no Python needed, as an attacker would do it.
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NOBODY_UID = 65534


def fake_ticks_segment(capacity: int = 16, head: int = 5, mid_usd: float = 1_000_000.0,
                       owner_pid: int = 0) -> bytes:
    """Bytes of a valid-looking ticks segment with fake snapshots (and a live-looking owner)."""
    from bog.shm.layouts import (
        FIXED, KIND_TICKS, LAYOUT_VERSION, MAGIC, RING_CAPACITY, RING_CTRL_WORDS, SEGMENT_HEADER,
        STATE_READY, ring_body_size)

    size = SEGMENT_HEADER.itemsize + ring_body_size(TICK_SLOT, capacity)
    buf = bytearray(size)
    h = np.ndarray((1,), SEGMENT_HEADER, buf)[0]
    h["magic"], h["layout_version"], h["kind"], h["size_bytes"] = MAGIC, LAYOUT_VERSION, KIND_TICKS, size
    h["epoch"], h["state"] = time.time_ns(), STATE_READY
    h["owner_pid"] = owner_pid or os.getpid()
    h["owner_start_ticks"] = seg_mod._proc_start_ticks(h["owner_pid"])
    ctrl = np.ndarray((RING_CTRL_WORDS,), np.int64, buf, SEGMENT_HEADER.itemsize)
    ctrl[RING_CAPACITY], ctrl[RING_HEAD] = capacity, head
    slots = np.ndarray((capacity,), TICK_SLOT, buf, SEGMENT_HEADER.itemsize + RING_CTRL_WORDS * 8)
    now = time.time_ns()
    for i in range(head):
        s = slots[i]
        s["gen"], s["pos"], s["market_id"], s["sequence"] = 2, i, 1_000_001, i + 1
        s["exchange_ts_ns"] = s["local_recv_ns"] = s["local_publish_ns"] = now
        s["bid_px"], s["ask_px"] = int((mid_usd - 1) * FIXED), int((mid_usd + 1) * FIXED)
        s["bid_sz"] = s["ask_sz"] = FIXED
        s["trade_px"], s["trade_sz"], s["trade_side"] = int(mid_usd * FIXED), FIXED, -1
    return bytes(buf)


def squat(name: str, data: bytes, mode: int = 0o600) -> Path:
    """``nobody`` creates shared memory ``name`` with ``data`` and ``mode``."""
    path = Path("/dev/shm") / name.lstrip("/")
    subprocess.run(NOBODY + ["sh", "-c", f"umask 077; cat > {path}; chmod {mode:o} {path}"],
                   input=data, check=True, timeout=10)
    st = path.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY_UID, mode)
    return path


def test_attach_refuses_another_users_segment_once_counted(instance):
    name = SegmentNames(instance).ticks
    squat(name, fake_ticks_segment())
    before = seg_mod.untrusted_total()
    with pytest.raises(seg_mod.UntrustedSegmentError) as e:
        TicksRing.attach(name)
    assert str(e.value) == (
        f"CRITICAL shared memory {name} is owned by uid {NOBODY_UID} mode 0600, expected uid "
        f"{os.geteuid()} mode 0600: refusing to attach (possible spoofing; remove it: rm "
        f"/dev/shm{name})")
    assert e.value.first and seg_mod.untrusted_total() == before + 1
    with pytest.raises(seg_mod.UntrustedSegmentError) as again:  # waiting does not help
        seg_mod.attach(name, None, wait_ready_s=5)
    assert not again.value.first and seg_mod.untrusted_total() == before + 1  # counted once


def test_attach_refuses_a_world_readable_segment_even_of_our_own_user(instance):
    names = SegmentNames(instance)
    squat(names.fills, b"\0" * 4096, mode=0o644)
    with pytest.raises(seg_mod.UntrustedSegmentError, match="owned by uid 65534 mode 0644"):
        FillQueue.attach(names.fills)
    ring = TicksRing.create(names.ticks, 16)
    ring.segment.mark_ready()
    os.chmod(f"/dev/shm{names.ticks}", 0o644)
    with pytest.raises(seg_mod.UntrustedSegmentError,
                       match=f"owned by uid {os.geteuid()} mode 0644, expected uid "
                             f"{os.geteuid()} mode 0600: refusing"):
        TicksRing.attach(names.ticks)
    ring.close()


def test_configured_shm_owner_is_trusted(instance):
    name = SegmentNames(instance).ticks
    squat(name, fake_ticks_segment())
    try:
        seg_mod.set_shm_owner("nobody")  # [process] shm_owner = "nobody"
        assert seg_mod.trusted_uids() == (os.geteuid(), NOBODY_UID)
        ring = TicksRing.attach(name)
        assert ring.head == 5
        ring.close()
    finally:
        seg_mod.set_shm_owner("")
    with pytest.raises(seg_mod.SegmentError, match="no such user"):
        seg_mod.set_shm_owner("no-such-user-here")


def test_create_removes_a_squatter_with_a_live_looking_owner(instance, caplog):
    name = SegmentNames(instance).ticks
    # the header names a live process (this one): before, "owned by running process" locked
    # the real feed out
    squat(name, fake_ticks_segment(owner_pid=os.getpid()))
    before = seg_mod.untrusted_total()
    with caplog.at_level("CRITICAL", logger="bog.shm"):
        ring = TicksRing.create(name, 16)
    st = Path(f"/dev/shm{name}").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode), ring.head) == (os.geteuid(), 0o600, 0)
    assert [r.getMessage() for r in caplog.records] == [
        f"CRITICAL shared memory {name} was owned by uid {NOBODY_UID} mode 0600, not by a "
        "trusted user: removed it (possible spoofing)"]
    assert seg_mod.untrusted_total() == before + 1
    ring.close()


def test_create_that_cannot_remove_a_squatter_says_what_to_remove(instance):
    # the roles reversed: root squats, the service runs as `nobody` and may not unlink it
    name = SegmentNames(instance).ticks
    path = Path(f"/dev/shm{name}")
    path.write_bytes(fake_ticks_segment())
    os.chmod(path, 0o600)
    code = ("import sys\nfrom bog.shm import segment as s\n"
            f"try:\n    s.create({name!r}, 1, 4096)\n"
            "except s.UntrustedSegmentError as e:\n    print(e); sys.exit(3)\n")
    r = subprocess.run(NOBODY + [sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd="/")
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout.strip() == (
        f"CRITICAL shared memory {name} is owned by uid 0 mode 0600, not by uid {NOBODY_UID}: "
        f"cannot remove it (permission denied); possible spoofing: remove it as root (rm "
        f"{path}) and start again")
    assert path.exists()


def test_zombie_owner_is_dead_and_its_segment_replaced(instance):
    name = SegmentNames(instance).ticks
    # exits without cleaning up and is never reaped (no wait()): a zombie with the same pid and
    # start time as when it created the segment
    p = subprocess.Popen([sys.executable, "-c",
                          "import os\nfrom bog.shm.ring import TicksRing\n"
                          f"r = TicksRing.create({name!r}, 16)\nr.segment.mark_ready()\n"
                          "os._exit(0)"])
    stat_path = Path(f"/proc/{p.pid}/stat")
    deadline = time.monotonic() + 60
    while stat_path.read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
        assert time.monotonic() < deadline, "child did not exit"
        time.sleep(0.02)
    old = TicksRing.attach(name)
    h = old.segment.header[0]
    assert int(h["owner_pid"]) == p.pid
    assert not seg_mod.owner_alive(p.pid, int(h["owner_start_ticks"]))
    old.close(unlink=False)
    new = TicksRing.create(name, 16)  # before: "owned by running process <zombie>"
    assert int(new.segment.header[0]["owner_pid"]) == os.getpid()
    new.close()
    p.wait(10)


def test_restart_count_in_the_header(instance, monkeypatch):
    name = SegmentNames(instance).engine_metrics
    crash = ("import os\nfrom bog.shm.metrics import MetricsBlock\n"
             f"b = MetricsBlock.create({name!r}, 'engine')\nb.segment.mark_ready()\n"
             "os._exit(9)")
    monkeypatch.delenv("BOG_RESTARTS", raising=False)
    env = {k: v for k, v in os.environ.items() if k != "BOG_RESTARTS"}
    for want in range(3):  # each crashed owner replaced: its count + 1
        subprocess.run([sys.executable, "-c", crash], env=env, timeout=60)
        b = MetricsBlock.attach(name, ENGINE)
        assert b.segment.restarts == want
        b.close(unlink=False)
    monkeypatch.setenv("BOG_RESTARTS", "7")  # under `bog run` the supervisor's count wins
    b = MetricsBlock.create(name, ENGINE)
    assert b.segment.restarts == 7
    b.close()
    monkeypatch.delenv("BOG_RESTARTS")
    b = MetricsBlock.create(name, ENGINE)  # a clean start: 0
    assert b.segment.restarts == 0
    b.close()


def test_rings_are_mapped_up_front_so_ticks_take_no_page_faults(instance):
    """A ticks ring is populated at create and at attach (MAP_POPULATE): touching every page
    of it afterwards takes (almost) no minor page fault. Before, a 200/s feed and the engine's
    hot thread each took one fault every ninth tick until the ring wrapped (issue 11)."""
    import resource

    names = SegmentNames(instance)
    cap = 8192  # 3.5 MB, 896 pages
    ring = TicksRing.create(names.ticks, cap)
    reader = TicksRing.attach(names.ticks)  # a second mapping, as the engine's
    try:
        pages = reader.words.nbytes // 4096
        step = 4096 // 8
        for r in (ring, reader):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            total = int(r.words[::step].sum())  # read one word on every page
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
            assert total == 0
            assert faults < pages // 10, (faults, pages)
    finally:
        reader.close(unlink=False)
        ring.close(unlink=True)


def test_try_attach_polls_a_peers_segment_refusing_squatters_not_ready_and_the_held_one(
        instance, caplog):
    """What the gateway (engine's intent ring) and the engine (gateway's venue-event ring and
    metrics block) do each pass: missing -> None silently; another user's -> None, counted,
    CRITICAL once; not READY yet or the very ring already held -> None; else the ring."""
    from bog.shm.ring import IntentRing, VenueEventRing

    names = SegmentNames(instance)
    rec = {"shm_untrusted_total": 0}
    log = logging.getLogger("bog.test")
    venue = lambda: VenueEventRing.attach(names.venue_events, writable=True)  # noqa: E731
    with caplog.at_level("INFO", logger="bog.test"):
        assert seg_mod.try_attach(venue, rec, log, held=None) is None  # not there yet
        assert caplog.records == [] and rec["shm_untrusted_total"] == 0
        squat(names.venue_events, b"\0" * 4096)  # another user's "ring"
        before = seg_mod.untrusted_total()
        assert seg_mod.try_attach(venue, rec, log, held=None) is None
        assert seg_mod.try_attach(venue, rec, log, held=None) is None  # every pass refuses
    assert rec["shm_untrusted_total"] == seg_mod.untrusted_total() == before + 1
    assert [(r.levelname, r.getMessage().split(" is owned")[0]) for r in caplog.records] == [
        ("CRITICAL", f"CRITICAL shared memory {names.venue_events}")]  # logged once
    # our own ring: refused while not READY, attached once READY, refused when it is the one held
    own = IntentRing.create(names.intents, 64)
    intents = lambda: IntentRing.attach(names.intents, writable=True)  # noqa: E731
    assert seg_mod.try_attach(intents, rec, log, held=None) is None
    own.segment.mark_ready()
    got = seg_mod.try_attach(intents, rec, log, held=None)
    assert got is not None and got.segment.inode == own.segment.inode
    assert seg_mod.try_attach(intents, rec, log, held=got) is None
    # without ``held`` (a metrics block: attached as it is)
    raw = seg_mod.try_attach(intents, rec, log)
    assert raw is not None
    for r in (raw, got):
        r.close(unlink=False)
    own.close()
