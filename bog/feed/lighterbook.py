"""The live feed's exact L2 book and its publish step: one numba kernel call per venue frame.

The Python side (``bog.feed.lighter``) decodes a frame with orjson, checks its fields and
joins the level strings of the frame into one ASCII buffer ``"p0,s0,p1,s1,..."`` (bids first,
then asks). ``frame_apply`` then, in one call:

1. parses every decimal string straight to fixed point x1e9 with the CSV loader's parser
   (``bog.feed.csvformat.parse_fixed``: integer arithmetic, no float round trip; NaN/inf,
   junk and out-of-range values are reported, not guessed);
2. validates the whole frame before touching the book (a price must be > 0, a size >= 0);
3. applies it: a snapshot replaces both sides, an update sets each level (size 0 removes it);
4. checks the result is not crossed (best bid >= best ask);
5. stages the top ``DEPTH`` levels and publishes them into the ticks ring with the shared
   ``publish_snapshot`` step; a trade frame publishes the book once per trade of the frame,
   each snapshot carrying its trade.

The book: per side a sorted array of keys (bids ``-price``, asks ``price``: best first on both
sides) and sizes, ``cap`` levels at most; beyond that the worst level is dropped and counted
(the top 10 stays exact unless the book later thins out past the dropped depth).

No allocation, logging or I/O in the kernel. Reasons are ``VENUE_REJECT`` codes (0 = applied).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from bog.feed.csvformat import F_NAN, F_OK, F_RANGE, parse_fixed
from bog.feed.publish import publish_snapshot
from bog.shm.atomics import CLOCK_REALTIME, clock_ns
from bog.shm.codes import VENUE_REJECT
from bog.shm.hist import bucket_index
from bog.shm.layouts import (
    DEPTH,
    FLAG_BOOK_INVALID,
    FLAG_FULL_SNAPSHOT,
    LATENCY_NS_EDGES,
    TICK_SLOT,
)

OK = 0
R_BAD_NUMBER = VENUE_REJECT.BAD_NUMBER + 1  # kernel results are code + 1 (0 = applied)
R_NAN = VENUE_REJECT.NAN + 1
R_RANGE = VENUE_REJECT.OUT_OF_RANGE + 1
R_ZERO_PRICE = VENUE_REJECT.ZERO_PRICE + 1
R_NEG_PRICE = VENUE_REJECT.NEGATIVE_PRICE + 1
R_NEG_SIZE = VENUE_REJECT.NEGATIVE_SIZE + 1
R_ZERO_SIZE = VENUE_REJECT.ZERO_SIZE + 1
R_CROSSED = VENUE_REJECT.CROSSED + 1

# frame_apply modes
MODE_SNAPSHOT = 0  # buf: the whole book
MODE_UPDATE = 1  # buf: changed levels
MODE_TRADE = 2  # buf: "price,size" of each trade of the frame; the book is published as it
# is, once per trade (tmeta[i]: its exchange time and side), in order, one sequence number each
MODE_INVALID = 3  # publish a FLAG_BOOK_INVALID marker (no prices), nothing parsed

# io words (int64): inputs, then outputs
IO_NBID = 0  # levels in buf that are bids (the rest are asks)
IO_NFIELDS = 1  # fields expected in buf (2 per level)
IO_SEQ = 2  # ring sequence to publish with
IO_EXCH_NS = 3
IO_RECV_NS = 4
IO_TRADE_SIDE = 5  # (unused: each trade's side is in tmeta)
IO_MARKET = 6
IO_PUBLISH = 7  # 1: publish after applying
IO_OUT_WHERE = 8  # out: index of the bad field
IO_OUT_DROPPED = 9  # out: levels dropped beyond the capacity (cumulative)
IO_OUT_PUB_NS = 10  # out: publish time
IO_WORDS = 12

# tmeta columns (MODE_TRADE): one row per trade of the frame
TM_EXCH_NS = 0  # the trade's exchange time
TM_SIDE = 1  # +1 buyer-initiated, -1 seller-initiated


@nb.njit(cache=True, nogil=True)
def _set_level(keys, sizes, n, side, key, size, cap):
    """Set one level (size 0 removes); returns 1 if a level was dropped for capacity."""
    cnt = n[side]
    lo = 0
    hi = cnt
    while lo < hi:  # first index with keys >= key
        mid = (lo + hi) >> 1
        if keys[side, mid] < key:
            lo = mid + 1
        else:
            hi = mid
    found = lo < cnt and keys[side, lo] == key
    if size == 0:
        if found:
            for j in range(lo, cnt - 1):
                keys[side, j] = keys[side, j + 1]
                sizes[side, j] = sizes[side, j + 1]
            n[side] = cnt - 1
        return 0
    if found:
        sizes[side, lo] = size
        return 0
    dropped = 0
    if cnt == cap:
        if lo == cap:
            return 1  # worse than every kept level
        cnt -= 1  # drop the worst
        dropped = 1
    for j in range(cnt, lo, -1):
        keys[side, j] = keys[side, j - 1]
        sizes[side, j] = sizes[side, j - 1]
    keys[side, lo] = key
    sizes[side, lo] = size
    n[side] = cnt + 1
    return dropped


@nb.njit(cache=True, nogil=True)
def _parse(buf, vals, nexp, io):
    """Comma-separated decimals -> vals (fixed). Returns 0 or a result code."""
    nf = 0
    s = 0
    end = buf.shape[0]
    if nexp == 0:
        return R_BAD_NUMBER if end != 0 else OK
    for k in range(end + 1):
        if k == end or buf[k] == 44:
            if nf >= nexp:
                io[IO_OUT_WHERE] = nf
                return R_BAD_NUMBER  # a comma inside a value
            st, v = parse_fixed(buf, s, k)
            if st != F_OK:
                io[IO_OUT_WHERE] = nf
                if st == F_NAN:
                    return R_NAN
                if st == F_RANGE:
                    return R_RANGE
                return R_BAD_NUMBER
            vals[nf] = v
            nf += 1
            s = k + 1
    if nf != nexp:
        io[IO_OUT_WHERE] = nf
        return R_BAD_NUMBER
    return OK


@nb.njit(cache=True, nogil=True)
def _stage(keys, sizes, n, slot, io, invalid):
    nb_ = n[0] if not invalid else 0
    na_ = n[1] if not invalid else 0
    for k in range(DEPTH):
        if k < nb_:
            slot.bid_px_l[k] = -keys[0, k]
            slot.bid_sz_l[k] = sizes[0, k]
        else:
            slot.bid_px_l[k] = 0
            slot.bid_sz_l[k] = 0
        if k < na_:
            slot.ask_px_l[k] = keys[1, k]
            slot.ask_sz_l[k] = sizes[1, k]
        else:
            slot.ask_px_l[k] = 0
            slot.ask_sz_l[k] = 0
    slot.bid_px = slot.bid_px_l[0]
    slot.bid_sz = slot.bid_sz_l[0]
    slot.ask_px = slot.ask_px_l[0]
    slot.ask_sz = slot.ask_sz_l[0]
    slot.flags = FLAG_BOOK_INVALID if invalid else FLAG_FULL_SNAPSHOT
    slot.market_id = io[IO_MARKET]
    slot.venue = io[IO_MARKET] // 1_000_000
    slot.sequence = io[IO_SEQ]
    slot.exchange_ts_ns = io[IO_EXCH_NS]
    slot.local_recv_ns = io[IO_RECV_NS]


@nb.njit(cache=True, nogil=True)
def _publish(keys, sizes, n, slot, sw, io, invalid, ctrl, words, m):
    _stage(keys, sizes, n, slot, io, invalid)
    t = publish_snapshot(ctrl, words, sw, slot, m)
    io[IO_OUT_PUB_NS] = t
    d = t - io[IO_RECV_NS]
    m.venue_frame_to_publish_ns_bucket[bucket_index(LATENCY_NS_EDGES, d)] += 1
    m.venue_frame_to_publish_ns_sum += d
    m.venue_book_levels[0] = n[0]
    m.venue_book_levels[1] = n[1]


@nb.njit(cache=True, nogil=True)
def frame_apply(buf, mode, keys, sizes, n, cap, vals, io, tmeta, staging, ctrl, words, metrics):
    """Parse, validate, apply and (``io[IO_PUBLISH]``) publish one frame; 0 or a result code
    (``VENUE_REJECT`` code + 1). On a rejection before the apply step the book is unchanged;
    ``R_CROSSED`` leaves the book crossed (the caller resubscribes). A trade frame
    (``MODE_TRADE``) is validated whole, then each of its trades is published as one snapshot
    of the current book carrying that trade, in order, with sequence numbers ``io[IO_SEQ]``,
    ``io[IO_SEQ] + 1``, ... (``tmeta[i]``: trade i's exchange time and side)."""
    m = metrics[0]
    slot = staging[0]
    sw = staging.view(np.int64)
    io[IO_OUT_WHERE] = -1
    slot.trade_px = 0
    slot.trade_sz = 0
    slot.trade_side = 0
    if mode != MODE_INVALID:
        nexp = io[IO_NFIELDS]
        r = _parse(buf, vals, nexp, io)
        if r != OK:
            return r
        for i in range(nexp // 2):
            px = vals[2 * i]
            sz = vals[2 * i + 1]
            if px < 0:
                io[IO_OUT_WHERE] = 2 * i
                return R_NEG_PRICE
            if px == 0:
                io[IO_OUT_WHERE] = 2 * i
                return R_ZERO_PRICE
            if sz < 0:
                io[IO_OUT_WHERE] = 2 * i + 1
                return R_NEG_SIZE
            if sz == 0 and mode == MODE_TRADE:
                io[IO_OUT_WHERE] = 2 * i + 1
                return R_ZERO_SIZE
        if mode == MODE_TRADE:
            if io[IO_PUBLISH] != 0:
                seq0 = io[IO_SEQ]
                for i in range(nexp // 2):
                    io[IO_SEQ] = seq0 + i
                    io[IO_EXCH_NS] = tmeta[i, TM_EXCH_NS]
                    slot.trade_px = vals[2 * i]
                    slot.trade_sz = vals[2 * i + 1]
                    slot.trade_side = tmeta[i, TM_SIDE]
                    _publish(keys, sizes, n, slot, sw, io, False, ctrl, words, m)
                io[IO_SEQ] = seq0
            return OK
        else:
            if mode == MODE_SNAPSHOT:
                n[0] = 0
                n[1] = 0
            nbid = io[IO_NBID]
            dropped = 0
            for i in range(nexp // 2):
                side = 0 if i < nbid else 1
                px = vals[2 * i]
                key = -px if side == 0 else px
                dropped += _set_level(keys, sizes, n, side, key, vals[2 * i + 1], cap)
            io[IO_OUT_DROPPED] += dropped
            if n[0] > 0 and n[1] > 0 and -keys[0, 0] >= keys[1, 0]:
                return R_CROSSED
    if io[IO_PUBLISH] != 0:
        _publish(keys, sizes, n, slot, sw, io, mode == MODE_INVALID, ctrl, words, m)
    return OK


@nb.njit(cache=True, nogil=True)
def now_ns():
    return clock_ns(CLOCK_REALTIME)


class Book:
    """The arrays of one market's book and the scratch space of ``frame_apply``."""

    def __init__(self, cap: int, max_fields: int = 1 << 16):
        self.cap = cap
        self.keys = np.zeros((2, cap), np.int64)
        self.sizes = np.zeros((2, cap), np.int64)
        self.n = np.zeros(2, np.int64)
        self.vals = np.zeros(max_fields, np.int64)
        self.io = np.zeros(IO_WORDS, np.int64)
        self.tmeta = np.zeros((64, 2), np.int64)  # per trade of a trade frame (TM_*)
        self.staging = np.zeros(1, TICK_SLOT)

    def ensure_fields(self, nfields: int) -> None:
        if nfields > len(self.vals):
            self.vals = np.zeros(max(nfields, 2 * len(self.vals)), np.int64)

    def ensure_trades(self, ntrades: int) -> None:
        if ntrades > len(self.tmeta):
            self.tmeta = np.zeros((max(ntrades, 2 * len(self.tmeta)), 2), np.int64)
        self.ensure_fields(2 * ntrades)

    def top(self) -> np.ndarray:
        """[bid px, bid sz, ask px, ask sz] x DEPTH, fixed point (0 = no level): for tests."""
        out = np.zeros((4, DEPTH), np.int64)
        nb_, na_ = min(int(self.n[0]), DEPTH), min(int(self.n[1]), DEPTH)
        out[0, :nb_], out[1, :nb_] = -self.keys[0, :nb_], self.sizes[0, :nb_]
        out[2, :na_], out[3, :na_] = self.keys[1, :na_], self.sizes[1, :na_]
        return out


def warm() -> None:
    """Compile (or load from numba's cache) the kernel for the types the feed uses."""
    from bog.shm.layouts import FEED_METRICS, RING_CAPACITY, RING_CTRL_WORDS, TICK_SLOT_WORDS

    b = Book(16)
    ctrl = np.zeros(RING_CTRL_WORDS, np.int64)
    ctrl[RING_CAPACITY] = 2
    words = np.zeros(2 * TICK_SLOT_WORDS, np.int64)
    fm = np.zeros(1, FEED_METRICS)
    buf = np.frombuffer(b"1.5,2,2.5,1", np.uint8)
    b.io[IO_NFIELDS], b.io[IO_NBID], b.io[IO_PUBLISH] = 4, 1, 1
    frame_apply(buf, MODE_SNAPSHOT, b.keys, b.sizes, b.n, b.cap, b.vals, b.io, b.tmeta,
                b.staging, ctrl, words, fm)
    now_ns()
