"""tardis.dev ``trades`` and ``incremental_book_L2`` CSVs: parsing kernels and the book builder.

``trades`` (docs/replay.md "Trades"): ``exchange,symbol,timestamp,local_timestamp,id,side,
price,amount``, one trade per line; merged with a book file by ``bog.feed.replay``.

``incremental_book_L2``: ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,
amount``, one level change per line: ``amount`` is the new total size at ``price`` (0 removes
the level); a run of ``is_snapshot = true`` rows is a whole book (the book is cleared when a
run starts). ``IncrementalReader`` rebuilds the book and emits a DEPTH-level snapshot (a
TICK_SLOT row) per timestamp, after the last change stamped with it.

Both kernels check syntax and the row-level rules (side, positive price, size, timestamps
never going backwards: the previous timestamp carries over from block to block); book sanity
of the emitted snapshots is ``bog.feed.replay.check_rows``, as for every format.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from bog.feed.csvformat import (
    CHUNK_BYTES,
    E_COLUMNS,
    E_NUMBER,
    E_RANGE,
    E_TIMESTAMP,
    F_EMPTY,
    F_OK,
    MAX_I64,
    PARSE_REASONS,
    CsvHeaderError,
    LineChunks,
    _field_error,
    _is_word,
    _preview,
    _trim,
    error_reasons,
    parse_fixed,
    parse_int,
)
from bog.shm.layouts import DEPTH, FLAG_FULL_SNAPSHOT, TICK_SLOT

E_SIDE = 20  # side not buy/sell (trades) or bid/ask (incremental)
E_PRICE = 21  # zero or negative price
E_SIZE = 22  # zero or negative trade amount / negative level amount
E_TS_BACK = 23  # timestamp earlier than the previous row's
E_SNAPSHOT = 24  # is_snapshot not true/false
REASONS = {
    **PARSE_REASONS,
    E_SIDE: "side not buy or sell",
    E_PRICE: "zero or negative price",
    E_SIZE: "zero or negative amount",
    E_TS_BACK: "timestamp goes backwards (earlier than the previous row's)",
    E_SNAPSHOT: "is_snapshot not true or false",
}
INCREMENTAL_REASONS = {**REASONS, E_SIDE: "side not bid or ask", E_SIZE: "negative amount"}

_BUY = np.frombuffer(b"buy", np.uint8).copy()
_SELL = np.frombuffer(b"sell", np.uint8).copy()
_BID = np.frombuffer(b"bid", np.uint8).copy()
_ASK = np.frombuffer(b"ask", np.uint8).copy()
_TRUE = np.frombuffer(b"true", np.uint8).copy()
_FALSE = np.frombuffer(b"false", np.uint8).copy()

# colmap: timestamp, local_timestamp (-1 if absent), side, price, amount, is_snapshot (-1)
CM_TS, CM_LOCAL, CM_SIDE, CM_PRICE, CM_AMOUNT, CM_SNAPSHOT = range(6)


def parse_columns(line: str, incremental: bool) -> tuple[np.ndarray, int, list[str]]:
    """(colmap, number of columns, names) of a trades / incremental_book_L2 header line."""
    names = [c.strip() for c in line.rstrip("\r\n").split(",")]
    index = {n: i for i, n in enumerate(names)}
    need = ["timestamp", "side", "price", "amount"] + (["is_snapshot"] if incremental else [])
    missing = [n for n in need if n not in index]
    if missing:
        layout = ("exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
                  if incremental else
                  "exchange,symbol,timestamp,local_timestamp,id,side,price,amount")
        kind = "incremental_book_L2" if incremental else "trades"
        raise CsvHeaderError(f"bad header: no {missing[0]!r} column (expected the tardis {kind} "
                             f"layout: {layout}); got {_preview(names)}")
    cm = np.full(6, -1, np.int64)
    cm[CM_TS] = index["timestamp"]
    cm[CM_LOCAL] = index.get("local_timestamp", -1)
    cm[CM_SIDE] = index["side"]
    cm[CM_PRICE] = index["price"]
    cm[CM_AMOUNT] = index["amount"]
    if incremental:
        cm[CM_SNAPSHOT] = index["is_snapshot"]
    return cm, len(names), names


@nb.njit(cache=True, nogil=True)
def parse_events(buf, colmap, ncols, line0, incremental, ts_out, local_out, side_out, px_out,
                 sz_out, snap_out, lines, err_line, err_code, err_col, err_off, counts, prev):
    """Parse the lines of ``buf`` (trades or incremental_book_L2 rows) into the ``*_out``
    arrays (times in ns; side +1 buy / -1 sell for trades, 0 bid / 1 ask for incremental);
    bad rows to ``err_*``. ``prev[0]``: the previous good row's timestamp (ns, carried from
    block to block). counts <- [rows ok, rows bad, last line]."""
    n = buf.shape[0]
    fs = np.empty(ncols, np.int64)
    fe = np.empty(ncols, np.int64)
    line = line0
    nok = 0
    nerr = 0
    i = 0
    while i < n:
        j = i
        while j < n and buf[j] != 10:
            j += 1
        line += 1
        start = i
        e = j
        i = j + 1
        if e > start and buf[e - 1] == 13:
            e -= 1
        if e == start:
            continue
        nf = 0
        s = start
        for k in range(start, e + 1):
            if k == e or buf[k] == 44:
                if nf < ncols:
                    fs[nf] = s
                    fe[nf] = k
                nf += 1
                s = k + 1
        code = 0
        col = 0
        ts = np.int64(0)
        local = np.int64(0)
        side = 0
        px = np.int64(0)
        sz = np.int64(0)
        snap = 0
        if nf != ncols:
            code = E_COLUMNS
            col = nf
        if code == 0:
            c = colmap[CM_TS]
            st, ts = parse_int(buf, fs[c], fe[c])
            if st != F_OK or ts <= 0:
                code = E_TIMESTAMP
                col = c
            elif ts > MAX_I64 // 1000:
                code = E_RANGE
                col = c
            else:
                ts *= 1000
        if code == 0 and colmap[CM_LOCAL] >= 0:
            c = colmap[CM_LOCAL]
            st, v = parse_int(buf, fs[c], fe[c])
            if st == F_OK and v <= MAX_I64 // 1000:
                local = v * 1000
            elif st != F_EMPTY:
                code = E_TIMESTAMP
                col = c
        if code == 0:
            c = colmap[CM_SIDE]
            a, b = _trim(buf, fs[c], fe[c])
            if incremental and _is_word(buf, a, b, _BID):
                side = 0
            elif incremental and _is_word(buf, a, b, _ASK):
                side = 1
            elif not incremental and _is_word(buf, a, b, _BUY):
                side = 1
            elif not incremental and _is_word(buf, a, b, _SELL):
                side = -1
            else:
                code = E_SIDE
                col = c
        if code == 0 and incremental:
            c = colmap[CM_SNAPSHOT]
            a, b = _trim(buf, fs[c], fe[c])
            if _is_word(buf, a, b, _TRUE):
                snap = 1
            elif not _is_word(buf, a, b, _FALSE):
                code = E_SNAPSHOT
                col = c
        if code == 0:
            c = colmap[CM_PRICE]
            st, px = parse_fixed(buf, fs[c], fe[c])
            if st != F_OK:
                code = E_NUMBER if st == F_EMPTY else _field_error(st)
                col = c
            elif px <= 0:
                code = E_PRICE
                col = c
        if code == 0:
            c = colmap[CM_AMOUNT]
            st, sz = parse_fixed(buf, fs[c], fe[c])
            if st != F_OK:
                code = E_NUMBER if st == F_EMPTY else _field_error(st)
                col = c
            elif sz < 0 or (sz == 0 and not incremental):
                code = E_SIZE
                col = c
        if code == 0 and ts < prev[0]:
            code = E_TS_BACK
            col = colmap[CM_TS]
        if code != 0:
            err_line[nerr] = line
            err_code[nerr] = code
            err_col[nerr] = col
            err_off[nerr] = start
            nerr += 1
            continue
        prev[0] = ts
        ts_out[nok] = ts
        local_out[nok] = local
        side_out[nok] = side
        px_out[nok] = px
        sz_out[nok] = sz
        snap_out[nok] = snap
        lines[nok] = line
        nok += 1
    counts[0] = nok
    counts[1] = nerr
    counts[2] = line
    return nok


class Events:
    """One parsed block of trades / incremental rows (arrays reused by the next block)."""

    __slots__ = ("ts", "local", "side", "px", "sz", "snap", "lines", "n", "rows_read", "rejects")


class EventReader:
    """A tardis trades or incremental_book_L2 CSV, parsed block by block."""

    def __init__(self, f, header: str, incremental: bool, chunk_bytes: int = CHUNK_BYTES):
        self.colmap, self.ncols, self.names = parse_columns(header, incremental)
        self.incremental = incremental
        self.src = LineChunks(f, chunk_bytes)
        self.line = 1
        self.counts = np.zeros(3, np.int64)
        self.prev = np.zeros(1, np.int64)
        self.cap = 0

    def _alloc(self, cap: int) -> None:
        ev = Events()
        ev.ts, ev.local, ev.px, ev.sz, ev.lines = (np.zeros(cap, np.int64) for _ in range(5))
        ev.side = np.zeros(cap, np.int8)
        ev.snap = np.zeros(cap, np.uint8)
        self.ev, self.cap = ev, cap

    def next_chunk(self) -> Events | None:
        data = self.src.next()
        if data is None:
            return None
        cap = data.count(b"\n") + 1
        if self.cap < cap:
            self._alloc(cap)
        ev = self.ev
        err = [np.zeros(cap, np.int64) for _ in range(4)]
        parse_events(np.frombuffer(data, np.uint8), self.colmap, self.ncols, self.line,
                     self.incremental, ev.ts, ev.local, ev.side, ev.px, ev.sz, ev.snap, ev.lines,
                     *err, self.counts, self.prev)
        ev.n, nerr = int(self.counts[0]), int(self.counts[1])
        self.line = int(self.counts[2])
        ev.rows_read = ev.n + nerr
        ev.rejects = error_reasons(data, nerr, *err, self.names, self.ncols,
                                   INCREMENTAL_REASONS if self.incremental else REASONS)
        return ev


# ---- trades merged with a book ---------------------------------------------------------------
# merge state words
MS_BI, MS_TI, MS_NOUT, MS_NREJ, MS_HAVE_BOOK = range(5)


@nb.njit(cache=True, nogil=True)
def merge_trades(book, book_ts, nbook, book_eof, t_ts, t_local, t_side, t_px, t_sz, ntrades,
                 trades_eof, cur, out, out_pace, rej, st):
    """Merge book rows and trades by timestamp into ``out`` (from ``st[MS_NOUT]``) until it is
    full or one input block is used up (while more of that input may come). A trade becomes a
    tick carrying the current book (``cur``, the last book row) plus the trade; at equal
    timestamps trades come first (they carry the book they traded against). A trade before the
    first book row has no book: its index goes to ``rej``."""
    bi = st[MS_BI]
    ti = st[MS_TI]
    nout = st[MS_NOUT]
    nrej = st[MS_NREJ]
    while nout < out.shape[0]:
        has_b = bi < nbook
        has_t = ti < ntrades
        if has_b and has_t:
            take_trade = t_ts[ti] <= book_ts[bi]
        elif has_t:
            if not book_eof:
                break  # the next book row may come before this trade
            take_trade = True
        elif has_b:
            if not trades_eof:
                break
            take_trade = False
        else:
            break
        if take_trade:
            if st[MS_HAVE_BOOK] == 0:
                rej[nrej] = ti
                nrej += 1
                ti += 1
                continue
            out[nout] = cur[0]
            o = out[nout]
            o.exchange_ts_ns = t_ts[ti]
            o.local_recv_ns = t_local[ti]
            o.trade_px = t_px[ti]
            o.trade_sz = t_sz[ti]
            o.trade_side = t_side[ti]
            out_pace[nout] = t_ts[ti]
            ti += 1
        else:
            cur[0] = book[bi]
            st[MS_HAVE_BOOK] = 1
            out[nout] = book[bi]
            out_pace[nout] = book_ts[bi]
            bi += 1
        nout += 1
    st[MS_BI] = bi
    st[MS_TI] = ti
    st[MS_NOUT] = nout
    st[MS_NREJ] = nrej


# ---- incremental_book_L2: the book rebuilt from deltas ---------------------------------------
# builder state words
BS_TS, BS_LOCAL, BS_LINE, BS_PENDING, BS_IN_SNAPSHOT, BS_I, BS_NOUT = range(7)
NEED_ROOM = 1


@nb.njit(cache=True, nogil=True)
def _emit(keys, sizes, count, o, ts, local):
    """The top DEPTH levels of the book into the TICK_SLOT row ``o``. keys[s] ascend with the
    best level last: bids by price, asks by minus the price."""
    for k in range(DEPTH):
        for s in range(2):
            c = count[s]
            px = np.int64(0)
            sz = np.int64(0)
            if k < c:
                px = keys[s, c - 1 - k]
                if s == 1:
                    px = -px
                sz = sizes[s, c - 1 - k]
            if s == 0:
                o.bid_px_l[k] = px
                o.bid_sz_l[k] = sz
            else:
                o.ask_px_l[k] = px
                o.ask_sz_l[k] = sz
    o.bid_px = o.bid_px_l[0]
    o.bid_sz = o.bid_sz_l[0]
    o.ask_px = o.ask_px_l[0]
    o.ask_sz = o.ask_sz_l[0]
    o.exchange_ts_ns = ts
    o.local_recv_ns = local
    o.flags = FLAG_FULL_SNAPSHOT if count[0] >= DEPTH and count[1] >= DEPTH else 0


@nb.njit(cache=True, nogil=True)
def build_book(ts, local, side, px, sz, snap, lines, n, final, keys, sizes, count, st, out,
               out_lines):
    """Apply rows st[BS_I]..n-1 to the book; a snapshot row goes to ``out`` each time the
    timestamp changes (and at the end when ``final``). Returns NEED_ROOM when a side of the
    book is full (the caller grows ``keys``/``sizes`` and calls again), else 0."""
    nout = st[BS_NOUT]
    cap = keys.shape[1]
    for i in range(st[BS_I], n):
        t = ts[i]
        if st[BS_PENDING] != 0 and t != st[BS_TS]:
            _emit(keys, sizes, count, out[nout], st[BS_TS], st[BS_LOCAL])
            out_lines[nout] = st[BS_LINE]
            nout += 1
            st[BS_PENDING] = 0
        if snap[i] != 0:
            if st[BS_IN_SNAPSHOT] == 0:  # a snapshot run starts: the book is replaced
                count[0] = 0
                count[1] = 0
                st[BS_IN_SNAPSHOT] = 1
        else:
            st[BS_IN_SNAPSHOT] = 0
        s = side[i]
        key = px[i] if s == 0 else -px[i]
        c = count[s]
        # binary search for key in keys[s, :c] (ascending)
        lo = 0
        hi = c
        while lo < hi:
            mid = (lo + hi) >> 1
            if keys[s, mid] < key:
                lo = mid + 1
            else:
                hi = mid
        found = lo < c and keys[s, lo] == key
        if sz[i] == 0:
            if found:
                for k in range(lo, c - 1):
                    keys[s, k] = keys[s, k + 1]
                    sizes[s, k] = sizes[s, k + 1]
                count[s] = c - 1
        elif found:
            sizes[s, lo] = sz[i]
        else:
            if c == cap:
                st[BS_I] = i
                st[BS_NOUT] = nout
                return NEED_ROOM
            for k in range(c, lo, -1):
                keys[s, k] = keys[s, k - 1]
                sizes[s, k] = sizes[s, k - 1]
            keys[s, lo] = key
            sizes[s, lo] = sz[i]
            count[s] = c + 1
        st[BS_TS] = t
        st[BS_LOCAL] = local[i]
        st[BS_LINE] = lines[i]
        st[BS_PENDING] = 1
    if final and st[BS_PENDING] != 0:
        _emit(keys, sizes, count, out[nout], st[BS_TS], st[BS_LOCAL])
        out_lines[nout] = st[BS_LINE]
        nout += 1
        st[BS_PENDING] = 0
    st[BS_I] = n
    st[BS_NOUT] = nout
    return 0


MAX_BOOK_LEVELS = 1 << 20  # price levels per side of a rebuilt book: 32 MiB of keys and sizes


class BookTooDeepError(ValueError):
    """A side of the rebuilt book would exceed MAX_BOOK_LEVELS price levels."""


class IncrementalBook:
    """The book of an incremental_book_L2 stream, rebuilt block by block. Each side holds at
    most ``max_levels`` price levels (default MAX_BOOK_LEVELS, far more than any exchange's
    L2 book): beyond that the stream is not a plausible book and ``apply`` raises
    BookTooDeepError naming the line, instead of growing without bound."""

    def __init__(self, levels: int = 1024, max_levels: int | None = None):
        self.max_levels = MAX_BOOK_LEVELS if max_levels is None else max_levels
        levels = min(levels, self.max_levels)
        self.keys = np.zeros((2, levels), np.int64)
        self.sizes = np.zeros((2, levels), np.int64)
        self.count = np.zeros(2, np.int64)
        self.st = np.zeros(7, np.int64)
        self._out = np.zeros(0, TICK_SLOT)
        self._lines = np.zeros(0, np.int64)

    def apply(self, ev: Events | None) -> tuple[np.ndarray, np.ndarray]:
        """Snapshots (TICK_SLOT rows, and the file line of their last change) emitted by the
        rows of ``ev`` (None: the end of the file, flush the last timestamp)."""
        n = 0 if ev is None else ev.n
        if len(self._out) < n + 1:
            self._out = np.zeros(n + 1, TICK_SLOT)
            self._lines = np.zeros(n + 1, np.int64)
        else:
            self._out[:n + 1] = 0
        st = self.st
        st[BS_I] = 0
        st[BS_NOUT] = 0
        empty = np.zeros(0, np.int64)
        args = ((ev.ts, ev.local, ev.side, ev.px, ev.sz, ev.snap, ev.lines) if ev is not None
                else (empty, empty, np.zeros(0, np.int8), empty, empty, np.zeros(0, np.uint8),
                      empty))
        while build_book(*args, n, ev is None, self.keys, self.sizes, self.count, st,
                         self._out, self._lines) == NEED_ROOM:
            have = self.keys.shape[1]
            if have >= self.max_levels:
                side = "bid" if self.count[0] >= have else "ask"
                raise BookTooDeepError(
                    f"line {int(ev.lines[int(st[BS_I])])}: the {side} side of the rebuilt book "
                    f"would exceed {self.max_levels:,} price levels: not a plausible L2 book")
            grow = min(have * 2, self.max_levels)
            keys = np.zeros((2, grow), np.int64)
            sizes = np.zeros((2, grow), np.int64)
            keys[:, :self.keys.shape[1]] = self.keys
            sizes[:, :self.sizes.shape[1]] = self.sizes
            self.keys, self.sizes = keys, sizes
        k = int(st[BS_NOUT])
        return self._out[:k], self._lines[:k]


def warm() -> None:
    import io

    r = EventReader(io.BytesIO(b"x,y,1,2,1,buy,1.5,2\nx,y,2,3,2,sell,1.5,0\n"),
                    "exchange,symbol,timestamp,local_timestamp,id,side,price,amount", False)
    ev = r.next_chunk()
    book = np.zeros(1, TICK_SLOT)
    st = np.zeros(5, np.int64)
    merge_trades(book, np.zeros(1, np.int64), 1, True, ev.ts, ev.local, ev.side, ev.px, ev.sz,
                 ev.n, True, book.copy(), np.zeros(4, TICK_SLOT), np.zeros(4, np.int64),
                 np.zeros(4, np.int64), st)
    r = EventReader(io.BytesIO(b"x,y,1,2,true,bid,1.5,2\nx,y,2,3,false,ask,1.6,1\n"),
                    "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount",
                    True)
    b = IncrementalBook(2)
    b.apply(r.next_chunk())
    b.apply(None)
