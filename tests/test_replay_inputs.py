"""Replay inputs: the file streamed block by block (bounded memory), a tardis ``trades`` file
merged with a book file, and the tardis ``incremental_book_L2`` format."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from support import FAST, merge, wait_for
from test_replay import _header, _row

from bog.feed.replay import ReplayStream, load_replay
from bog.replaygen import write_book_csv
from bog.shm.layouts import TICK_SLOT

TICK_FIELDS = TICK_SLOT.names


def _proc_status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


# ---- bounded memory: streamed in blocks -------------------------------------------------------
def test_rejects_on_both_sides_of_a_block_boundary_are_counted_exactly(tmp_path, caplog):
    """Fixed-width rows, blocks of exactly 10 lines: bad rows at the last line of one block,
    the first of the next, and a timestamp stepping back across a boundary (only the carried
    previous timestamp can see it) are all rejected, counted and logged with their lines."""
    caplog.set_level(logging.WARNING, logger="bog.feed.replay")
    rows = []
    ts = 1_700_000_000_000_000
    for i in range(40):
        ts += 1000
        rows.append(_row(ts, 30000.0 + (i % 7) * 0.5, 2))
    line = {n: n - 2 for n in range(2, 42)}  # file line -> index in rows
    rows[line[11]] = _row(1_700_000_000_010_000, 30000.0, 2, ask=29999.0)  # crossed, block 1 end
    rows[line[12]] = _row(1_700_000_000_011_000, 30000.0, 2, ask=29999.0)  # crossed, block 2 start
    # line 21 ends block 2 (ts ...020000); line 22 starts block 3 one step back in time
    rows[line[22]] = _row(1_700_000_000_019_500, 30000.0, 2)
    assert len({len(r) for r in rows}) == 1  # fixed width: the blocks are exactly 10 lines
    path = tmp_path / "book.csv"
    path.write_text(_header(2) + "\n" + "\n".join(rows) + "\n")
    block = 10 * (len(rows[0]) + 1)

    stream = ReplayStream(str(path), chunk_bytes=block)
    sizes = [len(stream.first_chunk().rows)]
    while (c := stream.next_chunk()) is not None:
        sizes.append(len(c.rows))
    assert sizes == [9, 9, 9, 10]  # blocks of lines 2-11, 12-21, 22-31, 32-41; one bad in 3

    caplog.clear()
    loaded = load_replay(str(path), chunk_bytes=block)
    assert loaded.rows_read == 40 and loaded.rejected == 3 and len(loaded.rows) == 37
    reasons = dict(loaded.rejects)
    assert list(reasons) == [11, 12, 22]
    assert reasons[11].startswith("crossed book") and reasons[12].startswith("crossed book")
    assert reasons[22] == ("timestamp goes backwards (1700000000019500 us < previous row's "
                           "1700000000020000 us)")
    logged = [r.getMessage() for r in caplog.records]
    for n in (11, 12, 22):
        assert f"Replay row rejected: file {path} line {n}: {reasons[n]}" in logged
    assert list(loaded.rows["sequence"]) == list(range(1, 38))
    # the same as one block
    whole = load_replay(str(path))
    assert whole.rejects == loaded.rejects and (whole.rows == loaded.rows).all()


def _feed_peak_rss_mb(tmp_path, pipeline_factory, rows: int, sub: str) -> tuple[float, dict]:
    path = tmp_path / f"{sub}.csv"
    write_book_csv(str(path), rows, levels=10)
    pl = pipeline_factory(merge(FAST, {"feed": {"ring_capacity": 4096}}), sub=sub)
    pl.start("feed", "--feed", "replay", "--replay-file", str(path), "--speed", "max")
    pl.start("engine")
    try:
        m = wait_for(lambda: (mm := pl.metrics("feed"))["replay_done"] == 1 and mm, 120,
                     what=f"replay of {rows} rows done")
        pid = int(m["pid"])
        assert pid == pl.procs["feed"].pid and pl.procs["feed"].alive()
        peak = _proc_status_kb(pid, "VmHWM") / 1024
        wait_for(lambda: int(pl.metrics("engine")["ticks_total"]) == rows, 60,
                 what="engine processed every row")
    finally:
        codes = pl.stop_all()
    path.unlink()
    assert codes == {"engine": 0, "feed": 0}
    assert m["messages_total"] == rows and m["replay_rows_rejected_total"] == 0
    return peak, m


def test_feed_memory_does_not_grow_with_the_file(tmp_path, pipeline_factory):
    """The feed's peak RSS (VmHWM, from /proc) replaying 2,000 rows and 400,000 rows (130 MB
    of CSV; loaded whole, 400,000 rows took 180 MB more) differs by less than 48 MB."""
    small, _ = _feed_peak_rss_mb(tmp_path, pipeline_factory, 2_000, "small")
    large, m = _feed_peak_rss_mb(tmp_path, pipeline_factory, 400_000, "large")
    assert m["last_sequence"] == 400_000
    print(f"feed peak RSS: {small:.1f} MB for 2,000 rows, {large:.1f} MB for 400,000")
    assert large - small < 48, (small, large)


# ---- trades merged with a book ----------------------------------------------------------------
TRADES_HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"


def _book_and_trades(tmp: Path, crossing: bool = True) -> tuple[Path, Path, list]:
    """A still market (bid 29999.5 / ask 30000.5) for 400 ms, and a trade every 20 ms:
    alternately a sell swept far through the bids (29,900) and a buy through the asks
    (30,100) when ``crossing``, with harmless trades at the touch in between; plus two bad
    trade rows. Returns (book, trades, [(trade line, side) of the crossing trades])."""
    t0 = 1_700_000_000_000_000
    book = [_header(1)] + [f"x,BTC,{t0 + i * 1000},{t0 + i * 1000 + 5},30000.5,2,29999.5,2"
                           for i in range(400)]
    trades = [TRADES_HEADER]
    crossing_at = []
    for k in range(1, 20):
        ts = t0 + k * 20_000 + 500
        if k % 2 == 1 and crossing:  # through our quotes: fills
            side = "sell" if k % 4 == 1 else "buy"
            trades.append(f"x,BTC,{ts},{ts + 9},{k},{side},{29900 if side == 'sell' else 30100},1")
            crossing_at.append((len(trades), side))
        else:  # at the touch: inside our quotes, no fill
            side = "buy" if k % 4 == 0 else "sell"
            trades.append(f"x,BTC,{ts},{ts + 9},{k},{side},"
                          f"{30000.5 if side == 'buy' else 29999.5},1")
    trades.insert(3, f"x,BTC,{t0 + 50_000},{t0},99,unknown,29900,1")  # bad side
    trades.append(f"x,BTC,{t0 + 390_000},{t0},100,sell,29900,-1")  # negative amount
    b, t = tmp / "book.csv", tmp / "trades.csv"
    b.write_text("\n".join(book) + "\n")
    t.write_text("\n".join(trades) + "\n")
    crossing_at = [(line + (1 if line > 3 else 0), side) for line, side in crossing_at]
    return b, t, crossing_at


def test_trades_are_merged_with_the_book_by_timestamp(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="bog.feed.replay")
    book, trades, crossing = _book_and_trades(tmp_path)
    loaded = load_replay(str(book), trades_file=str(trades))
    assert loaded.format == "csv+trades"
    assert loaded.rows_read == 400 + 21 and loaded.rejected == 2
    assert [n for n, _ in loaded.rejects] == [4, 22]
    assert "side not buy or sell in column side: 'unknown'" in loaded.rejects[0][1]
    assert "zero or negative amount in column amount: '-1'" in loaded.rejects[1][1]
    rows = loaded.rows
    assert len(rows) == 400 + 19 and list(rows["sequence"]) == list(range(1, 420))
    assert (np.diff(rows["exchange_ts_ns"]) >= 0).all()
    tr = rows[rows["trade_sz"] > 0]
    assert len(tr) == 19 and (tr["trade_sz"] == 10**9).all()
    # each trade carries the book: the still market, and the trade
    assert (tr["bid_px"] == 29_999_500_000_000).all() and (tr["ask_px"] == 30_000_500_000_000).all()
    sides = {"buy": 1, "sell": -1}
    assert [int(s) for s in tr["trade_side"][0:19:2]] == [sides[s] for _, s in crossing]
    logged = [r.getMessage() for r in caplog.records]
    assert f"Replay row rejected: file {trades} line 4: {loaded.rejects[0][1]}" in logged


def test_trade_before_the_book_at_the_same_timestamp(tmp_path):
    """The tie rule: a trade stamped like a book row comes first and carries the book before
    it; a trade before (or with) the first book row has no book and is rejected."""
    (tmp_path / "b.csv").write_text(_header(1) + "\nx,B,1000,0,100.5,1,100,1\n"
                                    "x,B,2000,0,101.5,1,101,1\n")
    (tmp_path / "t.csv").write_text(TRADES_HEADER + "\nx,B,1000,0,1,buy,100.5,1\n"
                                    "x,B,2000,0,2,sell,100,1\n")
    loaded = load_replay(str(tmp_path / "b.csv"), trades_file=str(tmp_path / "t.csv"))
    assert loaded.rejects == [(2, "trade before the first book row (no book to carry it)")]
    r = loaded.rows
    assert list(r["exchange_ts_ns"]) == [1_000_000, 2_000_000, 2_000_000]
    assert list(r["trade_side"]) == [0, -1, 0]
    assert r[1]["bid_px"] == 100 * 10**9  # the trade at 2000 carries the book of 1000
    assert r[2]["bid_px"] == 101 * 10**9


TRADING = {"strategy": {"spread_bps": 1.0, "min_market_spread_bps": 0.0, "requote_bps": 0.5,
                        "order_size_btc": 0.01},
           "risk": {"min_quote_interval_ms": 0.0, "max_position_btc": 0.05},
           "execution": {"maker_latency_ms": 0.0}}


def _replay_fills(pl, book, trades=None) -> tuple[dict, list[dict]]:
    from test_replay import _bog_run, _journal_fills

    report = pl.tmp / "report.json"
    extra = ["--trades-file", str(trades)] if trades else []
    r = _bog_run(pl, book, "max", "--report", str(report), *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    import orjson

    recs = _journal_fills(pl.journal_path())
    rep = orjson.loads(report.read_bytes())
    # the report names its inputs and its fill model, printed and in the JSON
    assert (rep["replay_file"], rep["trades_file"], rep["fill_model"]) == (
        str(book), str(trades) if trades else None, "trade-through")
    assert (f"  inputs     book {book}, trades {trades or 'none'}; fill model trade-through\n"
            in r.stdout), r.stdout
    return rep, recs


def test_engine_fills_on_trades_exactly_where_they_cross(tmp_path, pipeline_factory):
    """Real processes (bog run --feed replay --trades-file): the book never moves through the
    quotes, so every fill comes from a trade (trade-through model): exactly one fill per trade
    that crossed a resting quote, on its side, for the whole order (the trade is bigger), at
    the order's price; none from the trades at the touch, none without the trades file."""
    book, trades, crossing = _book_and_trades(tmp_path)
    pl = pipeline_factory(merge(FAST, TRADING, {"feed": {"ring_capacity": 256}}), sub="trades")
    rep, recs = _replay_fills(pl, book, trades)
    assert (rep["rows_read"], rep["rows_rejected"], rep["rows_published"],
            rep["rows_processed"], rep["lost"]) == (421, 2, 419, 419, 0)
    fills = [d for d in recs if d["type"] == "Fill"]
    want = ["buy" if s == "sell" else "sell" for _, s in crossing]  # a sell fills our bid
    assert [d["side"] for d in fills] == want
    assert all(d["qty_fixed"] == 10_000_000 for d in fills)  # 0.01 BTC: the whole order
    submits = {d["order_id"]: d for d in recs if d["type"] == "OrderSubmit"}
    for d in fills:
        o = submits[d["order_id"]]
        assert d["price"] == o["price"]
        if d["side"] == "buy":
            assert 29_900 < o["price"] < 29_999.5
        else:
            assert 30_000.5 < o["price"] < 30_100

    quiet = pipeline_factory(merge(FAST, TRADING, {"feed": {"ring_capacity": 256}}), sub="quiet")
    _, recs = _replay_fills(quiet, book)
    assert [d for d in recs if d["type"] == "Fill"] == []
    (tmp_path / "touchfiles").mkdir()
    touch_book, touch_trades, none = _book_and_trades(tmp_path / "touchfiles", crossing=False)
    assert none == []
    touch = pipeline_factory(merge(FAST, TRADING, {"feed": {"ring_capacity": 256}}), sub="touch")
    _, recs = _replay_fills(touch, touch_book, touch_trades)
    assert [d for d in recs if d["type"] == "Fill"] == []


