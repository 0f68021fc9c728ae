"""The lighter feed source against ``bog fake-venue``: both real processes on loopback.

The fake runs in its own process (as the venue would); faults are triggered through its
fake-only control endpoint. Book exactness is checked against the fake's own book: every
published snapshot's exchange time is the venue's ``last_updated_at`` (unique per update on
the fake), and ``POST /fake/books`` returns the fake's top 10 at that time.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request

import numpy as np
import pytest

from support import FAST, Pipeline, Proc, free_port, merge, unique_instance, wait_for, \
    cleanup_segments

from bog.shm.codes import VENUE_DOWN, VENUE_FRAME, VENUE_REJECT
from bog.shm.layouts import FLAG_BOOK_INVALID, FLAG_FULL_SNAPSHOT, RING_TICK_FIXED
from bog.shm.metrics import ENGINE, FEED
from bog.shm.ring import READ_OK, TicksRing

pytestmark = pytest.mark.timeout(120)


class Fake:
    """``bog fake-venue`` in its own process on a free port."""

    def __init__(self, tmp_path, rate=200.0, seed=7, extra=()):
        self.port = free_port()
        argv = [sys.executable, "-m", "bog.cli", "fake-venue", "--port", str(self.port),
                "--rate", str(rate), "--seed", str(seed), *extra]
        self.proc = Proc(argv, dict(os.environ), tmp_path / f"fake{self.port}.out")
        self.url = f"ws://127.0.0.1:{self.port}/stream"
        wait_for(lambda: self._up(), 30, what="fake venue up")

    def _up(self):
        if not self.proc.alive():
            raise AssertionError(f"fake venue exited:\n{self.proc.output()}")
        try:
            return self.get("/api/v1/orderBooks")
        except OSError:
            return None

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def post(self, path, doc):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=json.dumps(doc).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def fault(self, kind, arg=None):
        return self.post("/fake/fault", {"kind": kind, "arg": arg})

    def books(self, market_id, ts_us):
        out = {}
        for i in range(0, len(ts_us), 2000):
            out.update(self.post("/fake/books", {"market_id": market_id,
                                                 "ts_us": ts_us[i:i + 2000]})["books"])
        return out

    def stop(self):
        self.proc.stop()


def venue_config(fake: Fake, market="BTC", **venue) -> dict:
    v = {"url": fake.url, "market": market, "stall_timeout_s": 2.0, "backoff_initial_s": 0.1,
         "backoff_max_s": 1.0}
    v.update(venue)
    # quotes inside the fake's ~5 bps market spread, so real trades fill them on paper
    return merge(FAST, {"feed": {"source": "lighter"}, "venue": v,
                        "strategy": {"spread_bps": 2.0, "min_best_size_btc": 0.0,
                                     "order_size_btc": 0.001, "requote_bps": 0.5},
                        "execution": {"maker_latency_ms": 50.0}})


@pytest.fixture
def fake(tmp_path):
    f = Fake(tmp_path)
    yield f
    f.stop()


@pytest.fixture
def pipe(tmp_path):
    pipes = []

    def make(fake, **kw):
        p = Pipeline(tmp_path, unique_instance("lt"), venue_config(fake, **kw))
        pipes.append(p)
        return p
    yield make
    for p in pipes:
        p.stop_all()
        cleanup_segments(p.instance)


def ring_slots(pipe) -> np.ndarray:
    """Every snapshot still in the ticks ring, oldest first."""
    ring = TicksRing.attach(pipe.names.ticks)
    try:
        head = ring.head
        out = []
        for pos in range(max(0, head - ring.capacity), head):
            status, rec = ring.read(pos)
            assert status == READ_OK
            out.append(rec)
        return np.array(out) if out else np.zeros(0)
    finally:
        ring.close(unlink=False)


def compare_with_fake(fake: Fake, slots, market_id=1) -> tuple[int, int]:
    """Every published book snapshot equals the fake's top 10 at its update.
    Returns (compared, thin: snapshots with fewer than 10 levels on a side)."""
    books = [s for s in slots if s["flags"] & FLAG_FULL_SNAPSHOT and s["trade_sz"] == 0]
    ts = [int(s["exchange_ts_ns"]) // 1000 for s in books]
    truth = fake.books(market_id, ts)
    thin = 0
    for s, t in zip(books, ts):
        want = truth[str(t)]
        assert want is not None, f"snapshot at {t} us not in the fake's history"
        got = np.array([s["bid_px_l"], s["bid_sz_l"], s["ask_px_l"], s["ask_sz_l"]])
        assert got.tolist() == want["top"], f"book differs at nonce {want['nonce']}"
        assert s["bid_px"] == got[0, 0] and s["ask_px"] == got[2, 0]
        thin += int((got[0] == 0).any() or (got[2] == 0).any())
    return len(books), thin


def feed_m(pipe):
    return pipe.metrics(FEED)


def test_book_exact_after_thousands_of_updates(tmp_path, pipe):
    """Thousands of random updates (adds, resizes, removals, thin phases): every published
    top 10 equals the fake's own book at that update; nothing is rejected."""
    f = Fake(tmp_path, rate=800.0, seed=11)
    try:
        p = pipe(f)
        p.start(FEED)
        wait_for(lambda: int(feed_m(p)["messages_total"]) > 1500, 40, what="1500 snapshots")
        f.fault("thin", 1)  # both sides down to one level, then the walk deepens them again
        wait_for(lambda: int(feed_m(p)["messages_total"]) > 4000, 40, what="4000 snapshots")
        m = feed_m(p)
        slots = ring_slots(p)
        compared, thin = compare_with_fake(f, slots)
        assert compared > 3000
        assert thin > 0  # thin books were published (and compared) too
        assert int(m["venue_frames_rejected_total"].sum()) == 0
        assert int(m["venue_frames_total"][VENUE_FRAME.BOOK_UPDATE]) > 3000
        # sequence numbers are contiguous: nothing lost between frames and ring
        seqs = slots["sequence"]
        assert (np.diff(seqs) == 1).all()
        # the engine's tick size and minimum order come from the venue (BTC: 1 price decimal)
        ring = TicksRing.attach(p.names.ticks)
        assert int(ring.ctrl[RING_TICK_FIXED]) == 100_000_000
        ring.close(unlink=False)
    finally:
        f.stop()
