"""``bog record``: capture a running feed's ticks ring to a file that ``--feed replay`` plays.

File format (``.bogticks``, little-endian; see docs/replay.md)::

    offset 0   8 bytes   magic b"BOGTICKS"
    offset 8   u32       format version (1)
    offset 12  u32       data_offset: where the first record starts (a multiple of 64)
    offset 16  ...       UTF-8 JSON header, padded with spaces up to data_offset
    data_offset          N raw TICK_SLOT records (448 bytes each, exactly the ring's slots)

The JSON header describes the records (``record_size``, ``fields`` = ``TICK_SLOT.descr``,
``layout_version``, ``fixed_scale``) and the capture (instance, ring epoch and capacity,
start/finish time, ``records``, ``lost_ticks``, ``overruns``, ``complete``). It is rewritten
in place when the recording ends; a recording cut short (kill -9) is still readable, its
record count then comes from the file size and a torn last record is ignored (and counted).

The recorder attaches read-only, starts at the ring's current head and follows it with a
numba kernel (``record_follow``) that uses the ring's seqlock reads. If it falls a whole ring
behind, the lost ticks are counted (``lost_ticks``, ``overruns``), reported, and it resyncs
half a ring behind the head; the recorded sequence numbers then show the gap, exactly as a
live reader would have seen it. It stops after ``--count`` snapshots, after ``--duration``
seconds, on SIGINT/SIGTERM, or when the feed stops or restarts.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import time

import numba as nb
import numpy as np

from bog.shm import SegmentNames
from bog.shm.atomics import load_acquire
from bog.shm.layouts import (
    FIXED,
    LAYOUT_VERSION,
    RING_CAPACITY,
    RING_HEAD,
    TICK_SLOT,
    TICK_SLOT_WORDS,
)
from bog.shm.ring import READ_OK, READ_TORN, TicksRing, ticks_read

MAGIC = b"BOGTICKS"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII")  # magic, version, data_offset
_HEADER_SLACK = 512  # room for the header to grow when rewritten at the end
BATCH = 4096  # records copied per kernel call

FOLLOW_STATE = np.dtype(
    [
        ("next_pos", "<i8"),  # next ring position to copy
        ("lost_ticks", "<i8"),
        ("overruns", "<i8"),
        ("torn_retries", "<i8"),
    ]
)


class RecordFormatError(ValueError):
    """A file that starts like a bog record file but cannot be used."""


# ---- file format -----------------------------------------------------------------------
def fields_descr() -> list:
    return json.loads(json.dumps(TICK_SLOT.descr))


def make_header(**capture) -> dict:
    h = {
        "format": "bog-ticks",
        "version": FORMAT_VERSION,
        "record": "TICK_SLOT",
        "record_size": TICK_SLOT.itemsize,
        "layout_version": LAYOUT_VERSION,
        "fixed_scale": FIXED,
        "fields": fields_descr(),
        "records": 0,
        "lost_ticks": 0,
        "overruns": 0,
        "complete": False,
    }
    h.update(capture)
    return h


def _encode_header(header: dict, data_offset: int | None = None) -> bytes:
    body = json.dumps(header, separators=(",", ":")).encode()
    if data_offset is None:
        data_offset = -(-(_PREFIX.size + len(body) + _HEADER_SLACK) // 64) * 64
    room = data_offset - _PREFIX.size
    if len(body) + 1 > room:
        raise RecordFormatError("record header grew beyond its reserved space")
    pad = b" " * (room - len(body) - 1) + b"\n"
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, data_offset) + body + pad


class RecordWriter:
    """Append TICK_SLOT records to a new file; ``close`` finalises the header."""

    def __init__(self, path: str, header: dict):
        self.path = path
        self.header = header
        self.f = open(path, "wb")  # OSError: the caller reports it
        blob = _encode_header(header)
        self.data_offset = _PREFIX.unpack_from(blob)[2]
        self.f.write(blob)
        self.records = 0

    def write(self, records: np.ndarray) -> None:
        self.f.write(records.tobytes())
        self.records += len(records)

    def close(self, **final) -> None:
        self.header.update(final, records=self.records)
        self.f.flush()
        self.f.seek(0)
        self.f.write(_encode_header(self.header, self.data_offset))
        self.f.close()


def is_record_file(prefix: bytes) -> bool:
    return prefix[:len(MAGIC)] == MAGIC


def read_record_header(f, path: str) -> tuple[dict, int, int]:
    """(header, number of whole records, trailing bytes) of an open record file, positioned
    at its first record. Raises RecordFormatError."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise RecordFormatError("truncated bog record header")
    magic, version, data_offset = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise RecordFormatError("not a bog record file (bad magic)")
    if version != FORMAT_VERSION:
        raise RecordFormatError(
            f"bog record format version {version} is not supported "
            f"(this bog reads {FORMAT_VERSION})")
    if data_offset < _PREFIX.size or data_offset > min(size, 1 << 20):
        raise RecordFormatError(
            f"bad bog record header (data offset {data_offset}, file size {size})")
    try:
        header = json.loads(f.read(data_offset - _PREFIX.size).decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise RecordFormatError(f"bad bog record header: {e}") from None
    if not isinstance(header, dict):
        raise RecordFormatError("bad bog record header: not a JSON object")
    if (header.get("record_size") != TICK_SLOT.itemsize or header.get("fields") != fields_descr()
            or header.get("layout_version") != LAYOUT_VERSION):
        raise RecordFormatError(
            "recorded with a different TICK_SLOT layout (record_size "
            f"{header.get('record_size')}, layout_version {header.get('layout_version')}; this bog "
            f"uses {TICK_SLOT.itemsize}, {LAYOUT_VERSION}): re-record it with this version")
    f.seek(data_offset)
    n, trailing = divmod(size - data_offset, TICK_SLOT.itemsize)
    return header, n, trailing


def read_records(f, n: int) -> np.ndarray:
    """The next ``n`` records of a file positioned by ``read_record_header``."""
    records = np.fromfile(f, dtype=TICK_SLOT, count=n, offset=0) if n else np.zeros(0, TICK_SLOT)
    if len(records) != n:
        raise RecordFormatError(f"short read: expected {n} records, got {len(records)}")
    return records


def read_record_file(f, path: str) -> tuple[dict, np.ndarray, int]:
    """(header, records, trailing bytes) of an open record file. Raises RecordFormatError."""
    header, n, trailing = read_record_header(f, path)
    return header, read_records(f, n), trailing


# ---- follower kernel ---------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def record_follow(ctrl, words, state, out):
    """Copy published slots from ``state.next_pos`` into ``out`` (rows of TICK_SLOT words)
    until ``out`` is full or the reader has caught up with the head; returns rows copied."""
    s = state[0]
    cap = ctrl[RING_CAPACITY]
    n = 0
    while n < out.shape[0]:
        head = load_acquire(ctrl, RING_HEAD)
        if s.next_pos >= head:
            break
        if head - s.next_pos > cap:  # lapped: count the loss, resync half a ring behind
            resume = head - cap // 2
            s.lost_ticks += resume - s.next_pos
            s.overruns += 1
            s.next_pos = resume
            continue
        status = ticks_read(ctrl, words, s.next_pos, out[n])
        if status == READ_OK:
            out[n, 0] = 0  # the seqlock word means nothing outside the ring
            s.next_pos += 1
            n += 1
        elif status == READ_TORN:
            s.torn_retries += 1
        # READ_OVERWRITTEN: lapped while copying; the check above resyncs
    return n


def warm() -> None:
    ctrl = np.zeros(8, np.int64)
    ctrl[RING_CAPACITY] = 2
    words = np.zeros(2 * TICK_SLOT_WORDS, np.int64)
    record_follow(ctrl, words, np.zeros(1, FOLLOW_STATE), np.zeros((2, TICK_SLOT_WORDS), np.int64))


# ---- bog record ----------------------------------------------------------------------------
def _say(msg: str) -> None:
    print(f"bog record: {msg}", file=sys.stderr, flush=True)


def record_main(cfg, args) -> int:
    """Follow the ticks ring of ``--instance`` into ``--out``. Exit 0 when anything was
    recorded, 1 when nothing was (feed idle or gone), 2 on usage errors."""
    names = SegmentNames(args.instance)
    count = max(0, int(args.count or 0))
    duration_s = float(args.duration) if args.duration else 0.0
    if duration_s < 0:
        _say(f"--duration {args.duration}: must be >= 0")
        return 2
    ring = TicksRing.attach(names.ticks, wait_ready_s=2.0)  # SegmentError -> cli: clear message
    try:
        header = make_header(
            source="bog record", instance=args.instance, ticks_segment=names.ticks,
            ring_epoch_ns=ring.epoch, ring_capacity=ring.capacity, started_ns=time.time_ns())
        try:
            writer = RecordWriter(args.out, header)
        except OSError as e:
            _say(f"cannot write {args.out}: {e.strerror or e}")
            return 2
        return _follow(ring, writer, count, duration_s)
    finally:
        ring.close()


def _follow(ring: TicksRing, writer: RecordWriter, count: int, duration_s: float) -> int:
    stop = {"sig": None}

    def on_signal(sig, frame):
        stop["sig"] = sig

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    state = np.zeros(1, FOLLOW_STATE)
    state[0]["next_pos"] = ring.head  # record from now on
    buf = np.zeros(BATCH, TICK_SLOT)
    bw = buf.view(np.int64).reshape(BATCH, TICK_SLOT_WORDS)
    t_end = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    next_check = 0.0
    why = "duration elapsed"
    reported_lost = 0
    try:
        while True:
            if stop["sig"] is not None:
                why = f"signal {signal.Signals(stop['sig']).name}"
                break
            want = BATCH if not count else min(BATCH, count - writer.records)
            n = record_follow(ring.ctrl, ring.words, state, bw[:want])
            if n:
                writer.write(buf[:n])
            if count and writer.records >= count:
                why = f"{count} snapshots recorded"
                break
            lost = int(state[0]["lost_ticks"])
            if lost > reported_lost:
                _say(f"WARNING fell behind the feed: {lost - reported_lost} ticks lost "
                     f"({int(state[0]['overruns'])} overruns so far)")
                reported_lost = lost
            now = time.monotonic()
            if now >= t_end:
                break
            if now >= next_check:
                next_check = now + 0.1
                if ring.segment.replaced_or_closed():
                    why = "feed stopped or restarted"
                    break
            if n < want:
                time.sleep(0.0005)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        st = state[0]
        writer.close(finished_ns=time.time_ns(), lost_ticks=int(st["lost_ticks"]),
                     overruns=int(st["overruns"]), complete=True, stopped_because=why)
    st = state[0]
    msg = f"wrote {writer.records} snapshots to {writer.path} ({why})"
    if int(st["lost_ticks"]):
        msg += f"; lost {int(st['lost_ticks'])} ticks in {int(st['overruns'])} overruns"
    _say(msg)
    return 0 if writer.records else 1
