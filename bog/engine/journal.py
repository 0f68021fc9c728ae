"""Append-only JSONL journal of order and fill events (owner-only), and recovery from it.

One event per line: ``OrderSubmit``, ``OrderAck``, ``OrderCancel``, ``Fill``,
``PositionCorrection``, ``Checkpoint``, each with ``ts_ms`` (unix ms) and ``ts_ns``. Fills carry exact
fixed-point integers (``qty_fixed``, ``price_fixed``, ``fee_fixed``, x1e9) next to readable
floats, and a ``fill_id`` that increases across restarts. Fill lines are written with one
``write(2)`` each as they are drained (flushed per fill); order events are batched per
housekeeping pass. ``recover`` replays the file through the same ``PositionTracker`` the
live engine uses, so position, entry price, realized and daily PnL come back exactly.

The journal does not grow forever: ``rotate`` (at each new UTC day, and at start when the file
is large) renames the file to ``journal-<UTC time>.jsonl`` and starts a new one with a
``Checkpoint`` of the whole tracking state (exact floats), from which recovery continues.
"""

from __future__ import annotations

import dataclasses
import logging
import os
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

    def fill(self, fill_id: int, order_id: int, side: int, price_fixed: int, qty_fixed: int,
             fee_fixed: int, liquidity: int, ts_ns: int) -> None:
        """Write one fill now (one write(2): durable against a crash of this process)."""
        self.flush()  # keep order: earlier order events first
        doc = {
            "type": "Fill", "ts_ms": ts_ns // 1_000_000, "ts_ns": ts_ns, "fill_id": fill_id,
            "order_id": order_id, "side": SIDE_NAME[side],
            "price": price_fixed / FIXED, "qty": qty_fixed / FIXED, "fee_usd": fee_fixed / FIXED,
            "price_fixed": price_fixed, "qty_fixed": qty_fixed, "fee_fixed": fee_fixed,
            "liquidity": LIQUIDITY[liquidity],
        }
        os.write(self.fd, orjson.dumps(doc) + b"\n")

    def event(self, doc: dict) -> None:
        """Queue a non-fill event; written at the next ``flush`` (housekeeping)."""
        self._pending.append(orjson.dumps(doc) + b"\n")

    def correction(self, delta_fixed: int, new_position_fixed: int, ts_ns: int, reason: str) -> None:
        self.flush()
        doc = {"type": "PositionCorrection", "ts_ms": ts_ns // 1_000_000, "ts_ns": ts_ns,
               "delta_fixed": delta_fixed, "position_fixed": new_position_fixed,
               "delta": delta_fixed / FIXED, "reason": reason}
        os.write(self.fd, orjson.dumps(doc) + b"\n")

    def rotate(self, tracker: PositionTracker, last_fill_id: int, last_order_id: int) -> str:
        """Archive this file and continue in a new one that starts with a Checkpoint.

        Returns the archive's path. The checkpoint is written (one write(2)) before the old
        file is renamed away, into a temporary file renamed over the journal's name, so a
        crash at any point leaves either the old journal or the new one in place.
        """
        self.flush()
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now / 1e9))
        base = self.path[: -len(".jsonl")] if self.path.endswith(".jsonl") else self.path
        archive = f"{base}-{stamp}.jsonl"
        doc = {"type": "Checkpoint", "ts_ms": now // 1_000_000, "ts_ns": now,
               "tracker": dataclasses.asdict(tracker), "last_fill_id": last_fill_id,
               "last_order_id": last_order_id, "continues": os.path.basename(archive)}
        tmp = self.path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps(doc) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.close(self.fd)
        os.link(self.path, archive)  # keep the old journal under its archive name
        os.replace(tmp, self.path)  # atomically: the journal is now the checkpointed one
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        return archive

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def flush(self) -> None:
        if self._pending:
            os.write(self.fd, b"".join(self._pending))
            self._pending.clear()

    def close(self) -> None:
        if self.fd >= 0:
            self.flush()
            os.close(self.fd)
            self.fd = -1


@dataclass
class Recovered:
    tracker: PositionTracker = field(default_factory=PositionTracker)
    last_fill_id: int = 0
    last_order_id: int = 0
    fills: int = 0
    corrections: int = 0
    checkpoints: int = 0
    malformed: list[int] = field(default_factory=list)  # line numbers


def recover(path: str) -> Recovered:
    """Rebuild tracking state from the journal at ``path`` (missing file = fresh start)."""
    rec = Recovered()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return rec
    except PermissionError as e:
        raise JournalError(f"cannot read journal {path}: permission denied") from e
    t = rec.tracker
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
                kind = doc["type"]
                if kind == "Fill":
                    fid = int(doc["fill_id"])
                    if fid <= rec.last_fill_id:
                        continue  # already applied (written twice around a crash)
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
                    rec.last_order_id = int(doc["last_order_id"])
                    rec.checkpoints += 1
                elif kind in ("OrderSubmit", "OrderAck", "OrderCancel"):
                    rec.last_order_id = max(rec.last_order_id, int(doc["order_id"]))
                else:
                    raise ValueError(f"unknown event type {kind!r}")
            except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as e:
                rec.malformed.append(lineno)
                log.error("journal %s line %d malformed, skipped: %s", path, lineno, e)
    t.roll_day()  # a journal from an earlier UTC day contributes no daily PnL
    return rec
