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
from bog.feed import csvformat, record
from bog.feed.publish import publish_snapshot
from bog.log import RateLimiter
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.atomics import CLOCK_REALTIME, clock_ns
from bog.shm.metrics import ENGINE, MetricsBlock
from bog.shm.layouts import (
    DEPTH,
    FIXED,
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
def check_rows(rows, pace_ts, depth_always, ok, codes, wheres):
    """Validate rows in order; ok[i] = 1 if row i is published. ``pace_ts`` (the timestamps
    the replay is paced by) must be positive and never go backwards. Depth is checked on full
    snapshots, or on every row when ``depth_always`` (CSV rows always carry their levels).
    Returns the number of rows accepted."""
    prev_ts = np.int64(-1)
    nok = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        code = 0
        where = 0
        if pace_ts[i] <= 0:
            code = C_TS
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
        else:
            ok[i] = 0
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


# ---- loading -----------------------------------------------------------------------------
class LoadedReplay:
    """Validated rows ready to publish, and what was rejected on the way."""

    def __init__(self, path: str, fmt: str, rows: np.ndarray, pace_ts_ns: np.ndarray,
                 latency_ns: np.ndarray, rows_read: int, rejects: list[tuple[int, str]],
                 unit: str):
        self.path = path
        self.format = fmt  # "csv" | "bog-record"
        self.rows = rows
        self.pace_ts_ns = pace_ts_ns  # recorded time of each row: the replay keeps its deltas
        self.latency_ns = latency_ns  # recorded exchange-to-local latency, replayed as such
        self.rows_read = rows_read
        self.rejects = rejects  # (line or record number, reason), in file order
        self.unit = unit  # "line" | "record"

    @property
    def rejected(self) -> int:
        return len(self.rejects)

    @property
    def span_ns(self) -> int:
        if len(self.rows) < 2:
            return 0
        return int(self.pace_ts_ns[-1]) - int(self.pace_ts_ns[0])


_FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _check_regular(path: str, mode: int) -> None:
    """Refuse anything but a regular file: reading a FIFO or a device may block forever."""
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_TYPES if test(mode)), "of another type")
        raise ReplayError(f"replay file {path} is {kind}, not a regular file")


def load_replay(path: str, market_id: int = 1_000_001) -> LoadedReplay:
    """Read, parse and validate ``path``; log rejected rows. Raises ReplayError."""
    if not path:
        raise ReplayError("no replay file given (--replay-file or feed.replay_file)")
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
    try:
        with f:
            head = f.read(16)
            if not head:
                raise ReplayError(f"replay file {path} is empty")
            f.seek(0)
            if record.is_record_file(head):
                loaded = _load_record(f, path)
            elif head[:2] == b"\x1f\x8b":
                with gzip.open(f, "rb") as g:
                    loaded = _load_csv(g, path, market_id, 0)
            else:
                loaded = _load_csv(f, path, market_id, os.fstat(f.fileno()).st_size)
    except (OSError, EOFError, zlib.error) as e:
        why = getattr(e, "strerror", None) or e
        raise ReplayError(f"cannot read replay file {path}: {why}") from None
    _log_rejects(loaded)
    if len(loaded.rows) == 0:
        if loaded.rows_read == 0:
            raise ReplayError(f"replay file {path} has no data rows")
        raise ReplayError(f"replay file {path}: all {loaded.rows_read} rows rejected "
                          f"(first: {loaded.unit} {loaded.rejects[0][0]}: {loaded.rejects[0][1]})")
    return loaded


