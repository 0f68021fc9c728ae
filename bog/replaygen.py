"""Generated replay input: tardis ``book_snapshot_N`` CSV files of any length, written fast.

For ``bog bench --replay`` and the tests. The book is a random walk of the best bid on a
0.5 USD grid (a seeded ``random.Random``), 1 ms between rows, N levels a side 0.5 USD apart;
the text of the levels is built once per price and reused, so a million rows take about a
second to write.
"""

from __future__ import annotations

import random


def book_header(levels: int) -> str:
    cols = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for k in range(levels):
        cols += [f"asks[{k}].price", f"asks[{k}].amount", f"bids[{k}].price", f"bids[{k}].amount"]
    return ",".join(cols)


def _levels(bid_ticks: int, levels: int) -> str:
    bid = bid_ticks * 0.5
    f = []
    for k in range(levels):
        f += [f"{bid + 0.5 + k * 0.5:.1f}", f"{1 + k}.25", f"{bid - k * 0.5:.1f}", f"{2 + k}.5"]
    return ",".join(f)


def write_book_csv(path: str, rows: int, levels: int = 10, seed: int = 1,
                   start_us: int = 1_700_000_000_000_000) -> int:
    """Write ``rows`` valid snapshot rows to ``path``; returns the bytes written."""
    rnd = random.Random(seed)
    cache: dict[int, str] = {}
    ticks = 60_000  # best bid 30,000 USD
    written = 0
    with open(path, "w", buffering=1 << 20) as f:
        written += f.write(book_header(levels) + "\n")
        batch = []
        ts = start_us
        for i in range(rows):
            ts += 1000
            ticks += rnd.choice((-1, 0, 0, 1))
            lv = cache.get(ticks)
            if lv is None:
                lv = cache[ticks] = _levels(ticks, levels)
            batch.append(f"binance-futures,BTCUSDT,{ts},{ts + 700},{lv}\n")
            if len(batch) == 10_000:
                written += f.write("".join(batch))
                batch.clear()
        written += f.write("".join(batch))
    return written
