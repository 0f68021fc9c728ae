"""Replay feed and ``bog record``: parsing, validation, pacing, and real feed processes."""

from __future__ import annotations

import gzip
import logging
import os
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from replay_figures import check_report_against_journal
from support import FAST, merge, wait_for

from bog.feed import csvformat, record
from bog.feed.replay import (
    REPLAY_STATE,
    ReplayError,
    load_replay,
    replay_run,
)
from bog.shm import SegmentNames
from bog.shm.layouts import (
    DEPTH,
    FEED_METRICS,
    FIXED,
    FLAG_FULL_SNAPSHOT,
    RING_CAPACITY,
    RING_CTRL_WORDS,
    RING_EVENT_TIME,
    RING_HEAD,
    TICK_SLOT,
    TICK_SLOT_WORDS,
)
from bog.shm.ring import TicksRing, ticks_publish
from bog.shm.segment import list_segments

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "tardis_book_snapshot_5_sample.csv"
MALFORMED = DATA / "malformed_book_snapshot_2.csv"
PAYLOAD = ("sequence", "market_id", "bid_px", "bid_sz", "ask_px", "ask_sz", "trade_px",
           "trade_sz", "trade_side", "flags", "venue")


def _fixed(text: str):
    buf = np.frombuffer(text.encode(), np.uint8)
    status, value = csvformat.parse_fixed(buf, 0, len(buf))
    return int(status), int(value)


def _header(levels: int) -> str:
    cols = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for k in range(levels):
        cols += [f"asks[{k}].price", f"asks[{k}].amount", f"bids[{k}].price", f"bids[{k}].amount"]
    return ",".join(cols)


def _row(ts_us: int, bid: float, levels: int, ask: float | None = None) -> str:
    ask = bid + 0.5 if ask is None else ask
    f = ["deribit", "BTC-PERPETUAL", str(ts_us), str(ts_us + 700)]
    for k in range(levels):
        f += [f"{ask + k * 0.5:.1f}", f"{1 + k}.25", f"{bid - k * 0.5:.1f}", f"{2 + k}.5"]
    return ",".join(f)


def write_csv(path: Path, n: int, levels: int = 10, bad_every: int = 0) -> list[int]:
    """n data rows, 1 ms apart; every ``bad_every``-th row crossed. Returns bad line numbers."""
    lines = [_header(levels)]
    bad = []
    ts = 1_700_000_000_000_000
    for i in range(n):
        ts += 1000
        bid = 30000.0 + (i % 17) * 0.5
        if bad_every and i % bad_every == bad_every - 1:
            lines.append(_row(ts, bid, levels, ask=bid - 1.0))
            bad.append(len(lines))
        else:
            lines.append(_row(ts, bid, levels))
    path.write_text("\n".join(lines) + "\n")
    return bad


# ---- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("42283.45", (csvformat.F_OK, 42_283_450_000_000)),
    ("0.1", (csvformat.F_OK, 100_000_000)),
    ("  7 ", (csvformat.F_OK, 7 * FIXED)),
    ("-3.5", (csvformat.F_OK, -3_500_000_000)),
    ("+2", (csvformat.F_OK, 2 * FIXED)),
    ("1e-05", (csvformat.F_OK, 10_000)),
    ("2.5E3", (csvformat.F_OK, 2_500 * FIXED)),
    ("0.0000000005", (csvformat.F_OK, 1)),  # half up
    ("0.0000000004", (csvformat.F_OK, 0)),
    ("9223372036.85477580", (csvformat.F_OK, 9_223_372_036_854_775_800)),
    ("0.1234567891234567899", (csvformat.F_OK, 123_456_789)),  # > 18 digits: rounded
    ("9223372037", (csvformat.F_RANGE, 0)),
    ("1e30", (csvformat.F_RANGE, 0)),
    ("", (csvformat.F_EMPTY, 0)),
    ("NaN", (csvformat.F_NAN, 0)),
    ("-inf", (csvformat.F_NAN, 0)),
    ("Infinity", (csvformat.F_NAN, 0)),
    ("abc", (csvformat.F_BAD, 0)),
    ("1.2.3", (csvformat.F_BAD, 0)),
    ("1e", (csvformat.F_BAD, 0)),
    (".", (csvformat.F_BAD, 0)),
    ("nano", (csvformat.F_BAD, 0)),
])
def test_parse_fixed(text, expected):
    assert _fixed(text) == expected


