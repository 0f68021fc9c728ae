"""Append-only JSONL journal of order and fill events (owner-only), and recovery from it.

One event per line: ``OrderSubmit``, ``OrderAck``, ``OrderCancel``, ``Fill``,
``PositionCorrection``, ``Checkpoint``, ``EngineStart``, ``Breaker`` (a circuit breaker
transition: ``from``, ``to``, ``cause``, ``latched``), each with ``ts_ms`` (unix ms) and
``ts_ns`` (the engine's time: the wall clock, or in a replay the data's event time). Fills carry exact
fixed-point integers (``qty_fixed``, ``price_fixed``, ``fee_fixed``, x1e9) next to readable
floats, and a ``fill_id`` that increases across restarts. Fill lines are written with one
``write(2)`` each as they are drained (flushed per fill); order events are batched per
housekeeping pass. ``recover`` replays the file through the same ``PositionTracker`` the
live engine uses, so position, entry price, realized and daily PnL come back exactly.

The journal does not grow forever: ``rotate`` (at each new UTC day, and at start when the file
is large) renames the file to ``journal-<UTC time>.jsonl`` and starts a new one with a
``Checkpoint`` of the whole tracking state (exact floats), from which recovery continues.

Failures (full disk, I/O error) never leave half a record behind: every record (or batch of
order events) is written completely, looping over short writes, or the file is truncated back
to where the record started and ``JournalWriteError`` is raised. What was being written is
then still the caller's: a fill stays in the fill queue, order events and corrections stay in
``_pending`` for the next ``flush``. ``rotate`` either completes or leaves the journal exactly
as it was, its descriptor open and usable. ``recover`` handles a torn last line (a crash in the
middle of a write): see ``recover``.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import logging
import os
import re
import time
from dataclasses import dataclass, field

import orjson

from bog.engine.position import PositionTracker
from bog.shm.codes import LIQUIDITY
from bog.shm.layouts import FIXED

log = logging.getLogger("bog.engine")

SIDE_NAME = {1: "buy", -1: "sell"}


class JournalError(RuntimeError):
    pass


class JournalWriteError(JournalError):
    """A record could not be written completely; the file was restored to before it."""

    def __init__(self, path: str, what: str, err: OSError, restored: bool = True):
        self.path = path
        self.errno = err.errno or 0
        self.restored = restored
        name = errno_mod.errorcode.get(self.errno, str(self.errno))
        msg = f"{what} to {path} failed: {name} ({err.strerror or err})"
        if not restored:
            msg += "; the partial record could not be truncated yet (retried before the next write)"
        super().__init__(msg)


def _make_private_dirs(d: str) -> None:
    """Create ``d`` and any missing parents owner-only (os.makedirs gives parents 0755)."""
    missing = []
    while d and not os.path.isdir(d):
        missing.append(d)
        d = os.path.dirname(d)
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    """``write(2)`` until every byte is written (a short write is not an error by itself)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # not expected from a regular file; never spin on it
            raise OSError(errno_mod.EIO, "write(2) wrote nothing")
        view = view[n:]


