"""Replay feed: publish a recorded file into the ticks ring, paced like the recording.

Two input formats (docs/replay.md): a CSV of L2 book snapshots in the tardis.dev
``book_snapshot_N`` layout (plain or gzip), and ``bog record`` output (bog/feed/record.py).

Lifecycle:
1. ``load_replay`` (at feed startup, in Python): read and parse the whole file into an array
   of TICK_SLOT records, then ``check_rows`` (numba) validates every row. Rejected rows are
   counted (feed metrics ``replay_rows_rejected_total``; ``replay_rows_total`` counts rows
   read) and logged as ``Replay row rejected: file F line N: reason`` (the first
   ``LOG_REJECTS_MAX`` individually, then one summary line). A file that cannot be read, is
   empty, has a bad header or no usable row raises ``ReplayError`` with a one-line message.
2. ``replay_run`` (numba, called by the feed's main loop once per housekeeping period)
   publishes the rows. Row i is due at ``start + (t_i - t_0) / speed`` where t is the row's
   recorded time: the exchange ``timestamp`` for CSV, ``local_recv_ns`` for ``bog record``
   files (monotonic in a ring capture; their exchange timestamps carry the simulated latency
   jitter). Speed 0 publishes flat out.
3. When every row is published ``done`` becomes True; the feed process sets ``replay_done``.

Event time: every snapshot is published with its recorded times, ``local_recv_ns`` = its
recorded time t (the one it is paced by) and ``exchange_ts_ns`` = t minus its recorded latency
(``local_recv_ns - exchange_ts_ns`` of a ``bog record`` row; 0 for CSV), whatever the speed and
whenever it is actually published (``local_publish_ns``, the wall clock, as for every feed).
The ring is marked ``RING_EVENT_TIME``: an engine reading it takes "now" from these times, so
the same file gives the same decisions at any speed (docs/replay.md, "Event time and
determinism"). Pacing alone uses the wall clock: if the replay falls more than 1 s behind its
schedule (a stall), the schedule is rebased to now, keeping the deltas from there on.

Sequence numbers: CSV rows get 1..N in file order over the accepted rows; ``bog record``
files keep their recorded sequence numbers (so a recorded gap replays as a gap).
"""

from __future__ import annotations

import gzip
import logging
import os
import stat
import time
import zlib

import numba as nb
import numpy as np

from bog.config import ConfigError
from bog.feed import csvformat, record, tardis
from bog.feed.publish import publish_snapshot
from bog.log import RateLimiter
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.atomics import CLOCK_REALTIME, clock_ns
from bog.shm.metrics import ENGINE, MetricsBlock
from bog.shm.layouts import (
    DEPTH,
    FIXED,
    FLAG_BOOK_INVALID,
    FLAG_FULL_SNAPSHOT,
    RING_EVENT_TIME,
    RING_HEAD,
    TICK_SLOT,
    TICK_SLOT_WORDS,
)

log = logging.getLogger("bog.feed.replay")

SPIN_LIMIT_NS = 200_000  # wait longer than this in Python (sleep), shorter by spinning
REBASE_BEHIND_NS = 1_000_000_000
LOG_REJECTS_MAX = 20  # rejected rows logged one by one; the rest are summarised

REPLAY_STATE = np.dtype(
    [
        ("next_row", "<i8"),
        ("anchor_wall_ns", "<i8"),  # wall time row anchor_row was due (0 = not started)
        ("anchor_ts_ns", "<i8"),  # its recorded exchange timestamp
        ("done", "<i8"),
        ("rebases", "<i8"),  # times the schedule was rebased after falling > 1 s behind
    ]
)


class ReplayError(ConfigError):
    """The replay file cannot be used; the message names the file and the problem."""


# ---- row validation (every format) -----------------------------------------------------
C_TS = 20  # timestamp missing or not positive
C_TS_BACKWARDS = 21  # earlier than the previous accepted row
C_TOP_PRICE = 22  # best bid/ask price zero, negative or missing (where: 0 bid, 1 ask)
C_TOP_SIZE = 23  # best bid/ask size zero or negative
C_CROSSED = 24
C_NEG_PRICE = 25  # negative price at a level (where: side*DEPTH + level)
C_NEG_SIZE = 26
C_ZERO_SIZE = 27  # a level with a price but no size
C_LEVEL_GAP = 28  # a level present below an empty one
C_ORDER = 29  # bids not strictly descending / asks not strictly ascending


@nb.njit(cache=True, nogil=True)
def _check_side(px, sz, side):
    """(code, where) for one side's levels; bids (side 0) descend, asks (side 1) ascend."""
    empty_seen = False
    for k in range(px.shape[0]):
        p = px[k]
        q = sz[k]
        where = side * DEPTH + k
        if p < 0:
            return C_NEG_PRICE, where
        if q < 0:
            return C_NEG_SIZE, where
        if p == 0:
            empty_seen = True
            continue
        if empty_seen:
            return C_LEVEL_GAP, where
        if q == 0:
            return C_ZERO_SIZE, where
        if k > 0:
            if (side == 0 and p >= px[k - 1]) or (side == 1 and p <= px[k - 1]):
                return C_ORDER, where
    return 0, 0


