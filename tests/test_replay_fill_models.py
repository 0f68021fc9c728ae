"""The paper fill models end to end: the same replay file through ``bog run --feed replay``
with ``execution.fill_model = "trade-through"`` and ``"queue"`` (docs/replay.md "Fill models").

The file is a ``bog record`` file built here (the CSV book format carries no trades): a
10-level book, 2 BTC at every level, with a 0.05 BTC trade every 10th row alternately hitting
the best bid and lifting the best ask, and the whole book 10 USD higher from row 500 on.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import orjson
from support import FAST, merge

from bog.feed import record
from bog.shm.layouts import DEPTH, FIXED, FLAG_FULL_SNAPSHOT, TICK_SLOT

ROWS, SHIFT_ROW = 2_000, 500
# quotes 5 bps either side of the mid on a 10 USD grid: at the best bid and ask of the book
# (29980 / 30020 around 30000, then 29990 / 30030), requoted when the book shifts
CONFIG = {"strategy": {"spread_bps": 10.0, "tick_size_usd": 10.0, "order_size_btc": 0.01,
                       "requote_bps": 1.0, "requote_after_s": 3600.0},
          "risk": {"min_quote_interval_ms": 0.0},
          "execution": {"maker_latency_ms": 0.0}}


def write_file(path: Path) -> None:
    rows = np.zeros(ROWS, TICK_SLOT)
    t0 = 1_700_000_000_000_000_000
    for i in range(ROWS):
        r = rows[i]
        bid = 29980.0 + (10.0 if i >= SHIFT_ROW else 0.0)
        ask = bid + 40.0
        r["sequence"] = i + 1
        r["exchange_ts_ns"] = r["local_recv_ns"] = t0 + i * 1_000_000
        for k in range(DEPTH):
            r["bid_px_l"][k] = round((bid - 10.0 * k) * FIXED)
            r["ask_px_l"][k] = round((ask + 10.0 * k) * FIXED)
            r["bid_sz_l"][k] = r["ask_sz_l"][k] = 2 * FIXED
        r["bid_px"], r["ask_px"] = r["bid_px_l"][0], r["ask_px_l"][0]
        r["bid_sz"] = r["ask_sz"] = 2 * FIXED
        r["flags"] = FLAG_FULL_SNAPSHOT
        if i % 10 == 5:  # trade k = i // 10: sells at the best bid for even k, buys odd
            sell = (i // 10) % 2 == 0
            r["trade_side"] = -1 if sell else 1
            r["trade_px"] = r["bid_px"] if sell else r["ask_px"]
            r["trade_sz"] = 50_000_000  # 0.05
    w = record.RecordWriter(str(path), record.make_header(source="test"))
    w.write(rows)
    w.close(complete=True)


def run_fills(pipeline_factory, path: Path, model: str) -> list[tuple[str, float, float]]:
    pl = pipeline_factory(merge(FAST, CONFIG, {"execution": {"fill_model": model}}))
    r = subprocess.run(pl.argv("run", "--no-monitor", "--feed", "replay", "--replay-file",
                               str(path), "--speed", "max"),
                       env=pl.env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert "lost 0" in r.stdout
    # the report names the fill model (and the queue model's cancel rule) it was computed with
    named = "queue (queue_cancels pro-rata)" if model == "queue" else model
    assert f"; fill model {named}\n" in r.stdout, r.stdout
    docs = [orjson.loads(line) for line in pl.journal_path().read_bytes().splitlines()]
    assert [d["type"] for d in docs].count("EngineStart") == 1  # a fresh state directory
    return [(d["side"], d["price"], d["qty"]) for d in docs if d["type"] == "Fill"]


def test_queue_model_fills_fewer_and_later_than_trade_through_on_the_same_file(
        tmp_path, pipeline_factory):
    path = tmp_path / "trades.bogticks"
    write_file(path)
    # trade-through: every one of the 200 trades fills the 0.01 quote it hits (then both
    # sides are requoted at the same prices), from the first trade on
    tt = run_fills(pipeline_factory, path, "trade-through")
    expect = [("buy" if k % 2 == 0 else "sell",
               (29980.0 if k % 2 == 0 else 30020.0) + (10.0 if 10 * k >= SHIFT_ROW else 0.0),
               0.01) for k in range(ROWS // 10)]
    assert tt == expect
    # queue: each quote joins behind the 2 BTC displayed at its price. The 25 sells before
    # the shift eat 1.25 of the bid's queue; the shift requotes both sides 10 USD higher,
    # behind 2 BTC again; the 40 sells from trade 50 to 128 eat it, trade 130 fills the bid
    # (both sides requoted behind 2 BTC again), and the 35 buys / 34 sells left do not
    # reach either quote
    assert run_fills(pipeline_factory, path, "queue") == [("buy", 29990.0, 0.01)]