@settings(max_examples=300, deadline=None)
@given(hst.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=9,
                    allow_nan=False, allow_infinity=False))
def test_parse_fixed_is_exact_for_nine_decimals(d):
    status, value = _fixed(format(d, "f"))
    assert status == csvformat.F_OK
    assert value == int(d * FIXED)


def _check_sample_rows(loaded):
    rows = loaded.rows
    assert loaded.format == "csv" and loaded.rows_read == 24 and loaded.rejected == 0
    assert list(rows["sequence"]) == list(range(1, 25))
    r = rows[0]  # line 2 of the file
    assert r["exchange_ts_ns"] == 1_704_067_200_123_456_000  # microseconds -> ns
    assert (r["ask_px"], r["ask_sz"], r["bid_px"], r["bid_sz"]) == (
        42_283_500_000_000, 3_165_000_000, 42_283_400_000_000, 4_748_000_000)
    assert list(r["bid_px_l"][:5]) == [42_283_400_000_000 - k * 100_000_000 for k in range(5)]
    assert list(r["ask_sz_l"][:5]) == [3_165_000_000, 35_120_000_000, 23_966_000_000,
                                       3_802_000_000, 14_071_000_000]
    assert not r["bid_px_l"][5:].any() and not r["ask_px_l"][5:].any()  # 5-level file
    assert r["market_id"] == 2_000_007 and r["venue"] == 2
    thin = rows[13]  # line 15: asks[3] and asks[4] empty
    assert thin["flags"] == 0 and not thin["ask_px_l"][3:].any() and thin["bid_px_l"][4] > 0
    full = np.delete(rows["flags"], 13)
    assert (full == FLAG_FULL_SNAPSHOT).all()
    assert (np.diff(rows["exchange_ts_ns"]) >= 0).all()
    assert loaded.span_ns == int(rows["exchange_ts_ns"][-1] - rows["exchange_ts_ns"][0])


def test_tardis_sample_parses_exactly(tmp_path):
    _check_sample_rows(load_replay(str(SAMPLE), market_id=2_000_007))
    gz = tmp_path / "sample.csv.gz"  # tardis ships .csv.gz: read as is
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    _check_sample_rows(load_replay(str(gz), market_id=2_000_007))


def test_columns_found_by_name_and_extra_levels_ignored(tmp_path):
    p = tmp_path / "reordered.csv"
    write_csv(p, 5, levels=25)  # book_snapshot_25: only DEPTH levels kept
    loaded = load_replay(str(p))
    assert len(loaded.rows) == 5 and (loaded.rows["flags"] == FLAG_FULL_SNAPSHOT).all()
    assert loaded.rows[0]["bid_px_l"][DEPTH - 1] == int((30000.0 - (DEPTH - 1) * 0.5) * FIXED)
    q = tmp_path / "minimal.csv"  # no exchange/symbol/local_timestamp, other column order
    q.write_text("bids[0].amount,bids[0].price,timestamp,asks[0].amount,asks[0].price\r\n"
                 "1.5,100.25,1700000000000001,2,100.5\r\n")
    r = load_replay(str(q)).rows[0]
    assert (r["bid_px"], r["bid_sz"], r["ask_px"], r["ask_sz"]) == (
        100_250_000_000, 1_500_000_000, 100_500_000_000, 2 * FIXED)
    assert r["exchange_ts_ns"] == 1_700_000_000_000_001_000


