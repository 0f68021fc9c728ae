"""The rings in shared memory: ticks (seqlock slots), and bounded SPSC queues: fills, order
intents (engine -> gateway) and venue events (gateway -> engine).

Ticks ring: one producer (the feed), any number of readers, readers never block the writer.
Each slot is a seqlock: generation made odd, payload written, generation made even, then the
ring head advanced with a release store. A reader copies the slot between two generation
loads and retries if they differ or are odd; the slot also carries the ring position it holds,
so a reader that was lapped sees ``READ_OVERWRITTEN`` instead of a silently newer tick.

Fills queue: bounded single-producer single-consumer queue of FILL records with head/tail
counters. ``fills_push`` never blocks: when the queue is full it returns False and the caller
counts and reports the dropped fill. Depth is ``head - tail`` for any reader.

Intent and venue-event rings: the same bounded SPSC queue over their own records
(``spsc_push`` / ``spsc_peek_into`` / ``spsc_commit``, the record size is the staging array's
length); the producer never blocks, a full ring is the caller's to count.

The kernels are numba functions over int64 word views of the mapping (see ``words``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from bog.shm import segment as seg_mod
from bog.shm.atomics import fence_acquire, fence_release, load_acquire, store_release
from bog.shm.layouts import (
    FILL,
    FILL_WORDS,
    INTENT_REC,
    KIND_FILLS,
    KIND_INTENTS,
    KIND_TICKS,
    KIND_VENUE_EVENTS,
    RING_CAPACITY,
    RING_CTRL_WORDS,
    RING_HEAD,
    RING_TAIL,
    TICK_SLOT,
    TICK_SLOT_WORDS,
    VENUE_EVENT_REC,
    ring_body_size,
)

READ_OK = 0
READ_TORN = 1  # writer was mid-update: retry
READ_OVERWRITTEN = 2  # the slot already holds a later position: reader was lapped


# ---- ticks ring kernels ------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def ticks_write_slot(ctrl, words, staging):
    """First half of ``ticks_publish``: write ``staging`` into the slot at the head (seqlock),
    without publishing it. Returns its position; ``ticks_commit_head`` publishes it."""
    n = ctrl[RING_HEAD]  # only this producer writes the head
    cap = ctrl[RING_CAPACITY]
    base = (n & (cap - 1)) * TICK_SLOT_WORDS
    g = words[base]
    store_release(words, base, g + 1)  # odd: write in progress
    fence_release()
    words[base + 1] = n
    for k in range(2, TICK_SLOT_WORDS):
        words[base + k] = staging[k]
    store_release(words, base, g + 2)  # even: consistent
    return n


@nb.njit(cache=True, nogil=True)
def ticks_commit_head(ctrl, n):
    """Second half of ``ticks_publish``: make position ``n`` visible to readers."""
    store_release(ctrl, RING_HEAD, n + 1)


@nb.njit(cache=True, nogil=True)
def ticks_publish(ctrl, words, staging):
    """Publish ``staging`` (int64 words of one TICK_SLOT) at the head. Returns its position."""
    n = ticks_write_slot(ctrl, words, staging)
    ticks_commit_head(ctrl, n)
    return n


@nb.njit(cache=True, nogil=True)
def ticks_head(ctrl):
    return load_acquire(ctrl, RING_HEAD)


@nb.njit(cache=True, nogil=True)
def ticks_read(ctrl, words, pos, out):
    """Copy the slot of ring position ``pos`` into ``out`` (TICK_SLOT words)."""
    cap = ctrl[RING_CAPACITY]
    base = (pos & (cap - 1)) * TICK_SLOT_WORDS
    g1 = load_acquire(words, base)
    if g1 & 1:
        return READ_TORN
    for k in range(1, TICK_SLOT_WORDS):
        out[k] = words[base + k]
    fence_acquire()
    g2 = load_acquire(words, base)
    if g1 != g2:
        return READ_TORN
    if out[1] != pos:
        return READ_OVERWRITTEN
    return READ_OK


# ---- fills queue kernels -----------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def fills_push(ctrl, words, fill):
    """Append one FILL (int64 words). False when full: the caller must count the drop."""
    head = ctrl[RING_HEAD]
    tail = load_acquire(ctrl, RING_TAIL)
    cap = ctrl[RING_CAPACITY]
    if head - tail >= cap:
        return False
    base = (head % cap) * FILL_WORDS
    for k in range(FILL_WORDS):
        words[base + k] = fill[k]
    store_release(ctrl, RING_HEAD, head + 1)
    return True


@nb.njit(cache=True, nogil=True)
def fills_peek_into(ctrl, words, out):
    """Copy up to ``len(out)`` queued fills into ``out`` (shape (n, FILL_WORDS)) without
    consuming them; returns the count. Consume with ``fills_commit`` once they are journaled,
    so a crash in between loses nothing (the journal dedupes by fill_id)."""
    head = load_acquire(ctrl, RING_HEAD)
    tail = ctrl[RING_TAIL]
    cap = ctrl[RING_CAPACITY]
    n = min(head - tail, out.shape[0])
    for j in range(n):
        base = ((tail + j) % cap) * FILL_WORDS
        for k in range(FILL_WORDS):
            out[j, k] = words[base + k]
    return n


_FILL_QTY = FILL.fields["qty"][1] // 8
_FILL_SIDE = FILL.fields["side"][1] // 8
_FILL_ID = FILL.fields["fill_id"][1] // 8


@nb.njit(cache=True, nogil=True)
def fills_pending_position(ctrl, words):
    """Net position (sum of side * qty, fixed) and count of every queued fill, [tail, head).

    No buffer and no size limit: reconciliation must count the whole queue, however large
    (a fixed-size copy undercounts a queue deeper than the copy). Called by the consumer,
    which is the only one moving the tail, so the slots read cannot be reused meanwhile."""
    head = load_acquire(ctrl, RING_HEAD)
    tail = ctrl[RING_TAIL]
    cap = ctrl[RING_CAPACITY]
    total = 0
    for j in range(tail, head):
        base = (j % cap) * FILL_WORDS
        total += words[base + _FILL_SIDE] * words[base + _FILL_QTY]
    return total, head - tail


@nb.njit(cache=True, nogil=True)
def fills_max_id(ctrl, words):
    """Highest ``fill_id`` held anywhere in the queue's slots (consumed ones included): a
    restarted engine numbers its fills above it, so no id is ever reused."""
    cap = ctrl[RING_CAPACITY]
    written = min(load_acquire(ctrl, RING_HEAD), cap)
    best = 0
    for j in range(written):
        v = words[j * FILL_WORDS + _FILL_ID]
        if v > best:
            best = v
    return best


@nb.njit(cache=True, nogil=True)
def fills_commit(ctrl, n):
    """Consume ``n`` fills (after ``fills_peek_into``)."""
    store_release(ctrl, RING_TAIL, ctrl[RING_TAIL] + n)


# ---- generic SPSC queue kernels (intents, venue events) ----------------------------------
@nb.njit(cache=True, nogil=True)
def spsc_push(ctrl, words, rec):
    """Append one record (int64 words, ``len(rec)`` per record). False when full."""
    nw = rec.shape[0]
    head = ctrl[RING_HEAD]
    tail = load_acquire(ctrl, RING_TAIL)
    cap = ctrl[RING_CAPACITY]
    if head - tail >= cap:
        return False
    base = (head % cap) * nw
    for k in range(nw):
        words[base + k] = rec[k]
    store_release(ctrl, RING_HEAD, head + 1)
    return True


@nb.njit(cache=True, nogil=True)
def spsc_pop(ctrl, words, out):
    """Copy the oldest record into ``out`` and consume it; False when empty (consumer only)."""
    nw = out.shape[0]
    head = load_acquire(ctrl, RING_HEAD)
    tail = ctrl[RING_TAIL]
    if tail >= head:
        return False
    base = (tail % ctrl[RING_CAPACITY]) * nw
    for k in range(nw):
        out[k] = words[base + k]
    store_release(ctrl, RING_TAIL, tail + 1)
    return True


@nb.njit(cache=True, nogil=True)
def spsc_peek_into(ctrl, words, out):
    """Copy up to ``out.shape[0]`` queued records (rows of ``out``) without consuming them."""
    nw = out.shape[1]
    head = load_acquire(ctrl, RING_HEAD)
    tail = ctrl[RING_TAIL]
    cap = ctrl[RING_CAPACITY]
    n = min(head - tail, out.shape[0])
    for j in range(n):
        base = ((tail + j) % cap) * nw
        for k in range(nw):
            out[j, k] = words[base + k]
    return n


@nb.njit(cache=True, nogil=True)
def spsc_commit(ctrl, n):
    """Consume ``n`` records (after ``spsc_peek_into``)."""
    store_release(ctrl, RING_TAIL, ctrl[RING_TAIL] + n)


# ---- Python handles ------------------------------------------------------------------------
class _Ring:
    item_dtype: np.dtype
    kind: int

    def __init__(self, segment: seg_mod.Segment):
        self.segment = segment
        self.ctrl = segment.words(0, RING_CTRL_WORDS)
        cap = int(self.ctrl[RING_CAPACITY])
        self.capacity = cap
        self.items = segment.view(self.item_dtype, RING_CTRL_WORDS * 8, cap)
        self.words = segment.words(RING_CTRL_WORDS * 8, cap * self.item_dtype.itemsize // 8)

    @classmethod
    def create(cls, name: str, capacity: int):
        seg = seg_mod.create(name, cls.kind, ring_body_size(cls.item_dtype, capacity))
        ctrl = seg.words(0, RING_CTRL_WORDS)
        ctrl[RING_CAPACITY] = capacity
        return cls(seg)

    @classmethod
    def attach(cls, name: str, writable: bool = False, wait_ready_s: float = 0.0):
        return cls(seg_mod.attach(name, cls.kind, writable, wait_ready_s))

    @property
    def head(self) -> int:
        return int(self.ctrl[RING_HEAD])

    @property
    def tail(self) -> int:
        return int(self.ctrl[RING_TAIL])

    @property
    def epoch(self) -> int:
        return self.segment.epoch

    def close(self, unlink: bool | None = None) -> None:
        self.ctrl = self.items = self.words = None
        self.segment.close(unlink)


class TicksRing(_Ring):
    """Market snapshots; capacity must be a power of two."""

    item_dtype = TICK_SLOT
    kind = KIND_TICKS

    @classmethod
    def create(cls, name: str, capacity: int):
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"ticks ring capacity must be a power of two >= 2, got {capacity}")
        return super().create(name, capacity)

    def read(self, pos: int) -> tuple[int, np.ndarray]:
        """Python-side read of one position (for tools and tests): (status, record copy)."""
        out = np.zeros(1, TICK_SLOT)
        status = ticks_read(self.ctrl, self.words, pos, out.view(np.int64))
        return status, out[0]


class FillQueue(_Ring):
    """The guide's fill queue: bounded, drops (and the caller reports) when full."""

    item_dtype = FILL
    kind = KIND_FILLS

    @property
    def depth(self) -> int:
        return int(self.ctrl[RING_HEAD]) - int(self.ctrl[RING_TAIL])


