"""Replay inputs: the file streamed block by block (bounded memory), a tardis ``trades`` file
merged with a book file, and the tardis ``incremental_book_L2`` format."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from support import FAST, merge, wait_for
from test_replay import _header, _row

from bog.feed.replay import ReplayStream, load_replay
from bog.replaygen import write_book_csv


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