def test_malformed_rows_counted_and_logged_with_line_numbers(caplog):
    caplog.set_level(logging.WARNING, logger="bog.feed.replay")
    loaded = load_replay(str(MALFORMED))
    assert loaded.rows_read == 14  # 15 data lines, one blank
    assert len(loaded.rows) == 4 and list(loaded.rows["sequence"]) == [1, 2, 3, 4]
    reasons = dict(loaded.rejects)
    assert list(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 14, 15]
    assert reasons[3] == "expected 12 fields, found 11"
    assert "NaN" in reasons[4] and "asks[0].price" in reasons[4]
    assert reasons[5] == "negative price at bids[1] (-41999.5)"
    assert reasons[6] == "crossed book: best bid 42001 > best ask 42000.5"
    assert "unparsable number in column asks[0].amount: 'abc'" == reasons[7]
    assert "timestamp goes backwards" in reasons[8]
    assert "zero or missing best bid price" in reasons[9]
    assert "timestamp" in reasons[10]
    assert "price without an amount" in reasons[14]
    assert "descending" in reasons[15]
    logged = [r.getMessage() for r in caplog.records]
    for line in reasons:
        assert any(m.startswith(f"Replay row rejected: file {MALFORMED} line {line}: ")
                   for m in logged), line


def test_many_rejects_are_rate_limited_but_all_counted(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="bog.feed.replay")
    p = tmp_path / "crossed.csv"
    bad = write_csv(p, 300, levels=2, bad_every=2)
    loaded = load_replay(str(p))
    assert [n for n, _ in loaded.rejects] == bad and loaded.rejected == 150
    msgs = [r.getMessage() for r in caplog.records if "Replay row rejected" in r.getMessage()]
    assert len(msgs) == 21  # 20 one by one, then one summary with the count
    assert "130 more rejected rows" in msgs[-1] and "150 rejected of 300" in msgs[-1]


def _bad_record_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = np.zeros(3, TICK_SLOT)
    w = record.RecordWriter(str(tmp / "v2.bogticks"), record.make_header())
    w.close()
    blob = bytearray((tmp / "v2.bogticks").read_bytes())
    blob[8] = 2  # format version 2
    (tmp / "v2.bogticks").write_bytes(bytes(blob))
    hdr = record.make_header()
    hdr["record_size"] = 512
    w = record.RecordWriter(str(tmp / "layout.bogticks"), hdr)
    w.write(good)
    w.close()
    w = record.RecordWriter(str(tmp / "norecords.bogticks"), record.make_header())
    w.close()
    (tmp / "badjson.bogticks").write_bytes(record._PREFIX.pack(record.MAGIC, 1, 64) + b"{" * 48)
    return {
        "version": (tmp / "v2.bogticks", "format version 2 is not supported"),
        "layout": (tmp / "layout.bogticks", "different TICK_SLOT layout"),
        "norecords": (tmp / "norecords.bogticks", "contains no records"),
        "badjson": (tmp / "badjson.bogticks", "bad bog record header"),
    }


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "empty.csv").write_bytes(b"")
    (tmp / "adir").mkdir()
    (tmp / "header_only.csv").write_text(_header(2) + "\n")
    (tmp / "bad_header.csv").write_text("time,bid,ask\n1,2,3\n")
    (tmp / "garbage.bin").write_bytes(bytes(range(256)) * 8)
    crossed = _row(1_700_000_000_000_000, 10.0, 1, ask=9.0)
    (tmp / "all_bad.csv").write_text(_header(1) + "\n" + crossed + "\n")
    (tmp / "broken.csv.gz").write_bytes(gzip.compress(SAMPLE.read_bytes())[:200])
    return {
        "missing": (tmp / "nope.csv", "cannot read replay file"),
        "empty": (tmp / "empty.csv", "is empty"),
        "directory": (tmp / "adir", "is a directory"),
        "header_only": (tmp / "header_only.csv", "has no data rows"),
        "bad_header": (tmp / "bad_header.csv", "bad header: no 'timestamp' column"),
        "garbage": (tmp / "garbage.bin", "bad header"),
        "all_rejected": (tmp / "all_bad.csv", "all 1 rows rejected (first: line 2: crossed book"),
        "truncated_gzip": (tmp / "broken.csv.gz", "cannot read replay file"),
        "device": (Path("/dev/null"), "is a character device, not a regular file"),
        **_bad_record_files(tmp),
    }