class Journal:
    def __init__(self, path: str):
        self.path = path
        _make_private_dirs(os.path.dirname(os.path.abspath(path)))
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as e:
            raise JournalError(f"cannot open journal {path}: {e.strerror}") from e
        os.fchmod(self.fd, 0o600)
        self._pending: list[bytes] = []
        self._truncate_to = -1  # a failed write whose partial bytes are still to be removed

    # -- writing ------------------------------------------------------------------------------
    def _append(self, data: bytes, what: str) -> None:
        """Write ``data`` completely at the end of the file, or not at all.

        ``write(2)`` may write less than asked (a full disk writes what fits): loop until
        everything is written. On an error, truncate the file back to its size before this
        record, so no torn line is ever left for the next record to be glued to, and raise
        ``JournalWriteError``. If even the truncation fails, it is retried before the next
        write (and recovery would still find the torn line).
        """
        self._restore(what)
        start = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            _write_all(self.fd, data)
        except OSError as e:
            restored = True
            try:
                os.ftruncate(self.fd, start)
            except OSError:
                restored = False
                self._truncate_to = start
            raise JournalWriteError(self.path, what, e, restored) from e

    def _restore(self, what: str) -> None:
        """Remove the partial bytes an earlier failed write could not truncate away."""
        if self._truncate_to >= 0:
            try:
                os.ftruncate(self.fd, self._truncate_to)
            except OSError as e:
                raise JournalWriteError(self.path, what, e, restored=False) from e
            self._truncate_to = -1

    def fill(self, fill_id: int, order_id: int, side: int, price_fixed: int, qty_fixed: int,
             fee_fixed: int, liquidity: int, ts_ns: int, trade_id: int = 0) -> None:
        """Write one fill now, completely, after any pending order events (keeps order).

        Raises ``JournalWriteError`` if the fill (or the events before it) could not be
        written: the caller must then keep the fill (in the fill queue) and retry later.
        """
        self.flush()
        doc = {
            "type": "Fill", "ts_ms": ts_ns // 1_000_000, "ts_ns": ts_ns, "fill_id": fill_id,
            "order_id": order_id, "side": SIDE_NAME[side],
            "price": price_fixed / FIXED, "qty": qty_fixed / FIXED, "fee_usd": fee_fixed / FIXED,
            "price_fixed": price_fixed, "qty_fixed": qty_fixed, "fee_fixed": fee_fixed,
            "liquidity": LIQUIDITY[liquidity],
        }
        if trade_id:  # a venue fill (execution.mode = "live"): applied once per trade id
            doc["trade_id"] = trade_id
        self._append(orjson.dumps(doc) + b"\n", f"fill {fill_id}")

    def event(self, doc: dict) -> None:
        """Queue a non-fill event; written at the next ``flush`` (housekeeping)."""
        self._pending.append(orjson.dumps(doc) + b"\n")

    def correction(self, delta_fixed: int, new_position_fixed: int, ts_ns: int, reason: str,
                   flush: bool = True) -> None:
        """Journal a PositionCorrection now (``flush=False``: at the next flush). On
        ``JournalWriteError`` it stays pending (in order, before any later fill) and is
        written by the next successful ``flush``."""
        doc = {"type": "PositionCorrection", "ts_ms": ts_ns // 1_000_000, "ts_ns": ts_ns,
               "delta_fixed": delta_fixed, "position_fixed": new_position_fixed,
               "delta": delta_fixed / FIXED, "reason": reason}
        self._pending.append(orjson.dumps(doc) + b"\n")
        if flush:
            self.flush()

    def engine_start(self, ts_ns: int, pid: int, last_fill_id: int, next_fill_id: int) -> None:
        """An ``EngineStart`` record, written before the engine may quote: proves the journal
        is writable at start (a full disk halts trading before the first order)."""
        doc = {"type": "EngineStart", "ts_ms": ts_ns // 1_000_000, "ts_ns": ts_ns, "pid": pid,
               "last_fill_id": last_fill_id, "next_fill_id": next_fill_id}
        self._pending.append(orjson.dumps(doc) + b"\n")
        self.flush()

    def start_new_line(self) -> None:
        """The file ends without a newline (see ``recover``): the next write supplies it."""
        self._pending.insert(0, b"\n")

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Write the pending events in one go; on failure they all stay pending."""
        if self._pending:
            self._append(b"".join(self._pending), f"{len(self._pending)} order/correction events")
            self._pending.clear()

    def rotate(self, tracker: PositionTracker, last_fill_id: int, last_order_id: int,
               trade_ids: list[int] | tuple[int, ...] = ()) -> str:
        """Archive this file and continue in a new one that starts with a Checkpoint.

        Returns the archive's path. Each step can fail (full disk, an archive of that name
        already there, no descriptor left) and none is destructive until the last:
        1. the checkpoint is written completely and fsynced to ``journal.jsonl.new``;
        2. the current journal is hard-linked to its archive name;
        3. the new file is opened (append);
        4. it is renamed over the journal's name (atomic);
        5. only then is the old descriptor closed.
        On a failure the temporary file and the archive link are removed and the exception
        propagates: the journal and its open descriptor are exactly as before. A crash at any
        point leaves either the old journal or the new one under the journal's name.
        """
        self.flush()
        self._restore("rotation")
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now / 1e9))
        base = self.path[: -len(".jsonl")] if self.path.endswith(".jsonl") else self.path
        archive = f"{base}-{stamp}.jsonl"
        doc = {"type": "Checkpoint", "ts_ms": now // 1_000_000, "ts_ns": now,
               "tracker": dataclasses.asdict(tracker), "last_fill_id": last_fill_id,
               "last_order_id": last_order_id, "continues": os.path.basename(archive)}
        if trade_ids:  # the venue may redeliver recent trades: keep them known (dedupe)
            doc["recent_trade_ids"] = list(trade_ids)[-RECENT_TRADE_IDS:]
        data = orjson.dumps(doc) + b"\n"
        tmp = self.path + ".new"
        new_fd = linked = -1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(self.path, archive)  # keep the old journal under its archive name
            linked = 1
            new_fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
            os.replace(tmp, self.path)  # atomically: the journal is now the checkpointed one
        except BaseException:
            if new_fd >= 0:
                os.close(new_fd)
            for p in (tmp, archive if linked == 1 else None):
                if p is not None:
                    try:
                        os.unlink(p)
                    except OSError:
                        pass
            raise
        old, self.fd = self.fd, new_fd
        try:
            os.close(old)
        except OSError:
            pass
        return archive

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        """Flush and close. Never loses the descriptor to an error: on a failed flush the
        descriptor is still closed and the error re-raised (the caller logs it)."""
        if self.fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self.fd)
                self.fd = -1


RECENT_TRADE_IDS = 10_000  # venue trade ids carried over a rotation (Checkpoint)


@dataclass
class Recovered:
    tracker: PositionTracker = field(default_factory=PositionTracker)
    last_fill_id: int = 0  # last fill applied (from a complete line): dedupe of queued fills
    last_order_id: int = 0
    max_fill_id: int = 0  # highest fill id seen anywhere (torn and malformed lines too)
    fills: int = 0
    corrections: int = 0
    checkpoints: int = 0
    malformed: list[int] = field(default_factory=list)  # line numbers
    torn_line: int = 0  # line number of a torn last line (0: none)
    torn_bytes: int = 0
    torn_fill_id: int = 0  # the fill id a torn line names (0: none readable)
    torn_saved: str = ""  # side file holding the torn bytes (repair=True)
    missing_newline: bool = False  # the last record is complete but lacks its newline
    # venue trade ids applied (live fills), in journal order; duplicates skipped in recovery
    trade_ids: dict[int, None] = field(default_factory=dict)
    duplicate_trades: int = 0


_FILL_ID_RE = re.compile(rb'"fill_id"\s*:\s*(\d+)')


def _fill_id_in(raw: bytes) -> int:
    """The fill id named in a damaged line, 0 if none can be read."""
    m = _FILL_ID_RE.search(raw)
    return int(m.group(1)) if m else 0


def _save_torn(path: str, raw: bytes) -> str:
    """Keep a torn line's bytes in ``<journal>.torn-<UTC time>`` (0600) for forensics."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for k in range(100):
        side = f"{path}.torn-{stamp}" + (f".{k}" if k else "")
        try:
            fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            _write_all(fd, raw)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            os.unlink(side)
            raise
        os.close(fd)
        return side
    raise OSError(errno_mod.EEXIST, f"no free name for {path}.torn-{stamp}")