def _load_csv(f, path: str, market_id: int, size_bytes: int) -> LoadedReplay:
    try:
        parsed = csvformat.read_csv(f, path, size_bytes)
    except csvformat.CsvHeaderError as e:
        raise ReplayError(f"replay file {path}: {e}") from None
    except UnicodeDecodeError:
        raise ReplayError(f"replay file {path}: not a text CSV or a bog record file") from None
    rows, lines = parsed.rows, parsed.lines
    pace = rows["exchange_ts_ns"].copy()
    latency = np.zeros(len(rows), np.int64)
    ok, checks = _validate(rows, pace, depth_always=True)
    rejects = parsed.rejects + _describe(rows, pace, lines, ok, checks, "timestamp")
    rejects.sort(key=lambda t: t[0])
    n = compact_rows(rows, pace, latency, ok, market_id, True)
    return LoadedReplay(path, "csv", rows[:n], pace[:n], latency[:n], parsed.rows_read, rejects,
                        "line")


def _load_record(f, path: str) -> LoadedReplay:
    try:
        header, rows, trailing = record.read_record_file(f, path)
    except record.RecordFormatError as e:
        raise ReplayError(f"replay file {path}: {e}") from None
    rows_read = len(rows) + (1 if trailing else 0)
    if rows_read == 0:
        raise ReplayError(f"replay file {path}: bog record file contains no records")
    numbers = np.arange(1, len(rows) + 1, dtype=np.int64)
    # paced by the feed's receive time: monotonic in a ring capture, while the exchange
    # timestamps carry the (simulated) latency jitter, which is replayed as recorded
    pace = rows["local_recv_ns"].copy()
    latency = np.maximum(pace - rows["exchange_ts_ns"], 0)
    ok, checks = _validate(rows, pace, depth_always=False)
    rejects = _describe(rows, pace, numbers, ok, checks, "local_recv_ns")
    if trailing:
        rejects.append((len(rows) + 1, f"truncated record ({trailing} of {TICK_SLOT.itemsize} "
                                       "bytes; the recording was cut short)"))
    if header.get("lost_ticks"):
        log.warning("replay file %s: the recorder lost %d ticks in %d overruns while recording "
                    "(they show as sequence gaps)", path, header["lost_ticks"],
                    header.get("overruns", 0))
    n = compact_rows(rows, pace, latency, ok, -1, False)
    return LoadedReplay(path, "bog-record", rows[:n], pace[:n], latency[:n], rows_read, rejects,
                        "record")


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


def _validate(rows: np.ndarray, pace: np.ndarray, depth_always: bool):
    n = len(rows)
    ok = np.zeros(n, np.uint8)
    codes = np.zeros(n, np.int64)
    wheres = np.zeros(n, np.int64)
    check_rows(rows, pace, depth_always, ok, codes, wheres)
    return ok, (codes, wheres)


def _describe(rows, pace, numbers, ok, checks, ts_name) -> list[tuple[int, str]]:
    codes, wheres = checks
    bad = np.flatnonzero(ok == 0)
    out = []
    good_idx = np.flatnonzero(ok)
    for i in bad:
        prev_ts = 0
        if codes[i] == C_TS_BACKWARDS:
            j = np.searchsorted(good_idx, i) - 1  # the previous accepted row
            prev_ts = int(pace[good_idx[j]]) if j >= 0 else 0
        out.append((int(numbers[i]), _check_reason(int(codes[i]), int(wheres[i]), rows[i],
                                                   int(pace[i]), prev_ts, ts_name)))
    return out