def test_unusable_files_raise_clear_errors(tmp_path):
    for name, (path, message) in _bad_files(tmp_path).items():
        with pytest.raises(ReplayError) as e:
            load_replay(str(path))
        assert message in str(e.value), (name, str(e.value))
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_record_file_cut_short_is_readable(tmp_path):
    rows = load_replay(str(SAMPLE)).rows
    rows["local_recv_ns"] = rows["exchange_ts_ns"] + 1000
    path = tmp_path / "cut.bogticks"
    w = record.RecordWriter(str(path), record.make_header(instance="x"))
    w.write(rows)
    w.f.flush()
    data = path.read_bytes()  # as a kill -9 would leave it: header never finalised
    path.write_bytes(data[:-100])
    loaded = load_replay(str(path))
    assert loaded.format == "bog-record" and len(loaded.rows) == 23 and loaded.rows_read == 24
    assert loaded.rejects == [
        (24, "truncated record (348 of 448 bytes; the recording was cut short)")]
    assert (loaded.rows[list(PAYLOAD)] == rows[:23][list(PAYLOAD)]).all()
    assert (loaded.latency_ns == 1000).all()
    w.f.close()


# ---- pacing (kernel, in-process ring) -------------------------------------------------------
def _local_ring(capacity: int):
    ctrl = np.zeros(RING_CTRL_WORDS, np.int64)
    ctrl[RING_CAPACITY] = capacity
    items = np.zeros(capacity, TICK_SLOT)
    return ctrl, items


def _replay_locally(loaded, speed: float):
    ctrl, items = _local_ring(64)
    words = items.view(np.int64)
    m = np.zeros(1, FEED_METRICS)
    state = np.zeros(1, REPLAY_STATE)
    staging = np.zeros(1, TICK_SLOT)
    rw = loaded.rows.view(np.int64).reshape(len(loaded.rows), TICK_SLOT_WORDS)
    t0 = time.time_ns()
    while not state[0]["done"]:
        stop = time.time_ns() + 20_000_000
        wait = replay_run(rw, loaded.pace_ts_ns, loaded.latency_ns, state, staging, ctrl, words,
                          m, speed, stop, 1 << 62)
        if wait > 0:
            time.sleep(min(wait, max(0, stop - time.time_ns())) / 1e9)
    return items[:ctrl[RING_HEAD]], m[0], time.time_ns() - t0


def test_paced_replay_keeps_recorded_deltas_divided_by_speed():
    loaded = load_replay(str(SAMPLE))
    recorded = np.diff(loaded.rows["exchange_ts_ns"])
    published, m, elapsed = _replay_locally(loaded, speed=2.0)
    assert len(published) == 24 and m["messages_total"] == 24 and m["last_sequence"] == 24
    assert m["full_snapshots_total"] == 23
    ex = published["exchange_ts_ns"]
    # event time: published with the recorded times, whatever the speed
    assert (ex == loaded.rows["exchange_ts_ns"]).all()
    assert (published["local_recv_ns"] == ex).all()
    # paced by the wall clock: each row published no earlier than due (recorded delta / 2;
    # 1 ms slack: row 0's own publish stamp comes a little after the schedule's anchor)
    pub = published["local_publish_ns"]
    due = np.concatenate([[0], np.cumsum(recorded)]) // 2
    assert ((pub - pub[0]) >= due - 1_000_000).all()
    assert elapsed >= (ex[-1] - ex[0]) / 2 * 0.95
    assert (published[list(PAYLOAD)] == loaded.rows[list(PAYLOAD)]).all()
    assert m["feed_latency_us_bucket"].sum() == 24 and m["publish_ns_bucket"].sum() == 24


def test_max_speed_replay_is_flat_out_with_zero_feed_latency():
    loaded = load_replay(str(SAMPLE))
    published, m, elapsed = _replay_locally(loaded, speed=0.0)
    assert len(published) == 24 and elapsed < 1e9
    assert (published["exchange_ts_ns"] == published["local_recv_ns"]).all()
    assert m["feed_latency_us_sum"] == 0 and m["feed_latency_us_bucket"][0] == 24