def recover(path: str, repair: bool = False) -> Recovered:
    """Rebuild tracking state from the journal at ``path`` (missing file = fresh start).

    A malformed line in the middle is skipped, counted in ``malformed`` and logged (ERROR).
    The last line without a trailing newline is a write that did not finish (a crash, or a
    journal written by an engine without complete-or-nothing writes): if it still parses it is
    a complete record that only lacks its newline, and is applied; otherwise it is **torn**,
    logged (WARNING "torn last line"), not applied, and the fill id it names (if readable) is
    in ``torn_fill_id``. Fill ids of torn and malformed lines count in ``max_fill_id``, so the
    engine never numbers a new fill with an id the journal already mentions.

    ``repair=True`` (the engine at start; never on a live journal) also makes the file safe
    to append to: a torn line's bytes move to ``<journal>.torn-<UTC time>`` (0600) and the
    journal is truncated to its last complete line. (A complete record without a newline is
    flagged in ``missing_newline``: the engine's first write, ``Journal.start_new_line``,
    supplies it.) The fill a torn line was writing is then journaled again from the old fill
    queue, where it still is (fills leave the queue only once completely written).
    """
    rec = Recovered()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return rec
    except PermissionError as e:
        raise JournalError(f"cannot read journal {path}: permission denied") from e
    t = rec.tracker
    offset = 0
    torn: tuple[int, int, bytes] | None = None  # (lineno, file offset, bytes)
    with f:
        for lineno, line in enumerate(f, 1):
            line_start, offset = offset, offset + len(line)
            if not line.endswith(b"\n"):  # only ever the last line
                try:
                    if not isinstance(orjson.loads(line), dict):
                        raise ValueError("not an object")
                except (orjson.JSONDecodeError, ValueError):
                    torn = (lineno, line_start, line)
                    break
                log.warning("journal %s: last line %d has no newline (a crash after writing "
                            "it?); the record is complete and is kept", path, lineno)
                rec.missing_newline = True
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
                kind = doc["type"]
                if kind == "Fill":
                    fid = int(doc["fill_id"])
                    rec.max_fill_id = max(rec.max_fill_id, fid)
                    if fid <= rec.last_fill_id:
                        continue  # already applied (written twice around a crash)
                    tid = int(doc.get("trade_id", 0))
                    if tid:
                        if tid in rec.trade_ids:
                            rec.duplicate_trades += 1  # a venue trade applied once only
                            rec.last_fill_id = fid
                            continue
                        rec.trade_ids[tid] = None
                    side = 1 if doc["side"] == "buy" else -1
                    t.apply_fill(side, int(doc["qty_fixed"]), int(doc["price_fixed"]) / FIXED,
                                 int(doc["fee_fixed"]) / FIXED, int(doc["ts_ns"]))
                    rec.last_fill_id = fid
                    rec.last_order_id = max(rec.last_order_id, int(doc["order_id"]))
                    rec.fills += 1
                elif kind == "PositionCorrection":
                    t.correct(int(doc["position_fixed"]))
                    rec.corrections += 1
                elif kind == "Checkpoint":
                    t = rec.tracker = PositionTracker(**doc["tracker"])
                    rec.last_fill_id = int(doc["last_fill_id"])
                    rec.max_fill_id = max(rec.max_fill_id, rec.last_fill_id)
                    rec.last_order_id = int(doc["last_order_id"])
                    rec.trade_ids = dict.fromkeys(int(x) for x in doc.get("recent_trade_ids", ()))
                    rec.checkpoints += 1
                elif kind == "Breaker":
                    pass  # circuit breaker transitions: for the record (and the replay report)
                elif kind in ("OrderSubmit", "OrderAck", "OrderCancel", "OrderReject",
                              "OrderCancelled", "OrderExpired"):
                    rec.last_order_id = max(rec.last_order_id, int(doc["order_id"]))
                elif kind in ("CancelAll", "VenueReset"):
                    pass
                elif kind == "EngineStart":
                    # ids below next_fill_id may have been given to fills never journaled
                    rec.max_fill_id = max(rec.max_fill_id, int(doc["next_fill_id"]) - 1)
                else:
                    raise ValueError(f"unknown event type {kind!r}")
            except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as e:
                rec.malformed.append(lineno)
                rec.max_fill_id = max(rec.max_fill_id, _fill_id_in(line))
                log.error("journal %s line %d malformed, skipped: %s", path, lineno, e)
    if torn is not None:
        lineno, at, raw = torn
        rec.torn_line, rec.torn_bytes, rec.torn_fill_id = lineno, len(raw), _fill_id_in(raw)
        rec.max_fill_id = max(rec.max_fill_id, rec.torn_fill_id)
        where = "left in place (read only)"
        if repair:
            try:
                rec.torn_saved = _save_torn(path, raw)
                where = f"moved to {rec.torn_saved}"
            except OSError as e:  # e.g. the disk is still full: keep the bytes in the log
                where = f"not saved ({e.strerror or e}), bytes {raw[:2000]!r}"
            try:
                os.truncate(path, at)
            except OSError as e:
                raise JournalError(f"cannot truncate the torn last line of journal {path}: "
                                   f"{e.strerror or e}") from e
            where += "; the journal now ends at its last complete line"
        log.warning("journal %s: torn last line %d (%d bytes without a newline: a crash or a "
                    "full disk in the middle of a write), not applied, %s; fill id in it: %s",
                    path, lineno, len(raw), where, rec.torn_fill_id or "unreadable")
    rec.max_fill_id = max(rec.max_fill_id, rec.last_fill_id)
    t.roll_day()  # a journal from an earlier UTC day contributes no daily PnL
    return rec