# ---- incremental_book_L2 ------------------------------------------------------------------------
INCR_HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"


def _book_history(seed: int, steps: int = 400):
    """A random book history: [(ts_us, is_snapshot_run, [(side, price, amount)], bids, asks)],
    bids {price: amount} <= 30000, asks >= 30000.5 (never crossed), a snapshot run (the book
    replaced) at the start and in the middle."""
    import random

    rnd = random.Random(seed)
    bid_prices = [30000 - 0.5 * k for k in range(30)]
    ask_prices = [30000.5 + 0.5 * k for k in range(30)]

    def levels(prices):
        return {p: rnd.randint(1, 5000) / 1000 for p in rnd.sample(prices, rnd.randint(3, 25))}

    def fresh():
        return levels(bid_prices), levels(ask_prices)

    out = []
    ts = 1_700_000_000_000_000
    bids, asks = {}, {}
    for i in range(steps):
        ts += rnd.choice((1, 250, 1000))
        if i in (0, steps // 2):
            bids, asks = fresh()
            changes = ([("bid", p, a) for p, a in bids.items()]
                       + [("ask", p, a) for p, a in asks.items()])
            rnd.shuffle(changes)
            out.append((ts, True, changes, dict(bids), dict(asks)))
            continue
        changes = []
        for _ in range(rnd.randint(1, 4)):
            side = rnd.choice(("bid", "ask"))
            book = bids if side == "bid" else asks
            p = rnd.choice(bid_prices if side == "bid" else ask_prices)
            a = 0 if rnd.random() < 0.35 else rnd.randint(1, 5000) / 1000
            if a == 0:
                book.pop(p, None)  # removing an absent level is allowed: nothing happens
            else:
                book[p] = a
            changes.append((side, p, a))
        out.append((ts, False, changes, dict(bids), dict(asks)))
    return out


def _write_history(tmp: Path, history) -> tuple[Path, Path]:
    incr = [INCR_HEADER]
    snap = [_header(10)]
    for ts, is_snap, changes, bids, asks in history:
        for side, p, a in changes:
            incr.append(f"deribit,BTC,{ts},{ts + 7},{'true' if is_snap else 'false'},{side},"
                        f"{p:.1f},{a:g}")
        b = sorted(bids.items(), reverse=True)[:10]
        a = sorted(asks.items())[:10]
        f = ["deribit", "BTC", str(ts), str(ts + 7)]
        for k in range(10):
            f += [f"{a[k][0]:.1f}", f"{a[k][1]:g}"] if k < len(a) else ["", ""]
            f += [f"{b[k][0]:.1f}", f"{b[k][1]:g}"] if k < len(b) else ["", ""]
        snap.append(",".join(f))
    pi, ps = tmp / "incremental_book_L2.csv", tmp / "book_snapshot_10.csv"
    pi.write_text("\n".join(incr) + "\n")
    ps.write_text("\n".join(snap) + "\n")
    return pi, ps


def test_incremental_book_matches_its_snapshots(tmp_path):
    """One random book history written as incremental_book_L2 (a snapshot run, deltas, a
    second snapshot run that replaces the book) and as book_snapshot_10 rows: the replayed
    snapshots are identical, field by field, whatever the block size."""
    from test_replay import _replay_locally

    history = _book_history(seed=7)
    pi, ps = _write_history(tmp_path, history)
    expected = load_replay(str(ps))
    assert expected.rejected == 0 and len(expected.rows) == len(history)
    assert 0 < (expected.rows["flags"] == 0).sum() < len(history)  # thin and full books
    for block in (0, 997):  # the default, and blocks that cut the runs of a timestamp
        got = load_replay(str(pi), chunk_bytes=block)
        assert got.format == "incremental_book_L2" and got.rejected == 0
        assert got.rows_read == sum(len(h[2]) for h in history)
        assert len(got.rows) == len(history)
        assert (got.rows == expected.rows).all()
        published, m, _ = _replay_locally(got, speed=0.0)
        want, _, _ = _replay_locally(expected, speed=0.0)
        fields = [f for f in TICK_FIELDS if f not in ("exchange_ts_ns", "local_recv_ns",
                                                      "local_publish_ns")]
        assert (published[fields] == want[fields]).all()
        assert m["messages_total"] == len(history)


def test_incremental_bad_rows_are_rejected_and_logged(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="bog.feed.replay")
    p = tmp_path / "incr.csv"
    p.write_text(INCR_HEADER + "\n"
                 "x,B,1000,0,true,bid,100,1\n"
                 "x,B,1000,0,true,ask,101,1\n"
                 "x,B,2000,0,false,buy,100,1\n"      # line 4: side
                 "x,B,2000,0,maybe,bid,100,1\n"      # line 5: is_snapshot
                 "x,B,2000,0,false,bid,100,-1\n"     # line 6: negative amount
                 "x,B,500,0,false,bid,100,2\n"       # line 7: backwards
                 "x,B,3000,0,false,bid,102,1\n"      # line 8: crosses the book (bid 102 > 101)
                 "x,B,4000,0,false,bid,102,0\n"      # line 9: removed again: fine
                 "x,B,5000,0,false,ask,101,0\n")     # line 10: no ask left
    got = load_replay(str(p))
    assert got.rows_read == 9 and got.rejected == 6
    reasons = dict(got.rejects)
    assert list(reasons) == [4, 5, 6, 7, 8, 10]
    assert reasons[4] == "side not bid or ask in column side: 'buy'"
    assert reasons[5] == "is_snapshot not true or false in column is_snapshot: 'maybe'"
    assert reasons[6] == "negative amount in column amount: '-1'"
    assert reasons[7].startswith("timestamp goes backwards")
    assert reasons[8] == "crossed book: best bid 102 > best ask 101"
    assert reasons[10].startswith("zero or missing best ask price")
    assert list(got.rows["exchange_ts_ns"]) == [1_000_000, 4_000_000]
    logged = [r.getMessage() for r in caplog.records]
    assert f"Replay row rejected: file {p} line 8: {reasons[8]}" in logged


def test_an_over_long_line_is_dropped_unread_rejected_and_counted(tmp_path, caplog):
    """A line longer than 1 MiB (a file with no newlines, binary junk) is never held whole:
    the reader skips it to its end, and it is rejected with its line number like any bad row;
    the rows around it load, and later line numbers stay right."""
    from bog.feed.csvformat import MAX_LINE_BYTES, OVERSIZED_LINE, LineChunks

    caplog.set_level(logging.WARNING, logger="bog.feed.replay")
    ts = 1_700_000_000_000_000
    good = [_row(ts + 1000 * i, 30000.0, 2) for i in range(1, 5)]
    junk = "x" * (3 * MAX_LINE_BYTES)
    path = tmp_path / "book.csv"
    path.write_text(_header(2) + "\n" + good[0] + "\n" + good[1] + "\n" + junk + "\n"
                    + good[2] + "\n" + good[3] + "\n" + junk)  # the last one: no newline
    for block in (4096, 1 << 20, 4 << 20):
        loaded = load_replay(str(path), chunk_bytes=block)
        assert loaded.rows_read == 6 and loaded.rejected == 2 and len(loaded.rows) == 4, block
        assert loaded.rejects == [(4, f"line longer than {MAX_LINE_BYTES:,} bytes (dropped "
                                      "unread)"), (7, loaded.rejects[0][1])], block
    assert any("line 4: line longer than" in r.getMessage() for r in caplog.records)
    # memory: no block (and no carried line) ever holds the junk
    with open(path, "rb") as f:
        src = LineChunks(f, chunk_bytes=4096)
        blocks = []
        while (b := src.next()) is not None:
            blocks.append(b)
            assert len(b) <= MAX_LINE_BYTES + 2 * 4096 and len(src.carry) <= MAX_LINE_BYTES + 4096
    assert b"".join(blocks).count(OVERSIZED_LINE) == 2


def test_an_incremental_book_deeper_than_the_cap_ends_the_replay_with_one_clear_error(
        tmp_path, monkeypatch, caplog):
    """The rebuilt book's memory is bounded: a side beyond MAX_BOOK_LEVELS price levels is not
    a plausible L2 book; the reader stops with an error naming the line and the side (the
    replay feed counts the rest of the file as one rejected row and ends)."""
    from bog.feed import tardis
    from bog.feed.replay import ReplayError

    p = tmp_path / "deep.csv"
    rows = ["x,B,1000,0,true,bid,150,1", "x,B,1000,0,true,ask,200,1"]
    rows += [f"x,B,{2000 + i},0,false,bid,{100 - i * 0.5},1" for i in range(40)]
    p.write_text(INCR_HEADER + "\n" + "\n".join(rows) + "\n")
    assert load_replay(str(p)).rejected == 0  # 40 levels: fine by default
    monkeypatch.setattr(tardis, "MAX_BOOK_LEVELS", 32)
    with pytest.raises(ReplayError, match=(
            rf"replay file {p}: line 35: the bid side of the rebuilt book would exceed 32 "
            "price levels: not a plausible L2 book")):
        load_replay(str(p))