def test_record_follower_counts_overruns_and_resyncs():
    ctrl, items = _local_ring(16)
    words = items.view(np.int64)
    staging = np.zeros(1, TICK_SLOT)

    def publish(k):
        for _ in range(k):
            staging[0]["sequence"] += 1
            ticks_publish(ctrl, words, staging.view(np.int64))

    state = np.zeros(1, record.FOLLOW_STATE)
    out = np.zeros((64, TICK_SLOT_WORDS), np.int64)
    publish(10)
    assert record.record_follow(ctrl, words, state, out) == 10
    assert list(out[:10].copy().view(TICK_SLOT)["sequence"].ravel()) == list(range(1, 11))
    publish(100)  # the follower is now 100 behind a 16-slot ring
    n = record.record_follow(ctrl, words, state, out)
    st = state[0]
    assert (st["overruns"], st["lost_ticks"], n) == (1, 92, 8)
    assert list(out[:n].copy().view(TICK_SLOT)["sequence"].ravel()) == list(range(103, 111))
    assert record.record_follow(ctrl, words, state, out) == 0  # caught up


# ---- real processes --------------------------------------------------------------------------
def test_bad_replay_files_fail_the_feed_with_one_clear_line(tmp_path, pipeline_factory):
    """``bog feed --feed replay`` on unusable files: exit 1, one message on stderr, no
    traceback, no shared memory left behind. All processes run at once to keep it quick."""
    files = tmp_path / "files"
    files.mkdir()
    cases = {k: v for k, v in _bad_files(files).items()
             if k in ("missing", "empty", "directory", "bad_header", "all_rejected", "version",
                      "device")}
    # a FIFO is refused without being opened: opening one blocks until a writer comes (the
    # feed used to hang there for ever, deaf to SIGTERM). Only here, in a subprocess with a
    # timeout, never in-process.
    os.mkfifo(files / "pipe.csv", 0o600)
    cases["fifo"] = (files / "pipe.csv", "is a FIFO (named pipe), not a regular file")
    runs = {}
    try:
        for name, (path, message) in cases.items():
            pl = pipeline_factory(sub=name)
            argv = pl.argv("feed", "--feed", "replay", "--replay-file", str(path), "--speed",
                           "max")
            runs[name] = (pl, subprocess.Popen(argv, env=pl.env, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True), message, path)
        for name, (pl, proc, message, path) in runs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 1, (name, err)
            assert "Traceback" not in err + out, (name, err)
            failed = [line for line in err.splitlines() if "bog-feed failed to start:" in line]
            assert len(failed) == 1 and message in failed[0] and str(path) in failed[0], \
                (name, err)
            assert list_segments(pl.instance) == [], name
    finally:
        for _pl, proc, _m, _p in runs.values():
            if proc.poll() is None:  # only our own child, still running after a failure
                proc.kill()
                proc.wait(10)


def _feed_metrics(pl):
    return pl.metrics("feed")


def _ring_items(instance: str, n: int) -> np.ndarray:
    ring = TicksRing.attach(SegmentNames(instance).ticks)
    try:
        assert ring.head == n
        return ring.items[:n].copy()
    finally:
        ring.close()


def test_replay_at_max_speed_publishes_every_row(tmp_path, pipeline_factory):
    path = tmp_path / "book.csv"
    bad = write_csv(path, 20_000, levels=10, bad_every=997)
    expected = load_replay(str(path))
    n = len(expected.rows)
    assert n == 20_000 - len(bad) == expected.rows_read - expected.rejected
    pl = pipeline_factory(FAST)
    pl.start("feed", "--feed", "replay", "--replay-file", str(path), "--speed", "max")
    pl.start("engine")  # a replay publishes only while an engine reads the ring
    m = wait_for(lambda: (mm := _feed_metrics(pl))["replay_done"] == 1 and mm, 60,
                 what="replay done")
    assert m["messages_total"] == n and m["last_sequence"] == n
    assert m["full_snapshots_total"] == n
    assert m["replay_rows_total"] == 20_000 and m["replay_rows_rejected_total"] == len(bad)
    assert m["publish_ns_bucket"].sum() == n and m["feed_latency_us_bucket"].sum() == n
    items = _ring_items(pl.instance, n)
    assert list(items["sequence"]) == list(range(1, n + 1))
    assert (items[list(PAYLOAD)] == expected.rows[list(PAYLOAD)]).all()
    for f in ("bid_px_l", "bid_sz_l", "ask_px_l", "ask_sz_l"):
        assert (items[f] == expected.rows[f]).all()
    # event time: the recorded timestamps, and the ring says so
    assert (items["exchange_ts_ns"] == expected.rows["exchange_ts_ns"]).all()
    assert (items["local_recv_ns"] == items["exchange_ts_ns"]).all()
    ring = TicksRing.attach(SegmentNames(pl.instance).ticks)
    try:
        assert int(ring.ctrl[RING_EVENT_TIME]) == 1
    finally:
        ring.close()
    log = pl.log_text()
    assert f"Replay row rejected: file {path} line {bad[0]}: crossed book" in log
    assert "replay finished" in log
    assert pl.stop_all()["feed"] == 0