@nb.njit(cache=True, nogil=True)
def check_rows(rows, pace_ts, depth_always, ok, codes, wheres, state):
    """Validate rows in order; ok[i] = 1 if row i is published. ``pace_ts`` (the timestamps
    the replay is paced by) must be positive and never go backwards. Depth is checked on full
    snapshots, or on every row when ``depth_always`` (CSV rows always carry their levels).
    A row flagged ``FLAG_BOOK_INVALID`` (a live feed's marker that its book lost continuity,
    kept by ``bog record``) carries no prices: only its timestamp is checked, and it is
    published as the marker it is (the engine cancels its quotes until the next valid
    snapshot, as live). ``state[0]``: the previous accepted timestamp (-1: none), carried from
    chunk to chunk; ``state[1]`` += the markers accepted. Returns the number of rows accepted."""
    prev_ts = state[0]
    nok = 0
    markers = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        code = 0
        where = 0
        marker = (r.flags & FLAG_BOOK_INVALID) != 0
        if pace_ts[i] <= 0:
            code = C_TS
        elif marker:
            pass  # no prices to check: the engine does not validate a marker either
        elif r.bid_px <= 0:
            code = C_TOP_PRICE
        elif r.ask_px <= 0:
            code = C_TOP_PRICE
            where = 1
        elif r.bid_sz <= 0:
            code = C_TOP_SIZE
        elif r.ask_sz <= 0:
            code = C_TOP_SIZE
            where = 1
        elif r.bid_px > r.ask_px:
            code = C_CROSSED
        elif depth_always or (r.flags & FLAG_FULL_SNAPSHOT) != 0:
            code, where = _check_side(r.bid_px_l, r.bid_sz_l, 0)
            if code == 0:
                code, where = _check_side(r.ask_px_l, r.ask_sz_l, 1)
        if code == 0 and pace_ts[i] < prev_ts:
            code = C_TS_BACKWARDS
        codes[i] = code
        wheres[i] = where
        if code == 0:
            ok[i] = 1
            prev_ts = pace_ts[i]
            nok += 1
            if marker:
                markers += 1
        else:
            ok[i] = 0
    state[0] = prev_ts
    state[1] += markers
    return nok


def _px(v: int) -> str:
    return f"{v / FIXED:.10g}"