def _log_rejects(loaded: LoadedReplay) -> None:
    limiter = RateLimiter(burst=LOG_REJECTS_MAX, period_s=float("inf"))
    suppressed = 0
    for number, reason in loaded.rejects:
        if limiter.allow("replay_reject")[0]:
            log.warning("Replay row rejected: file %s %s %d: %s", loaded.path, loaded.unit,
                        number, reason)
        else:
            suppressed += 1
    if suppressed:
        log.warning("Replay row rejected: file %s: %d more rejected rows not logged one by one "
                    "(suppressed %d similar; %d rejected of %d rows read)", loaded.path,
                    suppressed, suppressed, loaded.rejected, loaded.rows_read)


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
        loaded = load_replay(feed.replay_file, feed.market_id)
        self.loaded = loaded
        self.rows = loaded.rows
        self.rows_words = self.rows.view(np.int64).reshape(len(self.rows), TICK_SLOT_WORDS)
        self.pace_ts_ns = loaded.pace_ts_ns
        self.latency_ns = loaded.latency_ns
        self.state = np.zeros(1, REPLAY_STATE)
        self.staging = np.zeros(1, TICK_SLOT)
        self.ring, self.metrics = ring, metrics
        ring.ctrl[RING_EVENT_TIME] = 1  # before the ring is READY: the engine reads event time
        m = metrics.m[0]
        m["replay_rows_total"] = loaded.rows_read
        m["replay_rows_rejected_total"] = loaded.rejected
        span_s = loaded.span_ns / 1e9
        m["rate_target_per_s"] = (len(self.rows) / span_s * self.speed
                                  if self.speed > 0 and span_s > 0 else 0.0)
        log.info("replay %s (%s): %d rows to publish, %d rejected of %d read, recorded span "
                 "%.3f s, speed %s", loaded.path, loaded.format, len(self.rows), loaded.rejected,
                 loaded.rows_read, span_s, f"{self.speed:g}x" if self.speed > 0 else "max")

    @property
    def done(self) -> bool:
        return bool(self.state[0]["done"])

    def run(self, stop_ns: int) -> int:
        """Publish until ``stop_ns``; returns ns until the next row is due or until the
        engine may have made room (0 if none)."""
        if self.names is None:  # unit tests: no engine, no back-pressure
            return int(replay_run(self.rows_words, self.pace_ts_ns, self.latency_ns, self.state,
                                  self.staging, self.ring.ctrl, self.ring.words, self.metrics.m,
                                  self.speed, stop_ns, 1 << 62))
        while True:
            room = self._room()
            if room < 0:
                return READER_GONE_POLL_NS
            if room == 0:
                return READER_POLL_NS
            wait = int(replay_run(self.rows_words, self.pace_ts_ns, self.latency_ns, self.state,
                                  self.staging, self.ring.ctrl, self.ring.words, self.metrics.m,
                                  self.speed, stop_ns, room))
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
            log.info("replay waiting for the engine to attach to the ticks ring (%d of %d rows "
                     "published)", int(self.state[0]["next_row"]), len(self.rows))
        elif now - self._wait_logged >= self.WAIT_LOG_EVERY_S:
            self._wait_logged = now
            log.warning("replay paused: no engine has read the ticks ring for %.0f s (%d of %d "
                        "rows published); waiting for one", now - self._waiting_since,
                        int(self.state[0]["next_row"]), len(self.rows))
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
        if self._reader is not None:
            self._reader.close(unlink=False)
            self._reader = None


def warm() -> None:
    """Compile (or load from numba's cache) every replay and record kernel."""
    from bog.shm.layouts import FEED_METRICS, RING_CAPACITY, RING_CTRL_WORDS

    csvformat.warm()
    record.warm()
    rows = np.zeros(2, TICK_SLOT)
    rows["exchange_ts_ns"] = [1, 2]
    rows["bid_px"], rows["ask_px"], rows["bid_sz"], rows["ask_sz"] = 1, 2, 1, 1
    pace = rows["exchange_ts_ns"].copy()
    lat = np.zeros(2, np.int64)
    ok, _ = _validate(rows, pace, True)
    compact_rows(rows, pace, lat, ok, 1, True)
    compact_rows(rows, pace, lat, ok, -1, False)
    ctrl = np.zeros(RING_CTRL_WORDS, np.int64)
    ctrl[RING_CAPACITY] = 2
    words = np.zeros(2 * TICK_SLOT_WORDS, np.int64)
    replay_run(rows.view(np.int64).reshape(2, TICK_SLOT_WORDS), pace, lat,
               np.zeros(1, REPLAY_STATE), np.zeros(1, TICK_SLOT), ctrl, words,
               np.zeros(1, FEED_METRICS), 0.0, 0, 1)