def _engine_caught_up(pl, n):
    m = pl.metrics("engine")
    return int(m["ticks_total"]) == n and m


def test_replay_is_lossless_with_a_small_ring_at_max_speed(tmp_path, pipeline_factory):
    """A 64-slot ring and 20,000 rows at --speed max: the feed waits for the engine to attach
    (publishes nothing before), then never laps it: every valid row is processed, none lost or
    skipped, and the tick accounting adds up."""
    path = tmp_path / "book.csv"
    bad = write_csv(path, 20_000, levels=10, bad_every=997)
    n = 20_000 - len(bad)
    pl = pipeline_factory(merge(FAST, {"feed": {"ring_capacity": 64}}))
    pl.start("feed", "--feed", "replay", "--replay-file", str(path), "--speed", "max")
    time.sleep(0.5)  # no engine yet: the replay waits, and says so
    fm = _feed_metrics(pl)
    assert fm["messages_total"] == 0 and fm["replay_waiting_for_engine"] == 1
    pl.start("engine")
    wait_for(lambda: _feed_metrics(pl)["replay_done"] == 1, 60, what="replay done")
    m = wait_for(lambda: _engine_caught_up(pl, n), 60, what="engine processed every row")
    fm = _feed_metrics(pl)
    assert fm["messages_total"] == n and fm["replay_waiting_for_engine"] == 0
    assert int(m["ring_lost_ticks_total"]) == 0 and int(m["ring_overruns_total"]) == 0
    assert int(m["ticks_skipped_at_attach_total"]) == 0
    wait_for(lambda: int(pl.metrics("engine")["ring_published_total"]) == n, 10,
             what="published total exported")
    assert int(pl.metrics("engine")["ring_unaccounted_ticks"]) == 0
    assert int(m["sequence_gaps_total"]) == 0
    log = pl.log_text()
    assert "replay waiting for the engine" in log and "replay resumed" in log
    codes = pl.stop_all()
    assert codes == {"engine": 0, "feed": 0}


def test_record_then_replay_round_trip(tmp_path, pipeline_factory):
    src = pipeline_factory("[feed]\nrate_per_s = 1000.0\n")
    src.start("feed")
    out = tmp_path / "capture.bogticks"
    rec = subprocess.run([*src.argv("record"), "--count", "500", "--out", str(out)],
                         env=src.env, capture_output=True, text=True, timeout=60)
    assert rec.returncode == 0, rec.stderr
    assert f"wrote 500 snapshots to {out}" in rec.stderr and "Traceback" not in rec.stderr
    # without --count it records until interrupted, and still finalises the file
    out2 = tmp_path / "interrupted.bogticks"
    p = subprocess.Popen([*src.argv("record"), "--duration", "0", "--out", str(out2)],
                         env=src.env, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: out2.exists() and out2.stat().st_size > 64 * 1024, 30, what="recording")
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=30)[1]
    assert p.returncode == 0 and "(signal SIGINT)" in err and "Traceback" not in err, err
    with open(out2, "rb") as f:
        header2, records2, trailing2 = record.read_record_file(f, str(out2))
    assert header2["complete"] and header2["records"] == len(records2) > 100 and trailing2 == 0
    src.stop_all()
    with open(out, "rb") as f:
        header, records, trailing = record.read_record_file(f, str(out))
    assert trailing == 0 and len(records) == 500
    assert header["complete"] and header["records"] == 500 and header["lost_ticks"] == 0
    assert header["instance"] == src.instance
    assert (np.diff(records["sequence"]) == 1).all()  # nothing lost
    assert (np.diff(records["local_recv_ns"]) >= 0).all()

    dst = pipeline_factory(FAST)
    dst.start("feed", "--feed", "replay", "--replay-file", str(out), "--speed", "max")
    dst.start("engine")
    m = wait_for(lambda: (mm := _feed_metrics(dst))["replay_done"] == 1 and mm, 60,
                 what="replay done")
    assert m["replay_rows_total"] == 500 and m["replay_rows_rejected_total"] == 0
    assert m["messages_total"] == 500 and m["last_sequence"] == records["sequence"][-1]
    assert m["trades_total"] == np.count_nonzero(records["trade_sz"])
    assert m["full_snapshots_total"] == np.count_nonzero(records["flags"] & FLAG_FULL_SNAPSHOT)
    items = _ring_items(dst.instance, 500)
    assert (items[list(PAYLOAD)] == records[list(PAYLOAD)]).all()
    full = (records["flags"] & FLAG_FULL_SNAPSHOT) != 0
    for f in ("bid_px_l", "bid_sz_l", "ask_px_l", "ask_sz_l"):
        assert (items[f][full] == records[f][full]).all()
    # the recorded exchange-to-local latency is replayed as recorded
    assert ((items["local_recv_ns"] - items["exchange_ts_ns"])
            == (records["local_recv_ns"] - records["exchange_ts_ns"])).all()
    assert dst.stop_all()["feed"] == 0