def _check_reason(code: int, where: int, row, ts: int, prev_ts: int, ts_name: str) -> str:
    side, level = ("bids", "asks")[where // DEPTH], where % DEPTH
    at = f"{side}[{level}]"
    if code == C_TS:
        return f"{ts_name} missing or not positive ({ts} ns)"
    if code == C_TS_BACKWARDS:
        return (f"{ts_name} goes backwards ({ts // 1000} us < previous row's "
                f"{prev_ts // 1000} us)")
    if code == C_TOP_PRICE:
        name = "bid" if where == 0 else "ask"
        v = int(row["bid_px" if where == 0 else "ask_px"])
        return f"{'zero or missing' if v == 0 else 'negative'} best {name} price ({_px(v)})"
    if code == C_TOP_SIZE:
        name = "bid" if where == 0 else "ask"
        size = int(row["bid_sz" if where == 0 else "ask_sz"])
        return f"zero or negative best {name} size ({_px(size)})"
    if code == C_CROSSED:
        bid, ask = _px(int(row["bid_px"])), _px(int(row["ask_px"]))
        return f"crossed book: best bid {bid} > best ask {ask}"
    px = int(row["bid_px_l" if where < DEPTH else "ask_px_l"][level])
    sz = int(row["bid_sz_l" if where < DEPTH else "ask_sz_l"][level])
    if code == C_NEG_PRICE:
        return f"negative price at {at} ({_px(px)})"
    if code == C_NEG_SIZE:
        return f"negative size at {at} ({_px(sz)})"
    if code == C_ZERO_SIZE:
        return f"zero size at {at} (price {_px(px)})"
    if code == C_LEVEL_GAP:
        return f"level gap: {at} present below an empty level"
    if code == C_ORDER:
        order = "descending" if where < DEPTH else "ascending"
        return f"{side} not in strictly {order} price order at {at} ({_px(px)})"
    return f"invalid row (code {code})"


# ---- loading: files are streamed block by block ----------------------------------------------
class RejectLog:
    """Counts and logs rejected rows of one replay (every file of it): the first
    ``LOG_REJECTS_MAX`` one by one, the rest in one summary line at the end of the replay.
    ``collect`` keeps every (number, reason) too (``load_replay``: tests and tools). Also
    counts the book-invalid markers accepted (``markers``: published, not rejected)."""

    def __init__(self, collect: bool = False):
        self.limiter = RateLimiter(burst=LOG_REJECTS_MAX, period_s=float("inf"))
        self.count = 0
        self.markers = 0  # accepted rows that are FLAG_BOOK_INVALID markers (not rejects)
        self.suppressed = 0
        self.first: tuple[str, int, str] | None = None  # (unit, number, reason)
        self.all: list[tuple[int, str]] | None = [] if collect else None

    def add(self, path: str, unit: str, number: int, reason: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = (unit, number, reason)
        if self.all is not None:
            self.all.append((number, reason))
        if self.limiter.allow("replay_reject")[0]:
            log.warning("Replay row rejected: file %s %s %d: %s", path, unit, number, reason)
        else:
            self.suppressed += 1

    def summary(self, path: str, rows_read: int) -> None:
        if self.suppressed:
            log.warning("Replay row rejected: file %s: %d more rejected rows not logged one by "
                        "one (suppressed %d similar; %d rejected of %d rows read)", path,
                        self.suppressed, self.suppressed, self.count, rows_read)


class Chunk:
    """Validated rows ready to publish, in file order: ``rows`` (TICK_SLOT), the recorded
    time each is paced by and its recorded exchange-to-local latency. Views into buffers the
    next chunk of the same stream reuses."""

    __slots__ = ("rows", "pace_ts_ns", "latency_ns")

    def __init__(self, rows, pace_ts_ns, latency_ns):
        self.rows, self.pace_ts_ns, self.latency_ns = rows, pace_ts_ns, latency_ns


class _Validator:
    """``check_rows`` over consecutive chunks: the previous accepted timestamp carries over,
    so a step backwards across a chunk boundary is caught like one inside a chunk."""

    def __init__(self, path: str, unit: str, ts_name: str, depth_always: bool, rejlog: RejectLog):
        self.path, self.unit, self.ts_name = path, unit, ts_name
        self.depth_always = depth_always
        self.rejlog = rejlog
        self.prev = np.array([-1, 0], np.int64)  # check_rows state: [previous ts, markers]

    def run(self, rows, pace, latency, numbers, early_rejects) -> int:
        """Validate, log every reject of the chunk (``early_rejects``: the parser's) in file
        order, and move the accepted rows to the front; returns how many."""
        n = len(rows)
        ok = np.zeros(n, np.uint8)
        codes = np.zeros(n, np.int64)
        wheres = np.zeros(n, np.int64)
        prev_before = int(self.prev[0])
        markers_before = int(self.prev[1])
        check_rows(rows, pace, self.depth_always, ok, codes, wheres, self.prev)
        self.rejlog.markers += int(self.prev[1]) - markers_before
        rejects = list(early_rejects)
        if not ok.all():
            rejects += _describe(rows, pace, numbers, ok, (codes, wheres), self.ts_name,
                                 prev_before)
        rejects.sort(key=lambda t: t[0])
        for number, reason in rejects:
            self.rejlog.add(self.path, self.unit, number, reason)
        return compact_rows(rows, pace, latency, ok, -1, False)


class _BookCsvStream:
    """tardis ``book_snapshot_N`` rows, validated, chunk by chunk."""

    format = "csv"
    unit = "line"

    def __init__(self, f, path: str, rejlog: RejectLog, chunk_bytes: int, header: str):
        self.path = path
        self.reader = csvformat.BookCsvReader(f, chunk_bytes, header)
        self.check = _Validator(path, "line", "timestamp", True, rejlog)
        self.rows_read = 0
        self._pace = np.zeros(0, np.int64)
        self._latency = np.zeros(0, np.int64)

    def next_chunk(self) -> Chunk | None:
        parsed = self.reader.next_chunk()
        if parsed is None:
            return None
        self.rows_read += parsed.rows_read
        rows = parsed.rows
        n = len(rows)
        if len(self._pace) < n:
            self._pace = np.zeros(n, np.int64)
            self._latency = np.zeros(n, np.int64)
        pace, latency = self._pace[:n], self._latency[:n]
        pace[:] = rows["exchange_ts_ns"]
        latency[:] = 0
        k = self.check.run(rows, pace, latency, parsed.lines, parsed.rejects)
        return Chunk(rows[:k], pace[:k], latency[:k])


class _RecordStream:
    """``bog record`` records, validated, chunk by chunk (their sequence numbers kept)."""

    format = "bog-record"
    unit = "record"

    def __init__(self, f, path: str, rejlog: RejectLog, chunk_bytes: int):
        self.path, self.f, self.rejlog = path, f, rejlog
        try:
            header, self.n, self.trailing = record.read_record_header(f, path)
        except record.RecordFormatError as e:
            raise ReplayError(f"replay file {path}: {e}") from None
        self.rows_read = 0
        self.per_chunk = max(1, chunk_bytes // TICK_SLOT.itemsize)
        if self.n + (1 if self.trailing else 0) == 0:
            raise ReplayError(f"replay file {path}: bog record file contains no records")
        if header.get("lost_ticks"):
            log.warning("replay file %s: the recorder lost %d ticks in %d overruns while "
                        "recording (they show as sequence gaps)", path, header["lost_ticks"],
                        header.get("overruns", 0))
        self.check = _Validator(path, "record", "local_recv_ns", False, rejlog)
        self.done = 0

    def next_chunk(self) -> Chunk | None:
        k = min(self.per_chunk, self.n - self.done)
        if k <= 0:
            if self.trailing:  # a recording cut short (kill -9): a torn last record
                self.rows_read += 1
                self.rejlog.add(self.path, "record", self.n + 1,
                                f"truncated record ({self.trailing} of {TICK_SLOT.itemsize} "
                                "bytes; the recording was cut short)")
                self.trailing = 0
            return None
        try:
            rows = record.read_records(self.f, k)
        except record.RecordFormatError as e:
            raise ReplayError(f"replay file {self.path}: {e}") from None
        numbers = np.arange(self.done + 1, self.done + k + 1, dtype=np.int64)
        self.done += k
        self.rows_read += k
        # paced by the feed's receive time: monotonic in a ring capture, while the exchange
        # timestamps carry the (simulated) latency jitter, which is replayed as recorded
        pace = rows["local_recv_ns"].copy()
        latency = np.maximum(pace - rows["exchange_ts_ns"], 0)
        n = self.check.run(rows, pace, latency, numbers, ())
        return Chunk(rows[:n], pace[:n], latency[:n])


class _IncrementalStream:
    """tardis ``incremental_book_L2`` rows: the book rebuilt from its deltas, one DEPTH-level
    snapshot per timestamp, validated like CSV snapshots."""

    format = "incremental_book_L2"
    unit = "line"

    def __init__(self, f, path: str, rejlog: RejectLog, chunk_bytes: int, header: str):
        self.path, self.rejlog = path, rejlog
        self.reader = tardis.EventReader(f, header, True, chunk_bytes)
        self.book = tardis.IncrementalBook()
        self.check = _Validator(path, "line", "timestamp", True, rejlog)
        self.rows_read = 0
        self.eof = False
        self._pace = np.zeros(0, np.int64)
        self._latency = np.zeros(0, np.int64)

    def next_chunk(self) -> Chunk | None:
        if self.eof:
            return None
        ev = self.reader.next_chunk()
        try:
            rows, lines = self.book.apply(ev)
        except tardis.BookTooDeepError as e:  # this block and the rest: one rejected row
            raise ReplayError(f"replay file {self.path}: {e}") from None
        early = ()
        if ev is None:
            self.eof = True
        else:
            self.rows_read += ev.rows_read
            early = ev.rejects
        n = len(rows)
        if len(self._pace) < n:
            self._pace = np.zeros(n, np.int64)
            self._latency = np.zeros(n, np.int64)
        pace, latency = self._pace[:n], self._latency[:n]
        pace[:] = rows["exchange_ts_ns"]
        k = self.check.run(rows, pace, latency, lines, early)
        return Chunk(rows[:k], pace[:k], latency[:k])


class _MergedStream:
    """A book stream and a tardis ``trades`` file merged by timestamp: every book row is a
    tick, and so is every trade, carrying the current book (the last book row before it) and
    trade_px/trade_sz/trade_side. At equal timestamps the trade comes first: it traded against
    the book before it, and the book stamped with the same time already shows its effect (a
    quote placed on that book must not be filled by the trade that made it)."""

    unit = "line"
    OUT_ROWS = 16384

    def __init__(self, book, trades_f, trades_path: str, rejlog: RejectLog, chunk_bytes: int,
                 header: str):
        self.book, self.trades_path, self.rejlog = book, trades_path, rejlog
        self.format = f"{book.format}+trades"
        self.trades = tardis.EventReader(trades_f, header, False, chunk_bytes)
        self.trade_rows_read = 0
        self.bchunk = self.tchunk = None
        self.nb = self.nt = 0
        self.book_eof = self.trades_eof = False
        self.cur = np.zeros(1, TICK_SLOT)
        self.st = np.zeros(5, np.int64)
        self._out = np.zeros(self.OUT_ROWS, TICK_SLOT)
        self._pace = np.zeros(self.OUT_ROWS, np.int64)
        self._latency = np.zeros(self.OUT_ROWS, np.int64)
        self._rej = np.zeros(0, np.int64)

    @property
    def rows_read(self) -> int:
        return self.book.rows_read + self.trade_rows_read

    @rows_read.setter
    def rows_read(self, v: int) -> None:  # (an unreadable rest of the file, counted once)
        self.trade_rows_read = v - self.book.rows_read

    def _refill(self) -> None:
        st = self.st
        while not self.book_eof and st[tardis.MS_BI] >= self.nb:
            self.bchunk = self.book.next_chunk()
            st[tardis.MS_BI] = 0
            self.nb = 0 if self.bchunk is None else len(self.bchunk.rows)
            self.book_eof = self.bchunk is None
        while not self.trades_eof and st[tardis.MS_TI] >= self.nt:
            ev = self.trades.next_chunk()
            st[tardis.MS_TI] = 0
            if ev is None:
                self.trades_eof = True
                self.nt = 0
                continue
            self.tchunk, self.nt = ev, ev.n
            self.trade_rows_read += ev.rows_read
            for number, reason in ev.rejects:
                self.rejlog.add(self.trades_path, "line", number, reason)
            if len(self._rej) < ev.n:
                self._rej = np.zeros(ev.n, np.int64)

    def next_chunk(self) -> Chunk | None:
        st = self.st
        st[tardis.MS_NOUT] = 0
        empty = np.zeros(0, np.int64)
        while True:
            self._refill()
            if self.book_eof and self.trades_eof:
                break
            b = self.bchunk
            t = self.tchunk
            st[tardis.MS_NREJ] = 0
            tardis.merge_trades(
                b.rows if b is not None else self.cur[:0], b.pace_ts_ns if b is not None else empty,
                self.nb, self.book_eof,
                t.ts if t is not None else empty, t.local if t is not None else empty,
                t.side if t is not None else np.zeros(0, np.int8),
                t.px if t is not None else empty, t.sz if t is not None else empty,
                self.nt, self.trades_eof, self.cur, self._out, self._pace, self._rej, st)
            for k in range(int(st[tardis.MS_NREJ])):
                self.rejlog.add(self.trades_path, "line", int(t.lines[self._rej[k]]),
                                "trade before the first book row (no book to carry it)")
            if st[tardis.MS_NOUT] == len(self._out):
                break
        n = int(st[tardis.MS_NOUT])
        if n == 0 and self.book_eof and self.trades_eof:
            return None
        return Chunk(self._out[:n], self._pace[:n], self._latency[:n])


_FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _check_regular(path: str, mode: int) -> None:
    """Refuse anything but a regular file: reading a FIFO or a device may block forever."""
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_TYPES if test(mode)), "of another type")
        raise ReplayError(f"replay file {path} is {kind}, not a regular file")


def _open_regular(path: str):
    """An open binary file, refusing anything but a regular file. Raises ReplayError."""
    try:
        _check_regular(path, os.stat(path).st_mode)
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, open() still
        # returns at once (and fstat refuses it) instead of waiting forever for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ReplayError(f"cannot read replay file {path}: {e.strerror or e}") from None
    f = os.fdopen(fd, "rb")
    try:
        _check_regular(path, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
    except BaseException:
        f.close()
        raise
    return f


_READ_ERRORS = (OSError, EOFError, zlib.error)


def _read_error(path: str, e: BaseException) -> ReplayError:
    why = getattr(e, "strerror", None) or e
    return ReplayError(f"cannot read replay file {path}: {why}")


def _open_text(path: str):
    """(raw file, text stream: the file or its gzip decompressor, header line or None for a
    bog record file)."""
    f = _open_regular(path)
    try:
        head = f.read(16)
        if not head:
            raise ReplayError(f"replay file {path} is empty")
        f.seek(0)
        if record.is_record_file(head):
            return f, f, None
        text = gzip.open(f, "rb") if head[:2] == b"\x1f\x8b" else f
        return f, text, csvformat.read_header(text)
    except _READ_ERRORS as e:
        f.close()
        raise _read_error(path, e) from None
    except BaseException:
        f.close()
        raise


class ReplayStream:
    """The rows of a replay (one file, or a book file and a trades file merged), validated
    and numbered, chunk by chunk: ``next_chunk()`` until it returns None. Rejected rows are
    counted (``rows_read``, ``rejected``) and logged as they are read. Only a chunk at a time
    is in memory (``chunk_bytes`` of input text, ``CHUNK_BYTES`` by default)."""

    def __init__(self, path: str, market_id: int = 1_000_001, *, trades_file: str = "",
                 chunk_bytes: int = 0, collect: bool = False):
        if not path:
            raise ReplayError("no replay file given (--replay-file or feed.replay_file)")
        chunk_bytes = chunk_bytes or csvformat.CHUNK_BYTES
        self.path = path
        self.market_id = market_id
        self.rejlog = RejectLog(collect)
        self._files = []
        self.eof = False
        self.accepted = 0
        self.first_ts = self.last_ts = 0
        try:
            self.source = self._open(path, chunk_bytes, trades_file)
        except BaseException:
            self.close()
            raise
        self.format, self.unit = self.source.format, self.source.unit
        self.number = self.format != "bog-record"  # CSV rows get 1..N; records keep theirs

    def _open(self, path: str, chunk_bytes: int, trades_file: str):
        raw, text, header = _open_text(path)
        self._files += [text, raw] if text is not raw else [raw]
        if header is None:
            if trades_file:
                raise ReplayError(f"replay file {path} is a bog record file: --trades-file goes "
                                  "with a CSV book file (a recording carries its trades)")
            return _RecordStream(raw, path, self.rejlog, chunk_bytes)
        names = {c.strip() for c in header.split(",")}
        try:
            if "is_snapshot" in names:
                book = _IncrementalStream(text, path, self.rejlog, chunk_bytes, header)
            elif {"id", "side", "price", "amount"} <= names:
                raise ReplayError(f"replay file {path} is a tardis trades file: give it with "
                                  "--trades-file next to a book file (--replay-file)")
            else:
                book = _BookCsvStream(text, path, self.rejlog, chunk_bytes, header)
        except csvformat.CsvHeaderError as e:
            raise ReplayError(f"replay file {path}: {e}") from None
        if not trades_file:
            return book
        raw, text, header = _open_text(trades_file)
        self._files += [text, raw] if text is not raw else [raw]
        if header is None:
            raise ReplayError(f"trades file {trades_file} is a bog record file, not a tardis "
                              "trades CSV")
        try:
            return _MergedStream(book, text, trades_file, self.rejlog, chunk_bytes, header)
        except csvformat.CsvHeaderError as e:
            raise ReplayError(f"trades file {trades_file}: {e}") from None

    @property
    def rows_read(self) -> int:
        return self.source.rows_read

    @property
    def rejected(self) -> int:
        return self.rejlog.count

    @property
    def markers(self) -> int:
        """Rows read so far that are FLAG_BOOK_INVALID markers (published as markers)."""
        return self.rejlog.markers

    @property
    def span_ns(self) -> int:
        return self.last_ts - self.first_ts

    def next_chunk(self) -> Chunk | None:
        """The next non-empty chunk of accepted rows; None at the end (then the summary of
        rejects is logged). Raises ReplayError if the file cannot be read on."""
        while not self.eof:
            try:
                chunk = self.source.next_chunk()
            except _READ_ERRORS as e:
                raise _read_error(self.path, e) from None
            except UnicodeDecodeError:
                raise ReplayError(f"replay file {self.path}: not a text CSV or a bog record "
                                  "file") from None
            if chunk is None:
                self.eof = True
                self.rejlog.summary(self.path, self.rows_read)
                self.close()
                break
            n = len(chunk.rows)
            if n == 0:
                continue
            if self.number:
                number_rows(chunk.rows, self.accepted, self.market_id)
            if self.accepted == 0:
                self.first_ts = int(chunk.pace_ts_ns[0])
            self.last_ts = int(chunk.pace_ts_ns[n - 1])
            self.accepted += n
            return chunk
        return None

    def first_chunk(self) -> Chunk:
        """The first chunk with an accepted row; ReplayError if the file has none."""
        try:
            chunk = self.next_chunk()
        except BaseException:
            self.close()
            raise
        if chunk is None:
            if self.rows_read == 0:
                raise ReplayError(f"replay file {self.path} has no data rows")
            unit, number, reason = self.rejlog.first
            raise ReplayError(f"replay file {self.path}: all {self.rows_read} rows rejected "
                              f"(first: {unit} {number}: {reason})")
        return chunk

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []


@nb.njit(cache=True, nogil=True)
def number_rows(rows, seq0, market_id):
    """sequence = seq0 + 1, seq0 + 2, ...; market_id and venue from ``market_id``."""
    for i in range(rows.shape[0]):
        r = rows[i]
        r.sequence = seq0 + i + 1
        r.market_id = market_id
        r.venue = market_id // 1_000_000


class LoadedReplay:
    """A whole replay in memory (``load_replay``: tests and tools; the feed streams)."""

    def __init__(self, stream: ReplayStream, chunks: list[Chunk]):
        self.path = stream.path
        self.format = stream.format  # "csv" | "bog-record"
        self.unit = stream.unit  # "line" | "record"
        self.rows = np.concatenate([c.rows for c in chunks]) if chunks else np.zeros(0, TICK_SLOT)
        cat = (lambda k: np.concatenate([getattr(c, k) for c in chunks]) if chunks
               else np.zeros(0, np.int64))
        self.pace_ts_ns = cat("pace_ts_ns")  # recorded time of each row: deltas are kept
        self.latency_ns = cat("latency_ns")  # recorded exchange-to-local latency
        self.rows_read = stream.rows_read
        self.rejects = stream.rejlog.all  # (line or record number, reason), in file order
        self.markers = stream.markers  # FLAG_BOOK_INVALID markers among the rows

    @property
    def rejected(self) -> int:
        return len(self.rejects)

    @property
    def span_ns(self) -> int:
        if len(self.rows) < 2:
            return 0
        return int(self.pace_ts_ns[-1]) - int(self.pace_ts_ns[0])


def load_replay(path: str, market_id: int = 1_000_001, *, trades_file: str = "",
                chunk_bytes: int = 0) -> LoadedReplay:
    """Read, validate and keep a whole replay in memory; log rejected rows as the feed does.
    For tests and tools: the feed streams (``ReplayStream``). Raises ReplayError."""
    stream = ReplayStream(path, market_id, trades_file=trades_file, chunk_bytes=chunk_bytes,
                          collect=True)
    chunks = [_copy_chunk(stream.first_chunk())]
    while (c := stream.next_chunk()) is not None:
        chunks.append(_copy_chunk(c))
    return LoadedReplay(stream, chunks)


def _copy_chunk(c: Chunk) -> Chunk:
    return Chunk(c.rows.copy(), c.pace_ts_ns.copy(), c.latency_ns.copy())


@nb.njit(cache=True, nogil=True)
def compact_rows(rows, pace_ts, latency, ok, market_id, number):
    """Move the accepted rows (and their pace_ts/latency) to the front in order, in place;
    returns how many. With ``number``: sequence 1..N; with ``market_id`` >= 0: set market_id
    and venue."""
    n = 0
    for i in range(rows.shape[0]):
        if ok[i] == 0:
            continue
        if n != i:
            rows[n] = rows[i]
            pace_ts[n] = pace_ts[i]
            latency[n] = latency[i]
        r = rows[n]
        n += 1
        if number:
            r.sequence = n
        if market_id >= 0:
            r.market_id = market_id
            r.venue = market_id // 1_000_000
    return n


def _describe(rows, pace, numbers, ok, checks, ts_name, prev_before) -> list[tuple[int, str]]:
    """(number, reason) of the rows ``check_rows`` refused; ``prev_before`` is the last
    accepted timestamp before this chunk (-1 if none)."""
    codes, wheres = checks
    bad = np.flatnonzero(ok == 0)
    out = []
    good_idx = np.flatnonzero(ok)
    for i in bad:
        prev_ts = 0
        if codes[i] == C_TS_BACKWARDS:
            j = np.searchsorted(good_idx, i) - 1  # the previous accepted row
            prev_ts = int(pace[good_idx[j]]) if j >= 0 else prev_before
        out.append((int(numbers[i]), _check_reason(int(codes[i]), int(wheres[i]), rows[i],
                                                   int(pace[i]), prev_ts, ts_name)))
    return out


# ---- publishing kernel -------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def replay_run(rows_words, pace_ts, latency, state, staging, ctrl, words, metrics, speed, stop_ns,
               max_rows):
    """Publish due rows until ``stop_ns``, ``max_rows`` or the end of the file.

    Returns ns until the next row is due (when longer than SPIN_LIMIT_NS: the caller sleeps),
    else 0. Sets ``state.done`` once every row is published.
    """
    s = state[0]
    m = metrics[0]
    slot = staging[0]
    sw = staging.view(np.int64)
    n = rows_words.shape[0]
    published = 0
    while published < max_rows:
        if s.next_row >= n:
            s.done = 1
            return 0
        now = clock_ns(CLOCK_REALTIME)
        if now >= stop_ns:
            return 0
        i = s.next_row
        ts = pace_ts[i]
        if speed > 0.0:
            if s.anchor_wall_ns == 0:
                s.anchor_wall_ns = now
                s.anchor_ts_ns = ts
            due = s.anchor_wall_ns + np.int64((ts - s.anchor_ts_ns) / speed)
            wait = due - now
            if wait > 0:
                if wait > SPIN_LIMIT_NS:
                    return wait
                continue
            if wait < -REBASE_BEHIND_NS:  # stalled: restart the schedule here
                s.anchor_wall_ns = now
                s.anchor_ts_ns = ts
                s.rebases += 1
        for k in range(2, TICK_SLOT_WORDS):
            sw[k] = rows_words[i, k]
        # event time: the recorded times, whenever the row is published (pacing is wall time)
        slot.exchange_ts_ns = ts - latency[i]
        slot.local_recv_ns = ts
        publish_snapshot(ctrl, words, sw, slot, m)
        s.next_row = i + 1
        published += 1
    return 0


READER_POLL_NS = 200_000  # ring full, engine reading: look again after this long
READER_GONE_POLL_NS = 10_000_000  # no engine reads the ring: look again after this long
READER_ATTACH_EVERY_S = 0.05  # attach attempts to the engine metrics block, at most


class ReplaySource:
    """The feed's replay source: ``run(stop_ns) -> wait_ns`` and ``done`` (see FeedService).

    Lossless: rows are published only while an engine reads this ring, and never more than the
    ring's capacity beyond the engine's read position (``ring_read_pos`` in the engine's own
    metrics block, which this feed attaches read-only; ``ring_read_epoch`` says which ring it
    is about). While no engine reads the ring (not started yet, crashed, restarting) the replay
    pauses: ``replay_waiting_for_engine`` = 1, a log line every ``WAIT_LOG_EVERY_S``; the feed
    keeps its heartbeat and stops on SIGTERM as usual. A new engine attaches at the newest
    snapshot, so what the dead one left unread is counted by it as skipped at attach.
    """

    WAIT_LOG_EVERY_S = 10.0

    def __init__(self, cfg, ring, metrics, instance: str = ""):
        feed = cfg.feed
        self.names = SegmentNames(instance) if instance else None
        self._reader = None  # the engine's metrics block (read-only), when attached
        self._reader_checked = 0.0
        self._waiting_since = 0.0  # monotonic time the replay started waiting for an engine
        self._wait_logged = 0.0
        self.speed = float(feed.replay_speed)
        self.stream = ReplayStream(feed.replay_file, feed.market_id,
                                   trades_file=feed.replay_trades_file)
        self.state = np.zeros(1, REPLAY_STATE)
        self.staging = np.zeros(1, TICK_SLOT)
        self.ring, self.metrics = ring, metrics
        ring.ctrl[RING_EVENT_TIME] = 1  # before the ring is READY: the engine reads event time
        self._set_chunk(self.stream.first_chunk())
        st = self.stream
        log.info("replay %s (%s) streamed in blocks of %d MiB: first block %d rows to publish, "
                 "%d rejected of %d read, speed %s", st.path, st.format,
                 csvformat.CHUNK_BYTES >> 20, len(self.rows), st.rejected, st.rows_read,
                 f"{self.speed:g}x" if self.speed > 0 else "max")

    def _set_chunk(self, chunk: Chunk) -> None:
        self.rows = chunk.rows
        self.rows_words = self.rows.view(np.int64).reshape(len(self.rows), TICK_SLOT_WORDS)
        self.pace_ts_ns = chunk.pace_ts_ns
        self.latency_ns = chunk.latency_ns
        s = self.state[0]
        s["next_row"] = 0
        s["done"] = 0
        st = self.stream
        m = self.metrics.m[0]
        m["replay_rows_total"] = st.rows_read
        m["replay_rows_rejected_total"] = st.rejected
        m["replay_book_invalid_total"] = st.markers
        span_s = st.span_ns / 1e9  # of the rows read so far: the file's total is not known
        m["rate_target_per_s"] = (st.accepted / span_s * self.speed
                                  if self.speed > 0 and span_s > 0 else 0.0)

    def _next_chunk(self) -> bool:
        """Move on to the next chunk of the file; False at its end (then ``done``)."""
        st = self.stream
        try:
            chunk = st.next_chunk()
        except ReplayError as e:  # the file cannot be read on (a truncated gzip, an I/O error)
            st.eof = True
            st.close()
            st.rejlog.count += 1  # counted in rows_read/rejected, logged below
            st.source.rows_read += 1
            log.error("Replay row rejected: file %s: %s: the rest of the file is counted as "
                      "one rejected row; the replay ends after %d rows", st.path, e,
                      st.accepted)
            chunk = None
        m = self.metrics.m[0]
        m["replay_rows_total"] = st.rows_read
        m["replay_rows_rejected_total"] = st.rejected
        m["replay_book_invalid_total"] = st.markers
        if chunk is None:
            log.info("replay %s read to its end: %d rows read, %d rejected, %d to publish "
                     "(%d of them book-invalid markers), recorded span %.3f s", st.path,
                     st.rows_read, st.rejected, st.accepted, st.markers, st.span_ns / 1e9)
            return False
        self._set_chunk(chunk)
        return True

    def _publish(self, stop_ns: int, max_rows: int) -> int:
        """``replay_run`` over the current chunk, moving on to the next one when it is
        published; returns ns until the next row is due (0 if none)."""
        wait = int(replay_run(self.rows_words, self.pace_ts_ns, self.latency_ns, self.state,
                              self.staging, self.ring.ctrl, self.ring.words, self.metrics.m,
                              self.speed, stop_ns, max_rows))
        if self.state[0]["done"] and not self.stream.eof:
            self._next_chunk()
        return wait

    @property
    def done(self) -> bool:
        return bool(self.state[0]["done"]) and self.stream.eof

    @property
    def published(self) -> int:
        return int(self.metrics.m[0]["messages_total"])

    def run(self, stop_ns: int) -> int:
        """Publish until ``stop_ns``; returns ns until the next row is due or until the
        engine may have made room (0 if none)."""
        while True:
            if self.names is None:  # unit tests: no engine, no back-pressure
                room = 1 << 62
            else:
                room = self._room()
                if room < 0:
                    return READER_GONE_POLL_NS
                if room == 0:
                    return READER_POLL_NS
            wait = self._publish(stop_ns, room)
            if wait > 0 or self.done or time.time_ns() >= stop_ns:
                return wait

    def _room(self) -> int:
        """Rows that may be published now without overwriting a slot the engine has not read;
        -1 while no engine reads this ring."""
        blk = self._reader_block()
        m = self.metrics.m[0]
        if blk is not None:
            r = blk.m[0]
            if int(r["ring_read_epoch"]) == self.ring.epoch:
                pos = int(r["ring_read_pos"])
                if int(r["ring_read_epoch"]) == self.ring.epoch:  # not changed meanwhile
                    if self._waiting_since:
                        log.info("replay resumed: engine (pid %d) reads the ring from position "
                                 "%d", int(r["pid"]), pos)
                    self._waiting_since = 0.0
                    m["replay_waiting_for_engine"] = 0
                    return max(pos + self.ring.capacity - int(self.ring.ctrl[RING_HEAD]), 0)
        now = time.monotonic()
        if not self._waiting_since:
            self._waiting_since = self._wait_logged = now
            m["replay_waiting_for_engine"] = 1
            log.info("replay waiting for the engine to attach to the ticks ring (%d rows "
                     "published)", self.published)
        elif now - self._wait_logged >= self.WAIT_LOG_EVERY_S:
            self._wait_logged = now
            log.warning("replay paused: no engine has read the ticks ring for %.0f s (%d rows "
                        "published); waiting for one", now - self._waiting_since,
                        self.published)
        return -1

    def _reader_block(self):
        """The engine's metrics block, attached read-only; None while there is no live one."""
        blk = self._reader
        now = time.monotonic()
        if blk is not None:
            if now - self._reader_checked < READER_ATTACH_EVERY_S:
                return blk  # (re)checked below at most every READER_ATTACH_EVERY_S
            self._reader_checked = now
            h = blk.segment.header[0]
            if (blk.segment.state == seg_mod.STATE_READY
                    and seg_mod.owner_alive(int(h["owner_pid"]), int(h["owner_start_ticks"]))
                    and not blk.segment.replaced_or_closed()):
                return blk
            blk.close(unlink=False)
            self._reader = None
            self._reader_checked = 0.0
        if now - self._reader_checked < READER_ATTACH_EVERY_S:
            return None
        self._reader_checked = now
        try:
            blk = MetricsBlock.attach(self.names.engine_metrics, ENGINE)
        except seg_mod.SegmentError:
            return None
        if blk.segment.state != seg_mod.STATE_READY:
            blk.close(unlink=False)
            return None
        self._reader = blk
        return blk

    def close(self) -> None:
        self.stream.close()
        if self._reader is not None:
            self._reader.close(unlink=False)
            self._reader = None


def warm() -> None:
    """Compile (or load from numba's cache) every replay and record kernel."""
    from bog.shm.layouts import FEED_METRICS, RING_CAPACITY, RING_CTRL_WORDS

    csvformat.warm()
    tardis.warm()
    record.warm()
    rows = np.zeros(2, TICK_SLOT)
    rows["exchange_ts_ns"] = [1, 2]
    rows["bid_px"], rows["ask_px"], rows["bid_sz"], rows["ask_sz"] = 1, 2, 1, 1
    pace = rows["exchange_ts_ns"].copy()
    lat = np.zeros(2, np.int64)
    ok = np.zeros(2, np.uint8)
    codes = np.zeros(2, np.int64)
    check_rows(rows, pace, True, ok, codes, codes.copy(), np.array([-1, 0], np.int64))
    compact_rows(rows, pace, lat, ok, -1, False)
    number_rows(rows, 0, 1)
    ctrl = np.zeros(RING_CTRL_WORDS, np.int64)
    ctrl[RING_CAPACITY] = 2
    words = np.zeros(2 * TICK_SLOT_WORDS, np.int64)
    replay_run(rows.view(np.int64).reshape(2, TICK_SLOT_WORDS), pace, lat,
               np.zeros(1, REPLAY_STATE), np.zeros(1, TICK_SLOT), ctrl, words,
               np.zeros(1, FEED_METRICS), 0.0, 0, 1)
