"""A ``bog record`` capture of the Lighter feed replays: its FLAG_BOOK_INVALID markers (the live
book lost continuity) are published as markers, not rejected, and the engine cancels its
quotes at each, exactly as live (docs/replay.md "Book-invalid markers").

The markers are made by the Lighter feed's own kernel (``lighterbook.frame_apply`` in
``MODE_INVALID``, as ``LighterSource._invalidate`` calls it) into a local ring, and written
between valid rows with the ``bog record`` writer, with the sequence number the live feed
skips before each.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import orjson
from replay_figures import check_report_against_journal
from support import FAST, merge

from bog.feed import lighterbook as LB
from bog.feed import record
from bog.feed.replay import load_replay
from bog.shm.layouts import (
    DEPTH,
    FEED_METRICS,
    FIXED,
    FLAG_BOOK_INVALID,
    FLAG_FULL_SNAPSHOT,
    RING_CAPACITY,
    RING_CTRL_WORDS,
    TICK_SLOT,
    TICK_SLOT_WORDS,
)

ROWS = 1_000
MARKERS_AFTER = (300, 301, 650)  # a marker follows these rows (301: right after a resync)
T0 = 1_700_000_000_000_000_000
MARKET = 1_000_001
# quotes at the best bid and ask of the book (29980 / 30020), on a 10 USD grid; the trades
# every 10th row fill them (trade-through), so quotes rest and are requoted all along
CONFIG = {"strategy": {"spread_bps": 10.0, "tick_size_usd": 10.0, "order_size_btc": 0.01,
                       "requote_bps": 1.0, "requote_after_s": 3600.0},
          "risk": {"min_quote_interval_ms": 0.0},
          "execution": {"maker_latency_ms": 0.0}}


def live_marker(seq: int, t_ns: int) -> np.void:
    """The marker the Lighter feed publishes when its book loses continuity."""
    book = LB.Book(16)
    io = book.io
    io[LB.IO_MARKET], io[LB.IO_PUBLISH] = MARKET, 1
    io[LB.IO_SEQ], io[LB.IO_EXCH_NS], io[LB.IO_RECV_NS] = seq, t_ns, t_ns
    ctrl = np.zeros(RING_CTRL_WORDS, np.int64)
    ctrl[RING_CAPACITY] = 2
    words = np.zeros(2 * TICK_SLOT_WORDS, np.int64)
    r = LB.frame_apply(np.zeros(0, np.uint8), LB.MODE_INVALID, book.keys, book.sizes, book.n,
                       book.cap, book.vals, io, book.tmeta, book.staging, ctrl, words,
                       np.zeros(1, FEED_METRICS))
    assert r == LB.OK
    m = book.staging[0].copy()
    assert m["flags"] == FLAG_BOOK_INVALID and m["bid_px"] == 0 and m["ask_px"] == 0
    return m


def build_rows() -> tuple[np.ndarray, list[int]]:
    """Book rows (a trade every 10th) with live markers; returns (rows, marker times)."""
    out = []
    marker_ns = []
    seq = 0
    for i in range(ROWS):
        r = np.zeros(1, TICK_SLOT)[0]
        seq += 1
        r["sequence"] = seq
        r["market_id"], r["venue"] = MARKET, MARKET // 1_000_000
        r["exchange_ts_ns"] = r["local_recv_ns"] = T0 + i * 1_000_000
        for k in range(DEPTH):
            r["bid_px_l"][k] = round((29980.0 - 10.0 * k) * FIXED)
            r["ask_px_l"][k] = round((30020.0 + 10.0 * k) * FIXED)
            r["bid_sz_l"][k] = r["ask_sz_l"][k] = 2 * FIXED
        r["bid_px"], r["ask_px"] = r["bid_px_l"][0], r["ask_px_l"][0]
        r["bid_sz"] = r["ask_sz"] = 2 * FIXED
        r["flags"] = FLAG_FULL_SNAPSHOT
        if i % 10 == 5:
            sell = (i // 10) % 2 == 0
            r["trade_side"] = -1 if sell else 1
            r["trade_px"] = r["bid_px"] if sell else r["ask_px"]
            r["trade_sz"] = 50_000_000
        out.append(r)
        if i in MARKERS_AFTER:
            t = T0 + i * 1_000_000 + 400_000
            seq += 2  # the live feed skips one sequence number: the engine sees a gap
            out.append(live_marker(seq, t))
            marker_ns.append(t)
    return np.array(out, TICK_SLOT), marker_ns


def write_file(path: Path) -> tuple[np.ndarray, list[int]]:
    rows, marker_ns = build_rows()
    w = record.RecordWriter(str(path), record.make_header(source="test"))
    w.write(rows)
    w.close(complete=True)
    return rows, marker_ns


def test_markers_load_as_markers_not_rejects(tmp_path):
    path = tmp_path / "lighter.bogticks"
    rows, _ = write_file(path)
    loaded = load_replay(str(path))
    assert loaded.rejected == 0 and loaded.markers == len(MARKERS_AFTER)
    assert len(loaded.rows) == len(rows) == ROWS + len(MARKERS_AFTER)
    assert (loaded.rows["sequence"] == rows["sequence"]).all()  # the skipped numbers kept
    assert np.count_nonzero(loaded.rows["flags"] & FLAG_BOOK_INVALID) == len(MARKERS_AFTER)
    # a marker is still a row: its timestamp must not go backwards
    bad = rows.copy()
    k = int(np.flatnonzero(bad["flags"] & FLAG_BOOK_INVALID)[0])
    bad[k]["local_recv_ns"] = bad[k]["exchange_ts_ns"] = T0 - 1
    w = record.RecordWriter(str(tmp_path / "bad.bogticks"), record.make_header())
    w.write(bad)
    w.close()
    loaded = load_replay(str(tmp_path / "bad.bogticks"))
    assert loaded.markers == len(MARKERS_AFTER) - 1
    assert [n for n, _ in loaded.rejects] == [k + 1]
    assert "goes backwards" in loaded.rejects[0][1]


def test_recording_with_markers_replays_and_the_engine_cancels_at_each(tmp_path,
                                                                      pipeline_factory):
    path = tmp_path / "lighter.bogticks"
    rows, marker_ns = write_file(path)
    n = len(rows)
    pl = pipeline_factory(merge(FAST, CONFIG))
    report_path = tmp_path / "report.json"
    r = subprocess.run(pl.argv("run", "--no-monitor", "--feed", "replay", "--replay-file",
                               str(path), "--speed", "max", "--report", str(report_path)),
                       env=pl.env, capture_output=True, text=True, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Traceback" not in out, out
    assert "Replay row rejected" not in pl.log_text()
    rep = orjson.loads(report_path.read_bytes())
    assert (rep["rows_read"], rep["rows_rejected"], rep["rows_published"],
            rep["rows_processed"], rep["lost"], rep["skipped_at_attach"],
            rep["book_invalid_markers"]) == (n, 0, n, n, 0, 0, len(MARKERS_AFTER))
    assert f"published {n} ({len(MARKERS_AFTER)} book-invalid markers)" in r.stdout
    # the report names its inputs and fill model (a bog record file: no trades file)
    assert (rep["replay_file"], rep["trades_file"], rep["fill_model"],
            rep["queue_cancels"]) == (str(path), None, "trade-through", "pro-rata")
    assert f"inputs     book {path}, trades none; fill model trade-through" in r.stdout

    docs = [orjson.loads(line) for line in pl.journal_path().read_bytes().splitlines()]
    starts = [i for i, d in enumerate(docs) if d["type"] == "EngineStart"]
    assert len(starts) == 1
    recs = docs[starts[0] + 1:]
    # at each marker the engine cancelled what it had resting (both quotes: the book is the
    # same on every row, and the trades are filled then requoted at once), at the marker's
    # event time, and placed nothing until the next valid row
    for t in marker_ns:
        at = [d for d in recs if d["ts_ns"] == t]
        assert sorted(d["type"] for d in at) == ["OrderCancel", "OrderCancel"], (t, at)
        assert {d["side"] for d in at} == {"buy", "sell"}
        after = [d for d in recs if t < d["ts_ns"] < t + 600_000]
        assert not after, after
        nxt = t + 600_000  # the next valid row: the engine quotes again
        assert sorted(d["type"] for d in recs if d["ts_ns"] == nxt
                      and d["type"] == "OrderSubmit") == ["OrderSubmit", "OrderSubmit"]
    # marker 301 follows 300's resync by one row: both are cancels of fresh quotes
    last_ns = int(rows["local_recv_ns"][-1])
    check_report_against_journal(rep, recs, T0, last_ns)
    assert rep["fills"] > 50
    # the engine saw each marker as a sequence gap (one skipped number), as live
    assert pl.log_text().count("Sequence gap") >= len(MARKERS_AFTER)