class _SpscRing(_Ring):
    @property
    def depth(self) -> int:
        return int(self.ctrl[RING_HEAD]) - int(self.ctrl[RING_TAIL])

    def push(self, rec: np.ndarray) -> bool:
        """Python-side producer (tests, the gateway): one record of ``item_dtype``."""
        return bool(spsc_push(self.ctrl, self.words,
                              np.ascontiguousarray(rec, self.item_dtype).view(np.int64)))

    def pop_all(self, limit: int = 4096) -> np.ndarray:
        """Python-side consumer: every queued record (up to ``limit``), consumed."""
        out = np.zeros((min(max(self.depth, 0), limit), self.item_dtype.itemsize // 8), np.int64)
        n = spsc_peek_into(self.ctrl, self.words, out) if len(out) else 0
        if n:
            spsc_commit(self.ctrl, n)
        return out[:n].copy().view(self.item_dtype).reshape(-1)


class IntentRing(_SpscRing):
    """Order intents, engine (producer, owner) -> bog-gateway (consumer)."""

    item_dtype = INTENT_REC
    kind = KIND_INTENTS


class VenueEventRing(_SpscRing):
    """Venue order events, bog-gateway (producer, owner) -> engine (consumer)."""

    item_dtype = VENUE_EVENT_REC
    kind = KIND_VENUE_EVENTS