# ---- bog run --feed replay: ends by itself with a report -------------------------------------
TRADING = {"strategy": {"spread_bps": 1.0, "min_market_spread_bps": 0.0, "requote_bps": 0.5,
                        "order_size_btc": 0.01},
           "risk": {"min_quote_interval_ms": 0.0, "max_position_btc": 0.05},
           "execution": {"maker_latency_ms": 0.0}}


def _bog_run(pl, path, speed: str, *extra: str, timeout=240):
    argv = pl.argv("run", "--no-monitor", "--feed", "replay", "--replay-file", str(path),
                   "--speed", speed, *extra)
    return subprocess.run(argv, env=pl.env, capture_output=True, text=True, timeout=timeout)


def _journal_fills(path: Path) -> list[dict]:
    """This run's records: after the (only) EngineStart of a fresh state directory."""
    docs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    starts = [i for i, d in enumerate(docs) if d["type"] == "EngineStart"]
    assert len(starts) == 1
    return docs[starts[0] + 1:]


def test_replay_run_ends_by_itself_with_a_report_that_matches_the_journal(tmp_path,
                                                                          pipeline_factory):
    path = tmp_path / "book.csv"
    bad = write_csv(path, 5_000, levels=10, bad_every=997)
    n = 5_000 - len(bad)
    pl = pipeline_factory(merge(FAST, TRADING, {"feed": {"ring_capacity": 256}}))
    report_path = tmp_path / "report.json"
    r = _bog_run(pl, path, "max", "--report", str(report_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert f"bog replay report: {path} at speed max" in r.stdout
    rep = orjson.loads(report_path.read_bytes())
    assert (rep["rows_read"], rep["rows_rejected"], rep["rows_published"],
            rep["rows_processed"], rep["lost"], rep["skipped_at_attach"]) == (
        5_000, len(bad), n, n, 0, 0)
    assert list_segments(pl.instance) == []  # every process stopped and cleaned up
    # every trading figure, recomputed here from the journal (tests/replay_figures.py); the
    # engine's first and last ticks are the file's first and last rows (event time)
    recs = _journal_fills(pl.journal_path())
    fills = [d for d in recs if d["type"] == "Fill"]
    assert len(fills) > 10, "the test market must trade through the quotes"
    first_ns = (1_700_000_000_000_000 + 1000) * 1000
    check_report_against_journal(rep, recs, first_ns, first_ns + (5_000 - 1) * 1_000_000)
    assert rep["breaker_time_s"]["closed"] == pytest.approx(rep["event_span_s"])
    assert "breaker    closed " in r.stdout
    assert rep["max_inventory_btc"] <= 0.05 + 0.01 and rep["max_drawdown_usd"] >= 0
    assert rep["ticks_per_s"] > 0 and rep["tick_latency_p99_ns"] >= rep["tick_latency_p50_ns"]
